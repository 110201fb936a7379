/**
 * Bench case of the GRKV merge of one layer (docs/performance.md §5.3): keep 10 %, G = 4, Qs = 32, stratified
 * surrogates. Compute- or latency-bound; solBytes is the traffic it cannot avoid.
 */
import { grkvMerge } from '../ops/grkv';
import { selectTokens, keepFromRatio } from '../ops/select';
import { dtypeSize, tensor } from '../tensor';
import { randomHost } from '../checks/util';
import type { BenchCase } from './types';
import { G, QS } from './shared';

export const grkvBenches: BenchCase[] = [
  {
    op: 'grkvMerge',
    variant: `keep 10% G=${G} Qs=${QS} stratified`,
    // read K and V once (target), write the compacted K and V
    solBytes: ({ H, N, d, dtype }) => 2 * H * N * d * dtypeSize(dtype) + 2 * H * keepFromRatio(N, 0.9) * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const kh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype), vh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype, 0);
      const scores = randomHost(ctx.rng, [s.H, s.N], 'f32', 0);
      const sel = selectTokens(scores, { ratio: 0.9, recent: 32 });
      const q = randomHost(ctx.rng, [s.H * G, QS, s.d], 'f32', 0);
      const qpos = tensor(new Int32Array(QS).fill(s.N - 1), [QS]);
      const w = tensor(new Float32Array(QS).fill(6 / QS), [QS]);
      const cap = sel.indices.shape[1];
      const args = {
        keys: ctx.place(kh), values: ctx.place(vh), selection: { indices: ctx.place(sel.indices), counts: ctx.place(sel.counts) },
        queries: ctx.place(q), queryPositions: ctx.place(qpos), weights: ctx.place(w), scores: ctx.place(scores),
        keysOut: ctx.alloc([s.H, cap, s.d], s.dtype), valuesOut: ctx.alloc([s.H, cap, s.d], s.dtype), countsOut: ctx.alloc([s.H], 'i32'),
        stream: ctx.stream,
      };
      return { run: () => void grkvMerge(args) };
    },
  },
];
