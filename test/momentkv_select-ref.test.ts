// The float64 moment-informed eviction references (test/ref/momentkv_select.ts): the MI factor against an
// independent least-squares residual, and the multi-round eviction's counts, protection, moments, ties and rounds.
import t from 'tap';
import { Rng } from '../lib/rng';
import { dotRef, frobeniusNorm } from './ref/linalg';
import { miFactorRef, momentkvSelectRef, summaryBasisRef } from './ref/momentkv_select';
import { batchMomentsRef, complement, gatherRows, momentsCloneRef, momentsInitRef, momentsMergeRef } from './ref/moments';
import { maxAbsDiff } from './ref/compare';

t.test('miFactorRef: n = 0, span membership, and an independent least-squares residual', async (t) => {
  const rng = new Rng(41);
  const d = 10, dv = 7, m = 60;
  const S = momentsInitRef(2, d, dv);
  const cand = rng.normals64(9 * dv);
  t.same(Array.from(miFactorRef(cand, S, 0)), new Array(9).fill(1), 'n = 0 → all ones');
  // evicted rows with a dominant value-key covariance direction
  const Kd = rng.normals64(m * d);
  const Vd = new Float64Array(m * dv);
  const dir = rng.normals64(dv);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < dv; c++) Vd[i * dv + c] = 0.5 + 3 * dir[c] * Kd[i * d] + 0.3 * rng.normal();
  }
  momentsMergeRef(S, 1, Kd, Vd);
  const basis = summaryBasisRef(S, 1, 1);
  t.equal(basis.length, 2, 'basis = {mu_v, u_1}');
  // u_1 by power iteration on C Cᵀ (independent of the Jacobi path)
  const n = S.n[1];
  const C = S.M.subarray(dv * d).map((x) => x / n);
  let u = rng.normals64(dv);
  for (let it = 0; it < 300; it++) {
    const y = new Float64Array(d);
    for (let c = 0; c < d; c++) for (let r = 0; r < dv; r++) y[c] += C[r * d + c] * u[r];
    const z = new Float64Array(dv);
    for (let r = 0; r < dv; r++) for (let c = 0; c < d; c++) z[r] += C[r * d + c] * y[c];
    const nz = frobeniusNorm(z);
    u = z.map((x) => x / nz);
  }
  const muV = S.muV.subarray(dv);
  // residual of x against span{muV, u} by 2x2 normal equations
  const resid = (x: Float64Array) => {
    const g11 = dotRef(muV, muV), g12 = dotRef(muV, u), g22 = dotRef(u, u);
    const b1 = dotRef(muV, x), b2 = dotRef(u, x);
    const det = g11 * g22 - g12 * g12;
    const c1 = (b1 * g22 - b2 * g12) / det, c2 = (g11 * b2 - g12 * b1) / det;
    return frobeniusNorm(x.map((xi, i) => xi - c1 * muV[i] - c2 * u[i]));
  };
  const Vc = rng.normals64(m * dv);
  // make two candidates lie exactly in the span
  for (let c = 0; c < dv; c++) {
    Vc[c] = 2 * muV[c] - 0.7 * u[c];
    Vc[dv + c] = 3 * u[c];
  }
  const f = miFactorRef(Vc, S, 1, 1, 0.05);
  const rho = Array.from({ length: m }, (_, i) => resid(Vc.slice(i * dv, (i + 1) * dv)));
  const mean = rho.reduce((a, b) => a + b, 0) / m;
  let worst = 0;
  for (let i = 0; i < m; i++) worst = Math.max(worst, Math.abs(f[i] - (rho[i] + 0.05 * mean)));
  t.ok(worst < 1e-10, `factor = ρ + ε·mean ρ against a least-squares residual (${worst.toExponential(2)})`);
  t.ok(Math.abs(f[0] - 0.05 * mean) < 1e-10 && Math.abs(f[1] - 0.05 * mean) < 1e-10, 'in-span candidates have ρ = 0');
  // r = 0: residual against mu_v only
  const f0 = miFactorRef(Vc, S, 1, 0, 0);
  const x2 = Vc.slice(2 * dv, 3 * dv);
  const p = dotRef(muV, x2) / dotRef(muV, muV);
  t.ok(Math.abs(f0[2] - frobeniusNorm(x2.map((xi, i) => xi - p * muV[i]))) < 1e-12, 'r = 0 uses span{mu_v}');
  // n = 1: C = 0, so the (arbitrary) singular vector is not used
  const S1 = momentsInitRef(1, d, dv);
  momentsMergeRef(S1, 0, Kd.subarray(0, d), Vd.subarray(0, dv));
  t.equal(summaryBasisRef(S1, 0, 1).length, 1, 'n = 1: basis = {mu_v}');
  // mu_v = 0 is dropped
  const Sz = momentsInitRef(1, 2, 2);
  momentsMergeRef(Sz, 0, [1, 0, -1, 0], [1, 0, -1, 0]);
  const bz = summaryBasisRef(Sz, 0, 1);
  t.equal(bz.length, 1, 'mu_v = 0 dropped, u_1 kept');
  t.ok(Math.abs(Math.abs(bz[0][0]) - 1) < 1e-15, 'u_1 = ±e_0');
});

