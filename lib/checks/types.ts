/** `kvtrim check`: each entry runs one op on CUDA and on the CPU backend over the same fresh random inputs. */
import type { Rng } from '../rng';

export interface CheckResult {
  /** true when CUDA agrees with the CPU backend within `tolerance`. */
  pass: boolean;
  /** The measured disagreement (e.g. max relative error, or mismatching rows). */
  error: number;
  tolerance: number;
  detail?: string;
}

export interface Check {
  op: string;
  /** Shape/dtype summary shown in the table. */
  config: string;
  run(rng: Rng, device: number): Promise<CheckResult>;
}
