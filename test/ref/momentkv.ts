/**
 * Float64 references for MomentKV (spec/momentkv.md): the per-KV-head moment state of the evicted
 * tokens and its exact streaming (Chan) update (§4.1, §4.3), the normalisation-corrected decode
 * attention (§4.4, §8), the moment-informed eviction factor (§5.2) and the multi-round eviction
 * (§5.3, §13 `evict_prefill`, generalised to arbitrary protected tokens).
 *
 * Conventions: K [Hkv, N, d], V [Hkv, N, dv], queries [Hq, T, d]; GQA query head j uses KV head
 * floor(j / G). Everything is float64 and row-major; inputs are never modified (except the state
 * passed to `momentsMergeRef`, which is updated in place by design).
 */
import { topLeftSingularVectorsRef } from './linalg';

/**
 * Moment state of the evicted set, one slot per KV head (spec/momentkv.md §4.1):
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

/** An empty moment state (n = 0 everywhere) for H KV heads (spec/momentkv.md §13 `moments_init`). */
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
 * For m = 0: n = 0 and all zeros. This is the direct definition of spec/momentkv.md §4.1, used to
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
 * pairwise update (spec/momentkv.md §4.3): the batch's own mean and co-moment are computed
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
  /** 0: evicted output mu_v (mass + mean only); 1: mu_v + C a (spec §4.2). */
  order: 0 | 1;
  /** Logit scale; a = q·scale. */
  scale: number;
  /** Optional per-KV-head ball clip R_v: C a is scaled to norm ≤ clip[h] (spec §8). */
  clip?: ArrayLike<number>;
}

/**
 * Normalisation-corrected decode attention (spec/momentkv.md §4.4, §13 `nc_decode_attention`),
 * float64, for T queries per head. For query head j (KV head h = floor(j/G)) and a = q·scale:
 *   lse_R, o_R  = exact attention over the first counts[h] retained rows;
 *   ℓ_E = log n_h + a·mu_k[h];  λ = sigmoid(lse_R − ℓ_E);
 *   o   = λ·o_R + (1−λ)·(mu_v[h] + C[h] a)       (order 0 drops C a; C = M/n).
 * Special cases: n_h = 0 (or no moments) → o = o_R; counts[h] = 0 and n_h > 0 → o = summary alone
 * (λ = 0); counts[h] = 0 and n_h = 0 → o = 0. With `clip`, C a is multiplied by
 * min(1, clip[h]/max(‖C a‖, 1e-12)) (spec §8; not in the paper). Returns [Hq, T, dv].
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

/**
 * Orthonormal basis (rows of a [k, dv] array, k ≤ r+1) of the summary subspace of KV head h
 * (spec/momentkv.md §5.2): Gram–Schmidt (with one re-orthogonalisation pass) over
 * [mu_v, u_1, …, u_r], where u_i are the top-r left singular vectors of C = M/n.
 * A singular vector is used only when its singular value is > 0 and ≥ 1e-6·σ_1 (vectors of a zero
 * or rank-deficient C are arbitrary, e.g. C = 0 when n = 1). A candidate whose Gram–Schmidt
 * remainder has norm ≤ 1e-6·(its norm), or which is zero, is dropped. Empty when n = 0.
 */
export function summaryBasisRef(S: MomentStateRef, h: number, r = 1): Float64Array[] {
  const { d, dv } = S;
  const n = S.n[h];
  if (n === 0) return [];
  const cand: Float64Array[] = [S.muV.slice(h * dv, (h + 1) * dv)];
  if (r > 0) {
    const C = new Float64Array(dv * d);
    for (let i = 0; i < dv * d; i++) C[i] = S.M[h * dv * d + i] / n;
    const { vectors, values } = topLeftSingularVectorsRef(C, dv, d, Math.min(r, dv));
    for (let i = 0; i < Math.min(r, dv); i++) {
      if (values[i] > 0 && values[i] >= 1e-6 * values[0]) cand.push(vectors.slice(i * dv, (i + 1) * dv));
    }
  }
  const basis: Float64Array[] = [];
  for (const c of cand) {
    let cn = 0;
    for (let i = 0; i < dv; i++) cn += c[i] * c[i];
    cn = Math.sqrt(cn);
    if (!(cn > 0)) continue;
    const w = c.slice();
    for (let pass = 0; pass < 2; pass++) {
      for (const b of basis) {
        let p = 0;
        for (let i = 0; i < dv; i++) p += b[i] * w[i];
        for (let i = 0; i < dv; i++) w[i] -= p * b[i];
      }
    }
    let wn = 0;
    for (let i = 0; i < dv; i++) wn += w[i] * w[i];
    wn = Math.sqrt(wn);
    if (!(wn > 1e-6 * cn)) continue;
    for (let i = 0; i < dv; i++) w[i] /= wn;
    basis.push(w);
  }
  return basis;
}

/**
 * Moment-informed eviction factor (spec/momentkv.md §5.2, §13 `mi_factor`) for m candidate rows
 * Vcand [m, dv] of KV head h: with P the orthogonal projector onto {@link summaryBasisRef}(S, h, r),
 * ρ_i = ‖v_i − P v_i‖ and factor_i = ρ_i + eps·mean_j ρ_j. All ones when n_h = 0.
 */
