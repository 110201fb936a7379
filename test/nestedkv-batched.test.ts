// nestedkvScoresBatched (docs/runtime-caches.md §3) equals nestedkvScores per sequence, bit for bit, in every layout;
// each sequence gets its own default block size (one sequence long enough for a block other than 128). On CUDA
// (table and data on the device, strides, poison and canaries kept) against the CUDA nestedkvScores of each sequence's
// contiguous copy.
import t from 'tap';
import { nestedkvScores, nestedkvScoresBatched, nestedkvBlockSize } from '../lib/index';
import type { DType } from '../lib/index';
import { Rng } from '../lib/rng';
import { EMULATED_CUDA, place, fetch, on } from './helpers';
import { cacheOn, fetchView, layoutCases, makeCache, mixedLengths, onBackend, sameBits, tokenBlock, tokenPadding, tokenTensor, batchBackends, cases } from './batch-helpers';

const dtypes: DType[] = ['bf16', 'f32', 'f16'];

for (const be of batchBackends()) {
  for (const [k, { layout, pageSize }] of cases(layoutCases())) {
    const dtype = dtypes[k % 3];
    t.test(`nestedkv batched ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''} ${dtype}`, on(be), async (t) => {
      const rng = new Rng(200 + k);
      const lengths = mixedLengths(rng, 6, 300);
      // default block 146, not 128 (the emulator: a shorter one, block 128 still, to keep its run time in check)
      if (k === 0) lengths[2] = be === 'cuda' && EMULATED_CUDA ? 1500 : 4700;
      const H = 2, d = 16;
      const opts = k % 2 ? { window: 16, tail: 0.2, sinks: 2 } : {};
      const { tb, keys, cache } = makeCache(rng, layout, lengths, H, d, d, dtype, pageSize || 16);
      const out = await fetchView(nestedkvScoresBatched(cacheOn(cache, be), { ...opts, out: onBackend(tokenTensor(tb, H), be) }));
      for (const [b, n] of lengths.entries()) {
        if (n === 0) continue;
        const ref = (await fetch(nestedkvScores(place(keys.perSeq[b], be), opts))).host as Float32Array;
        sameBits(t, tokenBlock(out, tb, b), ref, `sequence ${b} (n = ${n}, block ${nestedkvBlockSize(n)})`);
      }
      t.ok(tokenPadding(out, tb).every(Number.isNaN), 'per-token padding is not written');
    });
  }
}
