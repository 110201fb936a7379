/**
 * Bench case of the NestedKV scorer (docs/performance.md §5.1) and its plain-JS baseline. Speed-of-light bytes: two
 * passes over K plus the f32 scores (the raw-anomaly statistics in between stay in L2 and are not counted).
 */
import { nestedkvScores, nestedkvBlockSize } from '../ops/nestedkv';
import { DEFAULTS } from '../defaults';
import type { Tensor } from '../tensor';
import type { BenchCase } from './types';
import { decoded, keyScorerCase } from './shared';

/**
 * NestedKV written plainly (single thread, materialised normalised keys, prefix sums for the windows, a full sort
 * per tail): the straightforward baseline of the CPU backend. Default options (DEFAULTS.nestedkv, scales 'all').
 */
export function nestedkvNaive(keys: Tensor): Float32Array {
  const [H, N, d] = keys.shape;
  const k = decoded(keys);
  const kh = new Float32Array(k.length);
  for (let r = 0; r < H * N; r++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += k[r * d + c] * k[r * d + c];
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let c = 0; c < d; c++) kh[r * d + c] = k[r * d + c] * inv;
  }
  const D = DEFAULTS.nestedkv;
  const b = D.block || nestedkvBlockSize(N), Wn = D.window, m = Math.max(1, Math.floor(D.tail * N));
  const out = new Float32Array(H * N);
  const cos = (row: number, mu: Float64Array, off: number): number => {
    let dot = 0, nn = 0;
    for (let c = 0; c < d; c++) {
      dot += kh[row * d + c] * mu[off + c];
      nn += mu[off + c] * mu[off + c];
    }
    return Math.sqrt(nn) < 1e-12 ? 0 : -dot / Math.sqrt(nn);
  };
  const minmax = (x: Float64Array): void => {
    let lo = Infinity, hi = -Infinity;
    for (const v of x) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    for (let i = 0; i < x.length; i++) x[i] = hi - lo > 1e-12 ? (x[i] - lo) / (hi - lo) : 0;
  };
  for (let h = 0; h < H; h++) {
    const pre = new Float64Array((N + 1) * d), blk = new Float64Array(Math.ceil(N / b) * d);
    for (let i = 0; i < N; i++)
      for (let c = 0; c < d; c++) {
        const v = kh[(h * N + i) * d + c];
        pre[(i + 1) * d + c] = pre[i * d + c] + v;
        blk[Math.floor(i / b) * d + c] += v;
      }
    const A = [new Float64Array(N), new Float64Array(N), new Float64Array(N)], win = new Float64Array(d);
    for (let i = 0; i < N; i++) {
      const lo = Math.max(0, i - Wn + 1);
      for (let c = 0; c < d; c++) win[c] = pre[(i + 1) * d + c] - pre[lo * d + c];
      A[0][i] = cos(h * N + i, pre, N * d);
      A[1][i] = cos(h * N + i, blk, Math.floor(i / b) * d);
      A[2][i] = cos(h * N + i, win, 0);
    }
    A.forEach(minmax);
    const lg = A.map((a, x) => {
      const s = Array.from(a).sort((p, q) => p - q);
      let top = 0, bot = 0;
      for (let j = 0; j < m; j++) { bot += s[j]; top += s[N - 1 - j]; }
      return Math.log(D.prior[x]) + D.beta * (top - bot) / m;
    });
    const mx = Math.max(...lg), e = lg.map((l) => Math.exp(l - mx)), z = e[0] + e[1] + e[2];
    const sp = new Float64Array(N);
    for (let i = 0; i < N; i++) {
      const mean = (A[0][i] + A[1][i] + A[2][i]) / 3;
      sp[i] = Math.sqrt(((A[0][i] - mean) ** 2 + (A[1][i] - mean) ** 2 + (A[2][i] - mean) ** 2) / 3);
    }
    minmax(sp);
    const spm = sp.reduce((p, q) => p + q, 0) / N;
    for (let i = 0; i < N; i++) {
      const alpha = 1 / (1 + Math.exp(-D.kappa * (sp[i] - spm - D.tau)));
      const blend = (e[0] * A[0][i] + e[1] * A[1][i] + e[2] * A[2][i]) / z;
      out[h * N + i] = i < D.sinks ? Infinity : (1 - alpha) * blend + alpha * Math.max(A[0][i], A[1][i], A[2][i]);
    }
  }
  return out;
}

export const nestedkvBenches: BenchCase[] = [
  keyScorerCase(
    'nestedkvScores',
    '2 passes + radix statistics',
    (keys, out, ctx) => void nestedkvScores(keys, { out, stream: ctx.stream }),
    (host, _keys, _out, ctx) => (ctx.backend === 'cpu' ? { name: 'plain JS', run: () => void nestedkvNaive(host) } : undefined),
  ),
];
