/**
 * Device memory and streams. `DeviceBuffer` is an opaque handle to CUDA memory: owned (`alloc`) or borrowed from
 * another runtime (`wrap`, the zero-copy path). `Stream` wraps a created or external `cudaStream_t`; ops only
 * enqueue work on it, and `await stream.synchronize()` waits without blocking the event loop.
 */
import { native, nativeInfo, NativeBufferHandle } from './binding';
import { checkInt } from './validate';

const finalizers = new FinalizationRegistry<NativeBufferHandle>((nb) => nb.free());

function requireCuda(what: string): void {
  if (!nativeInfo.cuda) {
    const err = new Error(`${what}: CUDA is not available (${nativeInfo.reason ?? 'unknown reason'})`);
    (err as Error & { code: string }).code = 'ERR_KVTRIM_NO_CUDA';
    throw err;
  }
}

function checkDevice(name: string, device: unknown): number {
  const id = checkInt(name, device ?? 0, 0, 1 << 20);
  if (nativeInfo.cuda && !nativeInfo.devices.some((d) => d.id === id && d.supported)) {
    throw new RangeError(`${name}: no supported CUDA device with id ${id}`);
  }
  return id;
}

export class DeviceBuffer {
  /** Device address (bigint, never rounded). */
  readonly ptr: bigint;
  readonly byteLength: number;
  readonly device: number;
  /** false for `wrap`ped (borrowed) memory, which dispose() never frees. */
  readonly owned: boolean;
  /** @internal the native handle passed to ops */
  readonly native: NativeBufferHandle;
  private disposedFlag = false;

  private constructor(nb: NativeBufferHandle, ptr: bigint, bytes: number, device: number, owned: boolean) {
    this.native = nb;
    this.ptr = ptr;
    this.byteLength = bytes;
    this.device = device;
    this.owned = owned;
    if (owned) finalizers.register(this, nb, this);
  }

  /**
   * Allocates `bytes` of device memory, stream-ordered on `stream`, or on the legacy default stream (where ops without a
   * `stream` run) when none is given. A first use on another stream waits for the allocation.
   */
  static alloc(bytes: number, opts: { device?: number; stream?: Stream } = {}): DeviceBuffer {
    requireCuda('DeviceBuffer.alloc');
    const n = checkInt('bytes', bytes, 0, Number.MAX_SAFE_INTEGER);
    const device = checkDevice('device', opts.device);
    const nb = new native.NativeBuffer('alloc', n, device, opts.stream?.handle);
    return new DeviceBuffer(nb, nb.ptr, n, device, true);
  }

  /** Borrows memory owned by another runtime (zero copy). kvtrim never frees it; keep it alive while in use. */
  static wrap(ptr: bigint, bytes: number, opts: { device?: number } = {}): DeviceBuffer {
    if (typeof ptr !== 'bigint') throw new TypeError(`ptr: expected a bigint device address, got ${typeof ptr}`);
    if (ptr <= 0n || ptr >= 1n << 64n) throw new RangeError('ptr: must be a non-null 64-bit address');
    requireCuda('DeviceBuffer.wrap');
    const n = checkInt('bytes', bytes, 0, Number.MAX_SAFE_INTEGER);
    const device = checkDevice('device', opts.device);
    const nb = new native.NativeBuffer('wrap', ptr, n, device);
    return new DeviceBuffer(nb, ptr, n, device, false);
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  /**
   * Frees owned memory: stream-ordered on its allocation stream after the work of every other stream it was used on
   * (no device-wide synchronisation); `cudaFree` only when such a stream has been destroyed or was borrowed
   * (`Stream.wrap`). Idempotent; garbage collection frees the same way.
   */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    finalizers.unregister(this);
    this.native.free();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

export class Stream {
  /** The legacy default stream of device 0. */
  static readonly default = new Stream(0n, 0, false);
  readonly handle: bigint;
  readonly device: number;
  readonly owned: boolean;
  private disposedFlag = false;

  private constructor(handle: bigint, device: number, owned: boolean) {
    this.handle = handle;
    this.device = device;
    this.owned = owned;
  }

  /** Creates a new non-blocking stream on `device`. */
  static create(opts: { device?: number } = {}): Stream {
    requireCuda('Stream.create');
    const device = checkDevice('device', opts.device);
    return new Stream(native.streamCreate(device), device, true);
  }

  /** Wraps a runtime's own `cudaStream_t` (as a bigint); kvtrim never destroys it. */
  static wrap(handle: bigint, opts: { device?: number } = {}): Stream {
    if (typeof handle !== 'bigint') throw new TypeError(`handle: expected a bigint cudaStream_t, got ${typeof handle}`);
    if (handle < 0n || handle >= 1n << 64n) throw new RangeError('handle: must be a 64-bit value');
    requireCuda('Stream.wrap');
    return new Stream(handle, checkDevice('device', opts.device), false);
  }

  /** Resolves when all work enqueued on the stream has finished; rejects with ERR_KVTRIM_CUDA on a CUDA error. */
  synchronize(): Promise<void> {
    requireCuda('Stream.synchronize');
    return native.streamSynchronize(this.handle, this.device);
  }

  dispose(): void {
    if (this.disposedFlag || !this.owned) return;
    this.disposedFlag = true;
    native.streamDestroy(this.handle);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** CUDA event pair timing, for micro-benchmarks. */
export class Event {
  readonly handle: bigint;
  private disposedFlag = false;
  private constructor(handle: bigint) {
    this.handle = handle;
  }
  static create(opts: { device?: number } = {}): Event {
    requireCuda('Event.create');
    return new Event(native.eventCreate(checkDevice('device', opts.device)));
  }
  record(stream: Stream = Stream.default): void {
    native.eventRecord(this.handle, stream.handle);
  }
  /** Milliseconds from `this` to `end` (waits for `end`). */
  elapsedMs(end: Event): number {
    return native.eventElapsed(this.handle, end.handle);
  }
  /** Idempotent (destroying a CUDA event twice is undefined behaviour). */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    native.eventDestroy(this.handle);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Waits for all work on a device (host-blocking; for tests and benchmarks). */
export function deviceSynchronize(device = 0): void {
  requireCuda('deviceSynchronize');
  native.deviceSynchronize(device);
}
