// compactInPlace (docs/runtime-caches.md §4): in every layout the kept rows end up at the front of each head's own
// storage exactly as gatherKVBatched would copy them, nothing outside the sequences' rows is touched (poisoned free
// space and canaries around every page / row / slab), the moment state equals gather's, the freed pages are exactly
// the tails of the page lists (and keep their contents), and decoding the compacted cache through the compacted page
// table equals decoding gather's output. Bad tables and index lists are rejected before anything is written.
import t from 'tap';
import {
  compactInPlace, compactPageTable, decodeAttention, decodeAttentionBatched, gatherKVBatched, selectTokensBatched, tensor, MomentState,
} from '../lib/index';
import type { BatchCache, DType, PagedSeqs } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, maxRelErr, on } from './helpers';
import { at0, cacheOn, fillTokens, flat, hostOf, layoutCases, makeCache, mixedLengths, momentRows, momentsHost, sameBits, seqsOn, storage, tokenTensor, batchBackends, cases } from './batch-helpers';

const dtypes: DType[] = ['f32', 'bf16', 'f16'];

// On CUDA the table, data (strides, poison and canaries kept), lists and state live on the device; the reference is
// the CUDA gatherKVBatched of the same batch.
for (const be of batchBackends()) {
for (const [k, { layout, pageSize }] of cases(layoutCases())) {
  for (const budget of ['uniform', 'adaptive'] as const) {
    t.test(`compactInPlace ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''} ${budget}`, on(be), async (t) => {
      const rng = new Rng(1000 + 2 * k + (budget === 'adaptive' ? 1 : 0));
      const lengths = mixedLengths(rng, 7, 180);
      const H = 3, d = 16, dv = 8, B = lengths.length, dtype = dtypes[k % 3];
      const P = pageSize || 16;
      const device = be === 'cuda' ? { device: 0 } : {};
      const { tb, keys, values, cache: hostCache } = makeCache(rng, layout, lengths, H, d, dv, dtype, P);
      const cache = cacheOn(hostCache, be);
      const scores = fillTokens(tokenTensor(tb, H), tb, (b) => Float32Array.from({ length: H * lengths[b] }, () => rng.normal()));
      const hsel = selectTokensBatched(scores, tb.seqs, { ratio: 0.65, budget, safeguard: 0.2 });
      const sel = { indices: place(hsel.indices, be), counts: place(hsel.counts, be) };
      const refMoments = MomentState.create(B * H, d, dv, device);
      const dref = gatherKVBatched({ cache, indices: sel.indices, counts: sel.counts, moments: refMoments });
      const ref = { keys: await hostOf(dref.keys), values: await hostOf(dref.values), counts: dref.counts };
      const kBefore = keys.snapshot(), vBefore = values.snapshot();
      const moments = MomentState.create(B * H, d, dv, device);
      const res = compactInPlace({ cache, indices: sel.indices, counts: sel.counts, moments });
      const cnt = flat(hsel.counts);
      // kept rows, in order, at the front of each head
      let moved = 0;
      for (const [name, data, out, w, dev] of [['keys', keys, ref.keys, d, cache.keys], ['values', values, ref.values, dv, cache.values!]] as const) {
        const raw = await storage(dev as typeof ref.keys), want = out.host, cap = out.shape[2];
        const bad: string[] = [];
        lengths.forEach((n, b) => {
          for (let h = 0; h < H; h++)
            for (let j = 0; j < cnt[b * H + h]; j++)
              for (let c = 0; c < w; c++) {
                const o = data.offset(b, h, j) + c;
                if (!Object.is(raw[o], want[((b * H + h) * cap + j) * w + c])) bad.push(`[${b}, ${h}, ${j}, ${c}]`);
                if (raw[o] !== (name === 'keys' ? kBefore : vBefore)[o]) moved++;
              }
        });
        t.same(bad.slice(0, 5), [], `${name}: rows j < counts[b, h] equal gatherKVBatched's`);
        const before = name === 'keys' ? kBefore : vBefore;
        const touched = Array.from(data.outside).filter((i) => !Object.is(raw[i], before[i]));
        t.same(touched.slice(0, 5), [], `${name}: no element outside the sequences' rows changed (${data.outside.length} canaries and poisoned elements)`);
      }
      t.ok(moved > 0, `${moved} elements moved`);
      // moments: the same merge as gather
      const [mh, rh] = [await momentsHost(moments), await momentsHost(refMoments)];
      for (let b = 0; b < B; b++) momentRows(mh, b, H).forEach((rows, i) => sameBits(t, rows, momentRows(rh, b, H)[i], `sequence ${b} moments ${['n', 'muK', 'muV', 'm'][i]}`));
      // lengths and pages, computed independently
      const len = lengths.map((_, b) => Math.max(0, ...cnt.slice(b * H, (b + 1) * H)));
      t.same(flat(await hostOf(res.lengths)), len, 'lengths = max_h counts');
      t.equal(res.counts, sel.counts, 'counts are the new per-head counts');
      const hres = { ...res, pageCounts: res.pageCounts && (await hostOf(res.pageCounts)), lastPageLen: res.lastPageLen && (await hostOf(res.lastPageLen)) };
      if (tb.pages.length) {
        const pc = len.map((m) => Math.ceil(m / P));
        t.same(flat(hres.pageCounts!), pc, 'page counts');
        t.same(flat(hres.lastPageLen!), len.map((m, b) => (pc[b] === 0 ? 0 : m - (pc[b] - 1) * P)), 'last page lengths');
        const freed = tb.pages.flatMap((ps, b) => ps.slice(pc[b]));
        const freedAll = flat(await hostOf(res.freed!)), freedCount = flat(await hostOf(res.freedCount!));
        t.same(Array.from(res.freedPages ?? freedAll.slice(0, freedCount[0])), freed, `freed pages: exactly the tails of the page lists (${freed.length})`);
        t.same(freedCount, [freed.length], 'freedCount');
        t.ok(freedAll.slice(freed.length).every((x) => x === -1), 'freed is -1 after freedCount');
        // a freed page keeps its contents (the runtime reclaims it)
        const kNow = await storage(cache.keys as typeof ref.keys);
        const unchanged = freed.every((p) => {
          const o = keys.data.strides[0] * p + keys.data.offset, n = keys.data.strides[0];
          return Array.from({ length: n }, (_, i) => Object.is(kNow[o + i], kBefore[o + i])).every((x) => x);
        });
        t.ok(unchanged, 'freed pages are untouched');
      }
      // decode the compacted cache (through the compacted page table) = decode gather's output
      const newSeqs = tb.pages.length ? compactPageTable(tb.seqs as PagedSeqs, hres) : tb.seqs;
      const compacted = { ...seqsOn(newSeqs, be), keys: cache.keys, values: cache.values } as BatchCache;
      const queries = place(tensor(Float32Array.from({ length: B * 2 * H * d }, () => 0.3 * rng.normal()), [B, 2 * H, d]), be);
      const out = await hostOf(decodeAttentionBatched({ queries, cache: compacted, counts: sel.counts, moments }));
      for (let b = 0; b < B; b++) {
        const one = await hostOf(decodeAttention({ queries: at0(queries, b), keys: at0(dref.keys, b), values: at0(dref.values, b), counts: at0(dref.counts, b), moments: MomentState.from({
          n: refMoments.n.view([H], [1], b * H), muK: refMoments.muK.view([H, d], [d, 1], refMoments.muK.offset + b * H * d),
          muV: refMoments.muV.view([H, dv], [dv, 1], refMoments.muV.offset + b * H * dv), m: refMoments.m.view([H, dv, d], [dv * d, d, 1], refMoments.m.offset + b * H * dv * d),
        }) }));
        if (be === 'cpu') sameBits(t, flat(at0(out, b)), flat(one), `sequence ${b}: decode of the compacted cache = decode of gather's output`);
        // CUDA splits the rows into chunks by the cache's shape (n_b here, gather's capacity there): equal to rounding
        else t.ok(maxRelErr(flat(at0(out, b)), flat(one), 1e-3).err <= 1e-5, `sequence ${b}: decode of the compacted cache = decode of gather's output`);
      }
    });
  }
}
}

