import type { Test } from 'tap';
/**
 * Shared test plumbing: backends to run on (every skip visible), reduced sizes, placing inputs, poisoned outputs,
 * exact host copies of inputs.
 */
import { backendInfo, Tensor, tensor, toDevice, toHost, empty, f32ToBf16, f32ToF16, bf16ToF32, f16ToF32 } from '../lib/index';
import type { DType, Stream } from '../lib/index';
import { native } from '../lib/binding';
import { setFreshOutputHook } from '../lib/ops/common';
import { DeviceBuffer } from '../lib/device';
import { Rng } from '../lib/rng';
import { Fill, fillPoison, valuesOf } from './ref/compare';

export { maxRelErr } from './ref/compare';

export type Backend = 'cpu' | 'cuda';
/**
 * The backends every op test is written for. The CPU backend always runs; the CUDA cases run where a GPU is usable
 * and are tap skips with the reason elsewhere (`on(b)`): a machine without a GPU reports them as skipped.
 */
export const BACKENDS: Backend[] = ['cpu', 'cuda'];

const info = backendInfo();
/** Why CUDA cases do not run here (false: they run). */
export const CUDA_SKIP: string | false = info.cuda ? false : `CUDA not usable here: ${info.reason ?? 'no GPU'}`;

/** tap options of a test on backend `b`: CUDA without a usable GPU is a visible skip naming the reason. */
export function on(b: Backend, extra: { skip?: string | false } = {}): { skip: string | false } {
  return { skip: (b === 'cuda' && CUDA_SKIP) || extra.skip || false };
}

/**
 * True when 'cuda' is the CPU emulator of tools/cuda-emu (an addon built with KVTRIM_CUDA_EMU=ON): the kernels run
 * about 10^4 times slower than on a GPU, so the few tests that would take many minutes run a reduced CUDA part.
 */
export const EMULATED_CUDA = info.cuda && info.versions.cudaArchs === 'emulated';

/**
 * KVTRIM_TEST_QUICK=1: the op tests run reduced sizes (the native mutation run and the native coverage step of CI,
 * README "Tests"); the cases dropped then are tap skips that say so. Never set by `npm test`.
 */
export const QUICK = process.env.KVTRIM_TEST_QUICK === '1';
/** Skip reason of a full-size-only case under KVTRIM_TEST_QUICK=1 (false otherwise). */
export const QUICK_SKIP: string | false = QUICK ? 'KVTRIM_TEST_QUICK=1: full-size case' : false;
/** `full` normally, `quick` under KVTRIM_TEST_QUICK=1. */
export function sized<T>(full: T, quick: T): T {
  return QUICK ? quick : full;
}

/** Fills a tensor (host or CUDA) with a poison pattern of test/ref/compare.ts. */
export function poison(t: Tensor, fill: Fill = 'nan', stream?: Stream): Tensor {
  if (t.data instanceof DeviceBuffer) {
    const host = empty([t.data.byteLength / (t.dtype === 'f16' || t.dtype === 'bf16' ? 2 : 4)], t.dtype);
    fillPoison(host.host, t.dtype, fill);
    if (t.data.byteLength > 0) native.copyToDevice(t.data.native, 0, host.host, 0, t.data.byteLength, stream?.handle);
  } else {
    const h = t.data;
    fillPoison(h, t.dtype, fill);
  }
  return t;
}

// Every output an op allocates itself starts poisoned too (lib/ops/common.ts), never zeroed.
setFreshOutputHook((t, stream) => void poison(t, 'nan', stream));

/** Moves a host tensor to the backend (contiguous copy on CUDA). */
export function place(t: Tensor, b: Backend): Tensor {
  return b === 'cuda' ? toDevice(t) : t;
}

/**
 * Output tensor on the backend filled with a poison of test/ref/compare.ts: 'nan' (default; a NaN with a payload
 * for floats) or 'finite' (a finite pattern outside every output's range); integer outputs get impossible values.
 * `expectClose` / `expectWritten` report any element still holding either pattern.
 */
export function poisoned(shape: readonly number[], dtype: DType, b: Backend, fill: Fill = 'nan'): Tensor {
  return poison(empty(shape, dtype, b === 'cuda' ? { kind: 'cuda', id: 0 } : { kind: 'cpu' }), fill);
}

