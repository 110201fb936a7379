import t from 'tap';
import { Rng } from '../lib/rng';
import { attentionRef, median, relativeErrors } from './ref/attention';
import { dotRef, frobeniusNorm } from './ref/linalg';
import {
  batchMomentsRef,
  decodeAttentionRef,
  miFactorRef,
  momentkvSelectRef,
  momentsCloneRef,
  momentsInitRef,
  momentsMergeRef,
  MomentStateRef,
  summaryBasisRef,
  complement,
  gatherRows,
} from './ref/momentkv';
import { maxAbs, maxAbsDiff } from './ref/compare';

/** Compact kept rows into [H, cap, w], padding with NaN (must never be read). */
function compact(X: ArrayLike<number>, H: number, N: number, w: number, kept: number[][], cap: number): Float64Array {
  const out = new Float64Array(H * cap * w).fill(NaN);
  for (let h = 0; h < H; h++) out.set(gatherRows(X, h, N, w, kept[h]), h * cap * w);
  return out;
}
function momentsOf(K: ArrayLike<number>, V: ArrayLike<number>, H: number, N: number, d: number, dv: number, evicted: number[][]): MomentStateRef {
  const S = momentsInitRef(H, d, dv);
  for (let h = 0; h < H; h++) momentsMergeRef(S, h, gatherRows(K, h, N, d, evicted[h]), gatherRows(V, h, N, dv, evicted[h]));
  return S;
}

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

/** A random cache with `keep` retained per head at random positions, the rest evicted. */
function randomCase(seed: number, Hkv: number, G: number, N: number, d: number, dv: number, keep: number) {
  const rng = new Rng(seed);
  const K = rng.normals64(Hkv * N * d);
  const V = rng.normals64(Hkv * N * dv);
  const kept: number[][] = [];
  for (let h = 0; h < Hkv; h++) {
    const perm = Array.from({ length: N }, (_, i) => i);
    for (let i = N - 1; i > 0; i--) { const j = rng.int(i + 1); [perm[i], perm[j]] = [perm[j], perm[i]]; }
    kept.push(perm.slice(0, keep).sort((a, b) => a - b));
  }
  const T = 5;
  const q = rng.normals64(Hkv * G * T * d).map((x) => 1.5 * x);
  return { K, V, kept, q, T, Hq: Hkv * G, rng };
}

t.test('decode attention: n = 0 equals plain attention; padding past counts is never read', async (t) => {
  const Hkv = 3, G = 2, N = 40, d = 8, dv = 6;
  const { K, V, kept, q, T, Hq } = randomCase(22, Hkv, G, N, d, dv, 17);
  const ragged = kept.map((k, h) => k.slice(0, 17 - 3 * h)); // counts 17, 14, 11
  const cap = 20;
  const args = {
    q, Hq, T, d, K_R: compact(K, Hkv, N, d, ragged, cap), V_R: compact(V, Hkv, N, dv, ragged, cap),
    Hkv, cap, dv, counts: ragged.map((k) => k.length), scale: 1 / Math.sqrt(d),
  };
  const plain = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, kept: ragged, scale: args.scale }).out;
  for (const order of [0, 1] as const) {
    const a = decodeAttentionRef({ ...args, order });
    const b = decodeAttentionRef({ ...args, order, moments: momentsInitRef(Hkv, d, dv) });
    t.ok(maxAbsDiff(a, plain) < 1e-14, `order ${order}, no moments = plain attention`);
    t.ok(maxAbsDiff(b, plain) < 1e-14, `order ${order}, n = 0 moments = plain attention`);
  }
  t.throws(() => decodeAttentionRef({ ...args, order: 1, counts: [21, 1, 1] }), /counts\[0\] = 21/);
});

