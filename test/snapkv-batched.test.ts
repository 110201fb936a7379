// snapkvScoresBatched (docs/runtime-caches.md §3) equals snapkvScores per sequence, bit for bit, with ragged and padded
// query batches of different window sizes; a sequence without a prefix (n_b <= W_b) gets +Infinity everywhere. On CUDA
// (tables, keys and queries on the device, strides, poison and canaries kept) against the CUDA snapkvScores of each
// sequence's contiguous copies, for f32 (SIMT logits) and bf16 with d = 64 (tensor-core logits).
import t from 'tap';
import { snapkvScores, snapkvScoresBatched } from '../lib/index';
import type { QueryBatch } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, fetch, on } from './helpers';
import { cacheOn, fetchView, layoutCases, makeCache, makeData, makeTable, mixedLengths, onBackend, sameBits, seqsOn, tokenBlock, tokenPadding, tokenTensor, batchBackends, cases } from './batch-helpers';

for (const be of batchBackends())
for (const [k, { layout, pageSize }] of cases(layoutCases())) {
  for (const qlayout of ['ragged', 'padded'] as const) {
    t.test(`snapkv batched ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''}, ${qlayout} queries`, on(be), async (t) => {
      const rng = new Rng(300 + 2 * k + (qlayout === 'padded' ? 1 : 0));
      const lengths = mixedLengths(rng, 6, 200);
      lengths[lengths.indexOf(Math.max(...lengths)) === 0 ? 1 : 0] = 5; // a short sequence: no prefix for W >= 5
      const H = 2, Hq = 4, d = k % 2 ? 64 : 16;
      const { tb, keys, cache } = makeCache(rng, layout, lengths, H, d, d, k % 2 ? 'bf16' : 'f32', pageSize || 16);
      const qlens = lengths.map(() => 6 + rng.int(5));
      const qtb = makeTable(rng, qlayout, qlens);
      const q = makeData(rng, qtb, Hq, d, k % 2 ? 'bf16' : 'f32');
      const queries = { ...seqsOn(qtb.seqs, be), queries: onBackend(q.data, be) } as QueryBatch;
      const dc = cacheOn(cache, be);
      for (const opts of [{}, { window: 6, kernel: 3, pool: 'max' as const }]) {
        const out = await fetchView(snapkvScoresBatched(queries, dc, { ...opts, out: onBackend(tokenTensor(tb, H), be) }));
        for (const [b, n] of lengths.entries()) {
          if (n === 0) continue;
          const W = opts.window ?? qlens[b];
          const got = tokenBlock(out, tb, b);
          if (n <= W) t.ok(got.every((x) => x === Infinity), `sequence ${b} (n = ${n} <= W = ${W}): all +Infinity`);
          else {
            const ref = (await fetch(snapkvScores(place(q.perSeq[b], be), place(keys.perSeq[b], be), opts))).host as Float32Array;
            sameBits(t, got, ref, `sequence ${b} (n = ${n}, W = ${W}) ${JSON.stringify(opts)}`);
          }
        }
        t.ok(tokenPadding(out, tb).every(Number.isNaN), 'per-token padding is not written');
      }
    });
  }
}

t.test('snapkv batched: a window larger than a sequence\'s queries is a RangeError naming the sequence', async (t) => {
  const rng = new Rng(7);
  const { cache } = makeCache(rng, 'ragged', [30, 40], 1, 8, 8);
  const qtb = makeTable(rng, 'ragged', [4, 2]);
  const q = makeData(rng, qtb, 2, 8);
  t.throws(() => snapkvScoresBatched({ ...qtb.seqs, queries: q.data } as QueryBatch, cache, { window: 3 }), { name: 'RangeError', message: /window: sequence 1 has 2 window queries/ });
});
