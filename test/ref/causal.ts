/**
 * Float64 reference of the causal split evaluation (README "Evaluation"): a held-out query at position p ≥ S
 * attends, for its KV head h, the compressed prefix (rows 0..counts[h)−1 of K_R/V_R, corrected by the moment
 * summary when there is one) together with the uncompressed rows S..min(p, N−1) of the full cache, and is compared
 * with plain causal attention over rows 0..min(p, N−1). Written from that definition, without lib/.
 */
import { attentionRef, relativeErrors } from './attention';
import { decodeAttentionRef } from './decode';
import type { MomentStateRef } from './moments';

export interface CausalSplitRefArgs {
  /** full cache [Hkv, N, d] / [Hkv, N, dv] */
  K: ArrayLike<number>;
  V: ArrayLike<number>;
  Hkv: number;
  N: number;
  d: number;
  dv: number;
  /** held-out queries [Hq, T, d] at positions qpos[t] ≥ S */
  q: ArrayLike<number>;
  Hq: number;
  T: number;
  qpos: ArrayLike<number>;
  S: number;
  /** the compressed prefix: rows [Hkv, cap, d] / [Hkv, cap, dv], counts per head, optional moment summary */
  K_R: ArrayLike<number>;
  V_R: ArrayLike<number>;
  cap: number;
  counts: ArrayLike<number>;
  moments?: MomentStateRef;
  scale: number;
}

/** Per (query head, query) relative errors [Hq, T] of the compressed-prefix attention against the full causal cache. */
export function causalSplitErrorsRef(a: CausalSplitRefArgs): Float64Array {
  const { K, V, Hkv, N, d, dv, q, Hq, T, qpos, S, K_R, V_R, cap, counts, moments, scale } = a;
  const got = new Float64Array(Hq * T * dv);
  for (let t = 0; t < T; t++) {
    const p = qpos[t];
    if (!(p >= S)) throw new RangeError(`causalSplitErrorsRef: query ${t} at ${p} is before the split ${S}`);
    const suffix: number[] = [];
    for (let s = S; s <= Math.min(p, N - 1); s++) suffix.push(s);
    // retained rows of this query: the compressed prefix of each head, then its visible suffix rows
    const R = cap + suffix.length;
    const Kq = new Float64Array(Hkv * R * d), Vq = new Float64Array(Hkv * R * dv), cq = new Int32Array(Hkv);
    for (let h = 0; h < Hkv; h++) {
      for (let r = 0; r < counts[h]; r++) {
        for (let c = 0; c < d; c++) Kq[(h * R + r) * d + c] = K_R[(h * cap + r) * d + c];
        for (let c = 0; c < dv; c++) Vq[(h * R + r) * dv + c] = V_R[(h * cap + r) * dv + c];
      }
      suffix.forEach((s, i) => {
        const r = counts[h] + i;
        for (let c = 0; c < d; c++) Kq[(h * R + r) * d + c] = K[(h * N + s) * d + c];
        for (let c = 0; c < dv; c++) Vq[(h * R + r) * dv + c] = V[(h * N + s) * dv + c];
      });
      cq[h] = counts[h] + suffix.length;
    }
    const qt = new Float64Array(Hq * d);
    for (let j = 0; j < Hq; j++) for (let c = 0; c < d; c++) qt[j * d + c] = q[(j * T + t) * d + c];
    const o = decodeAttentionRef({ q: qt, Hq, T: 1, d, K_R: Kq, V_R: Vq, Hkv, cap: R, dv, counts: cq, moments, order: 1, scale });
    for (let j = 0; j < Hq; j++) for (let c = 0; c < dv; c++) got[(j * T + t) * dv + c] = o[j * dv + c];
  }
  const ref = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, qpos, scale }).out;
  return relativeErrors(got, ref, Hq * T, dv);
}
