/**
 * Float64 reference for NestedKV scoring (test oracle).
 *
 * Written plainly, with explicit loops, from docs/methods/nestedkv.md §3 (S1–S7), the §9 choices and the
 * docs/methods/nestedkv.md §10 numpy pseudocode. It is deliberately slow and direct: window means are summed token by token,
 * block means block by block, tails found with a full sort. Used only to check the real kernels.
 *
 * Chosen interpretations (docs/methods/nestedkv.md §9, and the brief for these references):
 *  - S1  k̂_i = k_i / max(‖k_i‖, ε), ε = 1e-12.
 *  - S2  stable anchor: mean of k̂ over all N tokens; episodic anchor: mean of k̂ over the whole
 *        contiguous block holding i (blocks start at 0, size b; the last partial block keeps its own
 *        mean); current anchor: mean of k̂ over the causal inclusive window [max(0, i−W+1), i].
 *        Anchors are not renormalised.
 *  - S3  a_x(i) = −(k̂_i · μ_x(i)) / ‖μ_x(i)‖ — a true cosine for all three anchors (docs/methods/nestedkv.md §9.2);
 *        if ‖μ_x(i)‖ < ε the cosine is taken as 0 (docs/methods/nestedkv.md §9.13).
 *  - S4  per-head, per-scale min-max over the N tokens; range < 1e-12 → all 0 (docs/methods/nestedkv.md §9.13).
 *  - S5  Δ_x = mean(top m) − mean(bottom m), m = max(1, ⌊tail·N⌋) (docs/methods/nestedkv.md §9.6);
 *        w = softmax(log(prior) + β·Δ) per head.
 *  - S6  s = population std of (ã_s, ã_e, ã_c); ŝ = min-max(s) (zero range → 0); s_c = ŝ − mean(ŝ);
 *        α = sigmoid(κ(s_c − τ)); a* = (1−α)·a_blend + α·max(ã_s, ã_e, ã_c).
 *  - S7  sinks take part in every statistic above; afterwards positions i < sinks get +Infinity.
 *  - scales 'global' (ablation "w/o continuum score", docs/methods/nestedkv.md §7/§8): a* = ã_s (min-max of the stable
 *        anomaly), no blend, no gate; sinks pinned as usual.
 */

/** ε used for norm clamps (docs/methods/nestedkv.md §10 `EPS`). */
export const NESTEDKV_EPS = 1e-12;
/** Min-max ranges below this give all-zero output (docs/methods/nestedkv.md §3.4 / §9.13). */
export const NESTEDKV_RANGE_EPS = 1e-12;

export interface NestedkvOptions {
  /** current-memory window W (causal, inclusive of i). Default 64. */
  window?: number;
  /** episodic block size b. Default clip(⌊N/32⌋, 128, 256). */
  block?: number;
  /** prior blend weights (stable, episodic, current). Default [0.4, 0.4, 0.2]. */
  prior?: readonly [number, number, number] | readonly number[];
  /** blend temperature β. Default 3. */
  beta?: number;
  /** gate threshold τ. Default 0.6. */
  tau?: number;
  /** gate sharpness κ. Default 10. */
  kappa?: number;
  /** tail fraction for Δ. Default 0.1. */
  tail?: number;
  /** number of pinned leading positions. Default 4. */
  sinks?: number;
  /** 'all' = full NestedKV; 'global' = single global anchor ablation. Default 'all'. */
  scales?: 'all' | 'global';
}

export interface NestedkvDetail {
  /** episodic block size used */
  blockSize: number;
  /** tail count m used for Δ */
  tailCount: number;
  /** raw anomalies a_s, a_e, a_c (S3), each [H, N], in [−1, 1] */
  raw: [Float64Array, Float64Array, Float64Array];
  /** min-max normalised anomalies ã_s, ã_e, ã_c (S4), each [H, N], in [0, 1] */
  A: [Float64Array, Float64Array, Float64Array];
  /** Δ per head and scale, [H][3] (S5) */
  delta: number[][];
  /**
   * blend weights per head, [H][3] (S5); [1,0,0] in 'global' mode. (delta, blend, win and surprise
   * are always the full-model intermediates, also in 'global' mode, where the score ignores them.)
   */
  w: number[][];
  /** a_blend [H, N] (S5) */
  blend: Float64Array;
  /** a_win = max of the three [H, N] (S6) */
  win: Float64Array;
  /** mean-centred normalised surprise s_c [H, N] (S6) */
  surprise: Float64Array;
  /** gate α [H, N] (S6); all 0 in 'global' mode */
  alpha: Float64Array;
  /** final scores [H, N], sinks = +Infinity (S7) */
  score: Float64Array;
}

/** Episodic block size b = clip(⌊N/32⌋, 128, 256), docs/methods/nestedkv.md §3 S2 / §6. */
export function nestedkvBlockSize(N: number): number {
  return Math.min(256, Math.max(128, Math.floor(N / 32)));
}

