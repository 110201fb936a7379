/** Pieces shared by the bench cases of several op families. */
import { selectTokens } from '../ops/select';
import { dtypeSize, Tensor } from '../tensor';
import { randomHost } from '../checks/util';
import type { BenchContext, BenchShape } from './types';

/** Two streaming passes over K plus the f32 scores written (spec/performance.md §5.1). */
export function scoringSolBytes({ H, N, d, dtype }: BenchShape): number {
  return 2 * H * N * d * dtypeSize(dtype) + H * N * 4;
}

export interface CompactionSetup {
  /** host copies of K and V */
  kh: Tensor;
  vh: Tensor;
  keys: Tensor;
  values: Tensor;
  indices: Tensor;
  counts: Tensor;
  keysOut: Tensor;
  valuesOut: Tensor;
  countsOut: Tensor;
  /** host selection */
  sel: { indices: Tensor; counts: Tensor };
}

/** Random K/V and a uniform selection keeping `keep` of the tokens, placed on the backend with outputs. */
export function compactionSetup(s: BenchShape, ctx: BenchContext, keep: number): CompactionSetup {
  const kh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype), vh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype);
  const sel = selectTokens(randomHost(ctx.rng, [s.H, s.N], 'f32', 0), { ratio: 1 - keep });
  const cap = sel.indices.shape[1];
  return {
    kh,
    vh,
    sel,
    keys: ctx.place(kh),
    values: ctx.place(vh),
    indices: ctx.place(sel.indices),
    counts: ctx.place(sel.counts),
    keysOut: ctx.alloc([s.H, cap, s.d], s.dtype),
    valuesOut: ctx.alloc([s.H, cap, s.d], s.dtype),
    countsOut: ctx.alloc([s.H], 'i32'),
  };
}
