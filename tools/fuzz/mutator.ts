/**
 * The argument builder of the fuzzer. A target (targets.ts) writes one valid call through a Builder: every tensor,
 * number, enum and options object it passes goes through `b.tensor()`, `b.num()`, `b.choice()` or `b.options()`,
 * which registers an argument slot. A first pass counts the slots; the second pass builds the same call with one slot
 * mutated (or none) and records what the mutation must lead to: 'error' (the call is invalid: returning normally is a
 * silent acceptance) or 'any' (it may be valid). Every tensor lives in a host buffer with random guard elements before
 * and after its view; the runner checks afterwards that inputs are unchanged and that only output elements changed.
 */
import { Rng } from '../../lib/rng';
import { Tensor, DType, contiguousStrides, dtypeSize, f32ToBf16, f32ToF16 } from '../../lib/tensor';

export type Expect = 'error' | 'any';

export interface Mutation {
  /** The argument as the API names it, e.g. 'keys', 'options.ratio', 'selection.indices'. */
  slot: string;
  op: string;
  expect: Expect;
  /** Names an error message may give for this argument (the slot, its container). */
  names: string[];
  detail: string;
}

type HostArray = Float32Array | Uint16Array | Int32Array;

/** What a tensor argument is and which mutations keep it valid. */
export interface TensorSpec {
  dtype: DType;
  shape: number[];
  /** Dtypes the op accepts here (default: dtype only). */
  dtypes?: DType[];
  /** Ranks the op accepts (default: shape.length). */
  ranks?: number[];
  role?: 'in' | 'out';
  optional?: boolean;
  /** Values: 'normal' random floats, 'positive', a fixed array (e.g. indices), or a function of the flat index. */
  fill?: 'normal' | 'positive' | 'zero' | ArrayLike<number> | ((i: number) => number);
  /**
   * Index semantics the op checks on the CPU backend: 'ascending' rows of positions in [0, range) before counts,
   * 'count' entries in [0, range], 'position' entries in [0, range).
   */
  check?: { kind: 'ascending' | 'count' | 'position'; range: number; counts?: ArrayLike<number> };
  /** A non-negative number is a valid value too (e.g. decodeAttention's clip: a radius or a per-head tensor). */
  numberOk?: boolean;
  /** Outputs that may be exactly this input (an in-place op). */
  inPlaceOf?: string;
  /** Pass as a plain { data, dtype, shape, strides, offset } object instead of a Tensor. */
  plain?: boolean;
  /** The name the API uses in messages when it differs from the slot name. */
  names?: string[];
  /** An output whose size the op takes from it (a smaller one can be valid). */
  flexible?: boolean;
  /** A raw descriptor for the addon: the TypeScript limits (|stride| <= 2^40) do not apply, only the native ones. */
  native?: boolean;
  /**
   * Hostile contents (sequence tables, page lists): each rewrites the logical values (a copy, in view order) and
   * returns what the call must then do ('error': it is invalid), or null when it does not apply to this call.
   */
  hostile?: ((v: number[], pick: <T>(xs: readonly T[]) => T) => { expect: Expect; detail: string } | null)[];
}

/** A buffer the runner checks after the call. */
export interface Watched {
  name: string;
  array: HostArray;
  before: Uint8Array;
  /** 'gone': its buffer is detached on purpose (not checked). */
  role: 'in' | 'out' | 'gone';
  /** Element offsets of the view (outputs: the only elements allowed to change). */
  elements?: Set<number>;
}

const BAD_DIMS: unknown[] = [-1, 1.5, NaN, Infinity, 2 ** 31, 2 ** 53, 1e15, '3', 3n, null];
const BAD_NUMS: unknown[] = [undefined, null, NaN, Infinity, -Infinity, -1, 0, 0.5, 1, 1.5, 2 ** 31, 2 ** 53, 1e300, -0, '1', 1n, true, {}, []];
const NOT_TENSORS: unknown[] = [undefined, null, 42, 'keys', {}, [], [1, 2, 3], new Float64Array(4)];

