import t from 'tap';
import { Rng } from '../lib/rng';
import { attentionRef, median, relativeErrors } from './ref/attention';
import { dotRef, frobeniusNorm } from './ref/linalg';
import {
  GrkvHeadResult,
  GrkvMergeArgs,
  grkvMergeRef,
  grkvObjectiveRef,
  grkvPartitionRef,
  headAttentionRef,
  jvpRef,
  KeyLinearisation,
  roundBf16,
  stratifiedPositions,
  valueStepDualRef,
  valueStepPrimalRef,
  vjpRef,
  windowPositions,
} from './ref/grkv';
import { maxAbsDiff } from './ref/compare';

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const d = Float64Array.from(a, (x, i) => x - b[i]);
  return frobeniusNorm(d) / Math.max(frobeniusNorm(b), 1e-300);
}

/**
 * An LLM-like layer: clustered keys, queries in a low-dimensional subspace per head, uniform raw
 * scores; kept = window + top (keep − W) prefix tokens by raw score.
 */
function makeProblem(seed: number, opts: { mode: 'stratified' | 'window'; N?: number; keep?: number; d?: number; dv?: number; f32?: boolean } ) {
  const rng = new Rng(seed);
  const Hkv = 2, G = 2, Hq = Hkv * G, W = 16, rq = 4;
  const N = opts.N ?? 256, keep = opts.keep ?? 64, d = opts.d ?? 16, dv = opts.dv ?? 16;
  const K64 = new Float64Array(Hkv * N * d);
  const centers = rng.normals64(Hkv * 8 * d);
  for (let h = 0; h < Hkv; h++) {
    for (let s = 0; s < N; s++) {
      const c = rng.int(8);
      for (let e = 0; e < d; e++) K64[(h * N + s) * d + e] = centers[(h * 8 + c) * d + e] + 0.5 * rng.normal();
    }
  }
  const V64 = rng.normals64(Hkv * N * dv);
  const K = opts.f32 ? Float32Array.from(K64) : K64;
  const V = opts.f32 ? Float32Array.from(V64) : V64;
  const basis = rng.normals64(Hq * rq * d);
  const mkq = (n: number) => {
    const q = new Float64Array(Hq * n * d);
    for (let j = 0; j < Hq; j++) {
      for (let tt = 0; tt < n; tt++) {
        const al = rng.normals64(rq);
        for (let e = 0; e < d; e++) {
          let s = 0;
          for (let i = 0; i < rq; i++) s += al[i] * basis[(j * rq + i) * d + e];
          q[(j * n + tt) * d + e] = 0.8 * s;
        }
      }
    }
    return q;
  };
  const raw = new Float64Array(Hkv * N);
  for (let i = 0; i < raw.length; i++) raw[i] = rng.uniform();
  const kept: number[][] = [];
  for (let h = 0; h < Hkv; h++) {
    const pre = Array.from({ length: N - W }, (_, s) => s)
      .sort((a, b) => raw[h * N + b] - raw[h * N + a])
      .slice(0, keep - W);
    kept.push([...pre, ...windowPositions(N, W)].sort((a, b) => a - b));
  }
  const Qs = 32;
  let qpos: number[], weights: number[];
  if (opts.mode === 'stratified') {
    qpos = new Array(Qs).fill(N - 1);
    weights = new Array(Qs).fill(6 / Qs);
  } else {
    qpos = windowPositions(N, Qs);
    weights = new Array(Qs).fill(1);
  }
  const args: GrkvMergeArgs = { K, V, Hkv, N, d, dv, kept, raw, q: mkq(Qs), Hq, qpos, weights, W };
  return { args, mkq, rng };
}

