/**
 * Bench case of the batched SPD solve (docs/performance.md §3) at the size of GRKV's value step: one (G·Qs)×(G·Qs)
 * system per KV head, d right-hand sides. Compute-bound; solBytes is the traffic it cannot avoid.
 */
import { spdSolve } from '../ops/spd';
import { tensor } from '../tensor';
import { randomHost } from '../checks/util';
import type { BenchCase } from './types';
import { G, QS } from './shared';

const ROWS = G * QS;

export const spdBenches: BenchCase[] = [
  {
    op: 'spdSolve',
    variant: `H systems of order ${ROWS}, d right-hand sides`,
    solBytes: ({ H, d }) => H * (ROWS * ROWS + 2 * ROWS * d) * 4,
    // Cholesky n³/3, two triangular solves of d right-hand sides 2·n²·d
    flops: ({ H, d }) => H * (ROWS ** 3 / 3 + 2 * ROWS * ROWS * d),
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
      const ah = tensor(A, [s.H, n, n]), bh = randomHost(ctx.rng, [s.H, n, s.d], 'f32', 0);
      const a = ctx.place(ah), b = ctx.place(bh);
      const out = ctx.alloc([s.H, n, s.d], 'f32'), info = ctx.alloc([s.H], 'i32');
      return { run: () => void spdSolve({ a, b, lambda: 1e-2, out, info, stream: ctx.stream }), peer: { inputs: { a: ah, b: bh }, params: { lambda: 1e-2 } } };
    },
  },
];
