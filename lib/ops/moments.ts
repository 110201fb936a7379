/**
 * MomentKV moment state (docs/methods/momentkv.md §4.1, §4.3): per KV head, the statistics of the evicted tokens — count
 * `n`, key mean `muK`, value mean `muV` and the co-moment `m` = n·C, C = (1/n) Σ (v − mu_v)(k − mu_k)ᵀ (population
 * value-key covariance, [dv, d]). Kept in f32 (docs/methods/momentkv.md §8). Rows are merged with the exact pairwise (Chan) update of
 * centred batch statistics — never raw sums — over a fixed partition of positions, so results are deterministic
 * (independent of thread count and GPU model) and any chunking of the evicted set gives the same state up to f32
 * rounding. Evicted tokens must enter the state exactly once.
 */
import { native, Native, NativeMoments } from '../binding';
import { DeviceBuffer, Stream } from '../device';
import { Device, Tensor, TensorLike, asTensor, checkDtype, checkRank, empty, fillBytes, sameDevice } from '../tensor';
import { checkInt, show } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, runAsync, signalOf, streamOf } from './common';
import { BatchCache, checkCache } from './batch';

/** The four tensors of a moment state (what ops accept as `moments`). */
export interface MomentTensors {
  /** f32 [H]: evicted count per head (a float). */
  n: Tensor;
  /** f32 [H, d]: key mean of the evicted rows. */
  muK: Tensor;
  /** f32 [H, dv]: value mean of the evicted rows. */
  muV: Tensor;
  /** f32 [H, dv, d]: co-moment M = n·C. */
  m: Tensor;
}

export interface MomentStateCreateOptions extends StreamOpt {
  /** Where the state lives: 'cpu' (default), a CUDA device id, or a Device. */
  device?: 'cpu' | number | Device;
}

function resolveDevice(v: unknown): Device {
  if (v === undefined || v === 'cpu') return { kind: 'cpu' };
  if (typeof v === 'number') return { kind: 'cuda', id: checkInt('device', v, 0, 1 << 20) };
  if (v !== null && typeof v === 'object' && 'kind' in v) {
    const d = v as Device;
    if (d.kind === 'cpu') return d;
    if (d.kind === 'cuda') return { kind: 'cuda', id: checkInt('device.id', d.id, 0, 1 << 20) };
  }
  throw new TypeError(`device: expected 'cpu', a CUDA device id or a Device, got ${show(v)}`);
}

/** Native descriptor of a moment state argument (checked: tensors, f32). */
export function momentsNative(name: string, v: unknown): NativeMoments {
  if (v === null || typeof v !== 'object') throw new TypeError(`${name}: expected a MomentState ({ n, muK, muV, m }), got ${show(v)}`);
  const o = v as Record<string, unknown>;
  const part = (k: string, rank: number, dims: string) =>
    checkDtype(`${name}.${k}`, checkRank(`${name}.${k}`, asTensor(`${name}.${k}`, o[k]), rank, dims), ['f32']).toNative();
  return { n: part('n', 1, '[H]'), muK: part('muK', 2, '[H, d]'), muV: part('muV', 2, '[H, dv]'), m: part('m', 3, '[H, dv, d]') };
}

export class MomentState implements MomentTensors {
  readonly n: Tensor;
  readonly muK: Tensor;
  readonly muV: Tensor;
  readonly m: Tensor;
  /** KV heads. */
  readonly H: number;
  /** Key head dim. */
  readonly d: number;
  /** Value head dim. */
  readonly dv: number;

  private constructor(t: MomentTensors) {
    this.n = t.n;
    this.muK = t.muK;
    this.muV = t.muV;
    this.m = t.m;
    this.H = t.n.shape[0];
    this.d = t.muK.shape[1];
    this.dv = t.muV.shape[1];
  }

  /**
   * An empty state (n = 0, all statistics zero) for `H` KV heads, key dim `d` and value dim `dv`: one f32 buffer of
   * H·(1 + d + dv + d·dv) floats (66.6 KB per head at d = dv = 128). On CUDA it is zeroed on `stream`.
   */
  static create(H: number, d: number, dv: number, options?: MomentStateCreateOptions): MomentState {
    const o = opts('options', options, ['device', 'stream']);
    checkInt('H', H, 0, 2 ** 31 - 1);  // 0: the state of an empty batch
    checkInt('d', d, 1, 1 << 16);
    checkInt('dv', dv, 1, 1 << 16);
    const device = resolveDevice(o.device);
    const stream = streamOf(o, device);
    const total = H * (1 + d + dv + d * dv);
    if (total > 2 ** 31 - 1) throw new RangeError(`H·(1 + d + dv + d·dv) = ${total} floats is too large`);
    const buf = empty([total], 'f32', device, stream);
    fillBytes(buf, 0, stream);
    let off = 0;
    const at = (shape: number[]) => {
      const t = buf.view(shape, undefined, off);
      off += shape.reduce((a, b) => a * b, 1);
      return t;
    };
    return new MomentState({ n: at([H]), muK: at([H, d]), muV: at([H, dv]), m: at([H, dv, d]) });
  }