t.test('decode attention: ONE evicted token per head gives exactly full attention', async (t) => {
  const Hkv = 2, G = 3, N = 30, d = 8, dv = 5;
  const { K, V, kept, q, T, Hq } = randomCase(23, Hkv, G, N, d, dv, N - 1);
  const scale = 1 / Math.sqrt(d);
  const full = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, scale }).out;
  const plain = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, kept, scale }).out;
  const S = momentsOf(K, V, Hkv, N, d, dv, kept.map((k) => complement(k, N)));
  t.equal(maxAbs(S.M), 0, 'C = 0 when n = 1');
  const cap = N;
  const args = {
    q, Hq, T, d, K_R: compact(K, Hkv, N, d, kept, cap), V_R: compact(V, Hkv, N, dv, kept, cap),
    Hkv, cap, dv, counts: kept.map((k) => k.length), scale, moments: S,
  };
  for (const order of [0, 1] as const) {
    const o = decodeAttentionRef({ ...args, order });
    t.ok(maxAbsDiff(o, full) < 1e-13, `order ${order}: equals full attention (${maxAbsDiff(o, full).toExponential(2)})`);
  }
  t.ok(maxAbsDiff(plain, full) > 1e-3, 'plain eviction of that token is visibly different');
  // every token of head 1 evicted but one (counts 1) and all of head 0 evicted (counts 0)
  const kept2 = [[], [7]];
  const S2 = momentsOf(K, V, Hkv, N, d, dv, kept2.map((k) => complement(k, N)));
  const o2 = decodeAttentionRef({
    ...args, K_R: compact(K, Hkv, N, d, kept2, cap), V_R: compact(V, Hkv, N, dv, kept2, cap),
    counts: [0, 1], moments: S2, order: 1,
  });
  // head 0 (query heads 0..2): summary alone = mu_v + C a
  for (let j = 0; j < G; j++) {
    for (let tt = 0; tt < T; tt++) {
      const want = new Float64Array(dv);
      for (let r = 0; r < dv; r++) {
        let s = S2.muV[r];
        for (let c = 0; c < d; c++) s += (S2.M[r * d + c] / S2.n[0]) * q[(j * T + tt) * d + c] * scale;
        want[r] = s;
      }
      const got = o2.subarray((j * T + tt) * dv, (j * T + tt + 1) * dv);
      if (maxAbsDiff(got, want) > 1e-13) t.fail(`counts 0: summary alone at head ${j}, t ${tt}`);
    }
  }
  t.pass('counts = 0 with n > 0 returns the summary alone');
  const none = decodeAttentionRef({ ...args, counts: [0, 0], moments: momentsInitRef(Hkv, d, dv), order: 1 });
  t.equal(maxAbs(none), 0, 'counts = 0 and n = 0 → zeros');
});

t.test('decode attention: several chunk merges equal one merge; clip semantics', async (t) => {
  const Hkv = 2, G = 2, N = 120, d = 8, dv = 8;
  const { K, V, kept, q, T, Hq, rng } = randomCase(24, Hkv, G, N, d, dv, 30);
  const scale = 1 / Math.sqrt(d);
  const ev = kept.map((k) => complement(k, N));
  const one = momentsOf(K, V, Hkv, N, d, dv, ev);
  const many = momentsInitRef(Hkv, d, dv);
  for (let h = 0; h < Hkv; h++) {
    const shuffled = ev[h].slice().sort(() => rng.uniform() - 0.5);
    for (let i = 0; i < shuffled.length; ) {
      const sz = 1 + rng.int(17);
      const part = shuffled.slice(i, i + sz);
      momentsMergeRef(many, h, gatherRows(K, h, N, d, part), gatherRows(V, h, N, dv, part));
      i += sz;
    }
  }
  const cap = 32;
  const args = {
    q, Hq, T, d, K_R: compact(K, Hkv, N, d, kept, cap), V_R: compact(V, Hkv, N, dv, kept, cap),
    Hkv, cap, dv, counts: kept.map((k) => k.length), scale,
  };
  for (const order of [0, 1] as const) {
    const a = decodeAttentionRef({ ...args, order, moments: one });
    const b = decodeAttentionRef({ ...args, order, moments: many });
    t.ok(maxAbsDiff(a, b) < 1e-12, `order ${order}: chunked merge = single merge (${maxAbsDiff(a, b).toExponential(2)})`);
  }
  const o0 = decodeAttentionRef({ ...args, order: 0, moments: one });
  const o1 = decodeAttentionRef({ ...args, order: 1, moments: one });
  const c0 = decodeAttentionRef({ ...args, order: 1, moments: one, clip: [0, 0] });
  const cInf = decodeAttentionRef({ ...args, order: 1, moments: one, clip: [1e9, 1e9] });
  t.ok(maxAbsDiff(c0, o0) < 1e-15, 'clip 0 → order 0');
  t.ok(maxAbsDiff(cInf, o1) === 0, 'huge clip → unclipped order 1');
  t.ok(maxAbsDiff(o0, o1) > 1e-3, 'order 1 differs from order 0');
  // a mid clip bounds the correction's norm: o1 − o_clip = (1−λ)(Ca − clipped Ca)
  const mid = decodeAttentionRef({ ...args, order: 1, moments: one, clip: [0.05, 0.05] });
  t.ok(maxAbsDiff(mid, o1) > 0 && maxAbsDiff(mid, o0) > 0, 'mid clip lies between');
});

