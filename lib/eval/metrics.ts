/**
 * Fidelity metric: relative error of the attention output of queries over a compressed cache against the full
 * cache, ‖o − o_full‖ / ‖o_full‖ per (query head, query), through `decodeAttention` on either backend.
 */
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, tensor, toDevice, toHost, hostContiguous } from '../tensor';
import { show } from '../validate';
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

/** Runs decodeAttention on the compressed cache, naming its arguments `compressed.*` in errors. */
function decodeCompressed(args: Parameters<typeof decodeAttention>[0]): Tensor {
  try {
    return decodeAttention(args);
  } catch (e) {
    if (e instanceof Error && /^(keys|values|counts|moments)[:.[]/.test(e.message)) e.message = `compressed.${e.message}`;
    throw e;
  }
}

export async function attentionError(args: AttentionErrorArgs): Promise<AttentionErrors> {
  const o = opts('args', args, ['queries', 'keys', 'values', 'compressed', 'order', 'scale', 'reference', 'stream']) as unknown as AttentionErrorArgs;
  const q = checkDtype('queries', asTensor('queries', o.queries), ['f32', 'f16', 'bf16']);
  if (q.ndim !== 2 && q.ndim !== 3) throw new TypeError(`queries: expected a 2-D [Hq, d] or 3-D [Hq, T, d] tensor, got ${q.ndim}-D [${q.shape.join(', ')}]`);
  const k = checkDtype('keys', checkRank('keys', asTensor('keys', o.keys), 3, '[H, N, d]'), ['f32', 'f16', 'bf16']);
  const v = checkDtype('values', checkRank('values', asTensor('values', o.values), 3, '[H, N, dv]'), ['f32', 'f16', 'bf16']);
  const [H, N, d] = k.shape;
  const dv = v.shape[2];
  if (v.shape[0] !== H || v.shape[1] !== N) throw new RangeError(`values: expected shape [${H}, ${N}, dv] (H and N of keys), got [${v.shape.join(', ')}]`);
  if (o.compressed === null || typeof o.compressed !== 'object') throw new TypeError(`compressed: expected { keys, values, counts, moments? }, got ${show(o.compressed)}`);
  const c = o.compressed;
  const ck = checkRank('compressed.keys', asTensor('compressed.keys', c.keys), 3, '[H, cap, d]');
  const cv = checkRank('compressed.values', asTensor('compressed.values', c.values), 3, '[H, cap, dv]');
  const cc = checkDtype('compressed.counts', checkRank('compressed.counts', asTensor('compressed.counts', c.counts), 1, '[H]'), ['i32']);
  if (ck.shape[0] !== H || ck.shape[2] !== d) throw new RangeError(`compressed.keys: expected shape [${H}, cap, ${d}] (H and d of keys), got [${ck.shape.join(', ')}]`);
  if (cv.shape[0] !== H || cv.shape[1] !== ck.shape[1] || cv.shape[2] !== dv) {
    throw new RangeError(`compressed.values: expected shape [${H}, ${ck.shape[1]}, ${dv}] (H of keys, cap of compressed.keys, dv of values), got [${cv.shape.join(', ')}]`);
  }
  if (cc.shape[0] !== H) throw new RangeError(`compressed.counts: expected shape [${H}], got [${cc.shape.join(', ')}]`);
  const outShape = q.ndim === 3 ? [q.shape[0], q.shape[1], dv] : [q.shape[0], dv];
  let ref: Tensor;
  if (o.reference !== undefined) {
    ref = checkDtype('reference', asTensor('reference', o.reference), ['f32']);
    if (ref.ndim !== outShape.length || ref.shape.some((x, i) => x !== outShape[i])) {
      throw new RangeError(`reference: expected shape [${outShape.join(', ')}] (the full-cache output of these queries), got [${ref.shape.join(', ')}]`);
    }
  } else {
    ref = fullAttention(q, k, v, o.scale, o.stream);
  }
  const got = decodeCompressed({ queries: q, keys: ck, values: cv, counts: cc, moments: c.moments, order: o.order, scale: o.scale, stream: o.stream });
  const a = hostContiguous(await toHost(got, { stream: o.stream })), b = hostContiguous(await toHost(ref, { stream: o.stream }));
  return summarize(rowErrors(a, b, a.length / Math.max(dv, 1), dv));
}
