/**
 * Float64 reference for the GRKV merge (docs/methods/grkv.md §4–§7, §11 choices, §12 `grkv_head`).
 *
 * Per KV head h the retained set S_h = kept[h] is split into fixed F_h and mutable M_h (docs/methods/grkv.md §4); the
 * mutable rows are regressed so that attention over the retained set reproduces full-cache attention
 * for G·Qs surrogate query rows (docs/methods/grkv.md §6): an exact dual-ridge value step (§7.1), one Gauss–Newton ridge
 * key step solved matrix-free by CG in output space (docs/methods/grkv.md §7.2), relative Frobenius caps, storage
 * rounding with a cap recheck (docs/methods/grkv.md §7.3, §11.10) and a per-KV-head choice among
 * {unchanged, value-only, key+value} by the full objective (docs/methods/grkv.md §11.6, §11.7).
 *
 * Conventions: K [Hkv, N, d], V [Hkv, N, dv], surrogate queries q [Hq, Qs, d] (post-RoPE),
 * query head j → KV head floor(j/G). Within a KV head the G·Qs rows are ordered (g, j) → g·Qs + j,
 * g the query head within the group. Retained slots are in ascending position order.
 */
import { checkKept } from './attention';
import { frobeniusNorm } from './linalg';
import { spdSolveRef } from './spd';

/** Positions max(0, N−W) … N−1: the observation window (docs/methods/snapkv.md §3.1, docs/methods/grkv.md §5.1). */
export function windowPositions(N: number, W: number): number[] {
  const out: number[] = [];
  for (let s = Math.max(0, N - W); s < N; s++) out.push(s);
  return out;
}

/**
 * Stratified surrogate positions (docs/methods/grkv.md §5.2): e_j = ⌊j·N/Qs⌋, p_j = ⌊(e_j + e_{j+1} − 1)/2⌋
 * for j < Qs; all N positions when N < Qs. (N = 16384, Qs = 32 → 255, 767, …, 16127.)
 */
export function stratifiedPositions(N: number, Qs = 32): number[] {
  if (N < Qs) return Array.from({ length: N }, (_, i) => i);
  const e = (j: number) => Math.floor((j * N) / Qs);
  const out: number[] = [];
  for (let j = 0; j < Qs; j++) out.push(Math.floor((e(j) + e(j + 1) - 1) / 2));
  return out;
}

/**
 * Round a number to bfloat16 (round to nearest, ties to even), via float32 first as a float32
 * kernel would. NaN stays NaN; overflow goes to ±Infinity. Useful as the `round` of grkvMergeRef.
 */
export function roundBf16(x: number): number {
  F32[0] = x;
  if (Number.isNaN(F32[0])) return NaN;
  const u = U32[0];
  U32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0;
  return F32[0];
}
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * Fixed / mutable split of the retained set (docs/methods/grkv.md §4, §12 `partition`): retained positions
 * ≥ N−W are fixed; the retained prefix P_h (positions < N−W) is sorted by raw SnapKV score,
 * descending, ties broken by LOWER position first, and its first ⌊|P_h|·γ⌋ entries (anchors) are
 * fixed. The rest is mutable. Both lists come back ascending.
 */
export function grkvPartitionRef(
  kept: number[][],
  raw: ArrayLike<number>,
  N: number,
  W: number,
  gamma: number,
): { fixed: number[][]; mutable: number[][] } {
  const fixed: number[][] = [];
  const mutable: number[][] = [];
  for (let h = 0; h < kept.length; h++) {
    const P = kept[h].filter((s) => s < N - W);
    const win = kept[h].filter((s) => s >= N - W);
    const sorted = P.slice().sort((x, y) => {
      const rx = raw[h * N + x];
      const ry = raw[h * N + y];
      return rx > ry ? -1 : rx < ry ? 1 : x - y;
    });
    const nAnchor = Math.floor(P.length * gamma);
    fixed.push(sorted.slice(0, nAnchor).concat(win).sort((x, y) => x - y));
    mutable.push(sorted.slice(nAnchor).sort((x, y) => x - y));
  }
  return { fixed, mutable };
}