function hostArray(dtype: DType, n: number, buffer?: ArrayBufferLike): HostArray {
  if (dtype === 'f32') return buffer ? new Float32Array(buffer, 0, n) : new Float32Array(n);
  if (dtype === 'i32') return buffer ? new Int32Array(buffer, 0, n) : new Int32Array(n);
  return buffer ? new Uint16Array(buffer, 0, n) : new Uint16Array(n);
}

const contiguous = contiguousStrides;

/** Element offsets reached by a view (small views only). */
function viewElements(shape: readonly number[], strides: readonly number[], offset: number): Set<number> {
  const out = new Set<number>();
  const n = shape.reduce((a, b) => a * b, 1);
  if (n === 0 || n > 1 << 22) return out;
  const idx = new Array<number>(shape.length).fill(0);
  for (let k = 0; k < n; k++) {
    let o = offset;
    for (let i = 0; i < shape.length; i++) o += idx[i] * strides[i];
    out.add(o);
    for (let i = shape.length - 1; i >= 0; i--) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/** The element range [lo, hi] of a view, or null when it is empty. */
function span(shape: readonly number[], strides: readonly number[], offset: number): [number, number] | null {
  if (shape.some((n) => n === 0)) return null;
  let lo = offset, hi = offset;
  shape.forEach((n, i) => {
    const s = (n - 1) * strides[i];
    if (s < 0) lo += s;
    else hi += s;
  });
  return [lo, hi];
}

/** The sufficient non-overlap test of the C ABI (outputs need one location per element). */
function distinct(shape: readonly number[], strides: readonly number[]): boolean {
  if (shape.some((n) => n === 0)) return true;
  const dims = shape.map((n, i) => ({ n, s: Math.abs(strides[i]) })).filter((x) => x.n > 1).sort((a, b) => a.s - b.s);
  let reach = 0;
  for (const { n, s } of dims) {
    if (s <= reach) return false;
    reach += (n - 1) * s;
  }
  return true;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

export class Builder {
  /** Slots seen so far (in the counting pass: all of them). */
  readonly slots: string[] = [];
  mutation: Mutation | undefined;
  readonly watched: Watched[] = [];
  /** Hooks run just before the call (after every argument exists). */
  readonly pre: (() => void)[] = [];
  private readonly data: Rng;
  private readonly tensors = new Map<string, { array: HostArray; spec: TensorSpec; view: Tensor | undefined; offset: number; numel: number; strides: number[]; shape: number[] }>();

  /**
   * `seed` fixes the valid call; `pick` (second pass) is the slot index to mutate and `choose` the Rng of the
   * mutation. Without `pick` nothing is mutated.
   */
  constructor(seed: number, private readonly pick?: number, private readonly choose?: Rng) {
    this.data = new Rng(seed);
  }

  /** Deterministic data for the target itself (shapes, option values). */
  int(lo: number, hi: number): number {
    return lo + this.data.int(hi - lo + 1);
  }
  uniform(): number {
    return this.data.uniform();
  }
  normal(): number {
    return this.data.normal();
  }

  private slot(name: string): boolean {
    const k = this.slots.length;
    this.slots.push(name);
    return this.pick === k && this.choose !== undefined;
  }

  private set(slot: string, op: string, expect: Expect, detail: string, names?: string[]): void {
    const parts = slot.split('.');
    const all = new Set<string>([slot, ...(names ?? [])]);
    for (let i = parts.length - 1; i >= 1; i--) all.add(parts.slice(0, i).join('.'));
    all.add(parts[parts.length - 1]);
    this.mutation = { slot, op, expect, names: [...all], detail };
  }

  private pickOf<T>(xs: readonly T[]): T {
    return xs[this.choose!.int(xs.length)];
  }

  /** Fills `n` values of a spec (as numbers, before dtype conversion). */
  private values(spec: TensorSpec, n: number): number[] {
    const f = spec.fill ?? 'normal';
    if (typeof f === 'function') return Array.from({ length: n }, (_, i) => f(i));
    if (typeof f === 'object') return Array.from({ length: n }, (_, i) => Number(f[i] ?? 0));
    if (f === 'zero') return new Array<number>(n).fill(0);
    if (f === 'positive') return Array.from({ length: n }, () => 0.5 + this.data.uniform());
    return Array.from({ length: n }, () => this.data.normal());
  }

  private encode(dtype: DType, x: number): number {
    if (dtype === 'bf16') return f32ToBf16(x);
    if (dtype === 'f16') return f32ToF16(x);
    return x;
  }

  /**
   * A tensor argument. Returns a Tensor (or the plain object / mutated value the mutation calls for). Guard elements
   * (random values) sit before and after the view in its buffer.
   */
  tensor(name: string, spec: TensorSpec): unknown {
    const mutate = this.slot(name);
    const role = spec.role ?? 'in';
    const dtype = spec.dtype;
    let shape = [...spec.shape];
    const n = shape.reduce((a, b) => a * b, 1);
    const vals = this.values(spec, n);
    const padLo = this.int(0, 3), padHi = this.int(0, 3);
    let strides = contiguous(shape);
    let offset = padLo;
    let array = hostArray(dtype, padLo + n + padHi);
    const guard = () => this.encode(dtype, dtype === 'i32' ? this.int(-9, 9) : this.data.normal());
    for (let i = 0; i < array.length; i++) array[i] = guard();
    for (let i = 0; i < n; i++) array[padLo + i] = this.encode(dtype, vals[i]);
    let asPlain = spec.plain ?? false;
    let out: unknown;
    let expect: Expect = 'any';
    const dtypes = spec.dtypes ?? [dtype];
    const ranks = spec.ranks ?? [shape.length];
    const fits = (sh: number[], st: number[], off: number, cap: number) => {
      const sp = span(sh, st, off);
      return sp === null || (sp[0] >= 0 && sp[1] < cap);
    };
    if (mutate) {
      const ops = ['dtype', 'rank+', 'rank-', 'shape-zero', 'shape-bad', 'shape-off', 'strides', 'offset', 'detach', 'shared',
        'plain', 'fake', 'not-tensor', 'omit'];
      if (role === 'in' && dtype !== 'i32') ops.push('nan', 'nan', 'getter-detach');
      if (role === 'out') ops.push('alias', 'alias', 'small');
      if (spec.check) ops.push('index', 'index', 'index');
      if (spec.hostile?.length) ops.push('hostile', 'hostile', 'hostile', 'hostile');
      const op = this.pickOf(ops);
      switch (op) {
        case 'dtype': {
          const to = this.pickOf((['f32', 'f16', 'bf16', 'i32'] as DType[]).filter((x) => x !== dtype));
          const a = hostArray(to, array.length);
          for (let i = 0; i < a.length; i++) a[i] = to === 'i32' ? Math.round(vals[i - padLo] ?? 0) : this.encode(to, vals[i - padLo] ?? 0);
          array = a;
          this.set(name, op, dtypes.includes(to) ? 'any' : 'error', `dtype ${dtype} -> ${to}`, spec.names);
          out = new Tensor(array, shape, { dtype: to, strides, offset });
          this.watch(name, array, role, shape, strides, offset);
          this.tensors.set(name, { array, spec, view: out as Tensor, offset, numel: n, strides, shape });
          return out;
        }
        case 'rank+':
          shape = [1, ...shape];
          strides = [n, ...strides];
          expect = ranks.includes(shape.length) ? 'any' : 'error';
          break;
        case 'rank-':
          if (shape.length === 0) {
            shape = [1];
            strides = [1];
            expect = ranks.includes(1) ? 'any' : 'error';
          } else {
            shape = shape.length === 1 ? [] : [shape[0] * shape[1], ...shape.slice(2)];
            strides = contiguous(shape);
            expect = ranks.includes(shape.length) ? 'any' : 'error';
          }
          break;
        case 'shape-zero':
          if (shape.length) shape[this.choose!.int(shape.length)] = 0;
          break;
        case 'shape-bad': {
          if (!shape.length) break;
          const i = this.choose!.int(shape.length), v = this.pickOf(BAD_DIMS);
          this.set(name, op, 'error', `shape[${i}] = ${String(v)}`, spec.names);
          out = { data: array, dtype, shape: shape.map((x, k) => (k === i ? v : x)), strides, offset };
          this.watch(name, array, role, shape, strides, offset);
          return out;
        }
        case 'shape-off': {
          if (!shape.length) break;
          const i = this.choose!.int(shape.length);
          shape[i] = Math.max(0, shape[i] + this.pickOf([-1, 1, 2]));
          expect = fits(shape, strides, offset, array.length) ? 'any' : 'error';
          break;
        }
        case 'strides': {
          if (!shape.length) break;
          const i = this.choose!.int(shape.length), s = strides[i];
          const v = this.pickOf([0, -s, s + 1, -1, 2 ** 40, -(2 ** 40), 0.5, NaN, 2 ** 53, 2 ** 41]);
          const st = strides.map((x, k) => (k === i ? v : x));
          const ok = isInt(v) && Math.abs(v) <= (spec.native ? 2 ** 53 - 1 : 2 ** 40) && fits(shape, st as number[], offset, array.length) &&
            (role === 'in' || distinct(shape, st as number[]));
          this.set(name, op, ok ? 'any' : 'error', `strides[${i}] = ${v}`, spec.names);
          out = { data: array, dtype, shape, strides: st, offset };
          this.watch(name, array, role, shape, isInt(v) ? (st as number[]) : strides, offset, !ok);
          return out;
        }
        case 'offset': {
          const v = this.pickOf([-1, 0.5, NaN, 2 ** 53, 1e300, offset + 1, offset + padHi + 1, 0]);
          const ok = isInt(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER && fits(shape, strides, v, array.length);
          this.set(name, op, ok ? 'any' : 'error', `offset ${v}`, spec.names);
          out = { data: array, dtype, shape, strides, offset: v };
          this.watch(name, array, role, shape, strides, isInt(v) ? v : offset, !ok);
          return out;
        }
        case 'detach': {
          const t = new Tensor(array, shape, { dtype, strides, offset });
          const buf = array.buffer as ArrayBuffer;
          this.pre.push(() => void structuredClone(buf, { transfer: [buf] }));
          this.set(name, op, n > 0 ? 'error' : 'any', 'buffer detached after construction', spec.names);
          return t;  // not watched: its memory is gone
        }
        case 'shared': {
          const sab = new SharedArrayBuffer(array.byteLength);
          const a = hostArray(dtype, array.length, sab);
          a.set(array as never);
          this.set(name, op, 'error', 'data on a SharedArrayBuffer', spec.names);
          return { data: a, dtype, shape, strides, offset };
        }
        case 'plain':
          asPlain = true;
          break;
        case 'fake': {
          // Tensor's prototype with lying fields: not a checked Tensor, so it is validated as a plain object
          const f = Object.create(Tensor.prototype) as Record<string, unknown>;
          Object.assign(f, { data: array, dtype, shape: shape.map((x) => x * 1000 + 7), strides, offset });
          this.set(name, op, n > 0 ? 'error' : 'any', "Tensor's prototype, shape x1000", spec.names);
          this.watch(name, array, role, shape, strides, offset, true);
          return f;
        }
        case 'not-tensor': {
          const v = this.pickOf(NOT_TENSORS);
          const valid = (v === undefined && spec.optional) || (v === null && spec.optional) || (spec.numberOk === true && typeof v === 'number' && v >= 0);
          this.set(name, op, valid ? 'any' : 'error', `value ${String(v)}`, spec.names);
          return v;
        }
        case 'omit':
          this.set(name, op, spec.optional ? 'any' : 'error', 'omitted', spec.names);
          return undefined;
        case 'nan': {
          const bad = this.pickOf([NaN, Infinity, -Infinity]);
          for (let k = 0, m = 1 + this.choose!.int(3); k < m && n > 0; k++) array[padLo + this.choose!.int(n)] = this.encode(dtype, bad);
          this.set(name, op, 'any', `${bad} planted`, spec.names);
          break;
        }
        case 'getter-detach': {
          // reading `shape` detaches the buffer of another input that already exists
          const victims = [...this.tensors.values()].filter((t) => t.spec.role !== 'out' && t.array.byteLength > 0);
          if (!victims.length) break;
          const v = this.pickOf(victims);
          const obj = { data: array, dtype, strides, offset } as Record<string, unknown>;
          Object.defineProperty(obj, 'shape', {
            enumerable: true,
            get: () => {
              if (v.array.byteLength > 0) structuredClone(v.array.buffer, { transfer: [v.array.buffer as ArrayBuffer] });
              return shape;
            },
          });
          this.set(name, op, 'any', 'reading shape detaches another input', spec.names);
          for (const w of this.watched) if (w.array === v.array) w.role = 'gone';
          this.watch(name, array, role, shape, strides, offset);
          return obj;
        }
        case 'alias': {
          // the output's data is an input's buffer (same dtype, large enough)
          const ins = [...this.tensors.entries()].filter(([, t]) => t.spec.role !== 'out' && t.spec.dtype === dtype && t.array.length >= padLo + n);
          if (!ins.length) break;
          const [src, t] = this.pickOf(ins);
          // at the input's own offset, so that the two views overlap
          offset = t.offset;
          if (t.array.length < offset + n) break;
          const inputEmpty = t.numel === 0;
          const inPlace = spec.inPlaceOf === src && n > 0 && t.offset === offset && t.shape.length === shape.length &&
            t.strides.every((s, k) => s === strides[k]) && t.shape.every((s, k) => s === shape[k]);
          this.set(name, op, n === 0 || inputEmpty || inPlace ? 'any' : 'error', `data of ${src}`, spec.names);
          if (inPlace || inputEmpty) {
            // written in place, or the input reads nothing of its buffer: only the output's view may change
            const w = this.watched.find((x) => x.array === t.array);
            if (w) {
              w.role = 'out';
              w.elements = viewElements(shape, strides, offset);
            }
          }
          return new Tensor(t.array, shape, { dtype, strides, offset });
        }
        case 'small': {
          // one dimension one smaller (a zero dimension cannot shrink: the view would be unchanged)
          const dims = shape.map((x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0);
          if (!dims.length) break;
          shape[this.pickOf(dims)] -= 1;
          expect = spec.flexible ? 'any' : 'error';
          break;
        }
        case 'hostile': {
          const h = this.pickOf(spec.hostile!);
          const v = [...vals];
          const r = h(v, (xs) => this.pickOf(xs));
          if (!r) break;
          for (let i = 0; i < n; i++) array[padLo + i] = this.encode(dtype, v[i]);
          this.set(name, op, r.expect, r.detail, spec.names);
          break;
        }
        case 'index': {
          const c = spec.check!;
          const total = n;
          if (!total) break;
          let i = this.choose!.int(total);
          if (c.kind === 'ascending' && c.counts) {
            // an entry before its row's count
            const cap = shape[shape.length - 1], rows = total / cap;
            const valid: number[] = [];
            for (let r = 0; r < rows; r++) for (let j = 0; j < Math.min(cap, Number(c.counts[r] ?? 0)); j++) valid.push(r * cap + j);
            if (!valid.length) break;
            i = this.pickOf(valid);
          }
          const v = this.pickOf(c.kind === 'count' ? [-1, c.range + 1, 2 ** 31 - 1, -(2 ** 31)] :
            c.kind === 'position' ? [-1, c.range, 2 ** 31 - 1] : [-1, c.range, 2 ** 31 - 1, 'dup', 'swap']);
          if (v === 'dup' || v === 'swap') {
            const cap = shape[shape.length - 1];
            const j = i % cap;
            const row = Math.floor(i / cap);
            const cnt = Number(c.counts?.[row] ?? cap);
            if (cnt < 2) break;
            const a = padLo + row * cap + (j >= 1 ? j - 1 : 0), b2 = a + 1;
            if (v === 'dup') array[b2] = array[a];
            else [array[a], array[b2]] = [array[b2], array[a]];
            this.set(name, op, 'error', `${v} at row ${row}`, spec.names);
          } else {
            array[padLo + i] = v as number;
            this.set(name, op, 'error', `entry ${i} = ${v}`, spec.names);
          }
          break;
        }
      }
      if (!this.mutation) this.set(name, op, expect, op, spec.names);
      else if (expect === 'error' && this.mutation.expect === 'any') this.mutation.expect = 'error';
    }
    this.watch(name, array, role, shape, strides, offset, this.mutation?.slot === name && this.mutation.expect === 'error');
    if (asPlain || shape.length > 4 || (this.mutation?.slot === name && !fits(shape, strides, offset, array.length))) {
      out = { data: array, dtype, shape, strides, offset };
    } else {
      out = new Tensor(array, shape, { dtype, strides, offset });
    }
    this.tensors.set(name, { array, spec, view: out instanceof Tensor ? out : undefined, offset, numel: shape.reduce((a, c) => a * c, 1), strides, shape });
    return out;
  }

  private watch(name: string, array: HostArray, role: 'in' | 'out', shape: number[], strides: number[], offset: number, invalid = false): void {
    if (this.watched.some((w) => w.array === array)) return;
    const before = new Uint8Array(array.buffer.slice(array.byteOffset, array.byteOffset + array.byteLength) as ArrayBuffer);
    // an invalid output view may not be written at all: every element of its buffer must stay
    const elements = role === 'out' && !invalid ? viewElements(shape, strides, offset) : undefined;
    this.watched.push({ name, array, before, role: role === 'out' && !invalid ? 'out' : 'in', elements });
  }

  /**
   * A number (or enum, or boolean) argument. `valid` says whether a value is accepted; without it a mutated value
   * may go either way.
   */
  num(name: string, value: unknown, valid?: (v: unknown) => boolean, names?: string[]): unknown {
    if (!this.slot(name)) return value;
    const pool = [...BAD_NUMS];
    if (typeof value === 'number') pool.push(value + 1, value - 1, value * 2, -value);
    const v = this.pickOf(pool);
    this.set(name, 'value', valid ? (valid(v) ? 'any' : 'error') : 'any', `${String(v)}`, names);
    return v;
  }

  /** An enum string argument. */
  choice(name: string, value: unknown, allowed: readonly string[], optional = true, names?: string[]): unknown {
    if (!this.slot(name)) return value;
    const v = this.pickOf([...allowed, 'x', '', 1, null, undefined, value + ' ', 'ALL', 'Window']);
    const ok = (typeof v === 'string' && allowed.includes(v)) || (v === undefined && optional);
    this.set(name, 'value', ok ? 'any' : 'error', `${String(v)}`, names);
    return v;
  }

  /**
   * An options object built by the target; mutations add an unknown key, replace it or drop it. `strict`: unknown keys
   * are rejected (false for objects that may carry more fields, e.g. a compress() result passed as `compressed`).
   */
  options<T extends object>(name: string, obj: T, optional = true, strict = true, names: string[] = []): unknown {
    if (!this.slot(name)) return obj;
    const op = this.pickOf(['unknown-key', 'unknown-key', 'not-object', 'omit', 'proto']);
    if (op === 'unknown-key') {
      this.set(name, op, strict ? 'error' : 'any', "key 'bogus'", ['bogus']);
      return { ...obj, bogus: 1 };
    }
    if (op === 'proto') {
      // the fields on the prototype: an own-keys check sees none; valid or not depending on the op's required fields
      this.set(name, op, 'any', 'fields inherited');
      return Object.create(obj);
    }
    // a missing or wrong container may be reported through the field it lacks
    const fields = [...Object.keys(obj), ...names];
    if (op === 'omit') {
      this.set(name, op, optional ? 'any' : 'error', 'omitted', fields);
      return undefined;
    }
    const v = this.pickOf([5, 'x', [], null, true]);
    this.set(name, op, 'error', `value ${JSON.stringify(v)}`, fields);
    return v;
  }

  /** A raw tensor descriptor as the addon parses it (a plain object: every field reaches native code as given). */
  raw(name: string, spec: TensorSpec): unknown {
    const t = this.tensor(name, { ...spec, plain: true, native: true });
    if (t instanceof Tensor) return t.toNative();
    if (t !== null && typeof t === 'object' && 'data' in t) return { strides: undefined, offset: 0, ...(t as object) };
    return t;
  }

  /** The byte size of a dtype (re-exported for targets). */
  static size(dtype: DType): number {
    return dtypeSize(dtype);
  }
}