export function miFactorRef(
  Vcand: ArrayLike<number>,
  S: MomentStateRef,
  h: number,
  r = 1,
  eps = 0.05,
): Float64Array {
  const dv = S.dv;
  const m = Vcand.length / dv;
  if (!Number.isInteger(m)) throw new RangeError(`miFactorRef: Vcand.length not a multiple of dv=${dv}`);
  const out = new Float64Array(m);
  if (S.n[h] === 0) return out.fill(1);
  const basis = summaryBasisRef(S, h, r);
  const w = new Float64Array(dv);
  let mean = 0;
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < dv; c++) w[c] = Vcand[i * dv + c];
    for (const b of basis) {
      let p = 0;
      for (let c = 0; c < dv; c++) p += b[c] * Vcand[i * dv + c];
      for (let c = 0; c < dv; c++) w[c] -= p * b[c];
    }
    let s = 0;
    for (let c = 0; c < dv; c++) s += w[c] * w[c];
    out[i] = Math.sqrt(s);
    mean += out[i];
  }
  if (m > 0) mean /= m;
  for (let i = 0; i < m; i++) out[i] += eps * mean;
  return out;
}

/** Arguments of {@link momentkvSelectRef}. */
export interface MomentkvSelectArgs {
  /** Base (SnapKV) scores [Hkv, N]; +Infinity marks a protected token (never evicted). */
  scores: ArrayLike<number>;
  K: ArrayLike<number>;
  V: ArrayLike<number>;
  Hkv: number;
  N: number;
  d: number;
  dv: number;
  /** Tokens kept per KV head, protected ones included (a number, or one per head). */
  keep: number | ArrayLike<number>;
  rounds?: number;
  r?: number;
  eps?: number;
  mi?: boolean;
}

/**
 * Multi-round moment-informed eviction (spec/momentkv.md §5.3, §13 `evict_prefill`, generalised):
 * per KV head, candidates are the alive tokens with a finite score; the excess N − keep is evicted
 * in `rounds` rounds, round rd (0-based) evicting m = ceil(remaining / (rounds − rd)) candidates
 * with the LOWEST score·factor, where factor = {@link miFactorRef} of the candidates' values against
 * the state at the START of the round (all ones while n = 0). Ties: the higher position is evicted
 * first. After each round its evicted rows (ascending positions, one batch) are merged into the
 * moments with {@link momentsMergeRef}. mi = false: one round, factor 1 (plain score eviction),
 * moments still built. keep ≥ N: nothing evicted.
 *
 * Returns `kept` (ascending positions per head), the final `moments`, and `evicted[h][rd]`
 * (ascending positions evicted in each round). Throws RangeError if N − keep exceeds the number of
 * unprotected tokens, or a score is NaN or −Infinity.
 */
export function momentkvSelectRef(args: MomentkvSelectArgs): {
  kept: number[][];
  moments: MomentStateRef;
  evicted: number[][][];
} {
  const { scores, K, V, Hkv, N, d, dv } = args;
  const mi = args.mi ?? true;
  const rounds = mi ? (args.rounds ?? 4) : 1;
  const r = args.r ?? 1;
  const eps = args.eps ?? 0.05;
  if (scores.length !== Hkv * N) throw new RangeError('momentkvSelectRef: scores.length != Hkv*N');
  if (K.length !== Hkv * N * d) throw new RangeError('momentkvSelectRef: K.length != Hkv*N*d');
  if (V.length !== Hkv * N * dv) throw new RangeError('momentkvSelectRef: V.length != Hkv*N*dv');
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`momentkvSelectRef: rounds=${rounds}`);
  const S = momentsInitRef(Hkv, d, dv);
  const kept: number[][] = [];
  const evicted: number[][][] = [];
  for (let h = 0; h < Hkv; h++) {
    const keepH = typeof args.keep === 'number' ? args.keep : args.keep[h];
    if (!(Number.isInteger(keepH) && keepH >= 0)) throw new RangeError(`momentkvSelectRef: keep=${keepH}`);
    let alive: number[] = [];
    let nProtected = 0;
    for (let s = 0; s < N; s++) {
      const x = scores[h * N + s];
      if (Number.isNaN(x) || x === -Infinity) {
        throw new RangeError(`momentkvSelectRef: scores[${h}, ${s}] = ${x} (must be finite or +Infinity)`);
      }
      if (x === Infinity) nProtected++;
      else alive.push(s);
    }
    const excess = Math.max(0, N - keepH);
    if (excess > alive.length) {
      throw new RangeError(
        `momentkvSelectRef: head ${h}: keep=${keepH} is below the ${nProtected} protected tokens`,
      );
    }
    const rows: number[][] = [];
    let done = 0;
    for (let rd = 0; rd < rounds; rd++) {
      const m = Math.ceil((excess - done) / (rounds - rd));
      if (m <= 0) break;
      const Vc = new Float64Array(alive.length * dv);
      for (let i = 0; i < alive.length; i++) {
        for (let c = 0; c < dv; c++) Vc[i * dv + c] = V[(h * N + alive[i]) * dv + c];
      }
      const factor = mi ? miFactorRef(Vc, S, h, r, eps) : new Float64Array(alive.length).fill(1);
      const order = alive.map((s, i) => ({ s, key: scores[h * N + s] * factor[i] }));
      order.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : y.s - x.s));
      const drop = order.slice(0, m).map((o) => o.s).sort((x, y) => x - y);
      const Kd = new Float64Array(m * d);
      const Vd = new Float64Array(m * dv);
      drop.forEach((s, i) => {
        for (let c = 0; c < d; c++) Kd[i * d + c] = K[(h * N + s) * d + c];
        for (let c = 0; c < dv; c++) Vd[i * dv + c] = V[(h * N + s) * dv + c];
      });
      momentsMergeRef(S, h, Kd, Vd);
      const dropSet = new Set(drop);
      alive = alive.filter((s) => !dropSet.has(s));
      done += m;
      rows.push(drop);
    }
    const evictedAll = new Set(rows.flat());
    const keptH: number[] = [];
    for (let s = 0; s < N; s++) if (!evictedAll.has(s)) keptH.push(s);
    kept.push(keptH);
    evicted.push(rows);
  }
  return { kept, moments: S, evicted };
}