t.test('momentkvSelectRef: counts, protection, moments of exactly the evicted rows, rounds', async (t) => {
  const rng = new Rng(51);
  const Hkv = 3, N = 90, d = 8, dv = 6, keep = 30;
  const K = rng.normals64(Hkv * N * d);
  const V = rng.normals64(Hkv * N * dv);
  const scores = new Float64Array(Hkv * N);
  for (let i = 0; i < scores.length; i++) scores[i] = rng.uniform();
  for (let h = 0; h < Hkv; h++) {
    for (let s = N - 8; s < N; s++) scores[h * N + s] = Infinity; // window
    scores[h * N] = Infinity; // sink
    scores[h * N + 10] = 0; // the lowest score: must go in round 1
  }
  const res = momentkvSelectRef({ scores, K, V, Hkv, N, d, dv, keep });
  for (let h = 0; h < Hkv; h++) {
    const kh = res.kept[h];
    t.equal(kh.length, keep, `head ${h}: kept count`);
    t.ok(kh.every((s, i) => i === 0 || s > kh[i - 1]), `head ${h}: ascending`);
    t.ok([0, ...Array.from({ length: 8 }, (_, i) => N - 8 + i)].every((s) => kh.includes(s)), `head ${h}: protected kept`);
    t.notOk(kh.includes(10), `head ${h}: the lowest-score token is evicted`);
    const ev = complement(kh, N);
    t.same(res.evicted[h].map((r) => r.length), [15, 15, 15, 15], `head ${h}: rounds of ceil(60/4)`);
    t.same(res.evicted[h].flat().sort((a, b) => a - b), ev, `head ${h}: evicted = complement of kept`);
    const b = batchMomentsRef(gatherRows(K, h, N, d, ev), gatherRows(V, h, N, dv, ev), d, dv);
    t.equal(res.moments.n[h], ev.length, `head ${h}: n`);
    const e = Math.max(
      maxAbsDiff(res.moments.muK.subarray(h * d, (h + 1) * d), b.muK),
      maxAbsDiff(res.moments.muV.subarray(h * dv, (h + 1) * dv), b.muV),
      maxAbsDiff(res.moments.M.subarray(h * dv * d, (h + 1) * dv * d), b.M),
    );
    t.ok(e < 1e-12, `head ${h}: moments = batch stats of the evicted rows (${e.toExponential(2)})`);
    // replay the rounds: round 1 = lowest scores; later rounds = lowest score·factor at round start
    const S = momentsInitRef(Hkv, d, dv);
    let alive = Array.from({ length: N }, (_, s) => s).filter((s) => scores[h * N + s] !== Infinity);
    for (let rd = 0; rd < 4; rd++) {
      const f = miFactorRef(gatherRows(V, h, N, dv, alive), S, h, 1, 0.05);
      const key = alive.map((s, i) => scores[h * N + s] * f[i]);
      const thr = [...key].sort((a, b) => a - b)[14];
      const got = res.evicted[h][rd];
      const ok = got.every((s) => key[alive.indexOf(s)] <= thr) && alive.filter((s, i) => key[i] < thr).every((s) => got.includes(s));
      t.ok(ok, `head ${h} round ${rd + 1}: evicts the 15 lowest score·factor`);
      momentsMergeRef(S, h, gatherRows(K, h, N, d, got), gatherRows(V, h, N, dv, got));
      alive = alive.filter((s) => !got.includes(s));
    }
  }
  // MI changes the choice relative to plain score eviction on this data
  const plain = momentkvSelectRef({ scores, K, V, Hkv, N, d, dv, keep, mi: false });
  t.same(plain.evicted[0].length, 1, 'mi = false: one round');
  const lowest = Array.from({ length: N }, (_, s) => s)
    .filter((s) => scores[s] !== Infinity)
    .sort((a, b) => scores[a] - scores[b])
    .slice(0, N - keep)
    .sort((a, b) => a - b);
  t.same(plain.evicted[0][0], lowest, 'mi = false: the N − keep lowest scores');
  t.notSame(plain.kept, res.kept, 'mi = true changes the kept set');
  t.equal(plain.moments.n[0], N - keep, 'mi = false still builds the moments');
  // keep ≥ N and per-head keep
  const all = momentkvSelectRef({ scores, K, V, Hkv, N, d, dv, keep: N + 5 });
  t.same(all.kept[1], Array.from({ length: N }, (_, s) => s), 'keep ≥ N: nothing evicted');
  t.equal(all.moments.n[1], 0);
  const rag = momentkvSelectRef({ scores, K, V, Hkv, N, d, dv, keep: [20, 45, 90], rounds: 3 });
  t.same(rag.kept.map((k) => k.length), [20, 45, 90], 'per-head keep');
  t.same(rag.evicted[1].map((r) => r.length), [15, 15, 15], 'rounds = 3');
  t.throws(() => momentkvSelectRef({ scores, K, V, Hkv, N, d, dv, keep: 8 }), /below the 9 protected/);
  const bad = scores.slice();
  bad[5] = NaN;
  t.throws(() => momentkvSelectRef({ scores: bad, K, V, Hkv, N, d, dv, keep }), /must be finite or \+Infinity/);
});

t.test('momentkvSelectRef: ties evict the higher position first; uneven rounds', async (t) => {
  const N = 10, d = 2, dv = 2;
  const rng = new Rng(61);
  const K = rng.normals64(N * d), V = rng.normals64(N * dv);
  const scores = [5, 1, 1, 1, 9, 1, 7, 7, Infinity, 3];
  const r = momentkvSelectRef({ scores, K, V, Hkv: 1, N, d, dv, keep: 7, mi: false });
  t.same(r.evicted[0], [[2, 3, 5]], 'four tied at 1: positions 5, 3, 2 go; 1 stays');
  t.same(r.kept[0], [0, 1, 4, 6, 7, 8, 9]);
  const r2 = momentkvSelectRef({ scores, K, V, Hkv: 1, N, d, dv, keep: 3, rounds: 4 });
  t.same(r2.evicted[0].map((x) => x.length), [2, 2, 2, 1], 'excess 7 over 4 rounds: 2,2,2,1');
  t.same(r2.evicted[0][0], [3, 5], 'round 1 uses plain scores with the tie rule');
  const clone = momentsCloneRef(r2.moments);
  clone.n[0] = 0;
  t.equal(r2.moments.n[0], 7, 'clone is deep');
});