/** Arguments of {@link headAttentionRef}: one KV head, `rows` query rows over `S` key slots. */
export interface HeadAttentionArgs {
  /** Query rows [rows, d]. */
  q: ArrayLike<number>;
  rows: number;
  d: number;
  /** Slot keys [S, d] and values [S, dv]. */
  K: ArrayLike<number>;
  V: ArrayLike<number>;
  S: number;
  dv: number;
  /** Position of each slot [S]. */
  pos: ArrayLike<number>;
  /** Position of each query row [rows]: slot s is visible iff pos[s] ≤ qpos[row]. */
  qpos: ArrayLike<number>;
  scale: number;
}

/**
 * Softmax attention of one KV head's query rows over a slot set (docs/methods/grkv.md §2, §12 `attn`):
 * returns the weights `a` [rows, S] (0 on invisible slots) and outputs `o` [rows, dv]. A row with no
 * visible slot has a = 0 and o = 0.
 */
export function headAttentionRef(p: HeadAttentionArgs): { a: Float64Array; o: Float64Array } {
  const { q, rows, d, K, V, S, dv, pos, qpos, scale } = p;
  const a = new Float64Array(rows * S);
  const o = new Float64Array(rows * dv);
  for (let i = 0; i < rows; i++) {
    let m = -Infinity;
    for (let s = 0; s < S; s++) {
      if (pos[s] > qpos[i]) continue;
      let dot = 0;
      for (let c = 0; c < d; c++) dot += q[i * d + c] * K[s * d + c];
      a[i * S + s] = dot * scale;
      m = Math.max(m, dot * scale);
    }
    if (m === -Infinity) continue;
    let z = 0;
    for (let s = 0; s < S; s++) {
      if (pos[s] > qpos[i]) continue;
      const w = Math.exp(a[i * S + s] - m);
      a[i * S + s] = w;
      z += w;
    }
    for (let s = 0; s < S; s++) {
      if (pos[s] > qpos[i]) continue;
      a[i * S + s] /= z;
      const w = a[i * S + s];
      for (let c = 0; c < dv; c++) o[i * dv + c] += w * V[s * dv + c];
    }
  }
  return { a, o };
}

/** The linearisation point of the key step for one KV head (docs/methods/grkv.md §7.2). */
export interface KeyLinearisation {
  /** Query rows [rows, d]. */
  q: ArrayLike<number>;
  rows: number;
  d: number;
  dv: number;
  scale: number;
  /** √w per row [rows]. */
  sw: ArrayLike<number>;
  /** Attention weights [rows, S] and outputs [rows, dv] at the linearisation point. */
  a: ArrayLike<number>;
  o: ArrayLike<number>;
  S: number;
  /** Slot values [S, dv] at the linearisation point. */
  V: ArrayLike<number>;
  /** Slot indices (into 0..S−1) of the mutable rows, ascending; R = mutable.length. */
  mutable: number[];
}

/**
 * JVP of the √w-weighted outputs w.r.t. the mutable keys (docs/methods/grkv.md §7.2, §12 `J`):
 * (JΔ)_row = √w_row · Σ_{t∈M} a_{row,t} · (scale·q_row·Δ_t) · (v_t − o_row).
 * Δ is [R, d]; returns [rows, dv].
 */
export function jvpRef(L: KeyLinearisation, D: ArrayLike<number>): Float64Array {
  const { q, rows, d, dv, scale, sw, a, o, S, V, mutable } = L;
  const out = new Float64Array(rows * dv);
  for (let i = 0; i < rows; i++) {
    for (let t = 0; t < mutable.length; t++) {
      const s = mutable[t];
      const w = a[i * S + s];
      if (w === 0) continue;
      let qd = 0;
      for (let c = 0; c < d; c++) qd += q[i * d + c] * D[t * d + c];
      const f = w * qd * scale;
      for (let c = 0; c < dv; c++) out[i * dv + c] += f * (V[s * dv + c] - o[i * dv + c]);
    }
    for (let c = 0; c < dv; c++) out[i * dv + c] *= sw[i];
  }
  return out;
}

