/**
 * Bench case of the moment-state merge (docs/performance.md §5.4), fused into the compaction: one pass over all K
 * and V rows, the kept ones copied and the evicted ones merged. Baseline: the compaction alone.
 */
import { gatherKV } from '../ops/gather';
import { keepFromRatio } from '../ops/select';
import { dtypeSize } from '../tensor';
import type { BenchCase } from './types';
import { KEEP, compactionSetup, stateOn } from './shared';

export const momentsBenches: BenchCase[] = [
  {
    op: 'MomentState.merge',
    variant: `fused into gatherKV, keep ${KEEP * 100}%`,
    // One pass over all K and V rows (kept ones copied, evicted ones merged) plus the kept rows written.
    solBytes: ({ H, N, d, dtype }) => 2 * H * N * d * dtypeSize(dtype) + 2 * H * keepFromRatio(N, 1 - KEEP) * d * dtypeSize(dtype),
    // the rank-one update M += (v − μ_v)(k − μ_k)ᵀ of every evicted row
    flops: ({ H, N, d }) => 2 * H * (N - keepFromRatio(N, 1 - KEEP)) * d * d,
    prepare(s, ctx) {
      const { kh, vh, sel, keys, values, indices, counts, keysOut, valuesOut, countsOut } = compactionSetup(s, ctx, KEEP);
      const moments = stateOn(s.H, s.d, s.d, ctx);
      return {
        run: () => void gatherKV({ keys, values, indices, counts, keysOut, valuesOut, countsOut, moments, stream: ctx.stream }),
        baseline: { name: 'compaction alone', run: () => void gatherKV({ keys, values, indices, counts, keysOut, valuesOut, countsOut, stream: ctx.stream }) },
        peer: { inputs: { keys: kh, values: vh, indices: sel.indices } },
      };
    },
  },
];