  /** Wraps existing tensors (e.g. a runtime's own buffers) as a state; shapes, dtype and device are checked. */
  static from(t: MomentTensors): MomentState {
    if (t === null || typeof t !== 'object') throw new TypeError(`moments: expected { n, muK, muV, m }, got ${show(t)}`);
    const n = checkDtype('moments.n', checkRank('moments.n', asTensor('moments.n', t.n), 1, '[H]'), ['f32']);
    const muK = checkDtype('moments.muK', checkRank('moments.muK', asTensor('moments.muK', t.muK), 2, '[H, d]'), ['f32']);
    const muV = checkDtype('moments.muV', checkRank('moments.muV', asTensor('moments.muV', t.muV), 2, '[H, dv]'), ['f32']);
    const m = checkDtype('moments.m', checkRank('moments.m', asTensor('moments.m', t.m), 3, '[H, dv, d]'), ['f32']);
    const H = n.shape[0], d = muK.shape[1], dv = muV.shape[1];
    const want: [string, Tensor, number[]][] = [['muK', muK, [H, d]], ['muV', muV, [H, dv]], ['m', m, [H, dv, d]]];
    for (const [name, x, shape] of want) {
      if (x.shape.some((s, i) => s !== shape[i])) throw new RangeError(`moments.${name}: expected shape [${shape.join(', ')}], got [${x.shape.join(', ')}]`);
      if (!sameDevice(x.device, n.device)) throw new TypeError(`moments.${name}: must be on the device of moments.n`);
    }
    for (const [name, x] of [['n', n], ['muK', muK], ['muV', muV], ['m', m]] as const) {
      if (!x.isContiguous) throw new TypeError(`moments.${name}: must be contiguous`);
    }
    return new MomentState({ n, muK, muV, m });
  }

  get device(): Device {
    return this.n.device;
  }

  /** Bytes held by the statistics. */
  get bytes(): number {
    return 4 * this.H * (1 + this.d + this.dv + this.d * this.dv);
  }

  /**
   * Merges rows `keys[h, evictedIndices[h, j]]`, `values[h, …]` for j < counts[h] into head h (docs/methods/momentkv.md
   * docs/methods/momentkv.md §4.3). keys [H, N, d] / values [H, N, dv] f32 | f16 | bf16, any strides; evictedIndices [H, cap] i32 strictly
   * ascending positions before counts[h] (checked on the CPU backend); counts [H] i32. Returns this.
   */
  merge(
    keys: Tensor | TensorLike,
    values: Tensor | TensorLike,
    evictedIndices: Tensor | TensorLike,
    counts: Tensor | TensorLike,
    options?: StreamOpt,
  ): this {
    native.momentsMerge(...this.planMerge(keys, values, evictedIndices, counts, options, false).args);
    return this;
  }

  /** {@link merge} on a worker thread (see AsyncOptions); resolves to this. */
  async mergeAsync(
    keys: Tensor | TensorLike,
    values: Tensor | TensorLike,
    evictedIndices: Tensor | TensorLike,
    counts: Tensor | TensorLike,
    options?: StreamOpt & AsyncOptions,
  ): Promise<this> {
    const p = this.planMerge(keys, values, evictedIndices, counts, options, true);
    await runAsync(native.momentsMergeAsync, p.args, p.signal);
    return this;
  }

  private planMerge(
    keys: Tensor | TensorLike,
    values: Tensor | TensorLike,
    evictedIndices: Tensor | TensorLike,
    counts: Tensor | TensorLike,
    options: unknown,
    async: boolean,
  ) {
    const o = opts('options', options, keysOf(['stream'], async));
    const k = checkRank('keys', asTensor('keys', keys), 3, '[H, N, d]');
    const v = checkRank('values', asTensor('values', values), 3, '[H, N, dv]');
    const idx = checkRank('evictedIndices', asTensor('evictedIndices', evictedIndices), 2, '[H, cap]');
    const cnt = checkRank('counts', asTensor('counts', counts), 1, '[H]');
    if (k.shape[0] !== this.H) throw new RangeError(`keys: H (${k.shape[0]}) must equal the state's H (${this.H})`);
    if (k.shape[2] !== this.d) throw new RangeError(`keys: d (${k.shape[2]}) must equal the state's d (${this.d})`);
    if (v.shape[2] !== this.dv) throw new RangeError(`values: dv (${v.shape[2]}) must equal the state's dv (${this.dv})`);
    if (!sameDevice(k.device, this.device)) throw new TypeError('keys: must be on the device of the moment state');
    const stream = streamOf(o, k.device);
    const args: Parameters<Native['momentsMerge']> = [
      k.toNative(), v.toNative(), idx.toNative(), cnt.toNative(), momentsNative('moments', this), stream?.handle,
    ];
    return { args, signal: signalOf(o) };
  }