/**
 * VJP, the adjoint of {@link jvpRef} (docs/methods/grkv.md §7.2, §12 `JT`): with U' = √w ⊙ U,
 * (JᵀU)_t = scale · Σ_row a_{row,t} · (U'_row·v_t − U'_row·o_row) · q_row.  U is [rows, dv];
 * returns [R, d].
 */
export function vjpRef(L: KeyLinearisation, U: ArrayLike<number>): Float64Array {
  const { q, rows, d, dv, scale, sw, a, o, S, V, mutable } = L;
  const out = new Float64Array(mutable.length * d);
  for (let i = 0; i < rows; i++) {
    let uo = 0;
    for (let c = 0; c < dv; c++) uo += U[i * dv + c] * o[i * dv + c];
    uo *= sw[i];
    for (let t = 0; t < mutable.length; t++) {
      const s = mutable[t];
      const w = a[i * S + s];
      if (w === 0) continue;
      let uv = 0;
      for (let c = 0; c < dv; c++) uv += U[i * dv + c] * V[s * dv + c];
      uv *= sw[i];
      const f = scale * w * (uv - uo);
      for (let c = 0; c < d; c++) out[t * d + c] += f * q[i * d + c];
    }
  }
  return out;
}

/**
 * Exact ridge value step in dual form (docs/methods/grkv.md §7.1): solve (A_w A_wᵀ + λI) X = r by Cholesky
 * and return ΔV = A_wᵀ X. A_w is [rows, R] (rows already scaled by √w), r is [rows, dv]; returns
 * [R, dv].
 */
export function valueStepDualRef(
  Aw: ArrayLike<number>,
  rows: number,
  R: number,
  r: ArrayLike<number>,
  dv: number,
  lambda: number,
): Float64Array {
  const Gm = new Float64Array(rows * rows);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = 0; t < R; t++) s += Aw[i * R + t] * Aw[j * R + t];
      Gm[i * rows + j] = s;
      Gm[j * rows + i] = s;
    }
    Gm[i * rows + i] += lambda;
  }
  const X = spdSolveRef(Gm, rows, r, dv);
  const dV = new Float64Array(R * dv);
  for (let i = 0; i < rows; i++) {
    for (let t = 0; t < R; t++) {
      const w = Aw[i * R + t];
      if (w === 0) continue;
      for (let c = 0; c < dv; c++) dV[t * dv + c] += w * X[i * dv + c];
    }
  }
  return dV;
}

/**
 * The same ridge solution in primal form, ΔV = (A_wᵀA_w + λI_R)⁻¹ A_wᵀ r (an R×R system), for
 * checking {@link valueStepDualRef} (docs/methods/grkv.md §7.1, §13). Returns [R, dv].
 */
export function valueStepPrimalRef(
  Aw: ArrayLike<number>,
  rows: number,
  R: number,
  r: ArrayLike<number>,
  dv: number,
  lambda: number,
): Float64Array {
  const P = new Float64Array(R * R);
  for (let t = 0; t < R; t++) {
    for (let u = 0; u <= t; u++) {
      let s = 0;
      for (let i = 0; i < rows; i++) s += Aw[i * R + t] * Aw[i * R + u];
      P[t * R + u] = s;
      P[u * R + t] = s;
    }
    P[t * R + t] += lambda;
  }
  const B = new Float64Array(R * dv);
  for (let i = 0; i < rows; i++) {
    for (let t = 0; t < R; t++) {
      const w = Aw[i * R + t];
      for (let c = 0; c < dv; c++) B[t * dv + c] += w * r[i * dv + c];
    }
  }
  return spdSolveRef(P, R, B, dv);
}

