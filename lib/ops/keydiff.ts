/**
 * KeyDiff (Park et al., arXiv 2504.15364; docs/methods/keydiff.md §3, exactly kvpress KeyDiffPress): score(h, i) =
 * −cos(k_i, anchor_h), anchor_h = mean of the L2-normalised keys of head h. Higher = more distinctive = keep.
 * Attention-free, so it works on caches produced by FlashAttention.
 */
import { native } from '../binding';
import { Tensor, TensorLike, asTensor, checkRank } from '../tensor';
import { BatchCache, checkCache, tokenOutput } from './batch';
import { StreamOpt, opts, output, streamOf } from './common';

export interface KeydiffOptions extends StreamOpt {
  /** Preallocated f32 [H, N] output. */
  out?: Tensor | TensorLike;
}

/** KeyDiff scores f32 [H, N] of keys [H, N, d] (f32 | f16 | bf16, any strides). */
export function keydiffScores(keys: Tensor | TensorLike, options?: KeydiffOptions): Tensor {
  const o = opts('options', options, ['out', 'stream']);
  const k = checkRank('keys', asTensor('keys', keys), 3, '[H, N, d]');
  const stream = streamOf(o, k.device);
  const out = output('out', o.out, [k.shape[0], k.shape[1]], 'f32', k.device, stream);
  native.keydiffScores(k.toNative(), out.toNative(), stream?.handle);
  return out;
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

/** KeyDiff scores of every sequence of a batch cache (docs/runtime-caches.md §3), equal to keydiffScores per sequence. */
export function keydiffScoresBatched(cache: BatchCache, options?: BatchedScoreOptions): Tensor {
  const o = opts('options', options, ['out', 'maxLength', 'stream']);
  const c = checkCache('cache', cache, false);
  const stream = streamOf(o, c.keys.device);
  const out = tokenOutput('out', o.out, c.table, c.H, 'f32', c.keys.device, c.keys, o.maxLength as number | undefined, stream);
  native.keydiffScoresBatched(c.table.toNative(), c.keys.toNative(), out.toNative(), stream?.handle);
  return out;
}
