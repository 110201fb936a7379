/**
 * Straightforward CPU baselines for `kvtrim bench`: what a user would write in plain JavaScript (single thread,
 * materialised intermediates, a comparison sort). They compute the same function as the kernels.
 */
import type { Tensor } from '../tensor';
import { hostContiguous } from '../tensor';
import { bf16ToF32, f16ToF32 } from '../half';

function decoded(t: Tensor): Float32Array {
  const h = hostContiguous(t);
  if (t.dtype === 'f32') return h as Float32Array;
  const out = new Float32Array(h.length);
  const cv = t.dtype === 'bf16' ? bf16ToF32 : f16ToF32;
  for (let i = 0; i < h.length; i++) out[i] = cv(h[i]);
  return out;
}

/** KeyDiff: normalise every key into a new array, average, then cosine per key. */
export function keydiffNaive(keys: Tensor): Float32Array {
  const [H, N, d] = keys.shape;
  const k = decoded(keys);
  const norm = new Float32Array(k.length);
  const out = new Float32Array(H * N);
  for (let r = 0; r < H * N; r++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += k[r * d + c] * k[r * d + c];
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let c = 0; c < d; c++) norm[r * d + c] = k[r * d + c] * inv;
  }
  for (let h = 0; h < H; h++) {
    const mean = new Float64Array(d);
    for (let i = 0; i < N; i++) for (let c = 0; c < d; c++) mean[c] += norm[(h * N + i) * d + c];
    let an = 0;
    for (let c = 0; c < d; c++) {
      mean[c] /= N;
      an += mean[c] * mean[c];
    }
    an = Math.max(Math.sqrt(an), 1e-12);
    for (let i = 0; i < N; i++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += norm[(h * N + i) * d + c] * mean[c];
      out[h * N + i] = -dot / an;
    }
  }
  return out;
}

/** Uniform top-k per head by sorting (score desc, position asc), then sorting the kept positions. */
export function selectNaive(scores: Tensor, keep: number): Int32Array {
  const [H, N] = scores.shape;
  const s = hostContiguous(scores) as Float32Array;
  const out = new Int32Array(H * keep);
  for (let h = 0; h < H; h++) {
    const idx = Array.from({ length: N }, (_, i) => i);
    idx.sort((a, b) => s[h * N + b] - s[h * N + a] || a - b);
    const kept = idx.slice(0, keep).sort((a, b) => a - b);
    out.set(kept, h * keep);
  }
  return out;
}

/** Compaction with element-wise copies. */
export function gatherNaive(keys: Tensor, values: Tensor, indices: Tensor, counts: Tensor): { k: Float32Array; v: Float32Array } {
  const [H, N, d] = keys.shape;
  const dv = values.shape[2];
  const cap = indices.shape[1];
  const k = hostContiguous(keys), v = hostContiguous(values), idx = hostContiguous(indices), cnt = hostContiguous(counts);
  const ko = new Float32Array(H * cap * d), vo = new Float32Array(H * cap * dv);
  for (let h = 0; h < H; h++) {
    for (let j = 0; j < cnt[h]; j++) {
      const i = idx[h * cap + j];
      for (let c = 0; c < d; c++) ko[(h * cap + j) * d + c] = k[(h * N + i) * d + c];
      for (let c = 0; c < dv; c++) vo[(h * cap + j) * dv + c] = v[(h * N + i) * dv + c];
    }
  }
  return { k: ko, v: vo };
}