/** Arguments of {@link grkvMergeRef}. */
export interface GrkvMergeArgs {
  K: ArrayLike<number>;
  V: ArrayLike<number>;
  Hkv: number;
  N: number;
  d: number;
  dv: number;
  /** Retained positions per KV head, ascending (the eviction result). */
  kept: number[][];
  /** Raw SnapKV scores [Hkv, N] (anchor ranking, docs/methods/grkv.md §4). */
  raw: ArrayLike<number>;
  /** Surrogate queries [Hq, Qs, d], post-RoPE. */
  q: ArrayLike<number>;
  Hq: number;
  /** Logical position of each surrogate query [Qs] (N−1 for all in the stratified mode). */
  qpos: ArrayLike<number>;
  /** Weight w_j ≥ 0 of each surrogate query [Qs]. */
  weights: ArrayLike<number>;
  /** Window: retained positions ≥ N−W are always fixed. */
  W: number;
  gamma?: number;
  lambda?: number;
  /** Relative Frobenius cap on ΔK per KV head; Infinity = no cap. */
  capK?: number;
  /** Relative Frobenius cap on ΔV per KV head; Infinity = no cap. */
  capV?: number;
  cgIters?: number;
  tol?: number;
  scale?: number;
  /** Storage rounding applied to every element of the updated rows (default: identity). */
  round?: (x: number) => number;
  /**
   * Recheck the caps after rounding (docs/methods/grkv.md §7.3, §11.10): while ‖round(X0 + s·Δ) − X0‖_F exceeds
   * cap·‖X0‖_F·(1 + 1e-9), s ← 0.9·s, at most 4 times; if still exceeded, the step is dropped
   * (s = 0, X1 = X0). Default true. It never triggers with identity rounding.
   */
  recheck?: boolean;
}

/** A capped, rounded step for one tensor of one head. */
export interface GrkvStep {
  /** The step as solved, [R, d] or [R, dv]. */
  uncapped: Float64Array;
  /** scale·uncapped, the step actually applied before rounding. */
  capped: Float64Array;
  /** Final scale s ∈ [0, 1] (cap factor times 0.9^shrinks; 0 when reverted). */
  scale: number;
  /** Times the scale was shrunk by 0.9 after rounding broke the cap (0–4). */
  shrinks: number;
  /** True when the cap recheck failed after 4 shrinks and the step was dropped. */
  reverted: boolean;
  /** round(X0 + capped): the candidate rows [R, ·]. */
  rows: Float64Array;
}

/** Per-KV-head result of {@link grkvMergeRef}. */
export interface GrkvHeadResult {
  /** Retained positions (kept[h]), fixed and mutable positions, all ascending. */
  retained: number[];
  fixed: number[];
  mutable: number[];
  /** Merged retained rows, ascending position order: [n_h, d] and [n_h, dv]. */
  K: Float64Array;
  V: Float64Array;
  /** Full-cache target o* [G·Qs, dv]. */
  target: Float64Array;
  dV: GrkvStep;
  dK: GrkvStep;
  /** Objective L of {unchanged (K0,V0), value-only (K0,V1), key+value (K1,V1)}; NaN if not finite. */
  objectives: [number, number, number];
  /** Index of the chosen candidate. */
  chosen: 0 | 1 | 2;
  /** CG diagnostics of the key step. */
  cg: { iterations: number; relResidual: number; stop: 'tol' | 'maxiter' | 'curvature' };
  /** True when the fit was skipped (no mutable slot or no query rows). */
  skipped: boolean;
}

