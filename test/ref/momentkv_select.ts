/**
 * Float64 references of the moment-informed eviction (docs/methods/momentkv.md §5.2): the summary subspace, the MI factor,
 * and the multi-round eviction (docs/methods/momentkv.md §5.3, §13 `evict_prefill`, generalised to arbitrary protected tokens).
 *
 * Conventions: scores [Hkv, N], K [Hkv, N, d], V [Hkv, N, dv]. Everything is float64 and row-major; inputs are never
 * modified (except a moment state passed in, which is updated in place by design).
 */
import { topLeftSingularVectorsRef } from './linalg';
import { MomentStateRef, momentsInitRef, momentsMergeRef } from './moments';

/**
 * Orthonormal basis (rows of a [k, dv] array, k ≤ r+1) of the summary subspace of KV head h
 * (docs/methods/momentkv.md §5.2): Gram–Schmidt (with one re-orthogonalisation pass) over
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
 * Moment-informed eviction factor (docs/methods/momentkv.md §5.2, §13 `mi_factor`) for m candidate rows
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
 * Multi-round moment-informed eviction (docs/methods/momentkv.md §5.3, §13 `evict_prefill`, generalised):
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