  /**
   * Merges the listed rows of every sequence of a batch cache (docs/runtime-caches.md §3) into this state of B·H virtual
   * heads (head h of sequence b at row b·H + h): evictedIndices i32 [B, H, cap], counts i32 [B, H]. Equal to merge per
   * sequence into its H heads. Returns this.
   */
  mergeBatched(cache: BatchCache, evictedIndices: Tensor | TensorLike, counts: Tensor | TensorLike, options?: StreamOpt): this {
    native.momentsMergeBatched(...this.planMergeBatched(cache, evictedIndices, counts, options, false).args);
    return this;
  }

  /** {@link MomentState.mergeBatched} on a worker thread (see AsyncOptions). */
  async mergeBatchedAsync(
    cache: BatchCache,
    evictedIndices: Tensor | TensorLike,
    counts: Tensor | TensorLike,
    options?: StreamOpt & AsyncOptions,
  ): Promise<this> {
    const p = this.planMergeBatched(cache, evictedIndices, counts, options, true);
    await runAsync(native.momentsMergeBatchedAsync, p.args, p.signal);
    return this;
  }

  private planMergeBatched(cache: BatchCache, evictedIndices: Tensor | TensorLike, counts: Tensor | TensorLike, options: unknown, async: boolean) {
    const o = opts('options', options, keysOf(['stream'], async));
    const c = checkCache('cache', cache, true);
    const idx = checkRank('evictedIndices', asTensor('evictedIndices', evictedIndices), 3, '[B, H, cap]');
    const cnt = checkRank('counts', asTensor('counts', counts), 2, '[B, H]');
    if (idx.shape[0] * c.H !== this.H) throw new RangeError(`moments: the state has ${this.H} heads, the batch B·H = ${idx.shape[0]}·${c.H}`);
    if (c.d !== this.d || c.dv !== this.dv) throw new RangeError(`cache: d, dv (${c.d}, ${c.dv}) must equal the state's (${this.d}, ${this.dv})`);
    if (!sameDevice(c.keys.device, this.device)) throw new TypeError('cache: must be on the device of the moment state');
    const stream = streamOf(o, c.keys.device);
    const args: Parameters<Native['momentsMergeBatched']> = [
      c.table.toNative(), c.keys.toNative(), c.values!.toNative(), idx.toNative(), cnt.toNative(), momentsNative('moments', this), stream?.handle,
    ];
    return { args, signal: signalOf(o) };
  }


  /** Resets every head to the empty state (n = 0). Only the four views are written. Returns this. */
  reset(options?: StreamOpt): this {
    const o = opts('options', options, ['stream']);
    const stream = streamOf(o, this.device);
    for (const t of [this.n, this.muK, this.muV, this.m]) zeroView(t, stream);
    return this;
  }
}

/** Zeroes exactly the elements of a contiguous f32 view (not the rest of its buffer). */
function zeroView(t: Tensor, stream?: Stream): void {
  if (t.data instanceof DeviceBuffer) {
    if (t.numel > 0) native.fillBytes(t.data.native, t.offset * 4, 0, t.numel * 4, stream?.handle);
  } else {
    (t.data as Float32Array).fill(0, t.offset, t.offset + t.numel);
  }
}

/** Stream helper for callers that take `moments?` and need a state on a device (creates one when absent). */
export function ensureMoments(v: unknown, H: number, d: number, dv: number, device: Device, stream?: Stream): MomentState {
  if (v === undefined) return MomentState.create(H, d, dv, { device, ...(stream ? { stream } : {}) });
  const st = v instanceof MomentState ? v : MomentState.from(v as MomentTensors);
  if (st.H !== H || st.d !== d || st.dv !== dv) {
    throw new RangeError(`moments: expected a state for H=${H}, d=${d}, dv=${dv}, got H=${st.H}, d=${st.d}, dv=${st.dv}`);
  }
  if (!sameDevice(st.device, device)) throw new TypeError('moments: must be on the device of the other tensors');
  return st;
}
