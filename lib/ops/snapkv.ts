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
import { BatchCache, QueryBatch, checkCache, checkQueries, tokenOutput, userMaxLength } from './batch';

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

/** The pooling kernel, pool type (native 0 avg | 1 max) and logit scale of checked options. */
function poolOptions(o: Record<string, unknown>, d: number): { kernel: number; pool: number; scale: number } {
  const D = DEFAULTS.snapkv;
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
  return { kernel, pool: pool === 'max' ? 1 : 0, scale };
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
  const { kernel, pool, scale } = poolOptions(o, d);
  if (!sameDevice(q.device, k.device)) throw new TypeError('queries: must be on the same device as keys');
  const stream = streamOf(o, k.device);
  const out = output('out', o.out, [Hkv, N], 'f32', k.device, stream);
  const args: Parameters<Native['snapkvScores']> = [q.toNative(), k.toNative(), { window, kernel, pool, scale }, out.toNative(), stream?.handle];
  return { args, out, signal: signalOf(o) };
}

function planSnapkvScoresBatched(async: boolean, queries: QueryBatch,
  cache: BatchCache,
  options?: Omit<SnapkvOptions, 'out'> & { out?: Tensor | TensorLike; maxLength?: number },) {
  const o = opts('options', options, keysOf(['window', 'kernel', 'pool', 'scale', 'out', 'maxLength', 'stream'], async));
  const c = checkCache('cache', cache, false);
  const q = checkQueries('queries', queries);
  if (q.d !== c.d) throw new RangeError(`queries: head dim ${q.d} does not match keys' head dim ${c.d}`);
  if (!sameDevice(q.queries.device, c.keys.device)) throw new TypeError('queries: must be on the same device as keys');
  const window = o.window === undefined ? DEFAULTS.snapkv.window : checkInt('window', o.window, 1, I32);
  const { kernel, pool, scale } = poolOptions(o, c.d);
  const stream = streamOf(o, c.keys.device);
  const out = tokenOutput('out', o.out, c.table, c.H, 'f32', c.keys.device, c.keys, userMaxLength(c.table, o.maxLength), stream);
  const args: Parameters<Native['snapkvScoresBatched']> = [c.table.toNative(), c.keys.toNative(), q.table.toNative(), q.queries.toNative(), { window, kernel, pool, scale }, out.toNative(), stream?.handle,];
  const finish = (): Tensor => {
    return out;
  };
  return { args, finish, signal: signalOf(o) };
}

/**
 * SnapKV scores of every sequence of a batch cache (docs/runtime-caches.md §3) from a batch of window queries (ragged
 * `[Tq, Hq, d]` or padded `[B, Hq, Wq, d]`): sequence b uses its last W_b = `window` queries (default all of its
 * queries); equal to snapkvScores per sequence, and a sequence with n_b ≤ W_b (no prefix) gets +Infinity everywhere.
 */
export function snapkvScoresBatched(queries: QueryBatch,
  cache: BatchCache,
  options?: Omit<SnapkvOptions, 'out'> & { out?: Tensor | TensorLike; maxLength?: number },): Tensor {
  const p = planSnapkvScoresBatched(false, queries, cache, options);
  native.snapkvScoresBatched(...p.args);
  return p.finish();
}

/** {@link snapkvScoresBatched} on a worker thread (see AsyncOptions). */
export async function snapkvScoresBatchedAsync(queries: QueryBatch, cache: BatchCache, options?: (Omit<SnapkvOptions, 'out'> & { out?: Tensor | TensorLike; maxLength?: number }) & AsyncOptions): Promise<Tensor> {
  const p = planSnapkvScoresBatched(true, queries, cache, options);
  await runAsync(native.snapkvScoresBatchedAsync, p.args, p.signal);
  return p.finish();
}
