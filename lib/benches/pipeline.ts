/**
 * Bench cases of whole eviction pipelines: scores, then each head's top `keep` (positions ascending), then the
 * compaction of the kept K/V rows — the three calls a runtime makes per layer (docs/performance.md §5.6), each into
 * a preallocated output. The PyTorch peer runs the same three steps the way a kvpress user writes
 * them (scores, `topk` + `sort`, two `gather`s), so the ratio is pipeline against pipeline, not kernel against kernel.
 */
import { keydiffScores } from '../ops/keydiff';
import { snapkvScores } from '../ops/snapkv';
import { selectTokens, keepFromRatio } from '../ops/select';
import { gatherKV } from '../ops/gather';
import type { Tensor } from '../tensor';
import { dtypeSize } from '../tensor';
import { randomHost } from '../checks/util';
import type { BenchCase, BenchContext, BenchShape } from './types';
import { G, KEEP, scoringSolBytes } from './shared';

/** SnapKV's window queries (as the snapkvScores case). */
const W = 32;

/** Bytes of selection (scores read, kept positions written) and compaction (kept K/V rows read and written). */
function selectGatherSolBytes({ H, N, d, dtype }: BenchShape): number {
  const keep = keepFromRatio(N, 1 - KEEP);
  return H * N * 4 + H * keep * 4 + 2 * 2 * H * keep * d * dtypeSize(dtype);
}

/** The pipeline case of a scorer: `score(keys, out)` writes [H, N] f32 scores; selection and compaction follow. */
function pipelineCase(variant: string, withQueries: boolean, score: (q: Tensor | undefined, k: Tensor, out: Tensor, ctx: BenchContext) => void): BenchCase {
  return {
    op: 'pipeline',
    variant,
    solBytes: (s) =>
      scoringSolBytes(s) + (withQueries ? s.H * G * W * s.d * dtypeSize(s.dtype) : 0) + selectGatherSolBytes(s),
    prepare(s, ctx) {
      const kh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype, 0.5), vh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype);
      const qh = withQueries ? randomHost(ctx.rng, [s.H * G, W, s.d], s.dtype, 0.5) : undefined;
      const keys = ctx.place(kh), values = ctx.place(vh), queries = qh && ctx.place(qh);
      const keep = keepFromRatio(s.N, 1 - KEEP);
      const scores = ctx.alloc([s.H, s.N], 'f32');
      const indices = ctx.alloc([s.H, keep], 'i32'), counts = ctx.alloc([s.H], 'i32');
      const keysOut = ctx.alloc([s.H, keep, s.d], s.dtype), valuesOut = ctx.alloc([s.H, keep, s.d], s.dtype);
      const countsOut = ctx.alloc([s.H], 'i32');
      const stream = ctx.stream;
      return {
        run: () => {
          score(queries, keys, scores, ctx);
          selectTokens(scores, { keep, sinks: 0, recent: 0, indices, counts, stream });
          gatherKV({ keys, values, indices, counts, keysOut, valuesOut, countsOut, stream });
        },
        peer: { inputs: { ...(qh ? { queries: qh } : {}), keys: kh, values: vh }, params: { keep } },
      };
    },
  };
}

export const pipelineBenches: BenchCase[] = [
  pipelineCase(`KeyDiff scores + select + gather, keep ${KEEP * 100}%`, false, (_q, k, out, ctx) => void keydiffScores(k, { out, stream: ctx.stream })),
  pipelineCase(`SnapKV G=${G} W=${W} avg scores + select + gather, keep ${KEEP * 100}%`, true, (q, k, out, ctx) => void snapkvScores(q!, k, { out, stream: ctx.stream })),
];
