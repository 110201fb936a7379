/**
 * Float64 reference of the normalisation-corrected decode attention (docs/methods/momentkv.md §4.4, §8) over a compacted
 * cache and the moment state of the evicted tokens.
 *
 * Conventions: queries [Hq, T, d], compacted K [Hkv, cap, d], V [Hkv, cap, dv]; GQA query head j uses KV head
 * floor(j / G). Everything is float64 and row-major; inputs are never modified.
 */
import type { MomentStateRef } from './moments';

/** Numerically stable logistic function 1 / (1 + e^{−x}). */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** Arguments of {@link decodeAttentionRef}. */
export interface DecodeAttentionRefArgs {
  /** Decode queries [Hq, T, d] (post-RoPE). */
  q: ArrayLike<number>;
  Hq: number;
  T: number;
  d: number;
  /** Compacted retained keys [Hkv, cap, d]; only the first counts[h] rows of head h are used. */
  K_R: ArrayLike<number>;
  /** Compacted retained values [Hkv, cap, dv]. */
  V_R: ArrayLike<number>;
  Hkv: number;
  cap: number;
  dv: number;
  /** Retained rows per KV head, each in [0, cap]. */
  counts: ArrayLike<number>;
  /** Evicted-set summary; omitted means no correction (plain attention). */
  moments?: MomentStateRef;
  /** 0: evicted output mu_v (mass + mean only); 1: mu_v + C a (docs/methods/momentkv.md §4.2). */
  order: 0 | 1;
  /** Logit scale; a = q·scale. */
  scale: number;
  /** Optional per-KV-head ball clip R_v: C a is scaled to norm ≤ clip[h] (docs/methods/momentkv.md §8). */
  clip?: ArrayLike<number>;
}

/**
 * Normalisation-corrected decode attention (docs/methods/momentkv.md §4.4, §13 `nc_decode_attention`),
 * float64, for T queries per head. For query head j (KV head h = floor(j/G)) and a = q·scale:
 *   lse_R, o_R  = exact attention over the first counts[h] retained rows;
 *   ℓ_E = log n_h + a·mu_k[h];  λ = sigmoid(lse_R − ℓ_E);
 *   o   = λ·o_R + (1−λ)·(mu_v[h] + C[h] a)       (order 0 drops C a; C = M/n).
 * Special cases: n_h = 0 (or no moments) → o = o_R; counts[h] = 0 and n_h > 0 → o = summary alone
 * (λ = 0); counts[h] = 0 and n_h = 0 → o = 0. With `clip`, C a is multiplied by
 * min(1, clip[h]/max(‖C a‖, 1e-12)) (docs/methods/momentkv.md §8; not in the paper). Returns [Hq, T, dv].
 */
export function decodeAttentionRef(args: DecodeAttentionRefArgs): Float64Array {
  const { q, Hq, T, d, K_R, V_R, Hkv, cap, dv, counts, moments, order, scale, clip } = args;
  if (Hq % Hkv !== 0) throw new RangeError(`decodeAttentionRef: Hq=${Hq} not a multiple of Hkv=${Hkv}`);
  if (q.length !== Hq * T * d) throw new RangeError('decodeAttentionRef: q.length != Hq*T*d');
  if (K_R.length !== Hkv * cap * d) throw new RangeError('decodeAttentionRef: K_R.length != Hkv*cap*d');
  if (V_R.length !== Hkv * cap * dv) throw new RangeError('decodeAttentionRef: V_R.length != Hkv*cap*dv');
  if (counts.length !== Hkv) throw new RangeError('decodeAttentionRef: counts.length != Hkv');
  if (moments && (moments.H !== Hkv || moments.d !== d || moments.dv !== dv)) {
    throw new RangeError('decodeAttentionRef: moments shape does not match (Hkv, d, dv)');
  }
  if (order !== 0 && order !== 1) throw new RangeError(`decodeAttentionRef: order must be 0 or 1`);
  const G = Hq / Hkv;
  const out = new Float64Array(Hq * T * dv);
  const a = new Float64Array(d);
  const oR = new Float64Array(dv);
  const oE = new Float64Array(dv);
  for (let j = 0; j < Hq; j++) {
    const h = Math.floor(j / G);
    const L = counts[h];
    if (!(Number.isInteger(L) && L >= 0 && L <= cap)) {
      throw new RangeError(`decodeAttentionRef: counts[${h}] = ${L} outside [0, ${cap}]`);
    }
    const n = moments ? moments.n[h] : 0;
    for (let t = 0; t < T; t++) {
      const qo = (j * T + t) * d;
      for (let c = 0; c < d; c++) a[c] = q[qo + c] * scale;
      // exact retained attention
      oR.fill(0);
      let lseR = -Infinity;
      if (L > 0) {
        const logit = new Float64Array(L);
        let m = -Infinity;
        for (let s = 0; s < L; s++) {
          let dot = 0;
          const ko = (h * cap + s) * d;
          for (let c = 0; c < d; c++) dot += a[c] * K_R[ko + c];
          logit[s] = dot;
          m = Math.max(m, dot);
        }
        let z = 0;
        for (let s = 0; s < L; s++) {
          const w = Math.exp(logit[s] - m);
          z += w;
          const vo = (h * cap + s) * dv;
          for (let c = 0; c < dv; c++) oR[c] += w * V_R[vo + c];
        }
        for (let c = 0; c < dv; c++) oR[c] /= z;
        lseR = m + Math.log(z);
      }
      const oo = (j * T + t) * dv;
      if (!moments || n === 0) {
        for (let c = 0; c < dv; c++) out[oo + c] = oR[c];
        continue;
      }
      // evicted summary
      let amu = 0;
      for (let c = 0; c < d; c++) amu += a[c] * moments.muK[h * d + c];
      const ellE = Math.log(n) + amu;
      for (let c = 0; c < dv; c++) oE[c] = moments.muV[h * dv + c];
      if (order === 1) {
        const corr = new Float64Array(dv);
        const base = h * dv * d;
        for (let r = 0; r < dv; r++) {
          let s = 0;
          for (let c = 0; c < d; c++) s += moments.M[base + r * d + c] * a[c];
          corr[r] = s / n;
        }
        if (clip) {
          let nr = 0;
          for (let r = 0; r < dv; r++) nr += corr[r] * corr[r];
          nr = Math.sqrt(nr);
          const f = Math.min(1, clip[h] / Math.max(nr, 1e-12));
          for (let r = 0; r < dv; r++) corr[r] *= f;
        }
        for (let r = 0; r < dv; r++) oE[r] += corr[r];
      }
      const lam = L > 0 ? sigmoid(lseR - ellE) : 0;
      for (let c = 0; c < dv; c++) out[oo + c] = lam * oR[c] + (1 - lam) * oE[c];
    }
  }
  return out;
}
