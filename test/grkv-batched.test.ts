// grkvMergeBatched (docs/runtime-caches.md §3) equals grkvMerge per sequence, bit for bit (outputs, counts,
// diagnostics), with ragged and padded surrogate-query batches; an empty sequence gets zero rows and counts 0.
import t from 'tap';
import { grkvMerge, grkvMergeBatched, tensor, GRKV_DIAG_COLS } from '../lib/index';
import type { QueryBatch, Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { makeCache, makeData, makeTable, mixedLengths, sameBits, flat, at0, fillTokens, tokenTensor, randomSelection } from './batch-helpers';
import type { BatchLayout } from './batch-helpers';

const layouts: [BatchLayout, 'ragged' | 'padded', number][] = [['ragged', 'ragged', 0], ['padded', 'padded', 0], ['NHD', 'ragged', 16], ['HND', 'padded', 1]];

for (const [k, [layout, qlayout, pageSize]] of layouts.entries()) {
  t.test(`grkv batched ${layout}${pageSize ? ` page ${pageSize}` : ''}, ${qlayout} queries`, async (t) => {
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
    const res = grkvMergeBatched({ cache, selection: sel, queries: { ...qtb.seqs, queries: q.data } as QueryBatch, queryPositions, weights, scores, diagnostics: true, ...opts });
    lengths.forEach((n, b) => {
      if (n === 0) {
        t.ok(flat(at0(res.counts, b)).every((c) => c === 0) && flat(at0(res.keys, b)).every((x) => x === 0), `sequence ${b} (empty): counts 0, zero rows`);
        const dg = flat(at0(res.diagnostics!, b));
        t.ok(dg.every((x, i) => i % GRKV_DIAG_COLS !== 13 || x === 1), `sequence ${b}: diagnostics say skipped`);
        return;
      }
      const ref = grkvMerge({
        keys: keys.perSeq[b], values: values.perSeq[b], selection: { indices: at0(sel.indices, b), counts: at0(sel.counts, b) }, queries: q.perSeq[b],
        queryPositions: tensor(pos[b], [qlens[b]]), weights: tensor(w[b], [qlens[b]]), scores: tensor(blocks[b], [H, n]), diagnostics: true, ...opts,
      });
      sameBits(t, flat(at0(res.keys, b)), flat(ref.keys), `sequence ${b} (n = ${n}, ${qlens[b]} queries) keys`);
      sameBits(t, flat(at0(res.values, b)), flat(ref.values), `sequence ${b} values`);
      t.same(flat(at0(res.counts, b)), flat(ref.counts), `sequence ${b} counts`);
      sameBits(t, flat(at0(res.diagnostics!, b)), flat(ref.diagnostics!), `sequence ${b} diagnostics`);
    });
    const chosen = flat(res.diagnostics!).filter((x, i) => i % GRKV_DIAG_COLS === 0 && x > 0).length;
    t.ok(chosen > 0, `${chosen} heads took a merged candidate (the fits ran)`);
  });
}
