/** `kvtrim bench`: a case prepares inputs on a backend, then its `run` is timed (and its baseline, if any). */
import type { Stream } from '../device';
import type { Tensor, DType, FloatDType } from '../tensor';
import type { Rng } from '../rng';

export interface BenchShape {
  H: number;
  N: number;
  d: number;
  /** K/V dtype */
  dtype: FloatDType;
}

export interface BenchContext {
  backend: 'cpu' | 'cuda';
  device: number;
  /** the stream ops must be enqueued on (CUDA only) */
  stream?: Stream;
  rng: Rng;
  /** Moves a host tensor to the backend. */
  place(t: Tensor): Tensor;
  /** An output on the backend. */
  alloc(shape: number[], dtype: DType): Tensor;
}

export interface Prepared {
  /** One execution of the op (enqueue only on CUDA). */
  run(): void;
  /**
   * A straightforward implementation of the same computation, timed in the same run: after the op, at most 3 times
   * (slow plain-JS baselines); with `interleave`, alternately with the op, `repeats` times each after the same
   * warmup, so a drift in the machine's speed (other tenants, memory bandwidth) lands on both sides of the ratio.
   */
  baseline?: { name: string; run(): void; interleave?: boolean };
  dispose?(): void;
  /**
   * The case's host inputs, named as the PyTorch peer's arguments (tools/gpu/torch_peer.py make_case), and its
   * parameters: what `kvtrim bench --peer torch` hands the peer so both time the same math on the same inputs.
   */
  peer?: { inputs: Record<string, Tensor>; params?: Record<string, number> };
}

export interface BenchCase {
  op: string;
  /** Human-readable configuration beyond the shape (e.g. "keep 25% adaptive"). */
  variant: string;
  /** The backends the case runs on (default: both). */
  backends?: readonly ('cpu' | 'cuda')[];
  /** The fewest bytes the op must move (docs/performance.md §5), for the speed-of-light ratio. */
  solBytes(s: BenchShape): number;
  /**
   * Compute-bound cases: the multiply-adds (×2 flops) the op must do, for the fraction of the FMA peak measured in the
   * same run (docs/performance.md §12).
   */
  flops?(s: BenchShape): number;
  prepare(s: BenchShape, ctx: BenchContext): Prepared;
}
