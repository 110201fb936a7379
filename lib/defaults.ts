/**
 * The option defaults of every op with options: the one place the TypeScript layer reads them from (the op wrappers
 * in lib/ops/, the method registry in lib/methods.ts and through it `compress()`).
 *
 * Field names are the TypeScript option names; enums are their TypeScript strings. Where the C ABI resolves a value
 * from the inputs, the default is its sentinel: NestedKV `block` 0 = clip(⌊N/32⌋, 128, 256), SnapKV `window` 0 = all
 * query rows, `scale` 0 = 1/√d (SnapKV, decode, GRKV), decode `clip` null = no clip. Options without a default
 * (`keep`, `ratio`, outputs, streams) are absent. The values mirror the C defaults (csrc/kvtrim.h).
 */
import type { Budget } from './ops/select';
import type { NestedkvScales } from './ops/nestedkv';
import type { SnapkvPool } from './ops/snapkv';

export interface SelectDefaults {
  budget: Budget;
  /** adaptive budget: fraction of each head's average budget it is guaranteed */
  safeguard: number;
  sinks: number;
  recent: number;
}

export interface NestedkvDefaults {
  window: number;
  /** 0 = clip(⌊N/32⌋, 128, 256) */
  block: number;
  /** (stable, episodic, current) */
  prior: readonly number[];
  beta: number;
  tau: number;
  kappa: number;
  tail: number;
  sinks: number;
  scales: NestedkvScales;
}

export interface SnapkvDefaults {
  /** 0 = every row of `queries` */
  window: number;
  kernel: number;
  pool: SnapkvPool;
  /** 0 = 1/√d */
  scale: number;
}

export interface DecodeDefaults {
  order: 0 | 1;
  /** 0 = 1/√d */
  scale: number;
  /** null = no clip of the first-order term */
  clip: number | null;
}

export interface MomentkvSelectDefaults {
  rounds: number;
  r: number;
  mi: boolean;
  eps: number;
}

export interface SpdDefaults {
  lambda: number;
  throwOnError: boolean;
}

export interface GrkvDefaults {
  window: number;
  gamma: number;
  lambda: number;
  caps: { readonly key: number; readonly value: number };
  cgIters: number;
  tol: number;
  /** 0 = 1/√d */
  scale: number;
  acceptance: 'best' | 'joint';
}

export interface Defaults {
  select: SelectDefaults;
  nestedkv: NestedkvDefaults;
  snapkv: SnapkvDefaults;
  decode: DecodeDefaults;
  momentkvSelect: MomentkvSelectDefaults;
  spd: SpdDefaults;
  grkv: GrkvDefaults;
}

export type DeepReadonly<T> = { readonly [K in keyof T]: T[K] extends object ? DeepReadonly<T[K]> : T[K] };

/** Freezes `o` and every object inside it. */
export function deepFreeze<T>(o: T): DeepReadonly<T> {
  for (const v of Object.values(o as object)) if (v !== null && typeof v === 'object') deepFreeze(v);
  return Object.freeze(o) as DeepReadonly<T>;
}

export const DEFAULTS: DeepReadonly<Defaults> = deepFreeze<Defaults>({
  select: { budget: 'uniform', safeguard: 0.2, sinks: 0, recent: 0 },
  nestedkv: { window: 64, block: 0, prior: [0.4, 0.4, 0.2], beta: 3, tau: 0.6, kappa: 10, tail: 0.1, sinks: 4, scales: 'all' },
  snapkv: { window: 0, kernel: 5, pool: 'avg', scale: 0 },
  decode: { order: 1, scale: 0, clip: null },
  momentkvSelect: { rounds: 4, r: 1, mi: true, eps: 0.05 },
  spd: { lambda: 0, throwOnError: true },
  grkv: { window: 32, gamma: 0.1, lambda: 0.01, caps: { key: 0.025, value: 0.1 }, cgIters: 16, tol: 1e-6, scale: 0, acceptance: 'best' },
});