function stepOf(
  X0: Float64Array,
  D: Float64Array,
  cap: number,
  round: (x: number) => number,
  recheck: boolean,
): GrkvStep {
  const n0 = frobeniusNorm(X0);
  const nd = frobeniusNorm(D);
  let s = Number.isFinite(cap) ? Math.min(1, (cap * n0) / Math.max(nd, 1e-30)) : 1;
  const build = (sc: number) => {
    const rows = new Float64Array(X0.length);
    for (let i = 0; i < X0.length; i++) rows[i] = round(X0[i] + sc * D[i]);
    return rows;
  };
  const dist = (rows: Float64Array) => {
    let t = 0;
    for (let i = 0; i < X0.length; i++) t += (rows[i] - X0[i]) ** 2;
    return Math.sqrt(t);
  };
  let rows = build(s);
  let shrinks = 0;
  let reverted = false;
  if (recheck && Number.isFinite(cap)) {
    const limit = cap * n0 * (1 + 1e-9);
    while (dist(rows) > limit && shrinks < 4) {
      s *= 0.9;
      shrinks++;
      rows = build(s);
    }
    if (dist(rows) > limit) {
      s = 0;
      rows = X0.slice();
      reverted = true;
    }
  }
  return { uncapped: D, capped: D.map((x) => x * s), scale: s, shrinks, reverted, rows };
}

function allFinite(x: ArrayLike<number>): boolean {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return false;
  return true;
}

/** Shared per-head setup: query rows, weights, positions and the target. */
function headSetup(args: GrkvMergeArgs, h: number) {
  const { K, V, N, d, dv, q, Hq, Hkv, qpos, weights } = args;
  const Qs = qpos.length;
  const G = Hq / Hkv;
  const rows = G * Qs;
  const scale = args.scale ?? 1 / Math.sqrt(d);
  const qh = new Float64Array(rows * d);
  const qposRow = new Float64Array(rows);
  const w = new Float64Array(rows);
  for (let g = 0; g < G; g++) {
    for (let j = 0; j < Qs; j++) {
      const i = g * Qs + j;
      for (let c = 0; c < d; c++) qh[i * d + c] = q[((h * G + g) * Qs + j) * d + c];
      qposRow[i] = qpos[j];
      w[i] = weights[j];
    }
  }
  const Kfull = new Float64Array(N * d);
  const Vfull = new Float64Array(N * dv);
  for (let i = 0; i < N * d; i++) Kfull[i] = K[h * N * d + i];
  for (let i = 0; i < N * dv; i++) Vfull[i] = V[h * N * dv + i];
  const posAll = Float64Array.from({ length: N }, (_, i) => i);
  const target = headAttentionRef({
    q: qh, rows, d, K: Kfull, V: Vfull, S: N, dv, pos: posAll, qpos: qposRow, scale,
  }).o;
  return { rows, scale, qh, qposRow, w, target, Kfull, Vfull };
}

/** Σ_rows w ‖o − o*‖² (the weighted loss of docs/methods/grkv.md §6). */
function weightedLoss(o: Float64Array, target: Float64Array, w: Float64Array, dv: number): number {
  let L = 0;
  for (let i = 0; i < w.length; i++) {
    let e = 0;
    for (let c = 0; c < dv; c++) e += (o[i * dv + c] - target[i * dv + c]) ** 2;
    L += w[i] * e;
  }
  return L;
}

function validate(args: GrkvMergeArgs): void {
  const { K, V, Hkv, N, d, dv, kept, raw, q, Hq, qpos, weights } = args;
  if (Hq % Hkv !== 0) throw new RangeError(`grkvMergeRef: Hq=${Hq} not a multiple of Hkv=${Hkv}`);
  if (K.length !== Hkv * N * d) throw new RangeError('grkvMergeRef: K.length != Hkv*N*d');
  if (V.length !== Hkv * N * dv) throw new RangeError('grkvMergeRef: V.length != Hkv*N*dv');
  if (raw.length !== Hkv * N) throw new RangeError('grkvMergeRef: raw.length != Hkv*N');
  if (q.length !== Hq * qpos.length * d) throw new RangeError('grkvMergeRef: q.length != Hq*Qs*d');
  if (weights.length !== qpos.length) throw new RangeError('grkvMergeRef: weights.length != Qs');
  for (let j = 0; j < weights.length; j++) {
    if (!(weights[j] >= 0)) throw new RangeError(`grkvMergeRef: weights[${j}] = ${weights[j]} < 0`);
  }
  checkKept(kept, Hkv, N, 'grkvMergeRef');
}

