/**
 * Tensors: DLPack-shaped views `{ data, dtype, shape, strides, offset }` (strides and offset in elements) over a
 * host typed array (CPU backend, zero copy) or a DeviceBuffer (CUDA backend). Ops accept `Tensor` instances or
 * plain objects of that shape and return tensors on the device of their inputs.
 */
import { DeviceBuffer, Stream } from './device';
import { native, NativeTensor } from './binding';
import { checkInt, checkKeys, checkOneOf, checkOptions, show } from './validate';
import { f16ToF32, bf16ToF32 } from './half';

export type DType = 'f32' | 'f16' | 'bf16' | 'i32';
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i32'];
export type FloatDType = 'f32' | 'f16' | 'bf16';
export type HostArray = Float32Array | Uint16Array | Int32Array;
export type TensorData = HostArray | DeviceBuffer;
export type Device = { kind: 'cpu' } | { kind: 'cuda'; id: number };

/** A tensor-shaped plain object (what ops accept besides Tensor instances). */
export interface TensorLike {
  data: TensorData;
  dtype?: DType;
  shape: readonly number[];
  strides?: readonly number[];
  offset?: number;
}

export function dtypeSize(dtype: DType): number {
  checkOneOf('dtype', dtype, DTYPES);
  return dtype === 'f16' || dtype === 'bf16' ? 2 : 4;
}

function inferDtype(name: string, data: TensorData, dtype: unknown): DType {
  if (dtype !== undefined) {
    const dt = checkOneOf(`${name}.dtype`, dtype, DTYPES);
    const ok =
      data instanceof DeviceBuffer ||
      (data instanceof Float32Array && dt === 'f32') ||
      (data instanceof Int32Array && dt === 'i32') ||
      (data instanceof Uint16Array && (dt === 'f16' || dt === 'bf16'));
    if (!ok) throw new TypeError(`${name}: dtype '${dt}' does not match its data (${show(data)})`);
    return dt;
  }
  if (data instanceof Float32Array) return 'f32';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Uint16Array) throw new TypeError(`${name}: a Uint16Array needs dtype 'f16' or 'bf16'`);
  throw new TypeError(`${name}: a DeviceBuffer needs an explicit dtype`);
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

// The intrinsic accessors of typed arrays: an own `buffer` or `length` property on an array cannot lie to them.
const typedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object;
const intrinsic = (key: string) => Object.getOwnPropertyDescriptor(typedArrayProto, key)!.get!;
const bufferOf = intrinsic('buffer'), lengthOf = intrinsic('length');

/** Elements of a host array, through the intrinsic getters; rejects shared memory (TypeError naming `name`). */
function hostCapacity(name: string, data: HostArray): number {
  let buffer: ArrayBufferLike, length: number;
  try {
    buffer = Reflect.apply(bufferOf, data, []) as ArrayBufferLike;
    length = Reflect.apply(lengthOf, data, []) as number;
  } catch {
    throw new TypeError(`${name}.data: expected a Float32Array, Uint16Array or Int32Array, got ${show(data)}`);
  }
  if (typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer) {
    throw new TypeError(
      `${name}.data: a typed array over a SharedArrayBuffer is not accepted: another thread could change it while an op ` +
        'reads it (e.g. indices after their check); copy it into an ordinary typed array',
    );
  }
  return length;
}

/** A copy of a shape or strides argument (each entry read once: the copy is what gets checked and kept). */
function copyDims(name: string, v: unknown): unknown[] {
  if (!Array.isArray(v)) throw new TypeError(`${name}: expected an array, got ${show(v)}`);
  const n = v.length;
  if (n > 4) throw new RangeError(`${name}: at most 4 dimensions, got ${n}`);
  return Array.from({ length: n }, (_, i) => v[i]);
}

export class Tensor {
  readonly data: TensorData;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  /** Set only by the constructor: a Tensor is recognised by it, not by its prototype. */
  readonly #checked = true;

