/**
 * Compaction (docs/performance.md §5.5): copies the retained rows of K and V into new `[H, cap, d]` buffers,
 * out of place. Rows past `counts[h]` are zero-filled padding that every consumer masks by `counts`. With
 * `moments`, every row NOT retained is merged into the moment state (MomentKV), reading each evicted row once.
 */
import { native, Native } from '../binding';
import { Tensor, TensorLike, asTensor, checkDtype, checkRank } from '../tensor';
import { checkInt } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';
import { MomentTensors, momentsNative } from './moments';
import { BatchCache, checkCache } from './batch';

export interface GatherArgs extends StreamOpt {
  keys: Tensor | TensorLike;
  values: Tensor | TensorLike;
  indices: Tensor | TensorLike;
  counts: Tensor | TensorLike;
  /** Output capacity (default: the capacity of `indices`). */
  cap?: number;
  /** Moment state to merge the evicted rows into (MomentState): every row of head h NOT in indices[h, :counts[h]]. */
  moments?: MomentTensors;
  keysOut?: Tensor | TensorLike;
  valuesOut?: Tensor | TensorLike;
  countsOut?: Tensor | TensorLike;
}

export interface CompactKV {
  keys: Tensor;
  values: Tensor;
  counts: Tensor;
}

export function gatherKV(args: GatherArgs): CompactKV {
  const p = plan(args, false);
  native.gatherKV(...p.args);
  return p.result;
}

/** {@link gatherKV} on a worker thread (see AsyncOptions). */
export async function gatherKVAsync(args: GatherArgs & AsyncOptions): Promise<CompactKV> {
  const p = plan(args, true);
  await runAsync(native.gatherKVAsync, p.args, p.signal);
  return p.result;
}

const KEYS = ['keys', 'values', 'indices', 'counts', 'cap', 'moments', 'keysOut', 'valuesOut', 'countsOut', 'stream'];

function plan(args: unknown, async: boolean) {
  const o = opts('args', args, keysOf(KEYS, async));
  // the outputs take the inputs' dtypes: a non-float input is named here, not through its output
  const k = checkDtype('keys', checkRank('keys', asTensor('keys', o.keys), 3, '[H, N, d]'), ['f32', 'f16', 'bf16']);
  const v = checkDtype('values', checkRank('values', asTensor('values', o.values), 3, '[H, N, dv]'), ['f32', 'f16', 'bf16']);
  const idx = checkRank('indices', asTensor('indices', o.indices), 2, '[H, cap]');
  const cnt = checkRank('counts', asTensor('counts', o.counts), 1, '[H]');
  const H = k.shape[0];
  const cap = o.cap === undefined ? Math.max(1, idx.shape[1]) : checkInt('cap', o.cap, 1, 2 ** 31 - 1);
  const stream = streamOf(o, k.device);
  const ko = output('keysOut', o.keysOut, [H, cap, k.shape[2]], k.dtype, k.device, stream);
  const vo = output('valuesOut', o.valuesOut, [H, cap, v.shape[2]], v.dtype, k.device, stream);
  const co = output('countsOut', o.countsOut, [H], 'i32', k.device, stream);
  const mom = o.moments === undefined ? undefined : momentsNative('moments', o.moments);
  const nargs: Parameters<Native['gatherKV']> = [
    k.toNative(), v.toNative(), idx.toNative(), cnt.toNative(), ko.toNative(), vo.toNative(), co.toNative(), mom, stream?.handle,
  ];
  const result: CompactKV = { keys: ko, values: vo, counts: co };
  return { args: nargs, result, signal: signalOf(o) };
}

export interface GatherBatchedArgs extends Omit<GatherArgs, 'keys' | 'values' | 'indices' | 'counts'> {
  /** The batch cache (keys and values; ragged, padded or paged), read in place; `moments` holds B·H virtual heads. */
  cache: BatchCache;
  /** i32 [B, H, cap_in]: kept positions per sequence and head (a selectTokensBatched result). */
  indices: Tensor | TensorLike;
  /** i32 [B, H]. */
  counts: Tensor | TensorLike;
}

function planGatherKVBatched(async: boolean, a: GatherBatchedArgs) {
  const o = opts('args', a, keysOf(['cache', 'indices', 'counts', 'cap', 'moments', 'keysOut', 'valuesOut', 'countsOut', 'stream'], async));
  const c = checkCache('cache', o.cache, true);
  const idx = checkRank('indices', asTensor('indices', o.indices), 3, '[B, H, cap]');
  const cnt = checkRank('counts', asTensor('counts', o.counts), 2, '[B, H]');
  const B = idx.shape[0];
  const cap = o.cap === undefined ? Math.max(1, idx.shape[2]) : checkInt('cap', o.cap, 1, 2 ** 31 - 1);
  const dev = c.keys.device;
  const stream = streamOf(o, dev);
  const ko = output('keysOut', o.keysOut, [B, c.H, cap, c.d], c.keys.dtype, dev, stream);
  const vo = output('valuesOut', o.valuesOut, [B, c.H, cap, c.dv], c.values!.dtype, dev, stream);
  const co = output('countsOut', o.countsOut, [B, c.H], 'i32', dev, stream);
  const mom = o.moments === undefined ? undefined : momentsNative('moments', o.moments);
  const args: Parameters<Native['gatherKVBatched']> = [
    c.table.toNative(), c.keys.toNative(), c.values!.toNative(), idx.toNative(), cnt.toNative(), ko.toNative(), vo.toNative(), co.toNative(), mom, stream?.handle,
  ];
  const finish = (): CompactKV => {
    return { keys: ko, values: vo, counts: co };
  };
  return { args, finish, signal: signalOf(o) };
}

/**
 * Compaction of every sequence of a batch cache (docs/runtime-caches.md §3) into `[B, H, cap, d]` / `[B, H, cap, dv]`
 * and counts `[B, H]`, out of place; equal to gatherKV per sequence. For compaction inside the cache itself (pages
 * freed) see compactInPlace.
 */
export function gatherKVBatched(args: GatherBatchedArgs): CompactKV {
  const p = planGatherKVBatched(false, args);
  native.gatherKVBatched(...p.args);
  return p.finish();
}

/** {@link gatherKVBatched} on a worker thread (see AsyncOptions). */
export async function gatherKVBatchedAsync(args: (GatherBatchedArgs) & AsyncOptions): Promise<CompactKV> {
  const p = planGatherKVBatched(true, args);
  await runAsync(native.gatherKVBatchedAsync, p.args, p.signal);
  return p.finish();
}
