/** Helpers for target-vs-CPU checks: targets, random inputs, comparisons. */
import { Tensor, tensor, toDevice, toHost, empty, fillBytes, f32ToBf16, f32ToF16, bf16ToF32, f16ToF32, hostContiguous } from '../tensor';
import type { DType } from '../tensor';
import type { Rng } from '../rng';
import type { Target } from './types';
import { nativeInfo } from '../binding';

/**
 * Shapes of the check entries: 'full' (H = 8, Hkv = 4 for SnapKV, N = 4099) or 'small' (H = 2, N = 2051: every
 * entry with the same dtypes, layouts and code paths at about 1/8 of the work). `KVTRIM_CHECK_SIZE=small|full`;
 * default 'full', or 'small' on the CPU emulator of the CUDA kernels (tools/cuda-emu), where 'full' takes minutes.
 */
function checkSize(): 'small' | 'full' {
  const v = (process.env.KVTRIM_CHECK_SIZE ?? '').trim().toLowerCase();
  if (v === 'small' || v === 'full') return v;
  return nativeInfo.cuda && nativeInfo.versions.cudaArchs === 'emulated' ? 'small' : 'full';
}
export const checkShapes: { small: boolean; H: number; Hkv: number; N: number; cap: number } =
  checkSize() === 'small' ? { small: true, H: 2, Hkv: 2, N: 2051, cap: 517 } : { small: false, H: 8, Hkv: 4, N: 4099, cap: 1031 };

/** The CUDA device `id` as a check target. */
export function cudaTarget(id: number): Target {
  return {
    name: `cuda:${id}`,
    place: (t) => toDevice(t, { device: id }),
    poisoned(shape, dtype) {
      const t = empty(shape, dtype, { kind: 'cuda', id });
      fillBytes(t, 0xff);
      return t;
    },
    fetch: (t) => toHost(t),
  };
}

/** Host memory as a target (CPU backend against itself): exercises the checks without a GPU. */
export function hostTarget(): Target {
  return {
    name: 'cpu',
    place: (t) => tensor(hostContiguous(t).slice(), t.shape, { dtype: t.dtype }),
    poisoned(shape, dtype) {
      const t = empty(shape, dtype);
      fillBytes(t, 0xff);
      return t;
    },
    fetch: async (t) => t,
  };
}

/** Random host tensor of `dtype` (values ~ N(bias·dir, 1) with a shared per-channel direction so cosines spread). */
export function randomHost(rng: Rng, shape: number[], dtype: DType, bias = 0.8): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const last = shape[shape.length - 1] ?? 1;
  const dir = Array.from({ length: last }, () => rng.normal());
  if (dtype === 'f32') {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = bias * dir[i % last] + rng.normal();
    return tensor(a, shape);
  }
  const a = new Uint16Array(n);
  const cv = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < n; i++) a[i] = cv(bias * dir[i % last] + rng.normal());
  return tensor(a, shape, { dtype });
}

/** Values as numbers (decoding f16/bf16), contiguous order. */
export function numbers(t: Tensor): Float64Array {
  const h = hostContiguous(t);
  const out = new Float64Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = t.dtype === 'bf16' ? bf16ToF32(h[i]) : t.dtype === 'f16' ? f16ToF32(h[i]) : h[i];
  return out;
}

/** max |a-b| / (|b| + floor); NaN anywhere counts as Infinity. */
export function maxRel(a: ArrayLike<number>, b: ArrayLike<number>, floor: number): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (Math.abs(b[i]) + floor);
    if (!(e <= m)) m = Number.isNaN(e) ? Infinity : e;
  }
  return m;
}

/** Number of positions where two arrays differ (exact; NaN equals NaN). */
export function mismatches(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.max(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) n++;
  return n;
}

/** Max relative error with +Infinity entries required to match exactly (sinks / window positions). */
export function relErrWithInf(a: Float64Array, b: Float64Array, floor: number): number {
  let bad = 0;
  const fa = new Float64Array(a.length), fb = new Float64Array(b.length);
  for (let i = 0; i < a.length; i++) {
    if ((a[i] === Infinity) !== (b[i] === Infinity)) bad++;
    fa[i] = a[i] === Infinity ? 0 : a[i];
    fb[i] = b[i] === Infinity ? 0 : b[i];
  }
  return bad ? Infinity : maxRel(fa, fb, floor);
}

/** max over rows of ‖a − b‖ / ‖b‖. */
export function rowRel(a: Float64Array, b: Float64Array, w: number): number {
  let m = 0;
  for (let r = 0; r * w < b.length; r++) {
    let num = 0, den = 0;
    for (let c = 0; c < w; c++) {
      num += (a[r * w + c] - b[r * w + c]) ** 2;
      den += b[r * w + c] ** 2;
    }
    const e = Math.sqrt(num / Math.max(den, 1e-30));
    m = Number.isNaN(e) ? Infinity : Math.max(m, e);
  }
  return m;
}
