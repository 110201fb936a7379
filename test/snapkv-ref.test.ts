// Tests of the float64 SnapKV reference (test/ref/snapkv.ts): pooled softmax probabilities, causal masking inside
// the window, the GQA mean (the references are the oracles of the real kernels, so they must be right).
import t from 'tap';
import { Rng } from '../lib/rng';
import { snapkvScoresRef } from './ref/snapkv';
import { maxAbsDiff } from './ref/compare';

t.test('snapkv: single head, W = 1 → pooled softmax probabilities', async (t) => {
  // d = 1, q = 1, scale 1: logits log 1, log 2, log 3, log 4 → p = .1 .2 .3 .4 (last = the window)
  const K = new Float64Array([0, Math.log(2), Math.log(3), Math.log(4)]);
  const Q = new Float64Array([1]);
  const s1 = snapkvScoresRef(Q, 1, 1, K, 1, 4, 1, { kernel: 1, scale: 1 });
  t.ok(maxAbsDiff(s1, [0.1, 0.2, 0.3, Infinity]) < 1e-15, `kernel 1: ${Array.from(s1)}`);
  // avg pool, kernel 3, padding 1, zero padding counted: [(0+.1+.2)/3, (.1+.2+.3)/3, (.2+.3+0)/3]
  const s3 = snapkvScoresRef(Q, 1, 1, K, 1, 4, 1, { kernel: 3, scale: 1 });
  t.ok(maxAbsDiff(s3, [0.1, 0.2, 0.5 / 3, Infinity]) < 1e-15, `avg 3: ${Array.from(s3)}`);
  const m3 = snapkvScoresRef(Q, 1, 1, K, 1, 4, 1, { kernel: 3, scale: 1, pool: 'max' });
  t.ok(maxAbsDiff(m3, [0.2, 0.3, 0.3, Infinity]) < 1e-15, `max 3: ${Array.from(m3)}`);
  // kernel 5 on a prefix of 3: every window covers all 3 values (plus padding)
  const s5 = snapkvScoresRef(Q, 1, 1, K, 1, 4, 1, { kernel: 5, scale: 1 });
  t.ok(maxAbsDiff(s5, [0.6 / 5, 0.6 / 5, 0.6 / 5, Infinity]) < 1e-15, `avg 5: ${Array.from(s5)}`);
  const m5 = snapkvScoresRef(Q, 1, 1, K, 1, 4, 1, { kernel: 5, scale: 1, pool: 'max' });
  t.ok(maxAbsDiff(m5, [0.3, 0.3, 0.3, Infinity]) < 1e-15, `max 5: ${Array.from(m5)}`);
  // default scale 1/√d: d = 4, q·k = 4·log 2 → logit 2·log 2 = log 4 → p = 1/6, 4/6, 1/6
  const K4 = new Float64Array([0, 0, 0, 0, Math.log(2), Math.log(2), Math.log(2), Math.log(2), 0, 0, 0, 0]);
  const sd = snapkvScoresRef(new Float64Array([1, 1, 1, 1]), 1, 1, K4, 1, 3, 4, { kernel: 1 });
  t.ok(maxAbsDiff(sd, [1 / 6, 4 / 6, Infinity]) < 1e-15, `scale 1/√d: ${Array.from(sd)}`);
});

t.test('snapkv: causal masking inside the window', async (t) => {
  // N = 4, W = 2: queries at positions 2, 3. Key 3 is huge; query t=0 (pos 2) must not see it.
  const K = new Float64Array([0, 0, 0, 100]);
  const Q = new Float64Array([1, 1]);
  const s = snapkvScoresRef(Q, 1, 2, K, 1, 4, 1, { kernel: 1, scale: 1 });
  const want = (1 / 3 + 1 / (3 + Math.exp(100))) / 2; // t=0: 1/3 each of keys 0..2; t=1: ~0
  t.ok(maxAbsDiff(s, [want, want, Infinity, Infinity]) < 1e-15, `masked: ${Array.from(s)}`);
  // a huge *prefix* key is visible to both queries
  const K2 = new Float64Array([100, 0, 0, 0]);
  const s2 = snapkvScoresRef(Q, 1, 2, K2, 1, 4, 1, { kernel: 1, scale: 1 });
  t.ok(s2[0] > 0.999999 && s2[1] < 1e-40, 'prefix visible to all window queries');
  // window mean over t: W = 3, distinct per-query distributions
  const Kw = new Float64Array([0, 1, 0, 0, 0]);
  const Qw = new Float64Array([0, 1, 2]);
  const sw = snapkvScoresRef(Qw, 1, 3, Kw, 1, 5, 1, { kernel: 1, scale: 1 });
  // t=0 sees 0..2, logits (0, q, 0); t=1 sees 0..3; t=2 sees 0..4
  const row = (q: number, n: number): number[] => {
    const e = [1, Math.exp(q), 1, 1, 1].slice(0, n);
    const z = e.reduce((p, x) => p + x, 0);
    return e.map((x) => x / z);
  };
  const r0 = row(0, 3), r1 = row(1, 4), r2 = row(2, 5);
  const ww = [(r0[0] + r1[0] + r2[0]) / 3, (r0[1] + r1[1] + r2[1]) / 3];
  t.ok(maxAbsDiff(sw, [...ww, Infinity, Infinity, Infinity]) < 1e-15, 'mean over the window queries');
});