/** Retained rows of head h with the mutable slots replaced by Km / Vm. */
function retainedWith(args: GrkvMergeArgs, head: GrkvHeadResult, Km: ArrayLike<number>, Vm: ArrayLike<number>) {
  const { d, dv } = args;
  const Kr = Float64Array.from(head.K);
  const Vr = Float64Array.from(head.V);
  const mset = new Set(head.mutable);
  let t = 0;
  head.retained.forEach((p, s) => {
    if (!mset.has(p)) return;
    for (let c = 0; c < d; c++) Kr[s * d + c] = Km[t * d + c];
    for (let c = 0; c < dv; c++) Vr[s * dv + c] = Vm[t * dv + c];
    t++;
  });
  return { Kr, Vr };
}
function originalRows(args: GrkvMergeArgs, h: number, positions: number[], width: number, X: ArrayLike<number>) {
  const out = new Float64Array(positions.length * width);
  positions.forEach((p, i) => {
    for (let c = 0; c < width; c++) out[i * width + c] = X[(h * args.N + p) * width + c];
  });
  return out;
}

t.test('surrogate positions', async (t) => {
  const p = stratifiedPositions(16384);
  t.equal(p.length, 32);
  t.same([p[0], p[1], p[31]], [255, 767, 16127], 'N = 16384 → 255, 767, …, 16127');
  t.same(stratifiedPositions(10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'N < Qs → all');
  t.same(stratifiedPositions(64, 4), [7, 23, 39, 55]);
  t.same(stratifiedPositions(33), Array.from({ length: 32 }, (_, i) => i), 'N = 33: e_j = j (j < 32), e_32 = 33');
  t.same(stratifiedPositions(100, 4), [12, 37, 62, 87]);
  t.same(windowPositions(10, 3), [7, 8, 9]);
  t.same(windowPositions(2, 5), [0, 1]);
});

t.test('bf16 rounding helper', async (t) => {
  t.equal(roundBf16(1), 1);
  t.equal(roundBf16(1 + 2 ** -8), 1, 'halfway → even (down)');
  t.equal(roundBf16(1 + 3 * 2 ** -8), 1 + 2 ** -6, 'halfway → even (up)');
  t.equal(roundBf16(1 + 2 ** -8 + 2 ** -12), 1 + 2 ** -7, 'above halfway → up');
  t.equal(roundBf16(-2.75), -2.75);
  t.ok(Number.isNaN(roundBf16(NaN)));
  t.equal(roundBf16(Infinity), Infinity);
});

t.test('fixed / mutable partition: window fixed, anchors by raw score with lower-position ties', async (t) => {
  const N = 12, W = 3;
  const raw = new Float64Array(2 * N);
  const vals: Record<number, number> = { 0: 0.5, 1: 0.9, 2: 0.5, 4: 0.9, 5: 0.1, 7: 0.5 };
  for (const [p, v] of Object.entries(vals)) raw[Number(p)] = v;
  raw.set([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1, 1], N);
  const kept = [[0, 1, 2, 4, 5, 7, 9, 10, 11], [3, 4, 5, 8, 11]];
  const a = grkvPartitionRef(kept, raw, N, W, 0.5);
  t.same(a.fixed[0], [0, 1, 4, 9, 10, 11], 'γ=0.5: anchors 1, 4 (0.9) then 0 (0.5, lowest position)');
  t.same(a.mutable[0], [2, 5, 7]);
  t.same(a.fixed[1], [5, 8, 11], 'head 1: ⌊4·0.5⌋ = 2 anchors: 8 (0.9), 5 (0.6); window 11');
  t.same(a.mutable[1], [3, 4]);
  const b = grkvPartitionRef(kept, raw, N, W, 0.4);
  t.same(b.fixed[0], [1, 4, 9, 10, 11], 'γ=0.4: ⌊2.4⌋ = 2 anchors');
  t.same(b.mutable[0], [0, 2, 5, 7]);
  const c = grkvPartitionRef(kept, raw, N, W, 0);
  t.same(c.fixed[0], [9, 10, 11], 'γ=0: only the window');
});

t.test('value step: dual ridge equals primal ridge', async (t) => {
  const rng = new Rng(71);
  for (const [rows, R] of [[24, 40], [40, 12], [128, 300]]) {
    for (const lambda of [0.01, 1e-4]) {
      const Aw = Float64Array.from(rng.normals64(rows * R), (x) => Math.abs(x) / R);
      const r = rng.normals64(rows * 9);
      const dual = valueStepDualRef(Aw, rows, R, r, 9, lambda);
      const primal = valueStepPrimalRef(Aw, rows, R, r, 9, lambda);
      const e = relDiff(dual, primal);
      t.ok(e < 1e-10, `rows=${rows} R=${R} λ=${lambda}: ‖dual−primal‖/‖primal‖ = ${e.toExponential(2)}`);
      // first-order optimality of the primal: Aᵀ(AΔ − r) + λΔ = 0
      let worst = 0;
      for (let tt = 0; tt < R; tt++) {
        for (let c = 0; c < 9; c++) {
          let g = lambda * dual[tt * 9 + c];
          for (let i = 0; i < rows; i++) {
            let ad = 0;
            for (let u = 0; u < R; u++) ad += Aw[i * R + u] * dual[u * 9 + c];
            g += Aw[i * R + tt] * (ad - r[i * 9 + c]);
          }
          worst = Math.max(worst, Math.abs(g));
        }
      }
      t.ok(worst < 1e-10 * Math.max(1, frobeniusNorm(r)), `rows=${rows} R=${R} λ=${lambda}: normal equations hold`);
    }
  }
});

/** A random head linearisation with causal visibility. */
function randomLinearisation(seed: number) {
  const rng = new Rng(seed);
  const rows = 12, d = 8, dv = 6, S = 30;
  const q = rng.normals64(rows * d);
  const K = rng.normals64(S * d);
  const V = rng.normals64(S * dv);
  const pos = Array.from({ length: S }, (_, i) => 2 * i);
  const qpos = Array.from({ length: rows }, (_, i) => (i % 3 === 0 ? 70 : 1000));
  const scale = 1 / Math.sqrt(d);
  const sw = Array.from({ length: rows }, () => Math.sqrt(0.1 + rng.uniform()));
  const mutable = Array.from({ length: S }, (_, i) => i).filter((i) => i % 3 !== 1);
  const { a, o } = headAttentionRef({ q, rows, d, K, V, S, dv, pos, qpos, scale });
  const L: KeyLinearisation = { q, rows, d, dv, scale, sw, a, o, S, V, mutable };
  const f = (Km: ArrayLike<number>) => {
    const K2 = K.slice();
    mutable.forEach((s, tt) => { for (let c = 0; c < d; c++) K2[s * d + c] = Km[tt * d + c]; });
    const out = headAttentionRef({ q, rows, d, K: K2, V, S, dv, pos, qpos, scale }).o;
    for (let i = 0; i < rows; i++) for (let c = 0; c < dv; c++) out[i * dv + c] *= sw[i];
    return out;
  };
  const K0 = new Float64Array(mutable.length * d);
  mutable.forEach((s, tt) => { for (let c = 0; c < d; c++) K0[tt * d + c] = K[s * d + c]; });
  return { L, f, K0, rng, rows, dv, d, R: mutable.length };
}

t.test('key step operators: adjoint identity and JVP vs central finite differences', async (t) => {
  for (const seed of [81, 82, 83]) {
    const { L, f, K0, rng, rows, dv, d, R } = randomLinearisation(seed);
    const D = rng.normals64(R * d);
    const U = rng.normals64(rows * dv);
    const lhs = dotRef(jvpRef(L, D), U);
    const rhs = dotRef(D, vjpRef(L, U));
    t.ok(Math.abs(lhs - rhs) <= 1e-13 * Math.max(1, Math.abs(lhs)), `seed ${seed}: ⟨JΔ,U⟩ = ⟨Δ,JᵀU⟩ (${lhs} vs ${rhs})`);
    const eps = 1e-5;
    const fp = f(K0.map((x, i) => x + eps * D[i]));
    const fm = f(K0.map((x, i) => x - eps * D[i]));
    const fd = fp.map((x, i) => (x - fm[i]) / (2 * eps));
    const e = relDiff(jvpRef(L, D), fd);
    t.ok(e < 1e-8, `seed ${seed}: JVP vs central FD, rel. diff ${e.toExponential(2)}`);
  }
});

t.test('GRKV merge invariants (stratified and window modes, f32 inputs, bf16 rounding)', async (t) => {
  for (const mode of ['stratified', 'window'] as const) {
    for (const round of [undefined, roundBf16]) {
      const { args } = makeProblem(mode === 'stratified' ? 91 : 92, { mode, f32: true, dv: 12 });
      const tag = `${mode}${round ? ' bf16' : ''}`;
      if (round) {
        // storage values are bf16 already
        args.K = Float32Array.from(args.K, roundBf16);
        args.V = Float32Array.from(args.V, roundBf16);
      }
      const res = grkvMergeRef({ ...args, round });
      const { N, d, dv, Hkv } = args;
      for (let h = 0; h < Hkv; h++) {
        const hr = res.heads[h];
        t.same(hr.retained, args.kept[h], `${tag} h${h}: retained set = kept`);
        t.equal(hr.fixed.length + hr.mutable.length, args.kept[h].length, `${tag} h${h}: F ∪ M = S`);
        t.equal(hr.fixed.length, 16 + Math.floor(48 * 0.1), `${tag} h${h}: |F| = W + ⌊0.1·|P|⌋`);
        const [L0, L1, L2] = hr.objectives;
        t.ok(hr.objectives[hr.chosen] <= L0, `${tag} h${h}: chosen objective ${hr.objectives[hr.chosen].toFixed(4)} ≤ unchanged ${L0.toFixed(4)}`);
        t.ok(L1 <= L0 * (1 + 1e-12), `${tag} h${h}: capped value step does not increase L (${L0.toFixed(4)} → ${L1.toFixed(4)} → ${L2.toFixed(4)})`);
        t.ok(hr.chosen !== 0, `${tag} h${h}: a merge is accepted`);
        // every retained row of the output matches the head result; fixed rows bit-identical
        const mset = new Set(hr.mutable);
        let fixedSame = true, evictedSame = true;
        for (let p = 0; p < N; p++) {
          if (mset.has(p)) continue;
          for (let c = 0; c < d; c++) if (!Object.is(res.K[(h * N + p) * d + c], args.K[(h * N + p) * d + c])) (hr.fixed.includes(p) ? (fixedSame = false) : (evictedSame = false));
          for (let c = 0; c < dv; c++) if (!Object.is(res.V[(h * N + p) * dv + c], args.V[(h * N + p) * dv + c])) (hr.fixed.includes(p) ? (fixedSame = false) : (evictedSame = false));
        }
        t.ok(fixedSame, `${tag} h${h}: fixed rows bit-identical`);
        t.ok(evictedSame, `${tag} h${h}: evicted rows bit-identical`);
        t.same(Array.from(hr.K), Array.from(originalRows(args, h, hr.retained, d, res.K)), `${tag} h${h}: head rows = cache rows`);
        // the chosen rows are the candidate's rows
        const wantV = hr.chosen === 0 ? originalRows(args, h, hr.mutable, dv, args.V) : hr.dV.rows;
        const wantK = hr.chosen === 2 ? hr.dK.rows : originalRows(args, h, hr.mutable, d, args.K);
        t.same(Array.from(originalRows(args, h, hr.mutable, dv, res.V)), Array.from(wantV), `${tag} h${h}: mutable V = chosen candidate`);
        t.same(Array.from(originalRows(args, h, hr.mutable, d, res.K)), Array.from(wantK), `${tag} h${h}: mutable K = chosen candidate`);
        // objectives reproduce through the public objective
        const Lc = grkvObjectiveRef({ ...args }, h, hr.K, hr.V);
        t.ok(Math.abs(Lc - hr.objectives[hr.chosen]) <= 1e-12 * L0, `${tag} h${h}: grkvObjectiveRef reproduces the chosen objective`);
        // caps
        const V0 = originalRows(args, h, hr.mutable, dv, args.V);
        const K0 = originalRows(args, h, hr.mutable, d, args.K);
        t.ok(frobeniusNorm(hr.dV.capped) <= 0.1 * frobeniusNorm(V0) * (1 + 1e-12), `${tag} h${h}: ‖ΔV‖ ≤ 0.10‖V0‖`);
        t.ok(frobeniusNorm(hr.dK.capped) <= 0.025 * frobeniusNorm(K0) * (1 + 1e-12), `${tag} h${h}: ‖ΔK‖ ≤ 0.025‖K0‖`);
        const dVr = hr.dV.rows.map((x, i) => x - V0[i]);
        const dKr = hr.dK.rows.map((x, i) => x - K0[i]);
        t.ok(frobeniusNorm(dVr) <= 0.1 * frobeniusNorm(V0) * (1 + 1e-9), `${tag} h${h}: rounded ΔV within cap (shrinks ${hr.dV.shrinks})`);
        t.ok(frobeniusNorm(dKr) <= 0.025 * frobeniusNorm(K0) * (1 + 1e-9), `${tag} h${h}: rounded ΔK within cap (shrinks ${hr.dK.shrinks})`);
        if (round) {
          t.ok(hr.dK.rows.every((x) => roundBf16(x) === x) && hr.dV.rows.every((x) => roundBf16(x) === x), `${tag} h${h}: candidates are bf16 values`);
        }
        t.ok(hr.dK.uncapped.length === hr.mutable.length * d && hr.dV.uncapped.length === hr.mutable.length * dv, `${tag} h${h}: step shapes`);
      }
      const shrinks = res.heads.reduce((acc, hr) => acc + hr.dK.shrinks + hr.dV.shrinks, 0);
      if (round) t.ok(shrinks > 0, `${tag}: bf16 rounding broke a cap and the recheck shrank the step (${shrinks} shrinks)`);
      else t.equal(shrinks, 0, `${tag}: identity rounding never triggers the recheck`);
    }
  }
});

t.test('value-only candidate is the exact ridge minimiser when caps are off', async (t) => {
  for (const [seed, mode] of [[101, 'stratified'], [102, 'window'], [103, 'stratified']] as const) {
    const { args, rng } = makeProblem(seed, { mode, dv: 10 });
    const res = grkvMergeRef({ ...args, capK: Infinity, capV: Infinity });
    for (let h = 0; h < args.Hkv; h++) {
      const hr = res.heads[h];
      const [L0, L1] = hr.objectives;
      t.ok(L1 <= L0, `seed ${seed} h${h}: value-only ${L1.toFixed(4)} ≤ unchanged ${L0.toFixed(4)}`);
      t.equal(hr.dV.scale, 1, 'no cap applied');
      const K0 = originalRows(args, h, hr.mutable, args.d, args.K);
      const V1 = hr.dV.rows;
      const Lat = (Vm: Float64Array) => {
        const { Kr, Vr } = retainedWith(args, hr, K0, Vm);
        return grkvObjectiveRef(args, h, Kr, Vr);
      };
      t.ok(Math.abs(Lat(V1) - L1) <= 1e-12 * L0, `seed ${seed} h${h}: objective of V1 reproduces`);
      // stationarity: directional derivatives vanish and random perturbations never decrease L
      let worstSlope = 0, increases = true;
      for (let k = 0; k < 4; k++) {
        const E = rng.normals64(V1.length);
        const nE = frobeniusNorm(E);
        const eps = 1e-4;
        const Lp = Lat(V1.map((x, i) => x + (eps * E[i]) / nE));
        const Lm = Lat(V1.map((x, i) => x - (eps * E[i]) / nE));
        worstSlope = Math.max(worstSlope, Math.abs(Lp - Lm) / (2 * eps));
        if (!(Lp >= L1 - 1e-13 * L0 && Lm >= L1 - 1e-13 * L0)) increases = false;
      }
      t.ok(worstSlope < 1e-7 * L0, `seed ${seed} h${h}: ∂L/∂V at V1 ≈ 0 (${worstSlope.toExponential(2)})`);
      t.ok(increases, `seed ${seed} h${h}: V1 is a minimiser along random directions`);
    }
  }
});

t.test('key step: CG converges and the GN direction is a descent direction', async (t) => {
  const { args } = makeProblem(111, { mode: 'stratified', N: 160, keep: 48 });
  const res = grkvMergeRef({ ...args, capK: Infinity, capV: Infinity, cgIters: 400, tol: 1e-10 });
  const short = grkvMergeRef({ ...args, capK: Infinity, capV: Infinity, cgIters: 3 });
  for (let h = 0; h < args.Hkv; h++) {
    const hr = res.heads[h];
    t.equal(hr.cg.stop, 'tol', `h${h}: CG reached the tolerance (${hr.cg.iterations} it)`);
    t.ok(hr.cg.relResidual <= 1e-10, `h${h}: relative residual ${hr.cg.relResidual.toExponential(2)}`);
    t.equal(short.heads[h].cg.iterations, 3, `h${h}: cgIters caps the iterations`);
    t.equal(short.heads[h].cg.stop, 'maxiter');
    const K0 = originalRows(args, h, hr.mutable, args.d, args.K);
    const V1 = hr.dV.rows;
    const delta = hr.dK.uncapped;
    const Lk = (tt: number) => {
      const { Kr, Vr } = retainedWith(args, hr, K0.map((x, i) => x + tt * delta[i]), V1);
      return grkvObjectiveRef(args, h, Kr, Vr);
    };
    t.ok(Lk(1e-3) < Lk(0), `h${h}: L(K0 + 1e-3·δ, V1) < L(K0, V1)`);
    t.ok(Math.abs(Lk(1) - hr.objectives[2]) <= 1e-12 * hr.objectives[0], `h${h}: key+value objective = L(K0 + δ, V1)`);
    t.ok(Lk(-1e-3) > Lk(0), `h${h}: the opposite direction ascends`);
    // δ solves the ridge normal equations of the linearisation at (K0, V1), built here from the
    // exported operators: (J_wᵀJ_w + λI) δ = J_wᵀ b_w, b_w = √w ⊙ (o* − o(K0, V1))
    const { d, dv, Hq, Hkv, qpos, weights } = args;
    const G = Hq / Hkv, Qs = qpos.length, rows = G * Qs, S = hr.retained.length;
    const qh = new Float64Array(rows * d), qposRow = new Float64Array(rows), sw = new Float64Array(rows);
    for (let g = 0; g < G; g++) {
      for (let j = 0; j < Qs; j++) {
        for (let c = 0; c < d; c++) qh[(g * Qs + j) * d + c] = (args.q as Float64Array)[((h * G + g) * Qs + j) * d + c];
        qposRow[g * Qs + j] = qpos[j];
        sw[g * Qs + j] = Math.sqrt(weights[j]);
      }
    }
    const { Kr, Vr } = retainedWith(args, hr, K0, V1);
    const scale = 1 / Math.sqrt(d);
    const at = headAttentionRef({ q: qh, rows, d, K: Kr, V: Vr, S, dv, pos: hr.retained, qpos: qposRow, scale });
    const mset = new Set(hr.mutable);
    const mutable = hr.retained.map((p, i) => (mset.has(p) ? i : -1)).filter((i) => i >= 0);
    const L: KeyLinearisation = { q: qh, rows, d, dv, scale, sw, a: at.a, o: at.o, S, V: Vr, mutable };
    const bw = at.o.map((x, i) => (hr.target[i] - x) * sw[Math.floor(i / dv)]);
    const lhs = vjpRef(L, jvpRef(L, delta)).map((x, i) => x + 0.01 * delta[i]);
    const rhs = vjpRef(L, bw);
    t.ok(relDiff(lhs, rhs) < 1e-8, `h${h}: δ solves the GN normal equations at (K0, V1) (${relDiff(lhs, rhs).toExponential(2)})`);
  }
});

t.test('skip and fallback paths', async (t) => {
  const { args } = makeProblem(121, { mode: 'stratified', N: 96, keep: 40 });
  const res = grkvMergeRef({ ...args, gamma: 1 });
  for (const hr of res.heads) {
    t.ok(hr.skipped, 'γ = 1: every prefix token is an anchor, fit skipped');
    t.equal(hr.chosen, 0);
    t.equal(hr.objectives[0], hr.objectives[2]);
  }
  t.same(Array.from(res.K), Array.from(args.K), 'skipped: K unchanged');
  t.same(Array.from(res.V), Array.from(args.V), 'skipped: V unchanged');
  const nq = grkvMergeRef({ ...args, q: [], qpos: [], weights: [] });
  t.ok(nq.heads.every((h) => h.skipped), 'no surrogate queries: skipped');
  // a rounding that breaks everything: candidates are non-finite and skipped
  const nan = grkvMergeRef({ ...args, round: () => NaN, recheck: false });
  for (const hr of nan.heads) {
    t.equal(hr.chosen, 0, 'non-finite candidates are skipped');
    t.ok(Number.isNaN(hr.objectives[1]) && Number.isNaN(hr.objectives[2]));
  }
  // a rounding that always overshoots the cap: recheck shrinks 4 times then reverts the step
  const coarse = grkvMergeRef({ ...args, round: (x) => Math.round(x * 2) / 2 });
  for (const hr of coarse.heads) {
    t.ok(hr.dV.reverted || hr.dV.shrinks <= 4, 'recheck bounded');
    if (hr.dV.reverted) t.equal(hr.dV.scale, 0, 'reverted step has scale 0');
  }
  t.ok(coarse.heads.some((h) => h.dK.reverted), 'a coarse rounding reverts the key step');
  t.throws(() => grkvMergeRef({ ...args, weights: args.weights.length ? [-1, ...Array.from(args.weights).slice(1)] : [] }), /weights\[0\]/);
});

t.test('held-out queries: GRKV reduces the output error of plain eviction', async (t) => {
  for (const seed of [131, 132]) {
    const { args, mkq } = makeProblem(seed, { mode: 'stratified' });
    const { Hq, N, d, dv, Hkv, kept } = args;
    const held = mkq(64);
    const scale = 1 / Math.sqrt(d);
    const err = (q: Float64Array, T: number, K: ArrayLike<number>, V: ArrayLike<number>) => {
      const full = attentionRef({ q, Hq, T, d, K: args.K, V: args.V, Hkv, N, dv, scale }).out;
      const o = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, kept, scale }).out;
      return median(relativeErrors(o, full, Hq * T, dv));
    };
    const q = args.q as Float64Array;
    const plainS = err(q, 32, args.K, args.V), plainH = err(held, 64, args.K, args.V);
    const def = grkvMergeRef(args);
    const loose = grkvMergeRef({ ...args, capK: Infinity, capV: Infinity });
    const defS = err(q, 32, def.K, def.V), defH = err(held, 64, def.K, def.V);
    const looseS = err(q, 32, loose.K, loose.V), looseH = err(held, 64, loose.K, loose.V);
    t.comment(`seed ${seed}: surrogate ${plainS.toFixed(3)} → ${defS.toFixed(3)} (caps) / ${looseS.toFixed(3)} (no caps); held-out ${plainH.toFixed(3)} → ${defH.toFixed(3)} / ${looseH.toFixed(3)}`);
    t.ok(defS < 0.9 * plainS, `seed ${seed}: default caps cut the surrogate error`);
    t.ok(defH < 0.9 * plainH, `seed ${seed}: default caps cut the held-out error`);
    t.ok(looseH < 0.5 * plainH, `seed ${seed}: without caps the held-out error halves`);
    t.ok(looseS / plainS < looseH / plainH, `seed ${seed}: the surrogate improves more than held-out`);
  }
});
