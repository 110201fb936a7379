/** Bench cases of the foundation ops (spec/performance.md §5.1, §5.2, §5.5). */
import { keydiffScores } from '../ops/keydiff';
import { selectTokens, keepFromRatio } from '../ops/select';
import { gatherKV } from '../ops/gather';
import { dtypeSize } from '../tensor';
import { randomHost } from '../checks/util';
import type { BenchCase } from './types';
import { keydiffNaive, selectNaive, gatherNaive } from './baselines';
import { scoringSolBytes, compactionSetup } from './shared';
import { native } from '../binding';

const KEEP = 0.25;

export const coreBenches: BenchCase[] = [
  {
    op: 'keydiffScores',
    variant: '2 passes',
    solBytes: scoringSolBytes,
    prepare(s, ctx) {
      const host = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype);
      const keys = ctx.place(host);
      const out = ctx.alloc([s.H, s.N], 'f32');
      return {
        run: () => void keydiffScores(keys, { out, stream: ctx.stream }),
        baseline:
          ctx.backend === 'cpu'
            ? { name: 'plain JS', run: () => void keydiffNaive(host) }
            : { name: 'unfused (3 kernels)', run: () => native.baselineKeydiff(keys.toNative(), out.toNative(), ctx.stream?.handle) },
      };
    },
  },
  ...(['uniform', 'adaptive'] as const).map((budget): BenchCase => ({
    op: 'selectTokens',
    variant: `keep ${KEEP * 100}% ${budget}`,
    solBytes: ({ H, N }) => H * N * 4 + H * keepFromRatio(N, 1 - KEEP) * 4,
    prepare(s, ctx) {
      const host = randomHost(ctx.rng, [s.H, s.N], 'f32', 0);
      const scores = ctx.place(host);
      const keep = keepFromRatio(s.N, 1 - KEEP);
      const probe = selectTokens(host, { keep, budget });
      const indices = ctx.alloc([s.H, probe.indices.shape[1]], 'i32'), counts = ctx.alloc([s.H], 'i32');
      return {
        run: () => void selectTokens(scores, { keep, budget, indices, counts, stream: ctx.stream }),
        baseline:
          budget !== 'uniform'
            ? undefined
            : ctx.backend === 'cpu'
              ? { name: 'Array.sort', run: () => void selectNaive(host, keep) }
              : { name: 'CUB segmented sort', run: () => native.baselineSelect(scores.toNative(), keep, indices.toNative(), counts.toNative(), ctx.stream?.handle) },
      };
    },
  })),
  {
    op: 'gatherKV',
    variant: `keep ${KEEP * 100}%`,
    solBytes: ({ H, N, d, dtype }) => 2 * 2 * H * keepFromRatio(N, 1 - KEEP) * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const { kh, vh, sel, keys, values, indices, counts, keysOut, valuesOut, countsOut } = compactionSetup(s, ctx, KEEP);
      return {
        run: () => void gatherKV({ keys, values, indices, counts, keysOut, valuesOut, countsOut, stream: ctx.stream }),
        baseline:
          ctx.backend === 'cuda'
            ? {
                name: 'thread per element',
                run: () => native.baselineGather(keys.toNative(), values.toNative(), indices.toNative(), counts.toNative(), keysOut.toNative(), valuesOut.toNative(), ctx.stream?.handle),
              }
            : s.dtype === 'f32'
              ? { name: 'plain JS', run: () => void gatherNaive(kh, vh, sel.indices, sel.counts) }
              : undefined,
      };
    },
  },
];
