/**
 * Bench case of the SnapKV scorer (docs/performance.md §5.1): two passes over K, the window queries and the f32
 * scores. The CUDA baseline forces the SIMT f32 logit tiles on.
 */
import { snapkvScores } from '../ops/snapkv';
import { dtypeSize } from '../tensor';
import { randomHost } from '../checks/util';
import { native } from '../binding';
import type { BenchCase } from './types';
import { G } from './shared';

/** Window queries of the SnapKV bench (GRKV's W). */
const W = 32;

export const snapkvBenches: BenchCase[] = [
  {
    op: 'snapkvScores',
    variant: `G=${G} W=${W} avg`,
    solBytes: ({ H, N, d, dtype }) => 2 * H * N * d * dtypeSize(dtype) + H * G * W * d * dtypeSize(dtype) + H * N * 4,
    // the window's logits q·k once (the second pass recomputes them: not counted)
    flops: ({ H, N, d }) => 2 * H * G * W * N * d,
    prepare(s, ctx) {
      const qh = randomHost(ctx.rng, [s.H * G, W, s.d], s.dtype, 0.5), kh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype, 0.5);
      const q = ctx.place(qh), k = ctx.place(kh);
      const out = ctx.alloc([s.H, s.N], 'f32');
      return {
        run: () => void snapkvScores(q, k, { out, stream: ctx.stream }),
        baseline:
          ctx.backend === 'cuda'
            ? { name: 'SIMT f32 logit tiles', run: () => native.baselineSnapkv(q.toNative(), k.toNative(), out.toNative(), ctx.stream?.handle) }
            : undefined,
        peer: { inputs: { queries: qh, keys: kh } },
      };
    },
  },
];
