// grkvMergeBatched (docs/runtime-caches.md §3) equals grkvMerge per sequence, bit for bit (outputs, counts,
// diagnostics), with ragged and padded surrogate-query batches; an empty sequence gets zero rows and counts 0. On CUDA
// (tables, cache, queries, positions, weights, scores and selection on the device) against the CUDA grkvMerge of each
// sequence's contiguous copies.
import t from 'tap';
import { grkvMerge, grkvMergeBatched, tensor, GRKV_DIAG_COLS } from '../lib/index';
import type { QueryBatch, Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, on } from './helpers';
import { cacheOn, hostOf, makeCache, makeData, makeTable, mixedLengths, onBackend, sameBits, seqsOn, flat, at0, fillTokens, tokenTensor, randomSelection, batchBackends, cases } from './batch-helpers';
import type { BatchLayout } from './batch-helpers';

const layouts: [BatchLayout, 'ragged' | 'padded', number][] = [
  ['ragged', 'ragged', 0], ['padded', 'padded', 0], ['NHD', 'ragged', 16], ['HND', 'padded', 1], ['HND', 'ragged', 64],
];

for (const be of batchBackends())
for (const [k, [layout, qlayout, pageSize]] of cases(layouts)) {
  t.test(`grkv batched ${be} ${layout}${pageSize ? ` page ${pageSize}` : ''}, ${qlayout} queries`, on(be), async (t) => {
    const rng = new Rng(900 + k);
    const lengths = mixedLengths(rng, 4, 90);
    const H = 2, G = 2, d = 16, dv = 16, B = lengths.length;
    const { tb, keys, values, cache } = makeCache(rng, layout, lengths, H, d, dv, k === 1 ? 'bf16' : 'f32', pageSize || 16);
    const sel = randomSelection(rng, tb, H, 0.5);
    const qlens = lengths.map((n) => (n === 0 ? 0 : 3 + rng.int(4)));
    const qtb = makeTable(rng, qlayout, qlens);
    const q = makeData(rng, qtb, H * G, d, 'f32', 0.5);
    // positions relative to each sequence: the last tokens
    const posOf = (b: number) => Int32Array.from({ length: qlens[b] }, (_, j) => Math.max(0, lengths[b] - qlens[b] + j));
    const wOf = (b: number) => Float32Array.from({ length: qlens[b] }, () => 0.5 + rng.uniform());
    const pos = qlens.map((_, b) => posOf(b)), w = qlens.map((_, b) => wOf(b));
    let queryPositions: Tensor, weights: Tensor;
    if (qlayout === 'ragged') {
      queryPositions = tensor(new Int32Array(qtb.T).fill(-5), [qtb.T]);
      weights = tensor(new Float32Array(qtb.T).fill(NaN), [qtb.T]);
      qlens.forEach((m, b) => {
        (queryPositions.data as Int32Array).set(pos[b], qtb.first[b]);
        (weights.data as Float32Array).set(w[b], qtb.first[b]);
      });
    } else {
      queryPositions = tensor(new Int32Array(B * qtb.L).fill(-5), [B, qtb.L]);
      weights = tensor(new Float32Array(B * qtb.L).fill(NaN), [B, qtb.L]);
      qlens.forEach((m, b) => {
        (queryPositions.data as Int32Array).set(pos[b], b * qtb.L);
        (weights.data as Float32Array).set(w[b], b * qtb.L);
      });
    }
    const blocks = lengths.map((n) => Float32Array.from({ length: H * n }, () => Math.abs(rng.normal())));
    const scores = fillTokens(tokenTensor(tb, H), tb, (b) => blocks[b]);
    const opts = { window: 4, cgIters: 4 };
    const dres = grkvMergeBatched({
      cache: cacheOn(cache, be), selection: { indices: place(sel.indices, be), counts: place(sel.counts, be) },
      queries: { ...seqsOn(qtb.seqs, be), queries: onBackend(q.data, be) } as QueryBatch, queryPositions: place(queryPositions, be),
      weights: place(weights, be), scores: onBackend(scores, be), diagnostics: true, ...opts,
    });
    const res = { keys: await hostOf(dres.keys), values: await hostOf(dres.values), counts: await hostOf(dres.counts), diagnostics: await hostOf(dres.diagnostics!) };
    for (const [b, n] of lengths.entries()) {
      if (n === 0) {
        t.ok(flat(at0(res.counts, b)).every((c) => c === 0) && flat(at0(res.keys, b)).every((x) => x === 0), `sequence ${b} (empty): counts 0, zero rows`);
        const dg = flat(at0(res.diagnostics!, b));
        t.ok(dg.every((x, i) => i % GRKV_DIAG_COLS !== 13 || x === 1), `sequence ${b}: diagnostics say skipped`);
        continue;
      }
      const dref = grkvMerge({
        keys: place(keys.perSeq[b], be), values: place(values.perSeq[b], be),
        selection: { indices: place(at0(sel.indices, b), be), counts: place(at0(sel.counts, b), be) }, queries: place(q.perSeq[b], be),
        queryPositions: place(tensor(pos[b], [qlens[b]]), be), weights: place(tensor(w[b], [qlens[b]]), be), scores: place(tensor(blocks[b], [H, n]), be),
        diagnostics: true, ...opts,
      });
      const ref = { keys: await hostOf(dref.keys), values: await hostOf(dref.values), counts: await hostOf(dref.counts), diagnostics: await hostOf(dref.diagnostics!) };
      sameBits(t, flat(at0(res.keys, b)), flat(ref.keys), `sequence ${b} (n = ${n}, ${qlens[b]} queries) keys`);
      sameBits(t, flat(at0(res.values, b)), flat(ref.values), `sequence ${b} values`);
      t.same(flat(at0(res.counts, b)), flat(ref.counts), `sequence ${b} counts`);
      sameBits(t, flat(at0(res.diagnostics, b)), flat(ref.diagnostics), `sequence ${b} diagnostics`);
    }
    const chosen = flat(res.diagnostics!).filter((x, i) => i % GRKV_DIAG_COLS === 0 && x > 0).length;
    t.ok(chosen > 0, `${chosen} heads took a merged candidate (the fits ran)`);
  });
}
