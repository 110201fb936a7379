/** Pieces shared by the bench cases of several ops. */
import { MomentState } from '../ops/moments';
import { selectTokens } from '../ops/select';
import { dtypeSize, hostContiguous, Tensor } from '../tensor';
import { bf16ToF32, f16ToF32 } from '../half';
import { randomHost } from '../checks/util';
import type { BenchCase, BenchContext, BenchShape, Prepared } from './types';

/** Fraction of the tokens kept by the selection, compaction and moment-merge cases. */
export const KEEP = 0.25;

/** Query heads per KV head of the cases with queries (Llama-3-8B-like GQA). */
export const G = 4;

/** Surrogate queries per query head of the GRKV-sized cases (the merge and its value-step solve). */
export const QS = 32;

/** Two streaming passes over K plus the f32 scores written (docs/performance.md §5.1). */
export function scoringSolBytes({ H, N, d, dtype }: BenchShape): number {
  return 2 * H * N * d * dtypeSize(dtype) + H * N * 4;
}

/**
 * The case of a key scorer: random keys [H, N, d] placed on the backend, f32 scores [H, N] into a preallocated output
 * (two streaming passes over K, scoringSolBytes). `baseline` gets the host keys and the placed tensors.
 */
export function keyScorerCase(
  op: string,
  variant: string,
  score: (keys: Tensor, out: Tensor, ctx: BenchContext) => void,
  baseline: (host: Tensor, keys: Tensor, out: Tensor, ctx: BenchContext) => Prepared['baseline'],
): BenchCase {
  return {
    op,
    variant,
    solBytes: scoringSolBytes,
    prepare(s, ctx) {
      const host = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype);
      const keys = ctx.place(host);
      const out = ctx.alloc([s.H, s.N], 'f32');
      return { run: () => score(keys, out, ctx), baseline: baseline(host, keys, out, ctx), peer: { inputs: { keys: host } } };
    },
  };
}

/** A host tensor's elements as f32 (f16 / bf16 decoded), contiguous: the input of the plain-JS baselines. */
export function decoded(t: Tensor): Float32Array {
  const h = hostContiguous(t);
  if (t.dtype === 'f32') return h as Float32Array;
  const cv = t.dtype === 'bf16' ? bf16ToF32 : f16ToF32;
  return Float32Array.from(h, (x) => cv(x));
}

/** An empty moment state on the backend of `ctx`. */
export function stateOn(H: number, d: number, dv: number, ctx: BenchContext): MomentState {
  return MomentState.create(H, d, dv, ctx.backend === 'cuda' ? { device: ctx.device, ...(ctx.stream ? { stream: ctx.stream } : {}) } : {});
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