function isPosInt(v: number): boolean {
  return Number.isInteger(v) && v >= 1;
}

/** Per-row min-max, spec S4 / docs/methods/nestedkv.md §10 `_minmax`; zero range (< 1e-12) gives 0. Writes into `out`. */
function minmaxRow(x: Float64Array, off: number, n: number, out: Float64Array): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = x[off + i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const range = hi - lo;
  for (let i = 0; i < n; i++) {
    out[off + i] = range < NESTEDKV_RANGE_EPS ? 0 : (x[off + i] - lo) / range;
  }
}

/**
 * Full NestedKV scoring with all intermediates, docs/methods/nestedkv.md §3 S1–S7 (see file header for the
 * docs/methods/nestedkv.md §9 choices). For debugging kernels stage by stage.
 *
 * @param K keys [H, N, d] row-major (post-RoPE cached keys of one layer)
 */
export function nestedkvDetailRef(
  K: ArrayLike<number>,
  H: number,
  N: number,
  d: number,
  opts: NestedkvOptions = {},
): NestedkvDetail {
  for (const [name, v] of [['H', H], ['N', N], ['d', d]] as const) {
    if (!isPosInt(v)) throw new RangeError(`nestedkvDetailRef: ${name} must be a positive integer, got ${v}`);
  }
  if (K.length !== H * N * d) {
    throw new RangeError(`nestedkvDetailRef: K.length must be H*N*d = ${H * N * d}, got ${K.length}`);
  }
  const W = opts.window ?? 64;
  const b = opts.block ?? nestedkvBlockSize(N);
  const prior = opts.prior ?? [0.4, 0.4, 0.2];
  const beta = opts.beta ?? 3;
  const tau = opts.tau ?? 0.6;
  const kappa = opts.kappa ?? 10;
  const tail = opts.tail ?? 0.1;
  const sinks = opts.sinks ?? 4;
  const scales = opts.scales ?? 'all';
  if (!isPosInt(W)) throw new RangeError(`nestedkvDetailRef: window must be a positive integer, got ${W}`);
  if (!isPosInt(b)) throw new RangeError(`nestedkvDetailRef: block must be a positive integer, got ${b}`);
  if (prior.length !== 3 || prior.some((p) => !(p >= 0)) || !prior.some((p) => p > 0)) {
    throw new RangeError(`nestedkvDetailRef: prior must be 3 non-negative numbers, not all 0`);
  }
  if (!(tail >= 0 && tail <= 1)) throw new RangeError(`nestedkvDetailRef: tail must be in [0, 1], got ${tail}`);
  if (!(Number.isInteger(sinks) && sinks >= 0)) {
    throw new RangeError(`nestedkvDetailRef: sinks must be a non-negative integer, got ${sinks}`);
  }
  if (!Number.isFinite(beta) || !Number.isFinite(tau) || !Number.isFinite(kappa)) {
    throw new RangeError('nestedkvDetailRef: beta, tau and kappa must be finite');
  }
  if (scales !== 'all' && scales !== 'global') {
    throw new RangeError(`nestedkvDetailRef: scales must be 'all' or 'global', got ${String(scales)}`);
  }

  const EPS = NESTEDKV_EPS;

  // ---- S1: normalise -------------------------------------------------------------------------
  const khat = new Float64Array(H * N * d);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < N; i++) {
      const base = (h * N + i) * d;
      let ss = 0;
      for (let c = 0; c < d; c++) ss += K[base + c] * K[base + c];
      const nrm = Math.max(Math.sqrt(ss), EPS);
      for (let c = 0; c < d; c++) khat[base + c] = K[base + c] / nrm;
    }
  }

  // −cos(k̂_i, μ) with the ‖μ‖ < ε → 0 rule (S3, docs/methods/nestedkv.md §9.13)
  const negCos = (base: number, mu: Float64Array): number => {
    let dot = 0;
    let mm = 0;
    for (let c = 0; c < d; c++) {
      dot += khat[base + c] * mu[c];
      mm += mu[c] * mu[c];
    }
    const muNorm = Math.sqrt(mm);
    if (muNorm < EPS) return 0;
    return -(dot / muNorm) + 0; // + 0: no −0
  };

  const rawS = new Float64Array(H * N);
  const rawE = new Float64Array(H * N);
  const rawC = new Float64Array(H * N);
  const mu = new Float64Array(d);

  for (let h = 0; h < H; h++) {
    // ---- S2/S3 stable anchor: mean over all N ----
    mu.fill(0);
    for (let j = 0; j < N; j++) for (let c = 0; c < d; c++) mu[c] += khat[(h * N + j) * d + c];
    for (let c = 0; c < d; c++) mu[c] /= N;
    for (let i = 0; i < N; i++) rawS[h * N + i] = negCos((h * N + i) * d, mu);

    // ---- episodic anchor: whole-block mean, blocks [start, min(start+b, N)) ----
    for (let start = 0; start < N; start += b) {
      const end = Math.min(start + b, N);
      mu.fill(0);
      for (let j = start; j < end; j++) for (let c = 0; c < d; c++) mu[c] += khat[(h * N + j) * d + c];
      for (let c = 0; c < d; c++) mu[c] /= end - start;
      for (let i = start; i < end; i++) rawE[h * N + i] = negCos((h * N + i) * d, mu);
    }

    // ---- current anchor: causal inclusive window [max(0, i−W+1), i] ----
    for (let i = 0; i < N; i++) {
      const lo = Math.max(0, i - W + 1);
      mu.fill(0);
      for (let j = lo; j <= i; j++) for (let c = 0; c < d; c++) mu[c] += khat[(h * N + j) * d + c];
      for (let c = 0; c < d; c++) mu[c] /= i - lo + 1;
      rawC[h * N + i] = negCos((h * N + i) * d, mu);
    }
  }

  // ---- S4: per-head min-max per scale ----
  const As = new Float64Array(H * N);
  const Ae = new Float64Array(H * N);
  const Ac = new Float64Array(H * N);
  for (let h = 0; h < H; h++) {
    minmaxRow(rawS, h * N, N, As);
    minmaxRow(rawE, h * N, N, Ae);
    minmaxRow(rawC, h * N, N, Ac);
  }
  const A: [Float64Array, Float64Array, Float64Array] = [As, Ae, Ac];

  // ---- S5: Δ, weights, blend ----
  const m = Math.max(1, Math.floor(tail * N));
  const delta: number[][] = [];
  const w: number[][] = [];
  const blend = new Float64Array(H * N);
  for (let h = 0; h < H; h++) {
    const dh: number[] = [];
    for (let x = 0; x < 3; x++) {
      const sorted = Array.from(A[x].subarray(h * N, (h + 1) * N)).sort((p, q) => p - q);
      let top = 0;
      let bot = 0;
      for (let k = 0; k < m; k++) {
        bot += sorted[k];
        top += sorted[N - 1 - k];
      }
      dh.push(top / m - bot / m);
    }
    delta.push(dh);
    const logits = [0, 1, 2].map((x) => Math.log(prior[x]) + beta * dh[x]);
    const lmax = Math.max(logits[0], logits[1], logits[2]);
    const ex = logits.map((l) => Math.exp(l - lmax));
    const sum = ex[0] + ex[1] + ex[2];
    const wh = ex.map((e) => e / sum);
    w.push(wh);
    for (let i = 0; i < N; i++) {
      const k = h * N + i;
      blend[k] = wh[0] * As[k] + wh[1] * Ae[k] + wh[2] * Ac[k];
    }
  }

  // ---- S6: surprise-gated routing ----
  const sRaw = new Float64Array(H * N);
  const win = new Float64Array(H * N);
  for (let k = 0; k < H * N; k++) {
    const mean = (As[k] + Ae[k] + Ac[k]) / 3;
    const v = ((As[k] - mean) ** 2 + (Ae[k] - mean) ** 2 + (Ac[k] - mean) ** 2) / 3; // population
    sRaw[k] = Math.sqrt(v);
    win[k] = Math.max(As[k], Ae[k], Ac[k]);
  }
  const surprise = new Float64Array(H * N);
  const alpha = new Float64Array(H * N);
  const score = new Float64Array(H * N);
  for (let h = 0; h < H; h++) {
    minmaxRow(sRaw, h * N, N, surprise);
    let mean = 0;
    for (let i = 0; i < N; i++) mean += surprise[h * N + i];
    mean /= N;
    for (let i = 0; i < N; i++) {
      const k = h * N + i;
      surprise[k] -= mean;
      alpha[k] = 1 / (1 + Math.exp(-kappa * (surprise[k] - tau)));
      score[k] = (1 - alpha[k]) * blend[k] + alpha[k] * win[k];
    }
  }

  // ---- 'global' ablation: single stable anchor, no blend, no gate ----
  if (scales === 'global') {
    for (let h = 0; h < H; h++) w[h] = [1, 0, 0];
    alpha.fill(0);
    score.set(As);
  }

  // ---- S7: pin sinks (after all statistics) ----
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < Math.min(sinks, N); i++) score[h * N + i] = Infinity;
  }

  return {
    blockSize: b,
    tailCount: m,
    raw: [rawS, rawE, rawC],
    A,
    delta,
    w,
    blend,
    win,
    surprise,
    alpha,
    score,
  };
}

/**
 * NestedKV scores, docs/methods/nestedkv.md §3 S1–S7 (choices in the file header).
 *
 * @param K keys [H, N, d] row-major
 * @returns Float64Array [H, N]: a* in [0, 1], positions < sinks = +Infinity
 */
export function nestedkvScoresRef(
  K: ArrayLike<number>,
  H: number,
  N: number,
  d: number,
  opts: NestedkvOptions = {},
): Float64Array {
  return nestedkvDetailRef(K, H, N, d, opts).score;
}
