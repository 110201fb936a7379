// MomentState.mergeBatched (docs/runtime-caches.md §3) equals merge per sequence into its H heads, bit for bit, in
// every layout; the state of B·H virtual heads may already hold a summary.
import t from 'tap';
import { MomentState } from '../lib/index';
import { Rng } from '../lib/rng';
import { layoutCases, makeCache, mixedLengths, sameBits, at0, momentRows, randomSelection } from './batch-helpers';

for (const [k, { layout, pageSize }] of layoutCases().entries()) {
  t.test(`moments mergeBatched ${layout}${pageSize ? ` page ${pageSize}` : ''}`, async (t) => {
    const rng = new Rng(600 + k);
    const lengths = mixedLengths(rng, 5, 160);
    const H = 2, d = 16, dv = 12;
    const { tb, keys, values, cache } = makeCache(rng, layout, lengths, H, d, dv, k % 2 ? 'bf16' : 'f32', pageSize || 16);
    const sel = randomSelection(rng, tb, H, 0.3); // merge the "kept" lists: any ascending lists do
    const B = lengths.length;
    const state = MomentState.create(B * H, d, dv);
    const per = lengths.map(() => MomentState.create(H, d, dv));
    for (let round = 0; round < 2; round++) {
      t.equal(state.mergeBatched(cache, sel.indices, sel.counts), state, 'returns the state');
      lengths.forEach((n, b) => per[b].merge(keys.perSeq[b], values.perSeq[b], at0(sel.indices, b), at0(sel.counts, b)));
    }
    lengths.forEach((n, b) =>
      momentRows(state, b, H).forEach((rows, i) => sameBits(t, rows, momentRows(per[b], 0, H)[i], `sequence ${b} (n = ${n}) ${['n', 'muK', 'muV', 'm'][i]}`)),
    );
    t.ok(momentRows(state, lengths.findIndex((n) => n > 10), H)[0].some((x) => x > 0), 'rows were merged');
  });
}
