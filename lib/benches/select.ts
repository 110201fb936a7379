/** Bench cases of token selection (docs/performance.md §5.2), uniform and adaptive, and the sorting baseline. */
import { selectTokens, keepFromRatio } from '../ops/select';
import type { Tensor } from '../tensor';
import { hostContiguous } from '../tensor';
import { randomHost } from '../checks/util';
import { native } from '../binding';
import type { BenchCase } from './types';
import { KEEP } from './shared';

/** Uniform top-k per head by sorting (score desc, position asc), then sorting the kept positions. */
export function selectNaive(scores: Tensor, keep: number): Int32Array {
  const [H, N] = scores.shape;
  const s = hostContiguous(scores) as Float32Array;
  const out = new Int32Array(H * keep);
  for (let h = 0; h < H; h++) {
    const idx = Array.from({ length: N }, (_, i) => i);
    idx.sort((a, b) => s[h * N + b] - s[h * N + a] || a - b);
    const kept = idx.slice(0, keep).sort((a, b) => a - b);
    out.set(kept, h * keep);
  }
  return out;
}

export const selectBenches: BenchCase[] = (['uniform', 'adaptive'] as const).map((budget): BenchCase => ({
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
      peer: { inputs: { scores: host }, params: { keep } },
    };
  },
}));
