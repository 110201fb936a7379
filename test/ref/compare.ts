// Error measures and output checks shared by the tests (float64). NaN anywhere, or a length mismatch, counts as an
// infinite error. The one comparison every op test uses is `expectClose` (values against a float64 reference, with
// unwritten and non-finite elements reported); `expectWritten` checks outputs compared some other way (indices,
// counts, bit-exact copies).
import type { Test } from 'tap';
import type { DType, Tensor } from '../../lib/index';
import { f16ArrayToF32, bf16ArrayToF32 } from '../../lib/half';

/**
 * The two poisons an output is filled with before an op runs (test/helpers.ts `poisoned`): 'nan' is a quiet NaN
 * with a payload no arithmetic produces (an unwritten element fails any comparison with a finite reference, and a
 * kernel that reads its output before writing it propagates NaN); 'finite' is a finite value far outside every
 * output's range (a kernel that folds its output into a max/min or an `isnan` test does not absorb it). Integer
 * outputs get values no index, count or flag can take. An element still holding either pattern after the op was
 * never written.
 */
export type Fill = 'nan' | 'finite';
export const FILLS: readonly Fill[] = ['nan', 'finite'];
const PATTERNS: Record<DType, Record<Fill, number>> = {
  f32: { nan: 0x7fe5a5a5, finite: 0x5a5a5a5a }, // qNaN with payload; 1.54e16
  f16: { nan: 0x7e5a, finite: 0x7a5a }, // qNaN with payload; 52032
  bf16: { nan: 0x7fe5, finite: 0x5a5a }, // qNaN with payload; 1.54e16
  i32: { nan: 0xa5a5a5a5 | 0, finite: 0x5a5a5a5a }, // -1515870811; 1515870810
};

/** The raw bits of the `fill` poison for `dtype` (as stored: u32 for f32/i32, u16 for f16/bf16). */
export function poisonBits(dtype: DType, fill: Fill): number {
  return PATTERNS[dtype][fill];
}

/** Fills every element of a host typed array with the `fill` poison of `dtype`. */
export function fillPoison(data: Float32Array | Uint16Array | Int32Array, dtype: DType, fill: Fill): void {
  const bits = poisonBits(dtype, fill);
  if (data instanceof Uint16Array) data.fill(bits);
  else new Int32Array(data.buffer, data.byteOffset, data.length).fill(bits | 0);
}

