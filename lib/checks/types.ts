/**
 * `kvtrim check`: each entry runs one op on a target (CUDA) and on the CPU backend over the same fresh random
 * inputs, and compares. The target is abstract so the same checks also run CPU-vs-CPU in the test suite, which
 * keeps the check code itself tested on machines without a GPU.
 */
import type { Rng } from '../rng';
import type { Tensor, DType } from '../tensor';

export interface CheckResult {
  /** true when the target agrees with the CPU backend within `tolerance`. */
  pass: boolean;
  /** The measured disagreement (e.g. max relative error, or mismatching entries). */
  error: number;
  tolerance: number;
  detail?: string;
}

/** Where the op under check runs. */
export interface Target {
  name: string;
  /** Copy of a host tensor on the target (contiguous). */
  place(t: Tensor): Tensor;
  /** An output on the target filled with 0xff bytes (NaN for floats, -1 for i32). */
  poisoned(shape: number[], dtype: DType): Tensor;
  /** Host copy of a target tensor. */
  fetch(t: Tensor): Promise<Tensor>;
}

export interface Check {
  op: string;
  /** Shape/dtype summary shown in the table. */
  config: string;
  run(rng: Rng, target: Target): Promise<CheckResult>;
}
