/**
 * Bench case of the multi-round moment-informed eviction (docs/performance.md §5.4): keep 10 %, 4 rounds, r = 1.
 * Baseline: plain score eviction (mi = false) over the same inputs.
 */
import { momentkvSelect } from '../ops/momentkv_select';
import { keepFromRatio } from '../ops/select';
import { tensor, dtypeSize } from '../tensor';
import { randomHost } from '../checks/util';
import type { BenchCase } from './types';
import { stateOn } from './shared';

export const momentkvSelectBenches: BenchCase[] = [
  {
    op: 'momentkvSelect',
    variant: 'keep 10% rounds 4 r 1',
    // Per round one pass over V for the residuals; the evicted K and V rows are read once by the merges.
    solBytes: ({ H, N, d, dtype }) => 4 * H * N * d * dtypeSize(dtype) + 2 * H * (N - keepFromRatio(N, 0.9)) * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const kh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype), vh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype);
      const sc = new Float32Array(s.H * s.N).map((_, i) => (i % s.N >= s.N - 32 ? Infinity : Math.exp(2 * ctx.rng.normal())));
      const scores = ctx.place(tensor(sc, [s.H, s.N])), keys = ctx.place(kh), values = ctx.place(vh);
      const keep = keepFromRatio(s.N, 0.9);
      const indices = ctx.alloc([s.H, keep], 'i32'), counts = ctx.alloc([s.H], 'i32');
      const moments = stateOn(s.H, s.d, s.d, ctx);
      return {
        run: () => {
          moments.reset({ stream: ctx.stream });
          momentkvSelect({ scores, keys, values, keep, moments, indices, counts, stream: ctx.stream });
        },
        baseline: {
          name: 'plain score eviction (mi=false)',
          run: () => {
            moments.reset({ stream: ctx.stream });
            momentkvSelect({ scores, keys, values, keep, moments, indices, counts, mi: false, stream: ctx.stream });
          },
        },
      };
    },
  },
];
