/**
 * The fuzzer's value predicates ("may this value be valid?") and small builders shared by the target files.
 */
import type { DType } from '../../lib/tensor';
import type { Builder } from './mutator';

// ---- predicates: "may this value be valid?" ----
export type Pred = (v: unknown) => boolean;
export const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
export const int = (lo: number, hi: number): Pred => (v) => isInt(v) && v >= lo && v <= hi;
export const num = (lo: number, hi: number, open: { lo?: boolean; hi?: boolean } = {}): Pred => (v) =>
  typeof v === 'number' && !Number.isNaN(v) && (open.lo ? v > lo : v >= lo) && (open.hi ? v < hi : v <= hi);
export const opt = (p: Pred): Pred => (v) => v === undefined || p(v);
export const bool: Pred = (v) => typeof v === 'boolean';
export const F32_MAX = 3.4028234663852886e38;
export const I32 = 2 ** 31 - 1;

export const FLOATS: DType[] = ['f32', 'f16', 'bf16'];

/** Ascending index rows: `counts[h]` distinct sorted positions in [0, N) per head, padding −1 up to `cap`. */
export function indexRows(b: Builder, H: number, N: number, cap: number, counts: number[]): Int32Array {
  const a = new Int32Array(H * cap).fill(-1);
  for (let h = 0; h < H; h++) {
    const pos = Array.from({ length: N }, (_, i) => i);
    for (let i = N - 1; i > 0; i--) {
      const j = b.int(0, i);
      [pos[i], pos[j]] = [pos[j], pos[i]];
    }
    const take = pos.slice(0, counts[h]).sort((x, y) => x - y);
    take.forEach((p, j) => (a[h * cap + j] = p));
  }
  return a;
}