/**
 * The GRKV objective (docs/methods/grkv.md §6) of KV head h for given merged retained rows
 * Kret [n_h, d], Vret [n_h, dv] (ascending positions of kept[h]):
 *   Σ_{g,j} w_j ‖o_{gj}(K̃,Ṽ) − o*_{gj}‖² + λ(‖K̃ − K0‖²_F + ‖Ṽ − V0‖²_F),
 * the ridge taken over all retained rows (fixed rows contribute 0 when unchanged). Lets a test
 * score another implementation's output with the same yardstick.
 */
export function grkvObjectiveRef(
  args: GrkvMergeArgs,
  h: number,
  Kret: ArrayLike<number>,
  Vret: ArrayLike<number>,
): number {
  validate(args);
  const { d, dv } = args;
  const lambda = args.lambda ?? 0.01;
  const { rows, scale, qh, qposRow, w, target, Kfull, Vfull } = headSetup(args, h);
  const pos = args.kept[h];
  const S = pos.length;
  const o = headAttentionRef({ q: qh, rows, d, K: Kret, V: Vret, S, dv, pos, qpos: qposRow, scale }).o;
  let ridge = 0;
  for (let i = 0; i < S; i++) {
    for (let c = 0; c < d; c++) ridge += (Kret[i * d + c] - Kfull[pos[i] * d + c]) ** 2;
    for (let c = 0; c < dv; c++) ridge += (Vret[i * dv + c] - Vfull[pos[i] * dv + c]) ** 2;
  }
  return weightedLoss(o, target, w, dv) + lambda * ridge;
}

/**
 * GRKV merge, float64 (docs/methods/grkv.md §12 `grkv_head`, per-KV-head acceptance §11.7).
 * For each KV head h:
 *  1. F_h / M_h from {@link grkvPartitionRef}; S_h = kept[h] ascending; K0, V0 the mutable rows.
 *  2. Target o* = full causal attention over all N tokens for the G·Qs rows (visibility s ≤ qpos_j).
 *  3. Value step at K0: A_w = √w ⊙ a[:, M] [G·Qs, R], r = √w ⊙ (o* − o(K0,V0));
 *     ΔV = {@link valueStepDualRef}; ΔV ← ΔV·min(1, capV‖V0‖/max(‖ΔV‖,1e-30)); V1 = round(V0 + ΔV)
 *     (with the cap recheck, see `recheck`).
 *  4. Key step at (K0, V1): b = √w ⊙ (o* − o(K0,V1)); plain CG from x = 0 on (J_w J_wᵀ + λI)x = b
 *     for ≤ cgIters iterations, stopping when ‖res‖ ≤ tol·‖b‖ or when the curvature pᵀAp is ≤ 0 or
 *     not finite (x kept as it is); ΔK = J_wᵀx, capped with capK; K1 = round(K0 + ΔK).
 *  5. Objectives of (K0,V0), (K0,V1), (K1,V1) (weighted loss + λ ridge centred on K0/V0); the
 *     minimum wins, the earlier on exact ties; a candidate with a non-finite entry or objective is
 *     skipped (its objective reported as NaN).
 * Fixed and evicted rows are copied through unchanged. No mutable slot or Qs = 0: the fit is
 * skipped (chosen 0, all objectives equal the base).
 *
 * Returns per-head results and the full merged caches `K` [Hkv, N, d], `V` [Hkv, N, dv].
 */
