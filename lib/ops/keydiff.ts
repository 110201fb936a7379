/**
 * KeyDiff (Park et al., arXiv 2504.15364; docs/methods/keydiff.md §3, exactly kvpress KeyDiffPress): score(h, i) =
 * −cos(k_i, anchor_h), anchor_h = mean of the L2-normalised keys of head h. Higher = more distinctive = keep.
 * Attention-free, so it works on caches produced by FlashAttention.
 */
import { native, Native } from '../binding';
import { Tensor, TensorLike, asTensor, checkRank } from '../tensor';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';
import { BatchCache, checkCache, tokenOutput, userMaxLength } from './batch';

export interface KeydiffOptions extends StreamOpt {
  /** Preallocated f32 [H, N] output. */
  out?: Tensor | TensorLike;
}

const KEYS = ['out', 'stream'];

function plan(keys: Tensor | TensorLike, options: unknown, async: boolean) {
  const o = opts('options', options, keysOf(KEYS, async));
  const k = checkRank('keys', asTensor('keys', keys), 3, '[H, N, d]');
  const stream = streamOf(o, k.device);
  const out = output('out', o.out, [k.shape[0], k.shape[1]], 'f32', k.device, stream);
  const args: Parameters<Native['keydiffScores']> = [k.toNative(), out.toNative(), stream?.handle];
  return { args, out, signal: signalOf(o) };
}

/** KeyDiff scores f32 [H, N] of keys [H, N, d] (f32 | f16 | bf16, any strides). */
export function keydiffScores(keys: Tensor | TensorLike, options?: KeydiffOptions): Tensor {
  const p = plan(keys, options, false);
  native.keydiffScores(...p.args);
  return p.out;
}

/** {@link keydiffScores} on a worker thread (see AsyncOptions). */
export async function keydiffScoresAsync(keys: Tensor | TensorLike, options?: KeydiffOptions & AsyncOptions): Promise<Tensor> {
  const p = plan(keys, options, true);
  await runAsync(native.keydiffScoresAsync, p.args, p.signal);
  return p.out;
}

export interface BatchedScoreOptions extends StreamOpt {
  /**
   * Preallocated f32 output: [H, T] for a ragged cache (column = the token's row), [B, H, L] otherwise
   * (docs/runtime-caches.md §2).
   */
  out?: Tensor | TensorLike;
  /** L of a fresh [B, H, L] output (default: L of a padded cache, else the longest sequence of a host table). */
  maxLength?: number;
}

function planKeydiffScoresBatched(async: boolean, cache: BatchCache, options?: BatchedScoreOptions) {
  const o = opts('options', options, keysOf(['out', 'maxLength', 'stream'], async));
  const c = checkCache('cache', cache, false);
  const stream = streamOf(o, c.keys.device);
  const out = tokenOutput('out', o.out, c.table, c.H, 'f32', c.keys.device, c.keys, userMaxLength(c.table, o.maxLength), stream);
  const args: Parameters<Native['keydiffScoresBatched']> = [c.table.toNative(), c.keys.toNative(), out.toNative(), stream?.handle];
  const finish = (): Tensor => {
    return out;
  };
  return { args, finish, signal: signalOf(o) };
}

/** KeyDiff scores of every sequence of a batch cache (docs/runtime-caches.md §3), equal to keydiffScores per sequence. */
export function keydiffScoresBatched(cache: BatchCache, options?: BatchedScoreOptions): Tensor {
  const p = planKeydiffScoresBatched(false, cache, options);
  native.keydiffScoresBatched(...p.args);
  return p.finish();
}

/** {@link keydiffScoresBatched} on a worker thread (see AsyncOptions). */
export async function keydiffScoresBatchedAsync(cache: BatchCache, options?: (BatchedScoreOptions) & AsyncOptions): Promise<Tensor> {
  const p = planKeydiffScoresBatched(true, cache, options);
  await runAsync(native.keydiffScoresBatchedAsync, p.args, p.signal);
  return p.finish();
}
