// nestedkvScoresBatched (docs/runtime-caches.md §3) equals nestedkvScores per sequence, bit for bit, in every layout;
// each sequence gets its own default block size (one sequence long enough for a block other than 128).
import t from 'tap';
import { nestedkvScores, nestedkvScoresBatched, nestedkvBlockSize } from '../lib/index';
import type { DType } from '../lib/index';
import { Rng } from '../lib/rng';
import { layoutCases, makeCache, mixedLengths, sameBits, tokenBlock, tokenPadding, tokenTensor } from './batch-helpers';

const dtypes: DType[] = ['bf16', 'f32', 'f16'];

for (const [k, { layout, pageSize }] of layoutCases().entries()) {
  const dtype = dtypes[k % 3];
  t.test(`nestedkv batched ${layout}${pageSize ? ` page ${pageSize}` : ''} ${dtype}`, async (t) => {
    const rng = new Rng(200 + k);
    const lengths = mixedLengths(rng, 6, 300);
    if (k === 0) lengths[2] = 4700; // default block 146, not 128
    const H = 2, d = 16;
    const opts = k % 2 ? { window: 16, tail: 0.2, sinks: 2 } : {};
    const { tb, keys, cache } = makeCache(rng, layout, lengths, H, d, d, dtype, pageSize || 16);
    const out = nestedkvScoresBatched(cache, { ...opts, out: tokenTensor(tb, H) });
    lengths.forEach((n, b) => {
      if (n === 0) return;
      sameBits(t, tokenBlock(out, tb, b), nestedkvScores(keys.perSeq[b], opts).host as Float32Array, `sequence ${b} (n = ${n}, block ${nestedkvBlockSize(n)})`);
    });
    t.ok(tokenPadding(out, tb).every(Number.isNaN), 'per-token padding is not written');
  });
}
