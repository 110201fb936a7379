/**
 * SnapKV (Li et al., 2024; docs/methods/snapkv.md §3.1, exactly kvpress `SnapKVPress.score`): the observation-window
 * queries (positions N−W … N−1, causal inside the window) attend over all N keys; the softmax rows are averaged
 * over the window, restricted to the prefix [0, N−W), pooled along the sequence (kernel 5, stride 1, avg with the
 * zero padding counted, or max), and averaged over the G query heads of each KV head (GQA). The W window
 * positions get +Infinity (always kept). Higher = keep.
 *
 * Computed in two passes over K (per-query log-sum-exp, then window-summed probabilities); no [Hq, W, N]
 * attention tensor is materialised.
 */
import { native, Native } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkRank, sameDevice } from '../tensor';
import { checkInt, checkOneOf, show } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, scaleOr, signalOf, streamOf } from './common';

export type SnapkvPool = 'avg' | 'max';

const I32 = 2 ** 31 - 1;

export interface SnapkvOptions extends StreamOpt {
  /** Observation window W: the last W rows of `queries` are used (1 ≤ W ≤ queries.shape[1], W < N). Default queries.shape[1]. */
  window?: number;
  /** Pooling kernel size: a positive odd integer. Default 5. */
  kernel?: number;
  /** Pooling type. Default 'avg' (kvpress); 'max' is the original SnapKV. */
  pool?: SnapkvPool;
  /** Logit scale: finite, nonzero. Default 1/√d. */
  scale?: number;
  /** Preallocated f32 [Hkv, N] output. */
  out?: Tensor | TensorLike;
}

/**
 * SnapKV scores f32 [Hkv, N] from window queries [Hq, W, d] and keys [Hkv, N, d] (f32 | f16 | bf16, any strides;
 * Hq a multiple of Hkv, query head j belongs to KV head ⌊j / (Hq/Hkv)⌋).
 */
export function snapkvScores(queries: Tensor | TensorLike, keys: Tensor | TensorLike, options?: SnapkvOptions): Tensor {
  const p = plan(queries, keys, options, false);
  native.snapkvScores(...p.args);
  return p.out;
}

/** {@link snapkvScores} on a worker thread (see AsyncOptions). */
export async function snapkvScoresAsync(
  queries: Tensor | TensorLike,
  keys: Tensor | TensorLike,
  options?: SnapkvOptions & AsyncOptions,
): Promise<Tensor> {
  const p = plan(queries, keys, options, true);
  await runAsync(native.snapkvScoresAsync, p.args, p.signal);
  return p.out;
}

const KEYS = ['window', 'kernel', 'pool', 'scale', 'out', 'stream'];

function plan(queries: Tensor | TensorLike, keys: Tensor | TensorLike, options: unknown, async: boolean) {
  const o = opts('options', options, keysOf(KEYS, async));
  const q = checkRank('queries', asTensor('queries', queries), 3, '[Hq, W, d]');
  const k = checkRank('keys', asTensor('keys', keys), 3, '[Hkv, N, d]');
  const [Hq, Wq, dq] = q.shape;
  const [Hkv, N, d] = k.shape;
  if (dq !== d) throw new RangeError(`queries: head dim ${dq} does not match keys' head dim ${d}`);
  if (Hkv < 1 || Hq < 1 || Hq % Hkv !== 0) {
    throw new RangeError(`queries: the number of query heads (${Hq}) must be a positive multiple of the number of KV heads (${Hkv})`);
  }
  if (Wq < 1) throw new RangeError('queries: need at least one window query (dimension 1 is 0)');
  const D = DEFAULTS.snapkv;
  const window = o.window === undefined && D.window === 0 ? Wq : checkInt('window', o.window ?? D.window, 1, Wq);
  if (window >= N) throw new RangeError(`window: must be smaller than N = ${N} (a prefix must remain), got ${window}`);
  const kernel = checkInt('kernel', o.kernel ?? D.kernel, -I32, I32);
  if (kernel < 1 || kernel % 2 === 0) throw new RangeError(`kernel: must be a positive odd integer, got ${kernel}`);
  const pool = checkOneOf('pool', o.pool ?? D.pool, ['avg', 'max'] as const);
  let scale = scaleOr(D.scale, d);
  if (o.scale !== undefined) {
    if (typeof o.scale !== 'number' || Number.isNaN(o.scale)) throw new TypeError(`scale: expected a number, got ${show(o.scale)}`);
    if (!(Math.abs(o.scale) <= 3.4028234663852886e38) || o.scale === 0) {
      throw new RangeError(`scale: must be finite and nonzero (within the f32 range), got ${o.scale}`);
    }
    scale = o.scale;
  }
  if (!sameDevice(q.device, k.device)) throw new TypeError('queries: must be on the same device as keys');
  const stream = streamOf(o, k.device);
  const out = output('out', o.out, [Hkv, N], 'f32', k.device, stream);
  const args: Parameters<Native['snapkvScores']> = [
    q.toNative(), k.toNative(), { window, kernel, pool: pool === 'max' ? 1 : 0, scale }, out.toNative(), stream?.handle,
  ];
  return { args, out, signal: signalOf(o) };
}
