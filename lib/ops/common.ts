/** Shared plumbing of op wrappers: option objects, streams, outputs. */
import { Stream } from '../device';
import { Device, DType, Tensor, asTensor, checkDtype, checkRank, empty, sameDevice } from '../tensor';
import { checkOptions, checkKeys, show } from '../validate';

export interface StreamOpt {
  /** CUDA stream to enqueue on (CUDA tensors only; default stream when omitted). */
  stream?: Stream;
}

export function opts(name: string, v: unknown, allowed: readonly string[]): Record<string, unknown> {
  const o = checkOptions(name, v);
  checkKeys(name, o, allowed);
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