t.test('snapkv: GQA mean over the query heads of each KV head (after pooling)', async (t) => {
  const rng = new Rng(71);
  const Hq = 6, Hkv = 2, W = 5, N = 40, d = 8, G = 3;
  const Q = rng.normals64(Hq * W * d);
  const K = rng.normals64(Hkv * N * d);
  for (const pool of ['avg', 'max'] as const) {
    const s = snapkvScoresRef(Q, Hq, W, K, Hkv, N, d, { pool });
    // per query head: repeat its KV head and score it alone
    const per: Float64Array[] = [];
    for (let j = 0; j < Hq; j++) {
      const h = Math.floor(j / G);
      per.push(snapkvScoresRef(Q.subarray(j * W * d, (j + 1) * W * d), 1, W, K.subarray(h * N * d, (h + 1) * N * d), 1, N, d, { pool }));
    }
    const want = new Float64Array(Hkv * N);
    for (let h = 0; h < Hkv; h++) {
      for (let i = 0; i < N; i++) {
        let acc = 0;
        for (let g = 0; g < G; g++) acc += per[h * G + g][i];
        want[h * N + i] = acc / G;
      }
    }
    t.ok(maxAbsDiff(s, want) < 1e-15, `${pool}: GQA = mean of per-query-head scores`);
    // Hq = Hkv with repeated KV heads gives the same per-head rows
    const Krep = new Float64Array(Hq * N * d);
    for (let j = 0; j < Hq; j++) Krep.set(K.subarray(Math.floor(j / G) * N * d, (Math.floor(j / G) + 1) * N * d), j * N * d);
    const sr = snapkvScoresRef(Q, Hq, W, Krep, Hq, N, d, { pool });
    t.ok(maxAbsDiff(sr.subarray(0, N), per[0]) === 0 && maxAbsDiff(sr.subarray(4 * N, 5 * N), per[4]) === 0, `${pool}: MHA rows`);
    // window always kept; prefix scores are sums of probabilities: in (0, 1]
    let ok = true;
    for (let h = 0; h < Hkv; h++) for (let i = 0; i < N; i++) {
      const v = s[h * N + i];
      if (i >= N - W ? v !== Infinity : !(v > 0 && v <= 1)) ok = false;
    }
    t.ok(ok, `${pool}: window +Inf, prefix in (0,1]`);
  }
  // pooling happens before the GQA mean: differs from mean-then-max on a hand case
  // two query heads, one KV head, d=1, N=3, W=1, kernel 3 max, scale 1: prefix of 2
  const Kh = new Float64Array([1, 0, 0]);
  const Qh = new Float64Array([10, -10]);
  const sh = snapkvScoresRef(Qh, 2, 1, Kh, 1, 3, 1, { kernel: 3, pool: 'max', scale: 1 });
  const p0 = [Math.exp(10) / (Math.exp(10) + 2), 1 / (Math.exp(10) + 2)];
  const p1 = [Math.exp(-10) / (Math.exp(-10) + 2), 1 / (Math.exp(-10) + 2)];
  const maxThenMean = (Math.max(...p0) + Math.max(...p1)) / 2;
  t.ok(maxAbsDiff(sh, [maxThenMean, maxThenMean, Infinity]) < 1e-15, 'max pooling per query head, then mean');
  // sum over the prefix with kernel 1 and W = 1 = 1 − p(self)
  const Q1 = rng.normals64(d);
  const K1 = rng.normals64(N * d);
  const s1 = snapkvScoresRef(Q1, 1, 1, K1, 1, N, d, { kernel: 1 });
  let dots = 0, mx = -Infinity;
  const lg: number[] = [];
  for (let p = 0; p < N; p++) {
    dots = 0;
    for (let c = 0; c < d; c++) dots += Q1[c] * K1[p * d + c];
    lg.push(dots / Math.sqrt(d));
    mx = Math.max(mx, dots / Math.sqrt(d));
  }
  const z = lg.reduce((p, l) => p + Math.exp(l - mx), 0);
  const sum = Array.from(s1.subarray(0, N - 1)).reduce((p, q) => p + q, 0);
  t.ok(Math.abs(sum - (1 - Math.exp(lg[N - 1] - mx) / z)) < 1e-14, 'prefix mass = 1 − p(self)');
  // errors
  t.throws(() => snapkvScoresRef(Q, Hq, W, K, Hkv, W, d), RangeError, 'N ≤ W throws');
  t.throws(() => snapkvScoresRef(Q, 4, W, K, 3, N, d), RangeError, 'Hq % Hkv');
  // large logits stay finite (max-subtracted softmax)
  const big = snapkvScoresRef(new Float64Array([1e3]), 1, 1, new Float64Array([1e3, -1e3, 0]), 1, 3, 1, { kernel: 1, scale: 1 });
  t.ok(big[0] > 0.999 && big[1] === 0 && Number.isFinite(big[0]), 'no overflow');
});