export function grkvMergeRef(args: GrkvMergeArgs): {
  heads: GrkvHeadResult[];
  K: Float64Array;
  V: Float64Array;
} {
  validate(args);
  const { K, V, Hkv, N, d, dv, kept, raw, W } = args;
  const gamma = args.gamma ?? 0.1;
  const lambda = args.lambda ?? 0.01;
  const capK = args.capK ?? 0.025;
  const capV = args.capV ?? 0.1;
  const cgIters = args.cgIters ?? 16;
  const tol = args.tol ?? 1e-6;
  const round = args.round ?? ((x: number) => x);
  const recheck = args.recheck ?? true;
  const { fixed, mutable } = grkvPartitionRef(kept, raw, N, W, gamma);
  const Kout = Float64Array.from(K);
  const Vout = Float64Array.from(V);
  const heads: GrkvHeadResult[] = [];

  for (let h = 0; h < Hkv; h++) {
    const { rows, scale, qh, qposRow, w, target, Kfull, Vfull } = headSetup(args, h);
    const sw = w.map(Math.sqrt);
    const pos = kept[h];
    const S = pos.length;
    const mutSet = new Set(mutable[h]);
    const mutIdx: number[] = [];
    for (let s = 0; s < S; s++) if (mutSet.has(pos[s])) mutIdx.push(s);
    const R = mutIdx.length;
    const Ks = new Float64Array(S * d);
    const Vs = new Float64Array(S * dv);
    for (let s = 0; s < S; s++) {
      for (let c = 0; c < d; c++) Ks[s * d + c] = Kfull[pos[s] * d + c];
      for (let c = 0; c < dv; c++) Vs[s * dv + c] = Vfull[pos[s] * dv + c];
    }
    const K0 = new Float64Array(R * d);
    const V0 = new Float64Array(R * dv);
    mutIdx.forEach((s, t) => {
      for (let c = 0; c < d; c++) K0[t * d + c] = Ks[s * d + c];
      for (let c = 0; c < dv; c++) V0[t * dv + c] = Vs[s * dv + c];
    });
    const attn = (Kslots: Float64Array, Vslots: Float64Array) =>
      headAttentionRef({ q: qh, rows, d, K: Kslots, V: Vslots, S, dv, pos, qpos: qposRow, scale });
    const withRows = (base: Float64Array, rowsM: Float64Array, width: number) => {
      const out = base.slice();
      mutIdx.forEach((s, t) => {
        for (let c = 0; c < width; c++) out[s * width + c] = rowsM[t * width + c];
      });
      return out;
    };
    const objective = (Km: Float64Array, Vm: Float64Array): number => {
      if (!allFinite(Km) || !allFinite(Vm)) return NaN;
      const o = attn(withRows(Ks, Km, d), withRows(Vs, Vm, dv)).o;
      let ridge = 0;
      for (let i = 0; i < Km.length; i++) ridge += (Km[i] - K0[i]) ** 2;
      for (let i = 0; i < Vm.length; i++) ridge += (Vm[i] - V0[i]) ** 2;
      const L = weightedLoss(o, target, w, dv) + lambda * ridge;
      return Number.isFinite(L) ? L : NaN;
    };

    const base0 = attn(Ks, Vs);
    const L0 = objective(K0, V0);
    if (R === 0 || rows === 0) {
      const empty = (): GrkvStep => ({
        uncapped: new Float64Array(0), capped: new Float64Array(0), scale: 0, shrinks: 0,
        reverted: false, rows: new Float64Array(0),
      });
      heads.push({
        retained: pos.slice(), fixed: fixed[h], mutable: mutable[h], K: Ks, V: Vs, target,
        dV: empty(), dK: empty(), objectives: [L0, L0, L0], chosen: 0,
        cg: { iterations: 0, relResidual: 0, stop: 'tol' }, skipped: true,
      });
      continue;
    }

    // ---- value step (exact dual ridge at K0)
    const Aw = new Float64Array(rows * R);
    const r = new Float64Array(rows * dv);
    for (let i = 0; i < rows; i++) {
      for (let t = 0; t < R; t++) Aw[i * R + t] = base0.a[i * S + mutIdx[t]] * sw[i];
      for (let c = 0; c < dv; c++) r[i * dv + c] = (target[i * dv + c] - base0.o[i * dv + c]) * sw[i];
    }
    const dVu = valueStepDualRef(Aw, rows, R, r, dv, lambda);
    const vStep = stepOf(V0, dVu, capV, round, recheck);
    const V1 = vStep.rows;

    // ---- key step (Gauss–Newton ridge at K0, values V1, CG in output space)
    const Vs1 = withRows(Vs, V1, dv);
    const lin1 = attn(Ks, Vs1);
    const lin: KeyLinearisation = {
      q: qh, rows, d, dv, scale, sw, a: lin1.a, o: lin1.o, S, V: Vs1, mutable: mutIdx,
    };
    const b = new Float64Array(rows * dv);
    for (let i = 0; i < rows; i++) {
      for (let c = 0; c < dv; c++) b[i * dv + c] = (target[i * dv + c] - lin1.o[i * dv + c]) * sw[i];
    }
    const bn = frobeniusNorm(b);
    const x = new Float64Array(rows * dv);
    const res = b.slice();
    let p = res.slice();
    let rr = 0;
    for (let i = 0; i < res.length; i++) rr += res[i] * res[i];
    let iters = 0;
    let stop: 'tol' | 'maxiter' | 'curvature' = 'maxiter';
    if (Math.sqrt(rr) <= tol * bn) stop = 'tol';
    else {
      for (let it = 0; it < cgIters; it++) {
        const Jp = jvpRef(lin, vjpRef(lin, p));
        let pAp = 0;
        for (let i = 0; i < p.length; i++) {
          Jp[i] += lambda * p[i];
          pAp += p[i] * Jp[i];
        }
        if (!(pAp > 0) || !Number.isFinite(pAp)) {
          stop = 'curvature';
          break;
        }
        const alpha = rr / pAp;
        let rrNew = 0;
        for (let i = 0; i < x.length; i++) {
          x[i] += alpha * p[i];
          res[i] -= alpha * Jp[i];
          rrNew += res[i] * res[i];
        }
        iters = it + 1;
        const beta = rrNew / rr;
        rr = rrNew;
        if (Math.sqrt(rrNew) <= tol * bn) {
          stop = 'tol';
          break;
        }
        p = p.map((pi, i) => res[i] + beta * pi);
      }
    }
    const dKu = vjpRef(lin, x);
    const kStep = stepOf(K0, dKu, capK, round, recheck);
    const K1 = kStep.rows;

    // ---- acceptance (per KV head)
    const cands: [Float64Array, Float64Array][] = [[K0, V0], [K0, V1], [K1, V1]];
    const objectives = cands.map(([Km, Vm], i) => (i === 0 ? L0 : objective(Km, Vm))) as [
      number, number, number,
    ];
    let chosen: 0 | 1 | 2 = 0;
    for (let i = 1; i < 3; i++) {
      const Li = objectives[i];
      if (Number.isFinite(Li) && (!Number.isFinite(objectives[chosen]) || Li < objectives[chosen])) {
        chosen = i as 0 | 1 | 2;
      }
    }
    const [Kc, Vc] = cands[chosen];
    const Kh = withRows(Ks, Kc, d);
    const Vh = withRows(Vs, Vc, dv);
    mutIdx.forEach((s, t) => {
      const P = pos[s];
      for (let c = 0; c < d; c++) Kout[(h * N + P) * d + c] = Kc[t * d + c];
      for (let c = 0; c < dv; c++) Vout[(h * N + P) * dv + c] = Vc[t * dv + c];
    });
    heads.push({
      retained: pos.slice(), fixed: fixed[h], mutable: mutable[h], K: Kh, V: Vh, target,
      dV: vStep, dK: kStep, objectives, chosen,
      cg: { iterations: iters, relResidual: bn > 0 ? Math.sqrt(rr) / bn : 0, stop },
      skipped: false,
    });
  }
  return { heads, K: Kout, V: Vout };
}
