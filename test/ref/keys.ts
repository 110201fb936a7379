// Synthetic key sets and a rank helper shared by the tests of the scoring references (keydiff-ref, nestedkv-ref).
import type { Rng } from '../../lib/rng';

/** 1/√2, the cosine of hand-built 45° keys. */
export const S2 = Math.SQRT1_2;

/** Gaussian keys [H, N, d]. */
export function randomKeys(rng: Rng, H: number, N: number, d: number): Float64Array {
  return rng.normals64(H * N * d);
}

/** keys with a per-head bias direction so that cosines are not all ~0 */
export function biasedKeys(rng: Rng, H: number, N: number, d: number, bias = 1): Float64Array {
  const K = rng.normals64(H * N * d, 1 / Math.sqrt(d));
  for (let h = 0; h < H; h++) {
    const u = rng.normals64(d, 1 / Math.sqrt(d));
    for (let i = 0; i < N; i++) for (let c = 0; c < d; c++) K[(h * N + i) * d + c] += bias * u[c];
  }
  return K;
}

/** rank of (h, p) in a head: number of tokens of that head with a strictly larger value */
export function rankInHead(x: ArrayLike<number>, N: number, h: number, p: number): number {
  let r = 0;
  for (let j = 0; j < N; j++) if (x[h * N + j] > x[h * N + p]) r++;
  return r;
}
