/** Shared plumbing of the GRKV tests: a trace layer with raw SnapKV scores, storage conversions, selections. */
import { generateTrace } from '../lib/trace';
import { tensor, selectTokens, f32ToBf16, f32ToF16, bf16ToF32, f16ToF32 } from '../lib/index';
import type { Tensor, DType, Selection } from '../lib/index';
import { snapkvScoresRef } from './ref/snapkv';

export interface Layer {
  Hkv: number;
  Hq: number;
  N: number;
  d: number;
  W: number;
  T: number;
  K: Float32Array;
  V: Float32Array;
  windowQ: Float32Array;
  stratQ: Float32Array;
  heldOut: Float32Array;
  heldOutKind: string[];
  /** Raw SnapKV scores [Hkv, N] (float64 reference, as f32; window = +Infinity). */
  raw: Float32Array;
}

/** One layer of the built-in LLM-like trace (lib/trace/) and its raw SnapKV scores (docs/methods/snapkv.md §3.1). */
export function traceLayer(opts: { N: number; Hkv: number; d?: number; groupSize?: number; seed?: number; layer?: number }): Layer {
  const layers = (opts.layer ?? 0) + 1;
  const tr = generateTrace({ tokens: opts.N, kvHeads: opts.Hkv, headDim: opts.d ?? 128, groupSize: opts.groupSize ?? 4, layers, seed: opts.seed ?? 1 });
  const L = tr.layers[layers - 1];
  const raw = Float32Array.from(snapkvScoresRef(L.windowQueries, tr.Hq, tr.W, L.keys, tr.Hkv, tr.N, tr.d));
  return {
    Hkv: tr.Hkv, Hq: tr.Hq, N: tr.N, d: tr.d, W: tr.W, T: tr.T, K: L.keys, V: L.values, windowQ: L.windowQueries,
    stratQ: L.stratifiedQueries, heldOut: L.heldOutQueries, heldOutKind: L.heldOutKind, raw,
  };
}

/** Values rounded to a storage dtype (what the cache holds), as float32. */
export function rounded(x: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'bf16') return x.map((v) => bf16ToF32(f32ToBf16(v)));
  if (dtype === 'f16') return x.map((v) => f16ToF32(f32ToF16(v)));
  return x;
}

/** A storage array of a (rounded) float32 array. */
export function stored(x: Float32Array, dtype: DType): Float32Array | Uint16Array {
  if (dtype === 'bf16') return Uint16Array.from(x, (v) => f32ToBf16(v));
  if (dtype === 'f16') return Uint16Array.from(x, (v) => f32ToF16(v));
  return x;
}

/** The kept rows of a host selection. */
export function keptRows(sel: Selection): number[][] {
  const H = sel.indices.shape[0], cap = sel.indices.shape[1];
  const idx = sel.indices.host as Int32Array, cnt = sel.counts.host as Int32Array;
  return Array.from({ length: H }, (_, h) => Array.from(idx.subarray(h * cap, h * cap + cnt[h])));
}

/** Plain SnapKV eviction: per-head (uniform) or AdaKV-style (adaptive) top-k of the raw scores. */
export function snapkvSelection(L: Layer, ratio: number, budget: 'uniform' | 'adaptive' = 'uniform'): Selection {
  return selectTokens(tensor(L.raw, [L.Hkv, L.N]), { ratio, budget });
}

/** Full [H, N, w] float arrays with the retained rows replaced by a compacted cache's rows. */
export function scatterRows(full: Float32Array, H: number, N: number, w: number, kept: number[][], compact: Tensor): Float32Array {
  const out = Float32Array.from(full);
  const cap = compact.shape[1];
  for (let h = 0; h < H; h++) {
    kept[h].forEach((p, j) => {
      for (let c = 0; c < w; c++) out[(h * N + p) * w + c] = compact.at(h, j, c);
    });
  }
  void cap;
  return out;
}

/** Surrogate queries, positions and weights of one source (docs/methods/grkv.md §5). */
export function surrogates(L: Layer, source: 'window' | 'stratified') {
  const Qs = 32;
  const q = source === 'stratified' ? L.stratQ : L.windowQ;
  const qpos = Array.from({ length: Qs }, (_, i) => (source === 'stratified' ? L.N - 1 : L.N - Qs + i));
  const weights = new Array<number>(Qs).fill(source === 'stratified' ? 6 / Qs : 1);
  return { q, Qs, qpos, weights };
}