/** Raw bits of each element of a host tensor in logical (row-major) order. */
export function rawBits(t: Tensor): Int32Array {
  const h = t.host;
  const raw = h instanceof Uint16Array ? h : new Int32Array(h.buffer, h.byteOffset, h.length);
  if (dense(t)) return Int32Array.from(raw.subarray(0, t.numel));
  const out = new Int32Array(t.numel);
  const idx = new Array<number>(t.ndim).fill(0);
  for (let k = 0; k < out.length; k++) {
    let o = t.offset;
    for (let i = 0; i < t.ndim; i++) o += idx[i] * t.strides[i];
    out[k] = raw[o];
    for (let i = t.ndim - 1; i >= 0; i--) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/** Logical indices of the elements of a host tensor that still hold a poison pattern (either fill). */
export function unwritten(t: Tensor): number[] {
  const bits = rawBits(t);
  const a = poisonBits(t.dtype, 'nan') | 0, b = poisonBits(t.dtype, 'finite') | 0;
  const out: number[] = [];
  for (let k = 0; k < bits.length; k++) if (bits[k] === a || bits[k] === b) out.push(k);
  return out;
}

/** A contiguous view from element 0 (its logical order is its storage order). */
function dense(t: Tensor): boolean {
  return t.isContiguous && t.offset === 0;
}

/** Values of a host tensor as float64 in logical order (f16/bf16 decoded exactly). */
export function valuesOf(t: Tensor): Float64Array {
  if (dense(t)) {
    const h = t.host.subarray(0, t.numel);
    if (t.dtype === 'f16') return Float64Array.from(f16ArrayToF32(h as Uint16Array));
    if (t.dtype === 'bf16') return Float64Array.from(bf16ArrayToF32(h as Uint16Array));
    return Float64Array.from(h);
  }
  const out = new Float64Array(t.numel);
  const idx = new Array<number>(t.ndim).fill(0);
  for (let k = 0; k < out.length; k++) {
    out[k] = t.at(...idx);
    for (let i = t.ndim - 1; i >= 0; i--) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

export interface CloseResult {
  /** max over finite reference elements of |got − ref| / (|ref| + floor) (or |got − ref| with mode 'abs') */
  err: number;
  /** where `err` is reached (−1: nowhere) */
  at: number;
  /** elements still holding a poison pattern (only when `got` is a tensor) */
  unwritten: number[];
  /** elements that are NaN or ±Infinity where the reference is finite */
  nonFinite: number[];
  /** elements where the reference is NaN or ±Infinity and `got` differs (NaN must be NaN, ±Infinity the same) */
  special: number[];
  ok: boolean;
  message: string;
}

export interface CloseOptions {
  /** the largest error allowed */
  tol: number;
  /** relative error floor: |got − ref| / (|ref| + floor) (default 1e-3); ignored with mode 'abs' */
  floor?: number;
  mode?: 'rel' | 'abs';
}

/**
 * Compares `got` (a host tensor, or values) with a float64 reference element by element: fails on any element that
 * still holds a poison pattern, on NaN/±Infinity where the reference is finite, on a special reference value not
 * matched exactly, and on an error above `tol`. NaN never hides behind a later finite element.
 */
export function closeTo(got: Tensor | ArrayLike<number>, ref: ArrayLike<number>, o: CloseOptions): CloseResult {
  const isTensor = typeof (got as Tensor).numel === 'number' && typeof (got as Tensor).at === 'function';
  const g = isTensor ? valuesOf(got as Tensor) : (got as ArrayLike<number>);
  const un = isTensor ? unwritten(got as Tensor) : [];
  const floor = o.floor ?? 1e-3, abs = o.mode === 'abs';
  let err = 0, at = -1;
  const nonFinite: number[] = [], special: number[] = [];
  if (g.length !== ref.length) {
    return { err: Infinity, at: -1, unwritten: un, nonFinite, special, ok: false, message: `length ${g.length} != reference length ${ref.length}` };
  }
  for (let i = 0; i < g.length; i++) {
    const r = ref[i], x = g[i];
    if (!Number.isFinite(r)) {
      if (!(Object.is(x, r) || (Number.isNaN(r) && Number.isNaN(x)))) special.push(i);
      continue;
    }
    if (!Number.isFinite(x)) {
      nonFinite.push(i);
      continue;
    }
    const e = abs ? Math.abs(x - r) : Math.abs(x - r) / (Math.abs(r) + floor);
    if (e > err) {
      err = e;
      at = i;
    }
  }
  const ok = un.length === 0 && nonFinite.length === 0 && special.length === 0 && err <= o.tol;
  const parts = [`max ${abs ? 'abs' : 'rel'} err ${err.toExponential(2)} <= ${o.tol}${at >= 0 ? ` (at ${at}: ${g[at]} vs ${ref[at]})` : ''}`];
  const show = (what: string, l: number[]) => `${l.length} ${what} (first at ${l[0]}: ${g[l[0]]} vs ${ref[l[0]]})`;
  if (un.length) parts.push(show('unwritten', un));
  if (nonFinite.length) parts.push(show('non-finite where the reference is finite', nonFinite));
  if (special.length) parts.push(show('not matching a NaN/Infinity of the reference', special));
  return { err, at, unwritten: un, nonFinite, special, ok, message: parts.join('; ') };
}

/** `closeTo` as a tap assertion: one `t.ok` whose message says the error and what else went wrong. */
export function expectClose(t: Test, got: Tensor | ArrayLike<number>, ref: ArrayLike<number>, o: CloseOptions, label = 'matches the reference'): CloseResult {
  const r = closeTo(got, ref, o);
  t.ok(r.ok, `${label}: ${r.message}`);
  return r;
}

/** Asserts that no element of a host output tensor still holds a poison pattern (outputs checked another way). */
export function expectWritten(t: Test, got: Tensor, label = 'output'): void {
  const u = unwritten(got);
  t.equal(u.length, 0, `${label}: every element written${u.length ? ` (${u.length} unwritten, first at ${u[0]})` : ''}`);
}

/** max_i |a_i − b_i| / (|b_i| + floor), and where; equal entries (infinities included) differ by 0, NaN is Infinity. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-3): { err: number; at: number } {
  if (a.length !== b.length) return { err: Infinity, at: -1 };
  let err = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const e = Math.abs(a[i] - b[i]) / (Math.abs(b[i]) + floor);
    if (Number.isNaN(e)) return { err: Infinity, at: i };
    if (e > err) {
      err = e;
      at = i;
    }
  }
  return { err, at };
}

/** max_i |a_i| */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i]);
    if (Number.isNaN(x)) return Infinity;
    if (x > m) m = x;
  }
  return m;
}

/** max_i |a_i − b_i| (equal entries, infinities included, differ by 0). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return Infinity;
    if (d > m) m = d;
  }
  return m;
}

/** max over rows of ‖a − b‖ / ‖b‖ (rows of length w; ‖b‖ floored at 1e-15). */
export function maxRowRel(a: ArrayLike<number>, b: ArrayLike<number>, w: number): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let r = 0; r * w < b.length; r++) {
    let num = 0, den = 0;
    for (let c = 0; c < w; c++) {
      num += (a[r * w + c] - b[r * w + c]) ** 2;
      den += b[r * w + c] ** 2;
    }
    const e = Math.sqrt(num / Math.max(den, 1e-30));
    if (Number.isNaN(e)) return Infinity;
    if (e > m) m = e;
  }
  return m;
}
