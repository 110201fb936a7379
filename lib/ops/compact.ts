/**
 * In-place compaction of a runtime's batch cache (docs/runtime-caches.md §4): per sequence and head, the kept rows
 * (a selection) move to the front of the sequence's own storage — its ragged rows, its padded slab or its pages — in
 * order, with no buffer proportional to N·d; optionally the evicted rows are merged into a moment state first (the
 * same merge as gatherKVBatched). For paged caches the pages past ⌈max_h counts / pageSize⌉ of each sequence are
 * returned as freed, for the runtime's page pool.
 */
import { native, Native } from '../binding';
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, hostContiguous, tensor } from '../tensor';
import { BatchCache, PagedSeqs, SeqTable, checkCache, seqLengths } from './batch';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';
import { MomentTensors, momentsNative } from './moments';

export interface CompactInPlaceArgs extends StreamOpt {
  /** The batch cache to compact (keys and values are written in place). Pages must belong to one sequence each. */
  cache: BatchCache;
  /** i32 [B, H, cap]: kept positions per sequence and head, strictly ascending (a selectTokensBatched result). */
  indices: Tensor | TensorLike;
  /** i32 [B, H]: kept rows per head; they become the new per-head counts. */
  counts: Tensor | TensorLike;
  /** A state of B·H virtual heads (row b·H + h) to merge every evicted row into, before it is overwritten. */
  moments?: MomentTensors;
}

export interface CompactInPlaceResult {
  /** The new per-head counts (the `counts` argument): rows j < counts[b, h] of head h are its kept rows, in order. */
  counts: Tensor;
  /** i32 [B]: the rows each sequence still spans, max_h counts[b, h]. */
  lengths: Tensor;
  /** Paged: i32 [B], pages still used, ⌈lengths[b] / pageSize⌉ (the first ones of each sequence's page list). */
  pageCounts?: Tensor;
  /** Paged: i32 [B], entries of the new last page (0 without pages). */
  lastPageLen?: Tensor;
  /** Paged: i32 [F] (F = entries of `indices`), the freed page ids, sequence by sequence, −1 after freedCount. */
  freed?: Tensor;
  /** Paged: i32 [1]. */
  freedCount?: Tensor;
  /** Paged, host: exactly the freed page ids. */
  freedPages?: Int32Array;
}

function planCompactInPlace(async: boolean, a: CompactInPlaceArgs) {
  const o = opts('args', a, keysOf(['cache', 'indices', 'counts', 'moments', 'stream'], async));
  const c = checkCache('cache', o.cache, true);
  const idx = checkDtype('indices', checkRank('indices', asTensor('indices', o.indices), 3, '[B, H, cap]'), ['i32']);
  const cnt = checkDtype('counts', checkRank('counts', asTensor('counts', o.counts), 2, '[B, H]'), ['i32']);
  const B = cnt.shape[0], dev = c.keys.device;
  const stream = streamOf(o, dev);
  const lengths = output('lengths', undefined, [B], 'i32', dev, stream);
  const paged = c.table.paged;
  const F = paged ? c.table.indices!.shape[0] : 0;
  const pageCounts = paged ? output('pageCounts', undefined, [B], 'i32', dev, stream) : undefined;
  const lastPageLen = paged ? output('lastPageLen', undefined, [B], 'i32', dev, stream) : undefined;
  const freed = paged ? output('freed', undefined, [F], 'i32', dev, stream) : undefined;
  const freedCount = paged ? output('freedCount', undefined, [1], 'i32', dev, stream) : undefined;
  const mom = o.moments === undefined ? undefined : momentsNative('moments', o.moments);
  const args: Parameters<Native['compactInPlace']> = [
    c.table.toNative(), c.keys.toNative(), c.values!.toNative(), idx.toNative(), cnt.toNative(), mom,
    {
      lengths: lengths.toNative(),
      ...(paged ? { pageCounts: pageCounts!.toNative(), lastPageLen: lastPageLen!.toNative(), freed: freed!.toNative(), freedCount: freedCount!.toNative() } : {}),
    },
    stream?.handle,
  ];
  const finish = (): CompactInPlaceResult => {
    const result: CompactInPlaceResult = { counts: cnt, lengths };
    if (paged) {
      Object.assign(result, { pageCounts, lastPageLen, freed, freedCount });
      if (!freed!.onCuda) result.freedPages = (freed!.host as Int32Array).slice(0, (freedCount!.host as Int32Array)[0]);
    }
    return result;
  };
  return { args, finish, signal: signalOf(o) };
}

