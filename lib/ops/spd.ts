/**
 * Batched SPD solves (docs/performance.md §3): X_b = (A_b + λI)⁻¹ B_b by Cholesky and two triangular solves in
 * fp32, for many small systems at once (the GRKV value step solves one (G·Qs)×(G·Qs) system per KV head with this
 * primitive). Only the LOWER triangle of each A_b is read.
 *
 * Non-SPD systems follow LAPACK's potrf convention: `info[b] = k > 0` when the leading minor of order k is not
 * positive definite (pivot k−1 ≤ 0 or not finite), and the rows of `x` of that system are NaN.
 * - CPU backend: the call throws a {@link SpdError} (a RangeError naming the system and pivot) at once, after every
 *   output is written, unless `throwOnError: false`.
 * - CUDA backend: the op only enqueues (no host synchronisation), so it cannot throw for a pivot; `info` is written on
 *   the stream and `await result.check()` (which waits for the stream off the event loop) throws the same SpdError.
 */
import { native, Native } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, toHost, hostContiguous } from '../tensor';
import { checkBool, checkNum } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';

export interface SpdSolveArgs extends StreamOpt {
  /** f32 [B, n, n] (or one system [n, n]); only the lower triangle is read. */
  a: Tensor | TensorLike;
  /** f32 [B, n, r] right-hand sides (or [n, r]). */
  b: Tensor | TensorLike;
  /** Added to the diagonal (ridge), ≥ 0. Default 0. */
  lambda?: number;
  /** Preallocated f32 output of b's shape; may be `b` itself (in-place solve). */
  out?: Tensor | TensorLike;
  /** Preallocated i32 [B] info output. */
  info?: Tensor | TensorLike;
  /** CPU backend: throw at once when a system is not SPD (default true). */
  throwOnError?: boolean;
}

export interface SpdSolution {
  /** The solutions, shaped like b. */
  x: Tensor;
  /** i32 [B]: 0 = solved, k > 0 = the leading minor of order k is not positive definite. */
  info: Tensor;
  /** Waits for the solve (CUDA: on its stream, off the event loop) and throws an SpdError if any system failed. */
  check(): Promise<void>;
}

/** A system that is not symmetric positive definite (after adding λ). */
export class SpdError extends RangeError {
  /** Index of the first failing system. */
  readonly system: number;
  /** Order of its first non-positive leading minor (LAPACK info); the failing pivot is `minor − 1`. */
  readonly minor: number;
  /** Number of failing systems. */
  readonly failures: number;
  constructor(message: string, system: number, minor: number, failures: number) {
    super(message);
    this.name = 'SpdError';
    this.system = system;
    this.minor = minor;
    this.failures = failures;
  }
}

function infoError(info: Int32Array, lambda: number): SpdError | undefined {
  let first = -1, failures = 0;
  for (let s = 0; s < info.length; s++) {
    if (info[s] !== 0) {
      failures++;
      if (first < 0) first = s;
    }
  }
  if (first < 0) return undefined;
  const k = info[first];
  return new SpdError(
    `a: system ${first} of ${info.length} is not positive definite: pivot ${k - 1} (leading minor of order ${k}) is not positive` +
      `${lambda > 0 ? ` after adding lambda = ${lambda}` : ''}; info[${first}] = ${k}` +
      `${failures > 1 ? ` (${failures} systems failed)` : ''}`,
    first,
    k,
    failures,
  );
}

/** Solves (A_b + λI) X_b = B_b for every system b. See the module documentation for errors. */
export function spdSolve(args: SpdSolveArgs): SpdSolution {
  const p = plan(args, false);
  try {
    native.spdSolve(...p.args);
  } catch (e) {
    throw withInfo(e, p.result.info);
  }
  return p.result;
}

/** {@link spdSolve} on a worker thread (see AsyncOptions); a failing system rejects with the SpdError. */
export async function spdSolveAsync(args: SpdSolveArgs & AsyncOptions): Promise<SpdSolution> {
  const p = plan(args, true);
  try {
    await runAsync(native.spdSolveAsync, p.args, p.signal);
  } catch (e) {
    throw withInfo(e, p.result.info);
  }
  return p.result;
}

/** The CPU backend reports the first failing system (with its pivot value): adds the structured SpdError fields. */
function withInfo(e: unknown, info: Tensor): unknown {
  const m = e instanceof RangeError ? /^a: system (\d+) of \d+ is not positive definite/.exec(e.message) : null;
  if (!m || info.onCuda) return e;
  const host = hostContiguous(info) as Int32Array;
  const failures = host.reduce((acc, v) => acc + (v !== 0 ? 1 : 0), 0);
  return new SpdError((e as Error).message + (failures > 1 ? ` (${failures} systems failed)` : ''), Number(m[1]), host[Number(m[1])], failures);
}

const KEYS = ['a', 'b', 'lambda', 'out', 'info', 'throwOnError', 'stream'];

function plan(args: unknown, async: boolean) {
  const o = opts('args', args, keysOf(KEYS, async));
  let a = checkDtype('a', asTensor('a', o.a), ['f32']);
  let b = checkDtype('b', asTensor('b', o.b), ['f32']);
  const single = a.ndim === 2;
  if (single) {
    if (b.ndim !== 2) throw new TypeError(`b: expected a 2-D tensor [n, r] to match a 2-D a, got ${b.ndim}-D [${b.shape.join(', ')}]`);
    a = a.view([1, ...a.shape], [0, ...a.strides], a.offset, 'a');
    b = b.view([1, ...b.shape], [0, ...b.strides], b.offset, 'b');
  }
  checkRank('a', a, 3, '[B, n, n]');
  checkRank('b', b, 3, '[B, n, r]');
  const [B, n] = a.shape;
  if (a.shape[2] !== n) throw new RangeError(`a: expected square systems [B, n, n], got [${a.shape.join(', ')}]`);
  if (b.shape[0] !== B || b.shape[1] !== n) {
    throw new RangeError(`b: expected shape [${B}, ${n}, r] to match a [${a.shape.join(', ')}], got [${b.shape.join(', ')}]`);
  }
  const lambda = checkNum('lambda', o.lambda ?? DEFAULTS.spd.lambda, 0, 1e30, { maxOpen: true });
  const throwOnError = checkBool('throwOnError', o.throwOnError ?? DEFAULTS.spd.throwOnError);
  const stream = streamOf(o, a.device);
  const xShape = single ? [n, b.shape[2]] : [B, n, b.shape[2]];
  let x = output('out', o.out, xShape, 'f32', a.device, stream);
  const xOut = x;
  if (single) x = x.view([1, ...x.shape], [0, ...x.strides], x.offset, 'out');
  const info = output('info', o.info, [B], 'i32', a.device, stream);
  const nargs: Parameters<Native['spdSolve']> = [
    a.toNative(), b.toNative(), x.toNative(), info.toNative(), { lambda, check: throwOnError ? 1 : 0 }, stream?.handle,
  ];
  const result: SpdSolution = {
    x: xOut,
    info,
    async check() {
      const host = await toHost(info, { stream });
      const err = infoError(hostContiguous(host) as Int32Array, lambda);
      if (err) throw err;
    },
  };
  return { args: nargs, result, signal: signalOf(o) };
}