  /**
   * Use `tensor()`; the constructor checks everything `tensor()` documents. A Tensor is frozen: its view (shape,
   * strides, offset, dtype, data) cannot change after these checks (native code checks each view again anyway).
   */
  constructor(data: TensorData, shape: readonly number[], opts: { dtype?: DType; strides?: readonly number[]; offset?: number } = {}, name = 'tensor') {
    const isHost = data instanceof Float32Array || data instanceof Uint16Array || data instanceof Int32Array;
    if (!isHost && !(data instanceof DeviceBuffer)) {
      throw new TypeError(`${name}.data: expected a Float32Array, Uint16Array, Int32Array or DeviceBuffer, got ${show(data)}`);
    }
    if (data instanceof DeviceBuffer && data.disposed) throw new TypeError(`${name}.data: its DeviceBuffer was disposed`);
    const capacity = data instanceof DeviceBuffer ? -1 : hostCapacity(name, data);
    const dtype = inferDtype(name, data, opts.dtype);
    const dims = copyDims(`${name}.shape`, shape).map((n, i) => checkInt(`${name}.shape[${i}]`, n, 0, 2 ** 31 - 1));
    let strides: number[];
    if (opts.strides === undefined) strides = contiguousStrides(dims);
    else {
      const given = copyDims(`${name}.strides`, opts.strides);
      if (given.length !== dims.length) {
        throw new RangeError(`${name}.strides: expected ${dims.length} entries (one per dimension), got ${given.length}`);
      }
      strides = given.map((s, i) => checkInt(`${name}.strides[${i}]`, s, -(2 ** 40), 2 ** 40));
    }
    const offset = opts.offset === undefined ? 0 : checkInt(`${name}.offset`, opts.offset, 0, Number.MAX_SAFE_INTEGER);
    const elements = data instanceof DeviceBuffer ? Math.floor(data.byteLength / dtypeSize(dtype)) : capacity;
    if (!dims.includes(0)) {
      let lo = offset, hi = offset;
      dims.forEach((n, i) => {
        const span = (n - 1) * strides[i];
        if (span < 0) lo += span;
        else hi += span;
      });
      if (lo < 0 || hi >= elements) {
        throw new RangeError(
          `${name}: view (offset ${offset}, shape [${dims.join(', ')}], strides [${strides.join(', ')}]) reaches elements ` +
            `[${lo}, ${hi}] but its data holds ${elements} ${dtype} elements`,
        );
      }
    }
    this.data = data;
    this.dtype = dtype;
    this.shape = Object.freeze(dims);
    this.strides = Object.freeze(strides);
    this.offset = offset;
    Object.freeze(this);
  }

  /** True for a Tensor built by the constructor (a plain object with Tensor's prototype is not one). */
  static is(v: unknown): v is Tensor {
    return v !== null && typeof v === 'object' && #checked in v;
  }

  /**
   * Checks again that the view fits its data, which can change after construction: a host buffer detached
   * (transferred) or resized, a DeviceBuffer disposed. TypeError / RangeError naming `name`.
   */
  recheck(name: string): this {
    if (this.data instanceof DeviceBuffer) {
      if (this.data.disposed) throw new TypeError(`${name}.data: its DeviceBuffer was disposed`);
      return this;
    }
    const capacity = hostCapacity(name, this.data);
    if (this.shape.includes(0)) return this;
    let lo = this.offset, hi = this.offset;
    this.shape.forEach((n, i) => {
      const span = (n - 1) * this.strides[i];
      if (span < 0) lo += span;
      else hi += span;
    });
    if (lo < 0 || hi >= capacity) {
      const gone = capacity === 0 && Reflect.apply(bufferOf, this.data, []).byteLength === 0;
      if (gone) throw new TypeError(`${name}.data: its ArrayBuffer is detached (transferred) or empty`);
      throw new RangeError(`${name}: view reaches elements [${lo}, ${hi}] but its data now holds ${capacity} ${this.dtype} elements`);
    }
    return this;
  }

