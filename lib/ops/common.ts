/** Shared plumbing of op wrappers: option objects, streams, outputs, the async forms. */
import type { AbortCell } from '../binding';
import { Stream } from '../device';
import { Device, DType, Tensor, asTensor, checkDtype, checkRank, empty, sameDevice } from '../tensor';
import { checkOptions, checkKeys, rejectNulls, show } from '../validate';

export interface StreamOpt {
  /** CUDA stream to enqueue on (CUDA tensors only; default stream when omitted). */
  stream?: Stream;
}

/**
 * An options argument: an object (or undefined) with known keys only. A key set to null is an error (omit it for the
 * default): `??` defaults would otherwise take null for "not given" silently.
 */
export function opts(name: string, v: unknown, allowed: readonly string[]): Record<string, unknown> {
  const o = checkOptions(name, v);
  checkKeys(name, o, allowed);
  rejectNulls('', o);
  return o;
}

export function streamOf(o: Record<string, unknown>, device: Device): Stream | undefined {
  const s = o.stream;
  if (s === undefined) return undefined;
  if (!(s instanceof Stream)) throw new TypeError(`stream: expected a Stream, got ${show(s)}`);
  if (device.kind === 'cpu') throw new TypeError('stream: given, but the tensors are in host memory (CPU backend)');
  if (s.device !== device.id) throw new TypeError(`stream: belongs to device ${s.device}, tensors are on cuda:${device.id}`);
  return s;
}

/** A logit-scale default: the sentinel 0 means 1/√d. */
export function scaleOr(scale: number, d: number): number {
  return scale === 0 ? 1 / Math.sqrt(d) : scale;
}

/**
 * Called with every output an op allocates itself, before the op runs (undefined: none). The test suite poisons
 * them (test/helpers.ts), so a kernel that leaves an element unwritten is seen there too: fresh host memory is
 * zeroed, which would hide it.
 */
let freshOutputHook: ((t: Tensor, stream?: Stream) => void) | undefined;
export function setFreshOutputHook(fn: ((t: Tensor, stream?: Stream) => void) | undefined): void {
  freshOutputHook = fn;
}

/** A caller-provided output (checked for shape, dtype and device) or a fresh allocation. */
export function output(
  name: string,
  given: unknown,
  shape: readonly number[],
  dtype: DType,
  device: Device,
  stream?: Stream,
): Tensor {
  if (given === undefined) {
    const t = empty(shape, dtype, device, stream);
    freshOutputHook?.(t, stream);
    return t;
  }
  const t = checkDtype(name, checkRank(name, asTensor(name, given), shape.length, `[${shape.join(', ')}]`), [dtype]);
  if (t.shape.some((n, i) => n !== shape[i])) throw new RangeError(`${name}: expected shape [${shape.join(', ')}], got [${t.shape.join(', ')}]`);
  if (!sameDevice(t.device, device)) throw new TypeError(`${name}: must be on the same device as the inputs`);
  return t;
}

// ---- The Promise-returning op forms `<op>Async` -------------------------------------------------------------------
// Every op that can take more than about a millisecond on the CPU backend has an async twin with the same arguments
// (plus `signal`) that runs the C call on a libuv worker thread and resolves to what the op returns. The op's
// wrapper validates and allocates once (a `plan`), then calls either the sync export or runAsync(<op>Async).

/** Options of the async op forms. */
export interface AsyncOptions {
  /**
   * Aborts the op. Before the C call starts (also while it waits for a free worker thread) it is skipped: nothing is
   * written and the promise rejects with an `AbortError` (code `ABORT_ERR`, `cause` = the signal's reason). An abort
   * that arrives while the call runs takes effect when it returns: the C kernels have no cancellation points, so the
   * outputs are written and then the promise rejects. Pipelines (`compressAsync`) stop before their next op.
   */
  signal?: AbortSignal;
}

/** An op's option keys, plus `signal` for its async form. */
export function keysOf(keys: readonly string[], async: boolean): readonly string[] {
  return async ? [...keys, 'signal'] : keys;
}

/** The `signal` option (checked). */
export function signalOf(o: Record<string, unknown>): AbortSignal | undefined {
  const s = o.signal;
  if (s === undefined) return undefined;
  if (!(s instanceof AbortSignal)) throw new TypeError(`signal: expected an AbortSignal, got ${show(s)}`);
  return s;
}

/** The rejection of an aborted op (as Node's own APIs: name AbortError, code ABORT_ERR, cause = the reason). */
export function abortError(signal: AbortSignal): Error {
  const e = new Error('The operation was aborted', { cause: signal.reason });
  e.name = 'AbortError';
  (e as Error & { code: string }).code = 'ABORT_ERR';
  return e;
}

/** Throws the AbortError when `signal` is aborted. */
export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/**
 * Calls an async export with the plan's arguments and an abort cell that `signal` sets; the inputs and outputs stay
 * referenced by the addon until it settles (callers must not modify them meanwhile).
 */
export async function runAsync<A extends unknown[]>(
  fn: (...args: [...A, AbortCell?]) => Promise<void>,
  args: A,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (signal === undefined) return fn(...args, undefined);
  checkAborted(signal);
  const cell = new Int32Array(1);
  const onAbort = () => Atomics.store(cell, 0, 1);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await fn(...args, cell);
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ABORT_ERR') throw abortError(signal);
    throw e;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  checkAborted(signal);
}
