// momentkvSelectBatched (docs/runtime-caches.md §3) equals momentkvSelect per sequence, bit for bit (indices, counts,
// the moment state of B·H virtual heads, the eviction rounds), with protected (+Infinity) tokens and per-sequence keep.
// On CUDA (tables, data, scores and keep on the device) against the CUDA momentkvSelect of each sequence's copies.
import t from 'tap';
import { momentkvSelect, momentkvSelectBatched, tensor, MomentState } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, on } from './helpers';
import { cacheOn, fetchView, hostOf, makeCache, mixedLengths, momentsHost, onBackend, sameBits, flat, at0, fillTokens, tokenTensor, tokenBlock, momentRows, batchBackends, cases } from './batch-helpers';
import type { BatchLayout } from './batch-helpers';

const layouts: [BatchLayout, number][] = [['ragged', 0], ['padded', 0], ['NHD', 16], ['HND', 64], ['NHD', 1]];

for (const be of batchBackends())
// the slowest op under the emulator: its subset (test/cuda-emu.test.ts) is the ragged and the NHD page 1 case
for (const [k, [layout, pageSize]] of cases(layouts, 4)) {
  t.test(`momentkv_select batched ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''}`, on(be), async (t) => {
    const rng = new Rng(800 + k);
    const lengths = mixedLengths(rng, 5, 120);
    const H = 2, d = 16, dv = 16, B = lengths.length;
    const { tb, keys, values, cache } = makeCache(rng, layout, lengths, H, d, dv, 'f32', pageSize || 16);
    // base scores with the last 4 tokens of each sequence protected
    const blocks = lengths.map((n) => Float32Array.from({ length: H * n }, (_, x) => (x % n >= n - 4 ? Infinity : Math.abs(rng.normal()) + 0.01)));
    const scores = fillTokens(tokenTensor(tb, H), tb, (b) => blocks[b]);
    const keepT = Int32Array.from(lengths, () => 6 + rng.int(30));
    const dres = momentkvSelectBatched({ scores: onBackend(scores, be), cache: cacheOn(cache, be), keep: place(tensor(keepT, [B]), be), rounds: 3, evictedRound: true, cap: Math.max(...keepT) });
    t.same(dres.moments.H, B * H, 'a state of B·H virtual heads');
    const res = { counts: await hostOf(dres.counts), indices: await hostOf(dres.indices), evictedRound: await fetchView(dres.evictedRound!), moments: await momentsHost(dres.moments as MomentState) };
    for (const [b, n] of lengths.entries()) {
      if (n === 0) {
        t.ok(flat(at0(res.counts, b)).every((c) => c === 0), `sequence ${b} (empty): counts 0`);
        continue;
      }
      const keep = Math.min(keepT[b], n);
      const dref = momentkvSelect({ scores: place(tensor(blocks[b], [H, n]), be), keys: place(keys.perSeq[b], be), values: place(values.perSeq[b], be), keep, rounds: 3, evictedRound: true });
      const ref = { counts: await hostOf(dref.counts), indices: await hostOf(dref.indices), evictedRound: await hostOf(dref.evictedRound!), moments: await momentsHost(dref.moments as MomentState) };
      t.same(flat(at0(res.counts, b)), flat(ref.counts), `sequence ${b} (n = ${n}, keep ${keep}) counts`);
      const cap = res.indices.shape[2], rc = ref.indices.shape[1], ri = flat(ref.indices), want: number[] = [];
      for (let h = 0; h < H; h++) for (let j = 0; j < cap; j++) want.push(j < rc ? ri[h * rc + j] : -1);
      t.same(flat(at0(res.indices, b)), want, `sequence ${b} indices`);
      sameBits(t, tokenBlock(res.evictedRound, tb, b), flat(ref.evictedRound), `sequence ${b} eviction rounds`);
      momentRows(res.moments, b, H).forEach((rows, i) => sameBits(t, rows, momentRows(ref.moments, 0, H)[i], `sequence ${b} moments ${['n', 'muK', 'muV', 'm'][i]}`));
    }
  });
}