  get device(): Device {
    return this.data instanceof DeviceBuffer ? { kind: 'cuda', id: this.data.device } : { kind: 'cpu' };
  }
  get onCuda(): boolean {
    return this.data instanceof DeviceBuffer;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get isContiguous(): boolean {
    const c = contiguousStrides(this.shape);
    return this.shape.every((n, i) => n === 1 || c[i] === this.strides[i]);
  }
  /** Host data as a typed array (CPU tensors only). */
  get host(): HostArray {
    if (this.data instanceof DeviceBuffer) throw new TypeError('tensor is on a CUDA device: use `await toHost(t)` first');
    return this.data;
  }
  /** A view with new shape/strides/offset over the same data (no copy); `name` is the argument errors name. */
  view(shape: readonly number[], strides?: readonly number[], offset = this.offset, name = 'tensor'): Tensor {
    return new Tensor(this.data, shape, { dtype: this.dtype, strides, offset }, name);
  }
  /** Element (by multi-index) as a number, host tensors only; f16/bf16 converted to f32 values. */
  at(...idx: number[]): number {
    const host = this.host;
    let o = this.offset;
    idx.forEach((v, i) => (o += v * this.strides[i]));
    const raw = host[o];
    if (this.dtype === 'f16') return f16ToF32(raw);
    if (this.dtype === 'bf16') return bf16ToF32(raw);
    return raw;
  }
  /** @internal descriptor for the addon */
  toNative(): NativeTensor {
    return {
      data: this.data instanceof DeviceBuffer ? this.data.native : this.data,
      dtype: this.dtype,
      shape: this.shape,
      strides: this.strides,
      offset: this.offset,
    };
  }
}

/**
 * Creates a tensor view. dtype is inferred for Float32Array (f32) and Int32Array (i32); Uint16Array needs 'f16'
 * or 'bf16'; a DeviceBuffer needs an explicit dtype. Strides/offset are in elements (default: compact row-major).
 */
export function tensor(data: TensorData, shape: readonly number[], opts: { dtype?: DType; strides?: readonly number[]; offset?: number } = {}): Tensor {
  const o = checkOptions('options', opts);
  checkKeys('options', o, ['dtype', 'strides', 'offset']);
  return new Tensor(data, shape, o);
}

/** Normalises an op argument (Tensor or TensorLike), with errors naming the argument. */
export function asTensor(name: string, v: unknown): Tensor {
  if (Tensor.is(v)) return v.recheck(name);
  if (v === null || typeof v !== 'object' || !('data' in v) || !('shape' in v)) {
    throw new TypeError(`${name}: expected a tensor ({ data, dtype, shape, strides?, offset? }), got ${show(v)}`);
  }
  const o = v as TensorLike;
  return new Tensor(o.data, o.shape, { dtype: o.dtype, strides: o.strides, offset: o.offset }, name);
}

/** Checks the rank (TypeError) and returns the tensor. */
export function checkRank(name: string, t: Tensor, ndim: number, dims: string): Tensor {
  if (t.ndim !== ndim) throw new TypeError(`${name}: expected a ${ndim}-D tensor ${dims}, got ${t.ndim}-D [${t.shape.join(', ')}]`);
  return t;
}

export function checkDtype(name: string, t: Tensor, allowed: readonly DType[]): Tensor {
  if (!allowed.includes(t.dtype)) throw new TypeError(`${name}: expected dtype ${allowed.join(' | ')}, got ${t.dtype}`);
  return t;
}

export function sameDevice(a: Device, b: Device): boolean {
  return a.kind === b.kind && (a.kind === 'cpu' || a.id === (b as { id: number }).id);
}

function hostArray(dtype: DType, n: number): HostArray {
  if (dtype === 'f32') return new Float32Array(n);
  if (dtype === 'i32') return new Int32Array(n);
  return new Uint16Array(n);
}

/** Allocates an uninitialised (host: zeroed) contiguous tensor on `device`. */
export function empty(shape: readonly number[], dtype: DType, device: Device = { kind: 'cpu' }, stream?: Stream): Tensor {
  copyDims('shape', shape).forEach((x, i) => checkInt(`shape[${i}]`, x, 0, 2 ** 31 - 1));
  checkOneOf('dtype', dtype, DTYPES);
  const n = shape.reduce((a, b) => a * b, 1);
  if (device.kind === 'cpu') return new Tensor(hostArray(dtype, n), shape, { dtype });
  const buf = DeviceBuffer.alloc(n * dtypeSize(dtype), { device: device.id, stream });
  return new Tensor(buf, shape, { dtype });
}

/**
 * Fills every byte of a tensor's elements with `byte` (e.g. 0xff poisons f32 with NaN and i32 with -1); nothing
 * outside the view is written. A CUDA tensor must be contiguous.
 */
export function fillBytes(tensor: Tensor | TensorLike, byte: number, stream?: Stream): void {
  const t = asTensor('tensor', tensor);
  checkInt('byte', byte, 0, 255);
  const es = dtypeSize(t.dtype);
  if (t.data instanceof DeviceBuffer) {
    if (!t.isContiguous) throw new RangeError('tensor: fillBytes needs a contiguous view on a CUDA device');
    if (t.numel > 0) native.fillBytes(t.data.native, t.offset * es, byte, t.numel * es, stream?.handle);
    return;
  }
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (t.isContiguous) {
    bytes.fill(byte, t.offset * es, (t.offset + t.numel) * es);
    return;
  }
  const idx = new Array<number>(t.ndim).fill(0);
  for (let k = 0; k < t.numel; k++) {
    let o = t.offset;
    for (let i = 0; i < t.ndim; i++) o += idx[i] * t.strides[i];
    bytes.fill(byte, o * es, (o + 1) * es);
    for (let i = t.ndim - 1; i >= 0; i--) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
  }
}

/** Copies a (possibly strided) tensor into a new contiguous host typed array. */
export function hostContiguous(t: Tensor): HostArray {
  const src = t.host;
  if (t.isContiguous && t.offset === 0 && src.length === t.numel) return src;
  const out = hostArray(t.dtype, t.numel);
  const idx = new Array<number>(t.ndim).fill(0);
  for (let k = 0; k < out.length; k++) {
    let o = t.offset;
    for (let i = 0; i < t.ndim; i++) o += idx[i] * t.strides[i];
    out[k] = src[o];
    for (let i = t.ndim - 1; i >= 0; i--) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/** Copies a tensor to a CUDA device (contiguous result). */
export function toDevice(t: Tensor | TensorLike, opts: { device?: number; stream?: Stream } = {}): Tensor {
  const src = asTensor('tensor', t);
  if (src.onCuda) throw new TypeError('tensor: already on a CUDA device');
  const host = hostContiguous(src);
  const out = empty(src.shape, src.dtype, { kind: 'cuda', id: opts.device ?? 0 }, opts.stream);
  if (host.byteLength > 0) native.copyToDevice((out.data as DeviceBuffer).native, 0, host, 0, host.byteLength, opts.stream?.handle);
  return out;
}

/** Copies a CUDA tensor into host memory (contiguous result), waiting on `stream` off the event loop. */
export async function toHost(t: Tensor | TensorLike, opts: { stream?: Stream } = {}): Promise<Tensor> {
  const src = asTensor('tensor', t);
  if (!(src.data instanceof DeviceBuffer)) return src;
  const es = dtypeSize(src.dtype);
  const out = hostArray(src.dtype, src.numel);
  if (src.isContiguous && out.length > 0) {
    await native.copyToHost(out, 0, src.data.native, src.offset * es, out.byteLength, opts.stream?.handle);
    return new Tensor(out, src.shape, { dtype: src.dtype });
  }
  // Strided: copy the whole spanned range, then gather on the host.
  let lo = src.offset, hi = src.offset;
  src.shape.forEach((n, i) => {
    const span = (n - 1) * src.strides[i];
    if (span < 0) lo += span;
    else hi += span;
  });
  if (out.length === 0) return new Tensor(out, src.shape, { dtype: src.dtype });
  const span = hostArray(src.dtype, hi - lo + 1);
  await native.copyToHost(span, 0, src.data.native, lo * es, span.byteLength, opts.stream?.handle);
  const staged = new Tensor(span, src.shape, { dtype: src.dtype, strides: src.strides, offset: src.offset - lo });
  return new Tensor(hostContiguous(staged), src.shape, { dtype: src.dtype });
}

export { f16ToF32, bf16ToF32, f32ToF16, f32ToBf16 } from './half';
