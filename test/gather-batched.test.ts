// gatherKVBatched (docs/runtime-caches.md §3) equals gatherKV per sequence, bit for bit, in every layout, with and
// without a moment state of B·H virtual heads (compared head by head with per-sequence states). On CUDA the batch's
// tables, data (strides, poison, canaries kept) and lists live on the device and the reference is the CUDA gatherKV of
// each sequence's contiguous copy.
import t from 'tap';
import { gatherKV, gatherKVBatched, MomentState } from '../lib/index';
import type { DType, Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, on } from './helpers';
import { cacheOn, layoutCases, makeCache, mixedLengths, sameBits, flat, at0, momentRows, momentsHost, hostOf, randomSelection, batchBackends, cases } from './batch-helpers';

const dtypes: DType[] = ['f16', 'f32', 'bf16'];

for (const be of batchBackends()) {
  for (const [k, { layout, pageSize }] of cases(layoutCases())) {
    t.test(`gather batched ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''}`, on(be), async (t) => {
      const rng = new Rng(500 + k);
      const lengths = mixedLengths(rng, 6, 140);
      const H = 3, d = 16, dv = 8, dtype = dtypes[k % 3];
      const { tb, keys, values, cache } = makeCache(rng, layout, lengths, H, d, dv, dtype, pageSize || 16);
      const sel = randomSelection(rng, tb, H);
      const dc = cacheOn(cache, be), indices = place(sel.indices, be), counts = place(sel.counts, be);
      for (const withMoments of [false, true]) {
        const B = lengths.length;
        const device = be === 'cuda' ? { device: 0 } : {};
        const moments = withMoments ? MomentState.create(B * H, d, dv, device) : undefined;
        const out = gatherKVBatched({ cache: dc, indices, counts, cap: sel.indices.shape[2] + 2, ...(moments ? { moments } : {}) });
        t.same(out.keys.shape, [B, H, sel.indices.shape[2] + 2, d], 'keys [B, H, cap, d]');
        const [ok, ov, oc] = await Promise.all([out.keys, out.values, out.counts].map(hostOf));
        const mh = moments ? await momentsHost(moments) : undefined;
        for (const [b, n] of lengths.entries()) {
          const st = withMoments ? MomentState.create(H, d, dv, device) : undefined;
          const ref = gatherKV({
            keys: place(keys.perSeq[b], be), values: place(values.perSeq[b], be), indices: place(at0(sel.indices, b), be),
            counts: place(at0(sel.counts, b), be), cap: out.keys.shape[2], ...(st ? { moments: st } : {}),
          });
          const [rk, rv, rc] = await Promise.all([ref.keys, ref.values, ref.counts].map(hostOf));
          sameBits(t, flat(at0(ok, b) as Tensor), flat(rk), `sequence ${b} (n = ${n}) keys`);
          sameBits(t, flat(at0(ov, b)), flat(rv), `sequence ${b} values`);
          t.same(flat(at0(oc, b)), flat(rc), `sequence ${b} counts`);
          if (st) {
            const sh = await momentsHost(st);
            momentRows(mh!, b, H).forEach((rows, i) => sameBits(t, rows, momentRows(sh, 0, H)[i], `sequence ${b} moments ${['n', 'muK', 'muV', 'm'][i]}`));
          }
        }
      }
    });
  }
}
