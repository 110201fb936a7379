// keydiffScoresBatched (docs/runtime-caches.md §3) equals keydiffScores per sequence, bit for bit, on random ragged
// batches (lengths 0 and 1 included) in every layout (ragged, padded, NHD and HND pages of 1, 16 and 64 tokens),
// reads nothing outside the rows (poisoned free space, canaries) and writes no per-token padding. On CUDA (tables and
// data on the device, the data keeping its strides, poison and canaries) it equals the CUDA keydiffScores of each
// sequence's contiguous copy.
import t from 'tap';
import { keydiffScores, keydiffScoresBatched, raggedSeqs, pagedSeqs, seqLengths, tensor } from '../lib/index';
import type { DType } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, fetch, on } from './helpers';
import { cacheOn, fetchView, layoutCases, makeCache, mixedLengths, onBackend, sameBits, storage, tokenBlock, tokenPadding, tokenTensor, batchBackends, cases } from './batch-helpers';

const dtypes: DType[] = ['f32', 'bf16', 'f16'];

for (const be of batchBackends()) {
  for (const [k, { layout, pageSize }] of cases(layoutCases())) {
    const dtype = dtypes[k % 3];
    t.test(`keydiff batched ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''} ${dtype}`, on(be), async (t) => {
      const rng = new Rng(100 + k);
      const lengths = mixedLengths(rng, 7, 150);
      const H = 3, d = 24;
      const { tb, keys, cache } = makeCache(rng, layout, lengths, H, d, d, dtype, pageSize || 16);
      const before = keys.snapshot();
      const dc = cacheOn(cache, be);
      const out = onBackend(tokenTensor(tb, H), be);
      const res = keydiffScoresBatched(dc, { out });
      t.equal(res, out, 'writes into the given output');
      const got = await fetchView(out);
      for (const [b, n] of lengths.entries()) {
        if (n === 0) continue;
        const ref = (await fetch(keydiffScores(place(keys.perSeq[b], be)))).host as Float32Array;
        sameBits(t, tokenBlock(got, tb, b), ref, `sequence ${b} (n = ${n})`);
      }
      t.ok(tokenPadding(got, tb).every(Number.isNaN), 'per-token padding is not written');
      sameBits(t, await storage(dc.keys as typeof out), before, 'the cache is not modified');
      // a fresh output has the documented shape (a device table of pages needs the length bound)
      const maxLength = Math.max(...lengths);
      const fresh = keydiffScoresBatched(dc, layout === 'NHD' || layout === 'HND' ? { maxLength } : {});
      t.same(fresh.shape, layout === 'ragged' ? [H, tb.T] : [lengths.length, H, layout === 'padded' ? tb.L : maxLength], 'output shape');
    });
  }
}

t.test('table builders and seqLengths', async (t) => {
  const lengths = [5, 0, 1, 33];
  t.same(Array.from(seqLengths(raggedSeqs(lengths))), lengths, 'ragged');
  const p = pagedSeqs(lengths, { pageSize: 16, layout: 'HND', pages: [9, 8, 7, 6, 5] });
  t.same(Array.from(seqLengths(p)), lengths, 'paged');
  t.same(Array.from(p.indices.data as Int32Array), [9, 8, 7, 6, 5], 'pages in order');
  t.same(Array.from(p.lastPageLen.data as Int32Array), [5, 0, 1, 1], 'last page lengths');
  t.same(Array.from(seqLengths({ layout: 'padded' }, tensor(new Float32Array(2 * 3 * 4 * 1), [2, 3, 4, 1]))), [4, 4], 'padded without lengths');
});

// The CPU backend reads token-major views (ragged rows, NHD pages) token by token across the heads and HND pages page
// by page (csrc/cpu/rows.h row_walk); each head's rows keep their order, so the bits are the per-sequence op's. Long
// sequences (several 256- and 1024-row chunks) and a page size that is not a power of two (blocks cut at page ends).
t.test('keydiff batched cpu: long sequences over several chunks, pages of 24', async (t) => {
  for (const layout of ['ragged', 'NHD', 'HND'] as const) {
    const rng = new Rng(170);
    const lengths = [2600, 0, 1, 1500];
    const H = 3, d = 20;
    const { tb, keys, cache } = makeCache(rng, layout, lengths, H, d, d, 'f32', 24);
    const out = tokenTensor(tb, H);
    keydiffScoresBatched(cache, { out });
    const got = await fetchView(out);
    for (const [b, n] of lengths.entries()) {
      if (n > 0) sameBits(t, tokenBlock(got, tb, b), keydiffScores(keys.perSeq[b]).host as Float32Array, `${layout}: sequence ${b} (n = ${n})`);
    }
  }
});
