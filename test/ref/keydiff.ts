/**
 * Float64 reference for KeyDiff scoring (test oracle).
 *
 * Written plainly from docs/methods/keydiff.md §3 (exact kvpress `KeyDiffPress`):
 *
 *   anchor_h   = mean_i ( k_i / max(‖k_i‖₂, ε) )          over all N tokens of head h
 *   score(h,i) = −cos(k_i, anchor_h)
 *              = −(k_i · anchor_h) / ( max(‖k_i‖, ε) · max(‖anchor_h‖, ε) ),   ε = 1e-12
 *
 * Higher score = more distinctive = keep. No sinks, no recent window (kvpress has none).
 * Everything is accumulated in float64, whatever the input array type.
 */

/** ε used for both norm clamps (docs/methods/keydiff.md §10 `EPS`). */
export const KEYDIFF_EPS = 1e-12;

function checkShape(K: ArrayLike<number>, H: number, N: number, d: number, fn: string): void {
  for (const [name, v] of [['H', H], ['N', N], ['d', d]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${fn}: ${name} must be a positive integer, got ${v}`);
  }
  if (K.length !== H * N * d) {
    throw new RangeError(`${fn}: K.length must be H*N*d = ${H * N * d}, got ${K.length}`);
  }
}

/**
 * KeyDiff scores, docs/methods/keydiff.md §3.
 *
 * @param K keys [H, N, d] row-major; element (h,i,c) at (h*N+i)*d+c
 * @returns Float64Array [H, N]; score(h,i) = −cos(k_i, mean of L2-normalised keys of head h)
 */
export function keydiffScoresRef(K: ArrayLike<number>, H: number, N: number, d: number): Float64Array {
  checkShape(K, H, N, d, 'keydiffScoresRef');
  const out = new Float64Array(H * N);
  const anchor = new Float64Array(d);
  const norms = new Float64Array(N);
  for (let h = 0; h < H; h++) {
    // norms of the raw keys, clamped at ε
    for (let i = 0; i < N; i++) {
      let ss = 0;
      for (let c = 0; c < d; c++) {
        const x = K[(h * N + i) * d + c];
        ss += x * x;
      }
      norms[i] = Math.max(Math.sqrt(ss), KEYDIFF_EPS);
    }
    // anchor = mean of the normalised keys
    anchor.fill(0);
    for (let i = 0; i < N; i++) {
      for (let c = 0; c < d; c++) anchor[c] += K[(h * N + i) * d + c] / norms[i];
    }
    let an = 0;
    for (let c = 0; c < d; c++) {
      anchor[c] /= N;
      an += anchor[c] * anchor[c];
    }
    const anchorNorm = Math.max(Math.sqrt(an), KEYDIFF_EPS);
    // score = −cos(k_i, anchor)
    for (let i = 0; i < N; i++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += K[(h * N + i) * d + c] * anchor[c];
      // "+ 0" turns a −0 (zero key) into +0; ranking treats them equal anyway.
      out[h * N + i] = -(dot / (norms[i] * anchorNorm)) + 0;
    }
  }
  return out;
}
