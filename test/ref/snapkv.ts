/**
 * Float64 reference for SnapKV scoring (test oracle), kvpress `SnapKVPress.score` variant.
 *
 * Written plainly from docs/methods/snapkv.md §3.1 (and the brief for these references):
 *  1. Window queries Q [Hq, W, d] sit at positions N−W … N−1.
 *  2. Logits q·k · scale (default scale 1/√d) against all N keys of the query head's KV head;
 *     window query t (position N−W+t) sees keys at positions ≤ N−W+t (causal inside the window,
 *     the whole prefix visible). Softmax over that visible row, in float64, max-subtracted.
 *  3. Keep the prefix columns [0, N−W) and take the mean over the W window queries → [Hq, N−W].
 *  4. 1-D pooling along the prefix (length L = N−W), stride 1, padding p = ⌊kernel/2⌋:
 *     out[i] = pool over x[j] for j ∈ [i−p, i−p+kernel−1]:
 *       'avg': sum over the in-range j divided by kernel (zero padding counted, count_include_pad);
 *       'max': max over the in-range j (padding is −Infinity).
 *     For odd kernels this is the centred window [i−p, i+p]; for even kernels it is the first L
 *     outputs of torch's pool1d with that padding.
 *  5. GQA: mean over the G = Hq/Hkv query heads of each KV head (query head j → KV head ⌊j/G⌋),
 *     after pooling.
 *  6. The W window positions N−W … N−1 get +Infinity (always kept).
 * Requires N > W.
 */

export interface SnapkvOptions {
  /** pooling kernel size. Default 5. */
  kernel?: number;
  /** pooling type. Default 'avg'. */
  pool?: 'avg' | 'max';
  /** logit scale. Default 1/√d. */
  scale?: number;
}

/**
 * SnapKV scores, docs/methods/snapkv.md §3.1.
 *
 * @param Q  window queries [Hq, W, d] row-major (positions N−W … N−1)
 * @param Hq number of query heads (multiple of Hkv)
 * @param W  observation window length (1 ≤ W < N)
 * @param K  keys [Hkv, N, d] row-major
 * @returns Float64Array [Hkv, N]; positions ≥ N−W are +Infinity
 */
export function snapkvScoresRef(
  Q: ArrayLike<number>,
  Hq: number,
  W: number,
  K: ArrayLike<number>,
  Hkv: number,
  N: number,
  d: number,
  opts: SnapkvOptions = {},
): Float64Array {
  for (const [name, v] of [['Hq', Hq], ['W', W], ['Hkv', Hkv], ['N', N], ['d', d]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`snapkvScoresRef: ${name} must be a positive integer, got ${v}`);
  }
  if (Hq % Hkv !== 0) throw new RangeError(`snapkvScoresRef: Hq (${Hq}) must be a multiple of Hkv (${Hkv})`);
  if (!(N > W)) throw new RangeError(`snapkvScoresRef: N (${N}) must be greater than W (${W})`);
  if (Q.length !== Hq * W * d) throw new RangeError(`snapkvScoresRef: Q.length must be Hq*W*d = ${Hq * W * d}, got ${Q.length}`);
  if (K.length !== Hkv * N * d) throw new RangeError(`snapkvScoresRef: K.length must be Hkv*N*d = ${Hkv * N * d}, got ${K.length}`);
  const kernel = opts.kernel ?? 5;
  const pool = opts.pool ?? 'avg';
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  if (!Number.isInteger(kernel) || kernel < 1) throw new RangeError(`snapkvScoresRef: kernel must be a positive integer, got ${kernel}`);
  if (pool !== 'avg' && pool !== 'max') throw new RangeError(`snapkvScoresRef: pool must be 'avg' or 'max', got ${String(pool)}`);
  if (!Number.isFinite(scale)) throw new RangeError(`snapkvScoresRef: scale must be finite, got ${scale}`);

  const G = Hq / Hkv;
  const L = N - W; // prefix length
  const pad = Math.floor(kernel / 2);
  const out = new Float64Array(Hkv * N);
  const logits = new Float64Array(N);
  const meanAttn = new Float64Array(L);

  for (let j = 0; j < Hq; j++) {
    const h = Math.floor(j / G);
    // steps 2–3: mean over the W window queries of the softmax row, prefix columns only
    meanAttn.fill(0);
    for (let t = 0; t < W; t++) {
      const visible = N - W + t + 1; // keys 0 … N−W+t
      let mx = -Infinity;
      for (let p = 0; p < visible; p++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += Q[(j * W + t) * d + c] * K[(h * N + p) * d + c];
        logits[p] = dot * scale;
        if (logits[p] > mx) mx = logits[p];
      }
      let z = 0;
      for (let p = 0; p < visible; p++) z += Math.exp(logits[p] - mx);
      for (let p = 0; p < L; p++) meanAttn[p] += Math.exp(logits[p] - mx) / z / W;
    }
    // step 4: pooling, then step 5: accumulate the GQA mean
    for (let i = 0; i < L; i++) {
      let acc = pool === 'avg' ? 0 : -Infinity;
      for (let q = i - pad; q <= i - pad + kernel - 1; q++) {
        if (q < 0 || q >= L) continue; // padding: 0 for avg (still divided by kernel), −∞ for max
        if (pool === 'avg') acc += meanAttn[q];
        else acc = Math.max(acc, meanAttn[q]);
      }
      const pooled = pool === 'avg' ? acc / kernel : acc;
      out[h * N + i] += pooled / G;
    }
  }
  // step 6: window always kept
  for (let h = 0; h < Hkv; h++) for (let i = L; i < N; i++) out[h * N + i] = Infinity;
  return out;
}
