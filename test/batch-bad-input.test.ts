// Bad sequence tables and batched arguments (docs/runtime-caches.md §7) are a TypeError / RangeError naming the table
// entry or argument, raised before anything is written.
import t from 'tap';
import { keydiffScoresBatched, selectTokensBatched, gatherKVBatched, decodeAttentionBatched, tensor } from '../lib/index';
import type { BatchCache } from '../lib/index';
import { Rng } from '../lib/rng';
import { expectBadCalls } from './helpers';
import { makeCache, sameBits, tokenTensor } from './batch-helpers';

const rng = new Rng(11);
const i32 = (a: number[]) => tensor(Int32Array.from(a), [a.length]);
const ragged = makeCache(rng, 'ragged', [3, 0, 5], 2, 8, 8);
const padded = makeCache(rng, 'padded', [3, 0, 5], 2, 8, 8);
const paged = makeCache(rng, 'HND', [20, 1, 0], 2, 8, 8, 'f32', 16);
const out = tokenTensor(ragged.tb, 2);
const before = Float32Array.from(out.host as Float32Array);
const with_ = (c: BatchCache, o: Record<string, unknown>) => ({ ...c, ...o }) as BatchCache;

expectBadCalls(t, [
  ['ragged: indptr decreasing', () => keydiffScoresBatched(with_(ragged.cache, { indptr: i32([2, 5, 4, 10]) }), { out }), 'RangeError', /seqs\.indptr \(token offsets\): must be non-decreasing, indptr\[2\] = 4 < indptr\[1\] = 5/],
  ['ragged: indptr[0] < 0', () => keydiffScoresBatched(with_(ragged.cache, { indptr: i32([-1, 5, 5, 10]) }), { out }), 'RangeError', /indptr\[0\] = -1 must be >= 0/],
  ['ragged: rows beyond the data', () => keydiffScoresBatched(with_(ragged.cache, { indptr: i32([2, 5, 5, 99]) }), { out }), 'RangeError', /keys: indptr\[B\] = 99 exceeds its 13 rows/],
  ['ragged: indptr not i32', () => keydiffScoresBatched(with_(ragged.cache, { indptr: tensor(new Float32Array(4), [4]) }), { out }), 'TypeError', /cache\.indptr: expected dtype i32/],
  ['ragged: scores of the wrong rank', () => keydiffScoresBatched(ragged.cache, { out: tokenTensor(padded.tb, 2) }), 'TypeError', /out: expected a 2-D tensor \[H, T\]/],
  ['padded: a length beyond L', () => keydiffScoresBatched(with_(padded.cache, { lengths: i32([3, 0, 99]) })), 'RangeError', /keys: a sequence of length 99 does not fit its L = 8/],
  ['padded: a negative length', () => keydiffScoresBatched(with_(padded.cache, { lengths: i32([3, -1, 5]) })), 'RangeError', /seqs\.lengths: lengths\[1\] = -1 must be >= 0/],
  ['paged: a page id out of the pool', () => keydiffScoresBatched(with_(paged.cache, { indices: i32([0, 1, 77]) })), 'RangeError', /indices: page id 77 of sequence 1 \(entry 2\) is outside \[0, 6\)/],
  ['paged: last page longer than a page', () => keydiffScoresBatched(with_(paged.cache, { lastPageLen: i32([4, 17, 0]) })), 'RangeError', /seqs\.lastPageLen: lastPageLen\[1\] = 17 must be in \[0, 16\]/],
  ['paged: indptr past indices', () => keydiffScoresBatched(with_(paged.cache, { indptr: i32([0, 2, 3, 9]) })), 'RangeError', /indptr\[B\] = 9 exceeds the 3 entries of indices/],
  ['paged: pool of another page size', () => keydiffScoresBatched(with_(paged.cache, { pageSize: 8 })), 'RangeError', /keys: dimension 2 must equal pageSize \(8\)/],
  ['paged: unknown layout', () => keydiffScoresBatched(with_(paged.cache, { layout: 'NDH' })), 'RangeError', /cache\.layout: expected one of 'ragged', 'padded', 'NHD', 'HND'/],
  ['select: keep tensor of the wrong length', () => selectTokensBatched(out, ragged.tb.seqs, { keep: i32([1, 2]) }), 'RangeError', /keep: expected 3 entries/],
  ['select: capacity too small', () => selectTokensBatched(tokenTensor(ragged.tb, 2, 'f32', 0), ragged.tb.seqs, { keep: 4, cap: 2 }), 'RangeError', /indices: capacity \(dimension 2\) must be at least 3 for sequence 0/],
  ['gather: counts of another batch', () => gatherKVBatched({ cache: ragged.cache, indices: tensor(new Int32Array(2 * 2 * 4), [2, 2, 4]), counts: tensor(new Int32Array(4), [2, 2]) }), 'RangeError', /indices: expected 3 sequences/],
  ['gather: an index past the sequence', () => gatherKVBatched({ cache: ragged.cache, indices: tensor(Int32Array.from({ length: 12 }, () => 4), [3, 2, 2]), counts: tensor(Int32Array.from([1, 1, 0, 0, 1, 1]), [3, 2]) }), 'RangeError', /indices: row \[0, 0\] must hold strictly ascending positions in \[0, 3\) before its count; entry 0 is 4/],
  ['decode: counts beyond a sequence', () => decodeAttentionBatched({ queries: tensor(new Float32Array(3 * 2 * 8), [3, 2, 8]), cache: ragged.cache, counts: tensor(Int32Array.from([3, 3, 1, 0, 5, 5]), [3, 2]) }), 'RangeError', /counts: counts\[1, 0\] = 1 must be in \[0, 0\]/],
  // an output sharing memory with the table it is written under (the fuzzer found countsOut over the page list)
  ['select: counts over the ragged indptr', () => { const x = overTable(ragged.tb.seqs, 'indptr'); return selectTokensBatched(out, x.seqs, { keep: 2, counts: x.over }); }, 'RangeError', /counts: .*seqs\.indptr/],
  ['gather: countsOut over the page list', () => { const x = overTable(paged.cache, 'indices'); return gatherKVBatched({ cache: x.seqs as BatchCache, indices: tensor(new Int32Array(3 * 2 * 4).fill(-1), [3, 2, 4]), counts: tensor(new Int32Array(6), [3, 2]), countsOut: x.over }); }, 'RangeError', /countsOut: .*seqs\.indices/],
]);

/** The table with its `key` tensor moved into a larger buffer, and an i32 [3, 2] view of that buffer overlapping its last entries. */
function overTable<T extends object>(table: T, key: 'indptr' | 'indices') {
  const old = (table as unknown as Record<string, { host: Int32Array }>)[key].host;
  const buf = new Int32Array(old.length + 6);
  buf.set(old);
  const seqs = { ...table, [key]: tensor(buf.subarray(0, old.length), [old.length]) } as T;
  return { seqs, over: tensor(buf.subarray(old.length - 1, old.length + 5), [3, 2]) };
}

t.test('nothing was written by the failed calls', async (t) => sameBits(t, out.host as Float32Array, before, 'the output keeps its poison'));
