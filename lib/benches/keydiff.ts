/** Bench case of KeyDiff scoring (docs/performance.md §5.1) and its plain-JS baseline. */
import { keydiffScores } from '../ops/keydiff';
import type { Tensor } from '../tensor';
import { native } from '../binding';
import type { BenchCase } from './types';
import { decoded, keyScorerCase } from './shared';

/** KeyDiff written plainly: normalise every key into a new array, average, then cosine per key. */
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

export const keydiffBenches: BenchCase[] = [
  keyScorerCase(
    'keydiffScores',
    '2 passes',
    (keys, out, ctx) => void keydiffScores(keys, { out, stream: ctx.stream }),
    (host, keys, out, ctx) =>
      ctx.backend === 'cpu'
        ? { name: 'plain JS', run: () => void keydiffNaive(host) }
        : { name: 'unfused (3 kernels)', run: () => native.baselineKeydiff(keys.toNative(), out.toNative(), ctx.stream?.handle) },
  ),
];
