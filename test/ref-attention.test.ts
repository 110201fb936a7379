// The shared float64 attention reference and error measures (test/ref/attention.ts, test/ref/compare.ts).
import t from 'tap';
import { attentionRef, median, quantile, relativeErrors } from './ref/attention';
import { maxAbsDiff } from './ref/compare';

t.test('attentionRef: hand case with qpos masking, kept subsets, GQA and lse', async (t) => {
  // one KV head, keys on a line: logits ln1, ln2, ln3 → weights ∝ 1, 2, 3
  const K = [0, Math.log(2), Math.log(3)];
  const V = [10, 20, 30];
  const base = { q: [1, 1, 1, 1], Hq: 1, T: 4, d: 1, K, V, Hkv: 1, N: 3, dv: 1, scale: 1 };
  const r = attentionRef({ ...base, qpos: [-1, 0, 1, 2] });
  t.equal(r.out.length, 4);
  t.equal(r.lse.length, 4);
  t.equal(r.out[0], 0, 'no visible key → 0');
  t.equal(r.lse[0], -Infinity, 'no visible key → lse −∞');
  t.ok(Math.abs(r.out[1] - 10) < 1e-14 && Math.abs(r.lse[1] - 0) < 1e-14, 'qpos 0 sees only s=0');
  t.ok(Math.abs(r.out[2] - 50 / 3) < 1e-13 && Math.abs(r.lse[2] - Math.log(3)) < 1e-14, 'qpos 1');
  t.ok(Math.abs(r.out[3] - 140 / 6) < 1e-13 && Math.abs(r.lse[3] - Math.log(6)) < 1e-14, 'qpos 2');
  const k = attentionRef({ ...base, T: 1, q: [1], kept: [[0, 2]] });
  t.ok(Math.abs(k.out[0] - 25) < 1e-13 && Math.abs(k.lse[0] - Math.log(4)) < 1e-14, 'kept {0,2}');
  // stability: logits ~ 1e3 do not overflow
  const big = attentionRef({ ...base, T: 1, q: [1000] });
  t.ok(Number.isFinite(big.lse[0]) && Math.abs(big.out[0] - 30) < 1e-9, 'huge logits stay finite');
  // GQA: Hq=4, Hkv=2 → query heads 2,3 read KV head 1
  const g = attentionRef({
    q: [0, 0, 0, 0], Hq: 4, T: 1, d: 1, K: [0, 0, 0, 0], V: [1, 3, 5, 7], Hkv: 2, N: 2, dv: 1, scale: 1,
  });
  t.same(Array.from(g.out), [2, 2, 6, 6]);
  t.throws(() => attentionRef({ ...base, kept: [[2, 0]] }), /ascending/);
});

t.test('relativeErrors, median and quantile', async (t) => {
  const e = relativeErrors([1, 0, 0, 2, 0, 0], [1, 0, 0, 1, 0, 0], 3, 2);
  t.same(Array.from(e), [0, 1, 0]);
  t.same(Array.from(relativeErrors([1, 0], [0, 0], 1, 2)), [Infinity]);
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 2, 3]), 2.5);
  t.equal(quantile([0, 10], 0.25), 2.5);
  t.equal(quantile([5], 0.9), 5);
  t.equal(quantile([1, 2, 3, 4, 5], 1), 5);
  t.throws(() => quantile([], 0.5));
  t.ok(maxAbsDiff([1], [1]) === 0);
});
