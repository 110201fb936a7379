// MomentState.mergeBatched (docs/runtime-caches.md §3) equals merge per sequence into its H heads, bit for bit, in
// every layout; the state of B·H virtual heads may already hold a summary. On CUDA: tables, data and lists on the
// device, against the CUDA merge of each sequence's contiguous copy.
import t from 'tap';
import { MomentState } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, on } from './helpers';
import { cacheOn, layoutCases, makeCache, mixedLengths, sameBits, at0, momentRows, momentsHost, randomSelection, batchBackends, cases } from './batch-helpers';

for (const be of batchBackends()) {
  for (const [k, { layout, pageSize }] of cases(layoutCases())) {
    t.test(`moments mergeBatched ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''}`, on(be), async (t) => {
      const rng = new Rng(600 + k);
      const lengths = mixedLengths(rng, 5, 160);
      const H = 2, d = 16, dv = 12;
      const { tb, keys, values, cache } = makeCache(rng, layout, lengths, H, d, dv, k % 2 ? 'bf16' : 'f32', pageSize || 16);
      const sel = randomSelection(rng, tb, H, 0.3); // merge the "kept" lists: any ascending lists do
      const B = lengths.length;
      const device = be === 'cuda' ? { device: 0 } : {};
      const dc = cacheOn(cache, be), indices = place(sel.indices, be), counts = place(sel.counts, be);
      const state = MomentState.create(B * H, d, dv, device);
      const per = lengths.map(() => MomentState.create(H, d, dv, device));
      const perK = keys.perSeq.map((x) => place(x, be)), perV = values.perSeq.map((x) => place(x, be));
      const perI = lengths.map((_, b) => place(at0(sel.indices, b), be)), perC = lengths.map((_, b) => place(at0(sel.counts, b), be));
      for (let round = 0; round < 2; round++) {
        t.equal(state.mergeBatched(dc, indices, counts), state, 'returns the state');
        lengths.forEach((n, b) => per[b].merge(perK[b], perV[b], perI[b], perC[b]));
      }
      const sh = await momentsHost(state);
      for (const [b, n] of lengths.entries()) {
        const ph = await momentsHost(per[b]);
        momentRows(sh, b, H).forEach((rows, i) => sameBits(t, rows, momentRows(ph, 0, H)[i], `sequence ${b} (n = ${n}) ${['n', 'muK', 'muV', 'm'][i]}`));
      }
      t.ok(momentRows(sh, lengths.findIndex((n) => n > 10), H)[0].some((x) => x > 0), 'rows were merged');
    });
  }
}