t.test('compactInPlace rejects shared pages, bad index lists and bad tables before writing', async (t) => {
  const rng = new Rng(5);
  const { tb, keys, values, cache } = makeCache(rng, 'NHD', [20, 30], 2, 8, 8, 'f32', 16);
  const scores = fillTokens(tokenTensor(tb, 2), tb, (b) => Float32Array.from({ length: 2 * tb.lengths[b] }, () => rng.normal()));
  const sel = selectTokensBatched(scores, tb.seqs, { keep: 5 });
  const kb = keys.snapshot(), vb = values.snapshot();
  const shared = { ...cache, indices: tensor(Int32Array.from([0, 1, 2, 0]), [4]) } as BatchCache;
  t.throws(() => compactInPlace({ cache: shared, indices: sel.indices, counts: sel.counts }), { name: 'RangeError', message: /page 0 is listed twice/ });
  const unsorted = tensor(Int32Array.from(flat(sel.indices)), sel.indices.shape);
  const u = unsorted.data as Int32Array;
  [u[0], u[1]] = [u[1], u[0]];
  t.throws(() => compactInPlace({ cache, indices: unsorted, counts: sel.counts }), { name: 'RangeError', message: /indices: row \[0, 0\] must hold strictly ascending positions/ });
  const tooMany = tensor(Int32Array.from([5, 5, 25, 5]), [2, 2]);
  t.throws(() => compactInPlace({ cache, indices: sel.indices, counts: tooMany }), { name: 'RangeError', message: /counts: counts\[1, 0\] = 25/ });
  const badPage = { ...cache, indices: tensor(Int32Array.from([0, 1, 2, 99]), [4]) } as BatchCache;
  t.throws(() => compactInPlace({ cache: badPage, indices: sel.indices, counts: sel.counts }), { name: 'RangeError', message: /page id 99 of sequence 1/ });
  sameBits(t, keys.snapshot(), kb, 'keys unchanged');
  sameBits(t, values.snapshot(), vb, 'values unchanged');
});
