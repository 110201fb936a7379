// Tests of the float64 KeyDiff reference (test/ref/keydiff.ts): hand-computed cases and invariances
// (the references are the oracles of the real kernels, so they must be right).
import t from 'tap';
import { Rng } from '../lib/rng';
import { keydiffScoresRef } from './ref/keydiff';
import { S2, biasedKeys, rankInHead } from './ref/keys';
import { maxAbsDiff } from './ref/compare';

t.test('keydiff: hand-computed tiny cases (docs/methods/keydiff.md §7)', async (t) => {
  // head 0: k̂ = (1,0), (0,1), (−1,0); anchor = (0, 1/3); cos = 0, 1, 0 → scores 0, −1, 0
  // head 1: k̂ = (1,0), (s,s), (0,0) [zero key]; anchor = ((1+s)/3, s/3)
  const K = new Float64Array([2, 0, 0, 3, -1, 0, 1, 0, 1, 1, 0, 0]);
  const got = keydiffScoresRef(K, 2, 3, 2);
  const den = Math.sqrt((1 + S2) ** 2 + S2 ** 2);
  const want = [0, -1, 0, -(1 + S2) / den, -(S2 * (1 + S2) + S2 * S2) / den, 0];
  t.ok(maxAbsDiff(got, want) < 1e-15, `scores ${Array.from(got)} vs ${want}`);
  t.ok(Object.is(got[5], 0), 'zero key scores +0, not NaN or −0');

  // anchor of norm 0: (1,0), (−3,0) → anchor (0,0) → every score 0 (ε clamp), never NaN
  const z = keydiffScoresRef(new Float64Array([1, 0, -3, 0]), 1, 2, 2);
  t.same(Array.from(z), [0, 0]);

  // 3-d case: keys along the axes with different norms plus one diagonal
  // k̂ = e0, e1, e2, (e0+e1)/√2 ; anchor a = ((1+s)/4, (1+s)/4, 1/4)
  const K3 = new Float64Array([5, 0, 0, 0, 0.5, 0, 0, 0, 2, 3, 3, 0]);
  const s3 = keydiffScoresRef(K3, 1, 4, 3);
  const an = Math.sqrt(2 * (1 + S2) ** 2 + 1) / 4;
  const a0 = (1 + S2) / 4;
  const want3 = [-a0 / an, -a0 / an, -0.25 / an, -(2 * S2 * a0) / an];
  t.ok(maxAbsDiff(s3, want3) < 1e-15, `3-d: ${Array.from(s3)} vs ${want3}`);
});

t.test('keydiff: invariant to per-token positive rescaling and to orthogonal maps', async (t) => {
  const rng = new Rng(11);
  const H = 3, N = 60, d = 16;
  const K = biasedKeys(rng, H, N, d);
  const base = keydiffScoresRef(K, H, N, d);
  const scaled = K.slice();
  for (let r = 0; r < H * N; r++) {
    const f = Math.exp(8 * rng.uniform() - 4);
    for (let c = 0; c < d; c++) scaled[r * d + c] *= f;
  }
  t.ok(maxAbsDiff(base, keydiffScoresRef(scaled, H, N, d)) < 1e-12, 'per-token rescale');
  // coordinate permutation + sign flips is orthogonal
  const perm = Array.from({ length: d }, (_, c) => (c * 5 + 3) % d);
  const rot = new Float64Array(K.length);
  for (let r = 0; r < H * N; r++) for (let c = 0; c < d; c++) rot[r * d + perm[c]] = (c % 3 === 0 ? -1 : 1) * K[r * d + c];
  t.ok(maxAbsDiff(base, keydiffScoresRef(rot, H, N, d)) < 1e-12, 'orthogonal map');
  // the most distinctive token scores highest: plant one anti-aligned key
  const P = K.slice();
  for (let c = 0; c < d; c++) P[(1 * N + 17) * d + c] = -P[(1 * N + 17) * d + c] - 3 * (K[(1 * N + 16) * d + c] + K[(1 * N + 18) * d + c]);
  const sp = keydiffScoresRef(P, H, N, d);
  t.equal(rankInHead(sp, N, 1, 17), 0, 'anti-aligned key ranks first');
  // float32 input is accepted and accumulated in float64
  const K32 = Float32Array.from(K);
  t.ok(maxAbsDiff(keydiffScoresRef(K32, H, N, d), keydiffScoresRef(Float64Array.from(K32), H, N, d)) === 0, 'f32 input');
  t.throws(() => keydiffScoresRef(K, H, N + 1, d), RangeError);
});