/** Compacts every sequence of a batch cache in place (docs/runtime-caches.md §4). */
export function compactInPlace(args: CompactInPlaceArgs): CompactInPlaceResult {
  const p = planCompactInPlace(false, args);
  native.compactInPlace(...p.args);
  return p.finish();
}

/** {@link compactInPlace} on a worker thread (see AsyncOptions). */
export async function compactInPlaceAsync(args: (CompactInPlaceArgs) & AsyncOptions): Promise<CompactInPlaceResult> {
  const p = planCompactInPlace(true, args);
  await runAsync(native.compactInPlaceAsync, p.args, p.signal);
  return p.finish();
}

/**
 * The page table after compactInPlace (host): each sequence keeps the first pageCounts[b] pages of its list, with the
 * new lastPageLen. The runtime returns `freedPages` to its pool and uses this table from then on.
 */
export function compactPageTable(seqs: PagedSeqs, result: CompactInPlaceResult): PagedSeqs {
  if (result === null || typeof result !== 'object' || !result.pageCounts || !result.lastPageLen)
    throw new TypeError('result: not the result of compacting a paged cache');
  const table = new SeqTable('seqs', seqs);
  if (!table.paged) throw new TypeError(`seqs.layout: expected a paged table ('NHD' or 'HND'), got '${table.layout}'`);
  if (table.device.kind !== 'cpu') throw new TypeError('seqs: compactPageTable needs a host table');
  const n = seqLengths(seqs);  // checks indptr, lastPageLen and the page list's extent
  const ip = hostContiguous(table.indptr!) as Int32Array;
  const ids = hostContiguous(table.indices!) as Int32Array;
  const host = (name: string, v: unknown) => {
    const t = checkDtype(name, checkRank(name, asTensor(name, v), 1, '[B]'), ['i32']);
    if (t.onCuda) throw new TypeError(`${name}: compactPageTable needs host tensors`);
    if (t.shape[0] !== table.B) throw new RangeError(`${name}: expected ${table.B} entries (one per sequence of seqs), got ${t.shape[0]}`);
    return hostContiguous(t) as Int32Array;
  };
  const pc = host('result.pageCounts', result.pageCounts), last = host('result.lastPageLen', result.lastPageLen);
  const B = table.B;
  const indptr = new Int32Array(B + 1);
  for (let b = 0; b < B; b++) {
    const pages = ip[b + 1] - ip[b];
    if (!(pc[b] >= 0 && pc[b] <= pages))
      throw new RangeError(`result.pageCounts: pageCounts[${b}] = ${pc[b]} must be in [0, ${pages}] (the pages of sequence ${b})`);
    const full = pc[b] === 0 ? 0 : (pc[b] - 1) * table.pageSize + last[b];
    if (pc[b] > 0 ? last[b] < 1 || last[b] > table.pageSize || full > n[b] : last[b] !== 0)
      throw new RangeError(`result.lastPageLen: lastPageLen[${b}] = ${last[b]} does not fit ${pc[b]} kept pages of ${table.pageSize} ` +
        `tokens (sequence ${b} had ${n[b]} tokens)`);
    indptr[b + 1] = indptr[b] + pc[b];
  }
  const indices = new Int32Array(indptr[B]);
  for (let b = 0; b < B; b++) indices.set(ids.subarray(ip[b], ip[b] + pc[b]), indptr[b]);
  return {
    layout: table.layout as PagedSeqs['layout'],
    pageSize: table.pageSize,
    indptr: tensor(indptr, [B + 1]),
    indices: tensor(indices, [indptr[B]]),
    lastPageLen: tensor(Int32Array.from(last), [B]),
  };
}
