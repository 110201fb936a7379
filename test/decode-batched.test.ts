// decodeAttentionBatched (docs/runtime-caches.md §3) equals decodeAttention per sequence, bit for bit: ragged per-head
// counts <= n_b read in place in every layout, one or several query tokens, GQA, with and without a moment state
// (B·H virtual heads) and clip radii. On CUDA (tables, data, counts, queries, state on the device) against the CUDA
// decodeAttention of each sequence's contiguous copy.
import t from 'tap';
import { decodeAttention, decodeAttentionBatched, tensor, MomentState } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, on } from './helpers';
import { cacheOn, hostOf, layoutCases, makeCache, mixedLengths, sameBits, flat, at0, randomSelection, batchBackends, cases } from './batch-helpers';

for (const be of batchBackends()) {
for (const [k, { layout, pageSize }] of cases(layoutCases())) {
  for (const T of [0, 3]) {
    t.test(`decode batched ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''} ${T ? `T=${T}` : 'one token'}`, on(be), async (t) => {
      const rng = new Rng(700 + 2 * k + (T ? 1 : 0));
      const lengths = mixedLengths(rng, 6, 130);
      const H = 2, G = 2, d = 16, dv = 8, B = lengths.length;
      const { tb, keys, values, cache: hostCache } = makeCache(rng, layout, lengths, H, d, dv, k % 3 === 1 ? 'f16' : 'f32', pageSize || 16);
      const cache = cacheOn(hostCache, be);
      const counts = place(tensor(Int32Array.from({ length: B * H }, (_, i) => rng.int(lengths[Math.floor(i / H)] + 1)), [B, H]), be);
      const qshape = T ? [B, H * G, T, d] : [B, H * G, d];
      const queries = place(tensor(Float32Array.from({ length: qshape.reduce((a, b) => a * b, 1) }, () => 0.3 * rng.normal()), qshape), be);
      // a summary of some rows of each sequence (rows that stay readable: the state is just data here)
      const some = randomSelection(rng, tb, H, 0.5);
      const moments = MomentState.create(B * H, d, dv, be === 'cuda' ? { device: 0 } : {}).mergeBatched(cache, place(some.indices, be), place(some.counts, be));
      const clipT = place(tensor(Float32Array.from({ length: B * H }, () => rng.uniform()), [B * H]), be);
      for (const variant of ['plain', 'moments', 'moments order 0, clip tensor', 'moments, clip 0.5'] as const) {
        const extra = variant === 'plain' ? {} : variant === 'moments' ? { moments } : variant.includes('tensor') ? { moments, order: 0 as const, clip: clipT } : { moments, clip: 0.5 };
        const out = await hostOf(decodeAttentionBatched({ queries, cache, counts, ...extra }));
        const countsHost = await hostOf(counts);
        for (const [b, n] of lengths.entries()) {
          const st = 'moments' in extra ? MomentState.from({ n: at0View(moments.n, b, H), muK: at0View(moments.muK, b, H), muV: at0View(moments.muV, b, H), m: at0View(moments.m, b, H) }) : undefined;
          const clip = 'clip' in extra ? (typeof extra.clip === 'number' ? extra.clip : at0View(clipT, b, H)) : undefined;
          const ref = await hostOf(decodeAttention({
            queries: at0(queries, b), keys: place(keys.perSeq[b], be), values: place(values.perSeq[b], be), counts: at0(counts, b),
            ...(st ? { moments: st } : {}), ...('order' in extra ? { order: extra.order } : {}), ...(clip !== undefined ? { clip } : {}),
          }));
          sameBits(t, flat(at0(out, b)), flat(ref), `${variant}: sequence ${b} (n = ${n}, counts ${flat(at0(countsHost, b))})`);
        }
      }
    });
  }
}
}

/** Rows [b·H, (b+1)·H) of a tensor whose dim 0 counts virtual heads. */
function at0View(x: import('../lib/index').Tensor, b: number, H: number) {
  return x.view([H, ...x.shape.slice(1)], x.strides, x.offset + b * H * x.strides[0]);
}

// The CPU backend reads token-major views (ragged rows, NHD pages) token by token across the heads and HND pages page
// by page (csrc/cpu/rows.h row_walk), skipping each head's rows past its own count; each head's rows keep their order,
// so the bits are the per-sequence op's. Long sequences (several 512-row chunks), a page size that is not a power of
// two, per-head counts from 0 to n.
t.test('decode batched cpu: long sequences over several chunks, pages of 24, ragged per-head counts', async (t) => {
  for (const layout of ['ragged', 'NHD', 'HND'] as const) {
    const rng = new Rng(771);
    const lengths = [1900, 1, 0, 1100];
    const H = 3, G = 2, d = 16, dv = 12, B = lengths.length;
    const { keys, values, cache } = makeCache(rng, layout, lengths, H, d, dv, 'f32', 24);
    const cnt = lengths.flatMap((n) => [n, rng.int(n + 1), Math.min(n, 513)]);
    const counts = tensor(Int32Array.from(cnt), [B, H]);
    const queries = tensor(Float32Array.from({ length: B * H * G * d }, () => 0.3 * rng.normal()), [B, H * G, d]);
    const out = await hostOf(decodeAttentionBatched({ queries, cache, counts }));
    for (const [b, n] of lengths.entries()) {
      const ref = await hostOf(decodeAttention({ queries: at0(queries, b), keys: keys.perSeq[b], values: values.perSeq[b], counts: at0(counts, b) }));
      sameBits(t, flat(at0(out, b)), flat(ref), `${layout}: sequence ${b} (n = ${n}, counts ${cnt.slice(b * H, b * H + H)})`);
    }
  }
});
