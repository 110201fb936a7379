// gatherKVBatched (docs/runtime-caches.md §3) equals gatherKV per sequence, bit for bit, in every layout, with and
// without a moment state of B·H virtual heads (compared head by head with per-sequence states).
import t from 'tap';
import { gatherKV, gatherKVBatched, MomentState } from '../lib/index';
import type { DType, Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { layoutCases, makeCache, mixedLengths, sameBits, flat, at0, momentRows, randomSelection } from './batch-helpers';

const dtypes: DType[] = ['f16', 'f32', 'bf16'];

for (const [k, { layout, pageSize }] of layoutCases().entries()) {
  t.test(`gather batched ${layout}${pageSize ? ` page ${pageSize}` : ''}`, async (t) => {
    const rng = new Rng(500 + k);
    const lengths = mixedLengths(rng, 6, 140);
    const H = 3, d = 16, dv = 8, dtype = dtypes[k % 3];
    const { tb, keys, values, cache } = makeCache(rng, layout, lengths, H, d, dv, dtype, pageSize || 16);
    const sel = randomSelection(rng, tb, H);
    for (const withMoments of [false, true]) {
      const B = lengths.length;
      const moments = withMoments ? MomentState.create(B * H, d, dv) : undefined;
      const out = gatherKVBatched({ cache, indices: sel.indices, counts: sel.counts, cap: sel.indices.shape[2] + 2, ...(moments ? { moments } : {}) });
      t.same(out.keys.shape, [B, H, sel.indices.shape[2] + 2, d], 'keys [B, H, cap, d]');
      lengths.forEach((n, b) => {
        const st = withMoments ? MomentState.create(H, d, dv) : undefined;
        const ref = gatherKV({ keys: keys.perSeq[b], values: values.perSeq[b], indices: at0(sel.indices, b), counts: at0(sel.counts, b), cap: out.keys.shape[2], ...(st ? { moments: st } : {}) });
        sameBits(t, flat(at0(out.keys, b) as Tensor), flat(ref.keys), `sequence ${b} (n = ${n}) keys`);
        sameBits(t, flat(at0(out.values, b)), flat(ref.values), `sequence ${b} values`);
        t.same(flat(at0(out.counts, b)), flat(ref.counts), `sequence ${b} counts`);
        if (st) momentRows(moments!, b, H).forEach((rows, i) => sameBits(t, rows, momentRows(st, 0, H)[i], `sequence ${b} moments ${['n', 'muK', 'muV', 'm'][i]}`));
      });
    }
  });
}
