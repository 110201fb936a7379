// The bench's own arithmetic (lib/benches/): each case's speed-of-light bytes and flops are the formulas of
// docs/performance.md §5 ("Bench accounting"), written again here from the docs, and each plain-JS baseline computes
// its op's function — a wrong formula would misstate "% SoL", a wrong baseline the "speedup".
import t from 'tap';
import { allBenches } from '../lib/bench';
import { keepFromRatio } from '../lib/ops/select';
import { keydiffScores, nestedkvScores, selectTokens, gatherKV, decodeAttention, MomentState, tensor } from '../lib/index';
import { keydiffNaive } from '../lib/benches/keydiff';
import { nestedkvNaive } from '../lib/benches/nestedkv';
import { selectNaive } from '../lib/benches/select';
import { gatherNaive } from '../lib/benches/gather';
import { decodeNaive } from '../lib/benches/decode';
import { randomHost } from '../lib/checks/util';
import { Rng } from '../lib/rng';
import { hostContiguous } from '../lib/tensor';
import type { Tensor } from '../lib/tensor';

const G = 4, W = 32, KEEP = 0.25;

t.test('speed-of-light bytes and flops of every per-sequence case are docs/performance.md §5', async (t) => {
  // docs/performance.md §5.1–§5.6 with s the K/V element size, k the kept rows
  const expect: Record<string, (H: number, N: number, d: number, s: number) => { bytes: number; flops?: number }> = {
    keydiffScores: (H, N, d, s) => ({ bytes: 2 * H * N * d * s + 4 * H * N }),
    nestedkvScores: (H, N, d, s) => ({ bytes: 2 * H * N * d * s + 4 * H * N }),
    snapkvScores: (H, N, d, s) => ({ bytes: 2 * H * N * d * s + H * G * W * d * s + 4 * H * N, flops: 2 * H * G * W * N * d }),
    selectTokens: (H, N) => ({ bytes: 4 * H * N + 4 * H * keepFromRatio(N, 1 - KEEP) }),
    gatherKV: (H, N, d, s) => ({ bytes: 2 * 2 * H * keepFromRatio(N, 1 - KEEP) * d * s }),
    'MomentState.merge': (H, N, d, s) => {
      const k = keepFromRatio(N, 1 - KEEP);
      return { bytes: 2 * H * N * d * s + 2 * H * k * d * s, flops: 2 * H * (N - k) * d * d };
    },
    decodeAttention: (H, N, d, s) => ({ bytes: H * (2 * N * d * s + (d * d + 2 * d + 1) * 4) + H * G * d * (s + 4) }),
    momentkvSelect: (H, N, d, s) => ({ bytes: 4 * H * N * d * s + 2 * H * (N - keepFromRatio(N, 0.9)) * d * s }),
    spdSolve: (H, _N, d) => ({ bytes: H * (128 * 128 + 2 * 128 * d) * 4, flops: H * (128 ** 3 / 3 + 2 * 128 * 128 * d) }),
    grkvMerge: (H, N, d, s) => ({ bytes: 2 * H * N * d * s + 2 * H * keepFromRatio(N, 0.9) * d * s }),
  };
  const seen = new Set<string>();
  for (const [H, N, d, dtype, s] of [[8, 32768, 128, 'bf16', 2], [3, 1001, 64, 'f32', 4]] as const) {
    for (const c of allBenches().filter((x) => expect[x.op])) {
      const e = expect[c.op](H, N, d, s);
      t.equal(c.solBytes({ H, N, d, dtype }), e.bytes, `${c.op} (${c.variant}) bytes at H=${H} N=${N} d=${d} ${dtype}`);
      t.equal(c.flops?.({ H, N, d, dtype }), e.flops, `${c.op} flops`);
      seen.add(c.op);
    }
  }
  t.same([...seen].sort(), Object.keys(expect).sort(), 'every per-sequence op has a case');
  // the pipelines: the sum of their stages (docs/performance.md §5.6)
  const [kd, sk] = allBenches().filter((c) => c.op === 'pipeline');
  const H = 8, N = 4096, d = 128, s = 2, k = keepFromRatio(N, 1 - KEEP);
  const stages = 4 * H * N + 4 * H * k + 2 * 2 * H * k * d * s;
  t.equal(kd.solBytes({ H, N, d, dtype: 'bf16' }), 2 * H * N * d * s + 4 * H * N + stages, 'KeyDiff pipeline');
  t.equal(sk.solBytes({ H, N, d, dtype: 'bf16' }), 2 * H * N * d * s + H * G * W * d * s + 4 * H * N + stages, 'SnapKV pipeline');
});

const near = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  let worst = 0;
  // equal values (the sinks' +Infinity too) differ by 0; a NaN on either side by Infinity
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, a[i] === b[i] ? 0 : Number.isNaN(a[i] - b[i]) ? Infinity : Math.abs(a[i] - b[i]));
  return a.length === b.length && worst <= tol ? true : `max |Δ| ${worst}`;
};
const f32 = (x: Tensor) => Array.from(hostContiguous(x) as Float32Array);

t.test("each plain-JS baseline computes its op's function", async (t) => {
  const rng = new Rng(11);
  const H = 2, N = 300, d = 16;
  const keys = randomHost(rng, [H, N, d], 'f32'), values = randomHost(rng, [H, N, d], 'f32');
  t.equal(near(keydiffNaive(keys), f32(keydiffScores(keys)), 1e-5), true, 'KeyDiff');
  t.equal(near(nestedkvNaive(keys), f32(nestedkvScores(keys)), 1e-5), true, 'NestedKV');
  const scores = randomHost(rng, [H, N], 'f32', 0), keep = 75;
  t.same(Array.from(selectNaive(scores, keep)), Array.from(hostContiguous(selectTokens(scores, { keep }).indices)), 'uniform selection: positions ascending');
  const sel = selectTokens(scores, { keep });
  const g = gatherKV({ keys, values, ...sel }), n = gatherNaive(keys, values, sel.indices, sel.counts);
  t.same(Array.from(n.k), f32(g.keys), 'compaction: keys');
  t.same(Array.from(n.v), f32(g.values), 'compaction: values');
  // corrected decode with a summary of other rows (as the bench case)
  const q = randomHost(rng, [H * G, d], 'f32', 0.3);
  const ek = randomHost(rng, [H, 50, d], 'f32'), ev = randomHost(rng, [H, 50, d], 'f32');
  const st = MomentState.create(H, d, d).merge(ek, ev, tensor(Int32Array.from({ length: H * 50 }, (_, i) => i % 50), [H, 50]), tensor(new Int32Array(H).fill(50), [H]));
  const ours = decodeAttention({ queries: q, keys, values, counts: tensor(new Int32Array(H).fill(N), [H]), moments: st });
  const naive = decodeNaive(hostContiguous(q) as Float32Array, hostContiguous(keys) as Float32Array, hostContiguous(values) as Float32Array, H, N, d, {
    n: hostContiguous(st.n) as Float32Array, muK: hostContiguous(st.muK) as Float32Array, muV: hostContiguous(st.muV) as Float32Array, M: hostContiguous(st.m) as Float32Array,
  });
  t.equal(near(naive, f32(ours), 1e-5), true, 'corrected decode');
});
