/**
 * Fidelity metric: relative error of the attention output of queries over a compressed cache against the full
 * cache, ‖o − o_full‖ / ‖o_full‖ per (query head, query), through `decodeAttention` on either backend.
 */
import { Tensor, TensorLike, asTensor, tensor, toDevice, toHost, hostContiguous } from '../tensor';
import { decodeAttention } from '../ops/decode';
import type { MomentTensors } from '../ops/moments';
import type { Stream } from '../device';
import { opts } from '../ops/common';

export interface AttentionErrorArgs {
  /** Queries [Hq, T, d] (or [Hq, d]), post-RoPE, attending the whole cache. */
  queries: Tensor | TensorLike;
  /** Full cache [H, N, d] / [H, N, dv]. */
  keys: Tensor | TensorLike;
  values: Tensor | TensorLike;
  /** The compressed cache (e.g. a compress() result): keys [H, cap, d], values, counts, and moments if any. */
  compressed: { keys: Tensor | TensorLike; values: Tensor | TensorLike; counts: Tensor | TensorLike; moments?: MomentTensors };
  /** decodeAttention order for the moment summary (default 1). */
  order?: 0 | 1;
  scale?: number;
  /** A precomputed full-cache output [Hq, T, dv] (host or device) to skip recomputing it. */
  reference?: Tensor | TensorLike;
  stream?: Stream;
}

export interface AttentionErrors {
  /** per (query head, query) relative error, row-major [Hq, T] */
  errors: Float64Array;
  median: number;
  p90: number;
  mean: number;
  max: number;
}

export function quantile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return NaN;
  const x = p * (sorted.length - 1), lo = Math.floor(x), hi = Math.ceil(x);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo);
}

/** Relative errors of rows of `got` against `ref` (both [rows, dv], contiguous). */
export function rowErrors(got: ArrayLike<number>, ref: ArrayLike<number>, rows: number, dv: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let num = 0, den = 0;
    for (let x = 0; x < dv; x++) {
      const a = got[r * dv + x], b = ref[r * dv + x];
      num += (a - b) * (a - b);
      den += b * b;
    }
    out[r] = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
  }
  return out;
}

export function summarize(errors: Float64Array): AttentionErrors {
  const s = Float64Array.from(errors).sort();
  let sum = 0;
  for (const e of errors) sum += e;
  return { errors, median: quantile(s, 0.5), p90: quantile(s, 0.9), mean: sum / Math.max(1, errors.length), max: s.length ? s[s.length - 1] : NaN };
}

/** Full-cache attention output [Hq, T, dv] of `queries` (plain attention over all N positions). */
export function fullAttention(queries: Tensor, keys: Tensor, values: Tensor, scale?: number, stream?: Stream): Tensor {
  const [H, N] = keys.shape;
  const all = tensor(new Int32Array(H).fill(N), [H]);
  const counts = keys.device.kind === 'cuda' ? toDevice(all, { device: keys.device.id, stream }) : all;
  return decodeAttention({ queries, keys, values, counts, scale, stream });
}

export async function attentionError(args: AttentionErrorArgs): Promise<AttentionErrors> {
  const o = opts('args', args, ['queries', 'keys', 'values', 'compressed', 'order', 'scale', 'reference', 'stream']) as unknown as AttentionErrorArgs;
  const q = asTensor('queries', o.queries), k = asTensor('keys', o.keys), v = asTensor('values', o.values);
  if (o.compressed === null || typeof o.compressed !== 'object') throw new TypeError('compressed: expected { keys, values, counts, moments? }');
  const c = o.compressed;
  const ref = o.reference !== undefined ? asTensor('reference', o.reference) : fullAttention(q, k, v, o.scale, o.stream);
  const got = decodeAttention({ queries: q, keys: c.keys, values: c.values, counts: c.counts, moments: c.moments, order: o.order, scale: o.scale, stream: o.stream });
  const dv = v.shape[2];
  const a = hostContiguous(await toHost(got, { stream: o.stream })), b = hostContiguous(await toHost(ref, { stream: o.stream }));
  if (a.length !== b.length) throw new RangeError(`reference: expected ${a.length} elements ([Hq, T, dv]), got ${b.length}`);
  return summarize(rowErrors(a, b, a.length / dv, dv));
}
