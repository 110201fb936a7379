// The float64 moment-state reference (test/ref/moments.ts): Chan merges over any chunking equal the two-pass batch
// statistics.
import t from 'tap';
import { Rng } from '../lib/rng';
import { batchMomentsRef, momentsInitRef, momentsMergeRef } from './ref/moments';
import { maxAbs, maxAbsDiff } from './ref/compare';

t.test('Chan merge over random chunkings equals two-pass batch statistics', async (t) => {
  const rng = new Rng(21);
  const d = 16, dv = 12, m = 600;
  // large common offset to expose cancellation: rows = 50 + N(0,1)
  const K = rng.normals64(m * d).map((x) => 50 + x);
  const V = rng.normals64(m * dv).map((x, i) => -30 + 2 * x + 0.1 * (i % 7));
  const ref = batchMomentsRef(K, V, d, dv);
  // hand-check the batch definition on 2 rows
  const tiny = batchMomentsRef([0, 2], [1, 5], 1, 1);
  t.same([tiny.n, tiny.muK[0], tiny.muV[0], tiny.C[0], tiny.M[0]], [2, 1, 3, 2, 4]);
  for (let trial = 0; trial < 6; trial++) {
    const S = momentsInitRef(2, d, dv);
    let i = 0;
    while (i < m) {
      const sz = trial === 0 ? 1 : Math.min(m - i, 1 + rng.int(trial * 40));
      momentsMergeRef(S, 1, K.subarray(i * d, (i + sz) * d), V.subarray(i * dv, (i + sz) * dv));
      i += sz;
    }
    momentsMergeRef(S, 1, [], []); // no-op
    t.equal(S.n[1], m, `trial ${trial}: n`);
    t.equal(S.n[0], 0, 'other head untouched');
    t.equal(maxAbs(S.M.subarray(0, dv * d)), 0, 'other head M untouched');
    const eMu = Math.max(maxAbsDiff(S.muK.subarray(d), ref.muK) / 50, maxAbsDiff(S.muV.subarray(dv), ref.muV) / 30);
    const eM = maxAbsDiff(S.M.subarray(dv * d), ref.M) / maxAbs(ref.M);
    t.ok(eMu < 1e-12, `trial ${trial}: means match (${eMu.toExponential(2)})`);
    t.ok(eM < 1e-12, `trial ${trial}: co-moment matches (${eM.toExponential(2)})`);
  }
  // C = M / n
  t.ok(maxAbsDiff(ref.C, ref.M.map((x) => x / m)) === 0, 'C = M/n');
});
