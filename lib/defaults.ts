/**
 * The option defaults of every op with options: the one place the TypeScript layer reads them from (the op wrappers
 * in lib/ops/, the method registry in lib/methods.ts and through it `compress()`).
 *
 * Field names are the TypeScript option names; enums are their TypeScript strings. Where the C ABI resolves a value
 * from the inputs, the default is its sentinel: NestedKV `block` 0 = clip(⌊N/32⌋, 128, 256), SnapKV `window` 0 = all
 * query rows, `scale` 0 = 1/√d (SnapKV, decode, GRKV), decode `clip` null = no clip. Options without a default
 * (`keep`, `ratio`, outputs, streams) are absent. The values come from the C ABI's `kvt_<op>_default_opts`
 * (csrc/include/kvtrim.h), the one source of truth, through the addon's `defaultOptions()`.
 */
import { native } from './binding';
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

/** The defaults of every op, read once from the addon (`defaultOptions()`, built from the C `kvt_<op>_default_opts`). */
export const DEFAULTS: DeepReadonly<Defaults> = deepFreeze<Defaults>(native.defaultOptions());