/**
 * Evicted values ≈ orthogonal to retained ones (dims 8..15 vs 0..7), evicted keys with spread
 * `sigma`: k = mu_k + σz, v = mu_v + Bz. So C = σ·B·Cov(z): the C a term is O(σ) and the
 * remaining first-order error O(σ²).
 */
function structuredCase(sigma: number, seed = 31) {
  const rng = new Rng(seed);
  const Hkv = 2, G = 2, Hq = 4, d = 16, dv = 16, L = 48, n = 200, N = L + n, T = 64;
  const K = new Float64Array(Hkv * N * d);
  const V = new Float64Array(Hkv * N * dv);
  const kept: number[][] = [];
  for (let h = 0; h < Hkv; h++) {
    const perm = Array.from({ length: N }, (_, i) => i);
    for (let i = N - 1; i > 0; i--) { const j = rng.int(i + 1); [perm[i], perm[j]] = [perm[j], perm[i]]; }
    const keptH = perm.slice(0, L).sort((a, b) => a - b);
    kept.push(keptH);
    const isKept = new Set(keptH);
    const muK = rng.normals64(d).map((x) => 0.7 * x);
    const muV = new Float64Array(dv);
    for (let c = 8; c < 16; c++) muV[c] = rng.normal() * 1.5;
    const B = rng.normals64(8 * d).map((x) => 0.3 * x); // value dims 8..15 ← key deviation / σ
    for (let s = 0; s < N; s++) {
      const ko = (h * N + s) * d, vo = (h * N + s) * dv;
      if (isKept.has(s)) {
        for (let c = 0; c < d; c++) K[ko + c] = rng.normal();
        for (let c = 0; c < 8; c++) V[vo + c] = rng.normal();
      } else {
        const z = rng.normals64(d);
        for (let c = 0; c < d; c++) K[ko + c] = muK[c] + sigma * z[c];
        for (let c = 8; c < 16; c++) {
          let s2 = muV[c];
          for (let e = 0; e < d; e++) s2 += B[(c - 8) * d + e] * z[e];
          V[vo + c] = s2 + 0.01 * rng.normal();
        }
        for (let c = 0; c < 8; c++) V[vo + c] = 0.01 * rng.normal();
      }
    }
  }
  const q = rng.normals64(Hq * T * d).map((x) => 2 * x);
  return { Hkv, G, Hq, d, dv, N, T, K, V, kept, q, L };
}

function structuredErrors(sigma: number) {
  const c = structuredCase(sigma);
  const { Hkv, Hq, d, dv, N, T, K, V, kept, q, L } = c;
  const scale = 1 / Math.sqrt(d);
  const full = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, scale }).out;
  const S = momentsOf(K, V, Hkv, N, d, dv, kept.map((k) => complement(k, N)));
  const args = {
    q, Hq, T, d, K_R: compact(K, Hkv, N, d, kept, L), V_R: compact(V, Hkv, N, dv, kept, L),
    Hkv, cap: L, dv, counts: kept.map((k) => k.length), scale,
  };
  const rows = Hq * T;
  const err = (o: Float64Array) => median(relativeErrors(o, full, rows, dv));
  return {
    plain: err(decodeAttentionRef({ ...args, order: 1 })),
    order0: err(decodeAttentionRef({ ...args, order: 0, moments: S })),
    order1: err(decodeAttentionRef({ ...args, order: 1, moments: S })),
  };
}

t.test('decode attention on a structured case: median error order1 < order0 < plain', async (t) => {
  const e = structuredErrors(0.2);
  t.comment(`median rel. error: plain ${e.plain.toFixed(4)}, order0 ${e.order0.toFixed(4)}, order1 ${e.order1.toFixed(4)}`);
  t.ok(e.order0 < e.plain, 'order 0 beats plain eviction');
  t.ok(e.order1 < e.order0, 'order 1 beats order 0');
  t.ok(e.order1 < 0.5 * e.order0, 'order 1 is much better than order 0 here');
  // error scaling in the key spread: order 1 is O(σ²), order 0 is O(σ) (through the missing C a)
  const half = structuredErrors(0.1);
  const r1 = e.order1 / half.order1, r0 = e.order0 / half.order0;
  t.comment(`halving σ: order1 error ÷${r1.toFixed(2)}, order0 error ÷${r0.toFixed(2)}`);
  t.ok(r1 > 3, 'order-1 error shrinks ~4x when the spread halves');
  t.ok(r0 > 1.4 && r0 < 2.8, 'order-0 error shrinks ~2x when the spread halves');
});

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
