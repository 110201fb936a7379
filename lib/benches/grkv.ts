/**
 * Bench cases of the GRKV family (spec/performance.md §3, §5.3): the batched SPD solve of the value step (one
 * (G·Qs)×(G·Qs) system per KV head, d right-hand sides) and the whole merge of one layer (keep 10 %, G = 4, Qs = 32,
 * stratified surrogates). Both are compute- or latency-bound; solBytes is the traffic they cannot avoid.
 */
import { spdSolve } from '../ops/spd';
import { grkvMerge } from '../ops/grkv';
import { selectTokens, keepFromRatio } from '../ops/select';
import { dtypeSize, tensor } from '../tensor';
import { randomHost } from '../checks/util';
import type { BenchCase } from './types';

const G = 4, QS = 32, ROWS = G * QS;

export const grkvBenches: BenchCase[] = [
  {
    op: 'spdSolve',
    variant: `H systems of order ${ROWS}, d right-hand sides`,
    solBytes: ({ H, d }) => H * (ROWS * ROWS + 2 * ROWS * d) * 4,
    prepare(s, ctx) {
      const n = ROWS;
      const A = new Float32Array(s.H * n * n);
      for (let b = 0; b < s.H; b++) {
        const M = Float64Array.from({ length: n * 16 }, () => ctx.rng.normal());
        for (let i = 0; i < n; i++)
          for (let j = 0; j <= i; j++) {
            let acc = 0;
            for (let c = 0; c < 16; c++) acc += M[i * 16 + c] * M[j * 16 + c];
            A[(b * n + i) * n + j] = A[(b * n + j) * n + i] = acc / 16;
          }
      }
      const a = ctx.place(tensor(A, [s.H, n, n]));
      const b = ctx.place(randomHost(ctx.rng, [s.H, n, s.d], 'f32', 0));
      const out = ctx.alloc([s.H, n, s.d], 'f32'), info = ctx.alloc([s.H], 'i32');
      return { run: () => void spdSolve({ a, b, lambda: 1e-2, out, info, stream: ctx.stream }) };
    },
  },
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
