/**
 * Float64 references for the MomentKV moment state (docs/methods/momentkv.md §4.1, §4.3): the per-KV-head statistics of the
 * evicted tokens, computed in two passes, and their exact streaming (Chan) update; row helpers shared by the tests.
 *
 * Conventions: K [Hkv, N, d], V [Hkv, N, dv]. Everything is float64 and row-major; inputs are never modified (except
 * the state passed to `momentsMergeRef`, which is updated in place by design).
 */

/**
 * Moment state of the evicted set, one slot per KV head (docs/methods/momentkv.md §4.1):
 * `n` [H] counts (float), `muK` [H, d] key means, `muV` [H, dv] value means and `M` [H, dv, d]
 * the co-moment Σ (v − mu_v)(k − mu_k)ᵀ = n·C (C the population value-key covariance).
 */
export interface MomentStateRef {
  H: number;
  d: number;
  dv: number;
  n: Float64Array;
  muK: Float64Array;
  muV: Float64Array;
  M: Float64Array;
}

/** Rows `idx` of head h of X [H, N, w] → [idx.length, w]. */
export function gatherRows(X: ArrayLike<number>, h: number, N: number, w: number, idx: number[]): Float64Array {
  const out = new Float64Array(idx.length * w);
  idx.forEach((s, i) => {
    for (let c = 0; c < w; c++) out[i * w + c] = X[(h * N + s) * w + c];
  });
  return out;
}

/** Positions 0..N−1 not in `kept`, ascending. */
export function complement(kept: number[], N: number): number[] {
  const k = new Set(kept);
  const out: number[] = [];
  for (let s = 0; s < N; s++) if (!k.has(s)) out.push(s);
  return out;
}

/** An empty moment state (n = 0 everywhere) for H KV heads (docs/methods/momentkv.md §13 `moments_init`). */
export function momentsInitRef(H: number, d: number, dv: number): MomentStateRef {
  return {
    H,
    d,
    dv,
    n: new Float64Array(H),
    muK: new Float64Array(H * d),
    muV: new Float64Array(H * dv),
    M: new Float64Array(H * dv * d),
  };
}

/** A deep copy of a moment state. */
export function momentsCloneRef(S: MomentStateRef): MomentStateRef {
  return {
    H: S.H,
    d: S.d,
    dv: S.dv,
    n: S.n.slice(),
    muK: S.muK.slice(),
    muV: S.muV.slice(),
    M: S.M.slice(),
  };
}

/**
 * Two-pass batch statistics of m rows: K [m, d], V [m, dv] → n = m, muK [d], muV [dv], the
 * population covariance C = (1/m) Σ (v − muV)(k − muK)ᵀ [dv, d] and the co-moment M = m·C.
 * For m = 0: n = 0 and all zeros. This is the direct definition of docs/methods/momentkv.md §4.1, used to
 * check the streaming update.
 */
export function batchMomentsRef(
  K: ArrayLike<number>,
  V: ArrayLike<number>,
  d: number,
  dv: number,
): { n: number; muK: Float64Array; muV: Float64Array; C: Float64Array; M: Float64Array } {
  const m = K.length / d;
  if (!Number.isInteger(m) || V.length !== m * dv) {
    throw new RangeError(`batchMomentsRef: K.length ${K.length} / V.length ${V.length} do not match d=${d}, dv=${dv}`);
  }
  const muK = new Float64Array(d);
  const muV = new Float64Array(dv);
  const M = new Float64Array(dv * d);
  const C = new Float64Array(dv * d);
  if (m === 0) return { n: 0, muK, muV, C, M };
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < d; c++) muK[c] += K[i * d + c];
    for (let c = 0; c < dv; c++) muV[c] += V[i * dv + c];
  }
  for (let c = 0; c < d; c++) muK[c] /= m;
  for (let c = 0; c < dv; c++) muV[c] /= m;
  const dk = new Float64Array(d);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < d; c++) dk[c] = K[i * d + c] - muK[c];
    for (let a = 0; a < dv; a++) {
      const va = V[i * dv + a] - muV[a];
      for (let c = 0; c < d; c++) M[a * d + c] += va * dk[c];
    }
  }
  for (let i = 0; i < dv * d; i++) C[i] = M[i] / m;
  return { n: m, muK, muV, C, M };
}

/**
 * Merge m evicted rows K [m, d], V [m, dv] into KV head h of S, in place, with the exact Chan
 * pairwise update (docs/methods/momentkv.md §4.3): the batch's own mean and co-moment are computed
 * two-pass, then
 *   n = n_a + m;  mu += δ·m/n;  M = M_a + M_b + (n_a·m/n)·δv δkᵀ.
 * Raw sums Σ v kᵀ are never formed. m = 0 is a no-op.
 */
export function momentsMergeRef(
  S: MomentStateRef,
  h: number,
  K: ArrayLike<number>,
  V: ArrayLike<number>,
): void {
  const { d, dv } = S;
  if (!(h >= 0 && h < S.H)) throw new RangeError(`momentsMergeRef: head ${h} out of range`);
  const b = batchMomentsRef(K, V, d, dv);
  const m = b.n;
  if (m === 0) return;
  const na = S.n[h];
  const n = na + m;
  const dk = new Float64Array(d);
  const dvv = new Float64Array(dv);
  for (let c = 0; c < d; c++) dk[c] = b.muK[c] - S.muK[h * d + c];
  for (let c = 0; c < dv; c++) dvv[c] = b.muV[c] - S.muV[h * dv + c];
  for (let c = 0; c < d; c++) S.muK[h * d + c] += dk[c] * (m / n);
  for (let c = 0; c < dv; c++) S.muV[h * dv + c] += dvv[c] * (m / n);
  const f = (na * m) / n;
  const base = h * dv * d;
  for (let a = 0; a < dv; a++) {
    for (let c = 0; c < d; c++) S.M[base + a * d + c] += b.M[a * d + c] + f * dvv[a] * dk[c];
  }
  S.n[h] = n;
}

/** The state of the rows `evicted[h]` of every head h, merged in one batch per head into an empty state. */
export function evictedMomentsRef(
  K: ArrayLike<number>,
  V: ArrayLike<number>,
  H: number,
  N: number,
  d: number,
  dv: number,
  evicted: number[][],
): MomentStateRef {
  const S = momentsInitRef(H, d, dv);
  for (let h = 0; h < H; h++) momentsMergeRef(S, h, gatherRows(K, h, N, d, evicted[h]), gatherRows(V, h, N, dv, evicted[h]));
  return S;
}
