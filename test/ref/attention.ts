/**
 * Float64 reference for softmax attention over (optionally) a retained subset of a KV cache, plus
 * the fidelity helpers used by the tests (per-row relative error, median, quantiles).
 *
 * Conventions: queries [Hq, T, d], K [Hkv, N, d], V [Hkv, N, dv], all row-major. GQA: query head
 * j reads KV head floor(j / G) with G = Hq / Hkv (docs/methods/grkv.md §2, docs/methods/momentkv.md §2).
 */

/** Arguments of {@link attentionRef}. */
export interface AttentionRefArgs {
  /** Queries [Hq, T, d] (post-RoPE). */
  q: ArrayLike<number>;
  Hq: number;
  T: number;
  d: number;
  /** Keys [Hkv, N, d]. */
  K: ArrayLike<number>;
  /** Values [Hkv, N, dv]. */
  V: ArrayLike<number>;
  Hkv: number;
  N: number;
  dv: number;
  /** Per KV head, ascending distinct positions in [0, N) that are retained. Omitted: all N. */
  kept?: number[][];
  /** Per query t, its position: key position s is visible to query t only when s ≤ qpos[t]. */
  qpos?: ArrayLike<number>;
  /** Logit scale (usually 1/√d). */
  scale: number;
}

/** Checks that `kept` is a list of `Hkv` ascending, distinct, in-range position lists. */
export function checkKept(kept: number[][], Hkv: number, N: number, who: string): void {
  if (kept.length !== Hkv) {
    throw new RangeError(`${who}: kept must have ${Hkv} rows (one per KV head), got ${kept.length}`);
  }
  for (let h = 0; h < Hkv; h++) {
    const row = kept[h];
    for (let i = 0; i < row.length; i++) {
      const s = row[i];
      if (!Number.isInteger(s) || s < 0 || s >= N) {
        throw new RangeError(`${who}: kept[${h}][${i}] = ${s} is not a position in [0, ${N})`);
      }
      if (i > 0 && !(s > row[i - 1])) {
        throw new RangeError(`${who}: kept[${h}] must be strictly ascending (at index ${i})`);
      }
    }
  }
}

/**
 * Softmax attention, float64. For each query head j (KV head h = floor(j/G)) and query t, attend
 * over the retained positions of head h (all N when `kept` is omitted) that are visible
 * (s ≤ qpos[t] when `qpos` is given):
 *   ℓ_s = scale·q_{j,t}·k_{h,s};  lse = log Σ_s exp ℓ_s  (max-subtracted);  out = Σ_s e^{ℓ_s−lse} v_{h,s}.
 * Returns `out` [Hq, T, dv] and `lse` [Hq, T]. A query with no visible key gets out = 0 and
 * lse = −Infinity. (docs/methods/grkv.md §2 attention; docs/methods/momentkv.md §4.4 o_R and lse_R.)
 */
export function attentionRef(args: AttentionRefArgs): { out: Float64Array; lse: Float64Array } {
  const { q, Hq, T, d, K, V, Hkv, N, dv, kept, qpos, scale } = args;
  if (Hq % Hkv !== 0) throw new RangeError(`attentionRef: Hq=${Hq} is not a multiple of Hkv=${Hkv}`);
  if (q.length !== Hq * T * d) throw new RangeError(`attentionRef: q.length ${q.length} != Hq*T*d`);
  if (K.length !== Hkv * N * d) throw new RangeError(`attentionRef: K.length ${K.length} != Hkv*N*d`);
  if (V.length !== Hkv * N * dv) throw new RangeError(`attentionRef: V.length ${V.length} != Hkv*N*dv`);
  if (qpos !== undefined && qpos.length !== T) {
    throw new RangeError(`attentionRef: qpos.length ${qpos.length} != T=${T}`);
  }
  if (kept !== undefined) checkKept(kept, Hkv, N, 'attentionRef');
  const G = Hq / Hkv;
  const out = new Float64Array(Hq * T * dv);
  const lse = new Float64Array(Hq * T);
  const all = Array.from({ length: N }, (_, i) => i);
  for (let j = 0; j < Hq; j++) {
    const h = Math.floor(j / G);
    const pos = kept ? kept[h] : all;
    for (let t = 0; t < T; t++) {
      const qo = (j * T + t) * d;
      const lim = qpos ? qpos[t] : Infinity;
      const vis: number[] = [];
      const logit: number[] = [];
      for (const s of pos) {
        if (s > lim) continue;
        let dot = 0;
        const ko = (h * N + s) * d;
        for (let c = 0; c < d; c++) dot += q[qo + c] * K[ko + c];
        vis.push(s);
        logit.push(dot * scale);
      }
      const oo = (j * T + t) * dv;
      if (vis.length === 0) {
        lse[j * T + t] = -Infinity;
        continue;
      }
      let m = -Infinity;
      for (const l of logit) m = Math.max(m, l);
      let z = 0;
      for (let i = 0; i < vis.length; i++) {
        const w = Math.exp(logit[i] - m);
        z += w;
        const vo = (h * N + vis[i]) * dv;
        for (let c = 0; c < dv; c++) out[oo + c] += w * V[vo + c];
      }
      for (let c = 0; c < dv; c++) out[oo + c] /= z;
      lse[j * T + t] = m + Math.log(z);
    }
  }
  return { out, lse };
}

/**
 * Per-row relative error ‖o − o_ref‖ / ‖o_ref‖ for `rows` rows of length `dv`.
 * A row whose reference is exactly zero gets 0 when o equals it and +Infinity otherwise.
 */
export function relativeErrors(
  out: ArrayLike<number>,
  ref: ArrayLike<number>,
  rows: number,
  dv: number,
): Float64Array {
  if (out.length < rows * dv || ref.length < rows * dv) {
    throw new RangeError(`relativeErrors: need ${rows * dv} elements`);
  }
  const e = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let num = 0;
    let den = 0;
    for (let c = 0; c < dv; c++) {
      const x = out[i * dv + c] - ref[i * dv + c];
      num += x * x;
      den += ref[i * dv + c] * ref[i * dv + c];
    }
    e[i] = den > 0 ? Math.sqrt(num / den) : num === 0 ? 0 : Infinity;
  }
  return e;
}

/**
 * The p-quantile (0 ≤ p ≤ 1) of the values, with linear interpolation between order statistics
 * (numpy's default "linear" method). Throws on an empty input.
 */
export function quantile(xs: ArrayLike<number>, p: number): number {
  if (xs.length === 0) throw new RangeError('quantile: empty input');
  if (!(p >= 0 && p <= 1)) throw new RangeError(`quantile: p=${p} outside [0, 1]`);
  const s = Array.from(xs).sort((a, b) => a - b);
  const x = p * (s.length - 1);
  const lo = Math.floor(x);
  const hi = Math.min(lo + 1, s.length - 1);
  if (x === lo || hi === lo) return s[lo];
  return s[lo] + (x - lo) * (s[hi] - s[lo]);
}

/** The median, i.e. {@link quantile}(xs, 0.5). */
export function median(xs: ArrayLike<number>): number {
  return quantile(xs, 0.5);
}
