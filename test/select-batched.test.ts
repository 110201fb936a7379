// selectTokensBatched (docs/runtime-caches.md §3) equals selectTokens per sequence with keep_b = min(keep, n_b): uniform
// and adaptive budgets, keep as a number, an i32 [B] tensor or a ratio, scores with ties and NaN; an empty sequence
// gets counts 0 and -1 indices. On CUDA (table, scores and keep on the device; a ratio becomes its host-computed keep
// tensor) the same, with the CPU selectTokens of each sequence as the reference (selection is exact on both backends).
import t from 'tap';
import { selectTokens, selectTokensBatched, keepFromRatio, tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, on } from './helpers';
import { hostOf, makeTable, mixedLengths, fillTokens, flat, at0, seqsOn, tokenTensor, batchBackends, cases } from './batch-helpers';
import type { BatchLayout } from './batch-helpers';

const layouts: [BatchLayout, number][] = [['ragged', 0], ['padded', 0], ['NHD', 16], ['HND', 1], ['NHD', 64]];

for (const be of batchBackends())
for (const [li, [layout, pageSize]] of cases(layouts)) {
  for (const budget of ['uniform', 'adaptive'] as const) {
    for (const keepKind of ['number', 'tensor', 'ratio'] as const) {
      t.test(`select batched ${be} ${layout} ${budget} keep as ${keepKind}`, on(be), async (t) => {
        const rng = new Rng(400 + li * 10 + (budget === 'adaptive' ? 5 : 0) + ['number', 'tensor', 'ratio'].indexOf(keepKind));
        const lengths = mixedLengths(rng, 8, 120);
        const H = 4;
        const tb = makeTable(rng, layout, lengths, pageSize || 16);
        const blocks = lengths.map((n) => Float32Array.from({ length: H * n }, () => (rng.uniform() < 0.05 ? NaN : Math.round(rng.normal() * 10) / 10)));
        const scores = fillTokens(tokenTensor(tb, H), tb, (b) => blocks[b]);
        const perSeqKeep = lengths.map(() => 1 + rng.int(40));
        const keepOpt = keepKind === 'number' ? { keep: 17 } : keepKind === 'tensor' ? { keep: tensor(Int32Array.from(perSeqKeep), [lengths.length]) } : { ratio: 0.7 };
        const keepOf = (n: number, b: number) => (keepKind === 'number' ? Math.min(17, n) : keepKind === 'tensor' ? Math.min(perSeqKeep[b], n) : keepFromRatio(n, 0.7));
        const opts = { budget, safeguard: 0.25, sinks: 2, recent: 3 };
        const host = selectTokensBatched(scores, tb.seqs, { ...keepOpt, ...opts });
        // device: the same call with the table, scores and keep on the device (capacity and ratio from the host)
        const keepDev = keepKind === 'number' ? keepOpt : { keep: place(tensor(Int32Array.from(lengths, (n, b) => keepOf(n, b)), [lengths.length]), be) };
        const dsel = be === 'cpu' ? host : selectTokensBatched(place(scores, be), seqsOn(tb.seqs, be), { ...keepDev, ...opts, cap: host.indices.shape[2] });
        const sel = { indices: await hostOf(dsel.indices), counts: await hostOf(dsel.counts) };
        const cap = sel.indices.shape[2];
        t.same(sel.counts.shape, [lengths.length, H], 'counts [B, H]');
        lengths.forEach((n, b) => {
          const idx = flat(at0(sel.indices, b)), cnt = flat(at0(sel.counts, b));
          if (n === 0) {
            t.ok(cnt.every((c) => c === 0) && idx.every((i) => i === -1), `sequence ${b} (empty): counts 0, indices -1`);
            return;
          }
          const ref = selectTokens(tensor(blocks[b], [H, n]), { keep: keepOf(n, b), ...opts });
          const rc = ref.indices.shape[1];
          t.same(cnt, flat(ref.counts), `sequence ${b} (n = ${n}, keep ${keepOf(n, b)}): counts`);
          const want: number[] = [];
          const rIdx = flat(ref.indices);
          for (let h = 0; h < H; h++) for (let j = 0; j < cap; j++) want.push(j < rc ? rIdx[h * rc + j] : -1);
          t.same(idx, want, `sequence ${b}: indices (padded with -1)`);
        });
      });
    }
  }
}