/** Host copy of any tensor (contiguous). */
export async function fetch(t: Tensor): Promise<Tensor> {
  return toHost(t);
}

/** Values of a host tensor as float64 (f16/bf16 decoded exactly), contiguous order. */
export function values(t: Tensor): Float64Array {
  return valuesOf(t);
}

export type Layout = 'hnd' | 'nhd' | 'padded';

/**
 * Random float data viewed as [A, B, C] in `dtype` and `layout`:
 *  - 'hnd': contiguous;
 *  - 'nhd': stored [B, A, C] (a runtime's [N, H, d] cache), viewed through strides;
 *  - 'padded': rows of C+3 elements with a 5-element offset and element stride 1 (padded allocation).
 * Returns the tensor and the exact stored values in [A, B, C] order (float64).
 */
export function randomTensor(rng: Rng, A: number, B: number, C: number, dtype: DType = 'f32', layout: Layout = 'hnd', gen?: (a: number, b: number, c: number) => number): { t: Tensor; v: Float64Array } {
  const v = new Float64Array(A * B * C);
  let strides: number[], offset = 0, size: number;
  if (layout === 'hnd') { strides = [B * C, C, 1]; size = A * B * C; }
  else if (layout === 'nhd') { strides = [C, A * C, 1]; size = A * B * C; }
  else { strides = [B * (C + 3), C + 3, 1]; offset = 5; size = offset + A * B * (C + 3); }
  const f32 = dtype === 'f32';
  const data = f32 ? new Float32Array(size) : new Uint16Array(size);
  data.fill(f32 ? NaN : 0x7fff); // poison the gaps: a kernel reading outside the view sees NaN
  for (let a = 0; a < A; a++)
    for (let b = 0; b < B; b++)
      for (let c = 0; c < C; c++) {
        const x = gen ? gen(a, b, c) : rng.normal();
        const o = offset + a * strides[0] + b * strides[1] + c * strides[2];
        let stored: number;
        if (dtype === 'f32') { data[o] = x; stored = (data as Float32Array)[o]; }
        else if (dtype === 'bf16') { data[o] = f32ToBf16(x); stored = bf16ToF32(data[o]); }
        else { data[o] = f32ToF16(x); stored = f16ToF32(data[o]); }
        v[(a * B + b) * C + c] = stored;
      }
  return { t: tensor(data, [A, B, C], { dtype, strides, offset }), v };
}

/** Rows of an [H, cap] index tensor, truncated to counts. */
export function rows(indices: Tensor, counts: Tensor): number[][] {
  const H = indices.shape[0], out: number[][] = [];
  for (let h = 0; h < H; h++) {
    const c = counts.at(h), r: number[] = [];
    for (let j = 0; j < c; j++) r.push(indices.at(h, j));
    out.push(r);
  }
  return out;
}

/** A call that must fail: [label, call, error class, message pattern]. */
export type BadCall = [string, () => unknown, 'TypeError' | 'RangeError' | 'Error', RegExp];

/**
 * One subtest per bad call: it must throw an Error of the given class (a subclass such as SpdError counts as its
 * base; 'Error' means a plain Error, e.g. the coded CUDA errors) whose message matches (names the argument).
 */
export function expectBadCalls(t: Test, cases: BadCall[], prefix = ''): void {
  for (const [label, fn, cls, msg] of cases) {
    t.test(`${prefix}${label}`, async (t) => {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      t.ok(err instanceof Error, 'throws an Error');
      const ok = cls === 'Error' ? (err as Error)?.constructor === Error : err instanceof globalThis[cls];
      t.ok(ok, `is a ${cls}: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
      t.match((err as Error)?.message ?? '', msg, 'message names the argument');
    });
  }
}

/** Runs `fn` with console.log and console.error captured; returns what each printed (lines joined by '\n'). */
export async function captureConsole(fn: () => Promise<void>): Promise<{ out: string; err: string }> {
  const lines: string[] = [], errs: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => void lines.push(a.join(' '));
  console.error = (...a: unknown[]) => void errs.push(a.join(' '));
  try {
    await fn();
  } finally {
    console.log = log;
    console.error = error;
  }
  return { out: lines.join('\n'), err: errs.join('\n') };
}
