/**
 * Bench case of the corrected split-K decode attention (docs/performance.md §0 row 4, §5.4), GQA G = 4, and its
 * baselines (plain JS on the CPU backend, the same kernels without a summary on CUDA).
 */
import { MomentState } from '../ops/moments';
import { decodeAttention } from '../ops/decode';
import { tensor, dtypeSize, hostContiguous } from '../tensor';
import { randomHost } from '../checks/util';
import type { BenchCase } from './types';
import { G, decoded } from './shared';

/** Straightforward corrected decode in plain JavaScript (one token per query head). */
export function decodeNaive(q: Float32Array, K: Float32Array, V: Float32Array, H: number, N: number, d: number, st: { n: Float32Array; muK: Float32Array; muV: Float32Array; M: Float32Array }): Float32Array {
  const Hq = H * G, out = new Float32Array(Hq * d), scale = 1 / Math.sqrt(d);
  const logits = new Float32Array(N);
  for (let j = 0; j < Hq; j++) {
    const h = Math.floor(j / G);
    let mx = -Infinity;
    for (let i = 0; i < N; i++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += q[j * d + c] * K[(h * N + i) * d + c];
      logits[i] = s * scale;
      mx = Math.max(mx, logits[i]);
    }
    let z = 0;
    const o = new Float64Array(d);
    for (let i = 0; i < N; i++) {
      const w = Math.exp(logits[i] - mx);
      z += w;
      for (let c = 0; c < d; c++) o[c] += w * V[(h * N + i) * d + c];
    }
    const n = st.n[h];
    let amu = 0;
    for (let c = 0; c < d; c++) amu += q[j * d + c] * scale * st.muK[h * d + c];
    const lam = n > 0 ? 1 / (1 + Math.exp(Math.log(n) + amu - (mx + Math.log(z)))) : 1;
    for (let r = 0; r < d; r++) {
      let ca = 0;
      for (let c = 0; c < d; c++) ca += st.M[(h * d + r) * d + c] * q[j * d + c] * scale;
      const oe = n > 0 ? st.muV[h * d + r] + ca / n : 0;
      out[j * d + r] = lam * (o[r] / z) + (1 - lam) * oe;
    }
  }
  return out;
}

export const decodeBenches: BenchCase[] = [
  {
    op: 'decodeAttention',
    variant: `G=${G} T=1 order 1, retained L=N`,
    // Read the retained K and V once, the summary (C in f32) once per KV head; queries in, f32 out.
    solBytes: ({ H, N, d, dtype }) => H * (2 * N * d * dtypeSize(dtype) + (d * d + 2 * d + 1) * 4) + H * G * d * (dtypeSize(dtype) + 4),
    prepare(s, ctx) {
      const kh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype), vh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype);
      const qh = randomHost(ctx.rng, [s.H * G, s.d], s.dtype, 0.3);
      const keys = ctx.place(kh), values = ctx.place(vh), queries = ctx.place(qh);
      const counts = ctx.place(tensor(new Int32Array(s.H).fill(s.N), [s.H]));
      // a summary of 1000 other rows per head
      const ek = randomHost(ctx.rng, [s.H, 1000, s.d], s.dtype), ev = randomHost(ctx.rng, [s.H, 1000, s.d], s.dtype);
      const all = tensor(Int32Array.from({ length: s.H * 1000 }, (_, i) => i % 1000), [s.H, 1000]);
      const allC = tensor(new Int32Array(s.H).fill(1000), [s.H]);
      const host = MomentState.create(s.H, s.d, s.d).merge(ek, ev, all, allC);
      const moments = MomentState.from({ n: ctx.place(host.n), muK: ctx.place(host.muK), muV: ctx.place(host.muV), m: ctx.place(host.m) });
      const out = ctx.alloc([s.H * G, s.d], 'f32');
      const st = {
        n: hostContiguous(host.n) as Float32Array, muK: hostContiguous(host.muK) as Float32Array,
        muV: hostContiguous(host.muV) as Float32Array, M: hostContiguous(host.m) as Float32Array,
      };
      const qf = decoded(qh), kf = decoded(kh), vf = decoded(vh);
      return {
        run: () => void decodeAttention({ queries, keys, values, counts, moments, out, stream: ctx.stream }),
        baseline:
          ctx.backend === 'cuda'
            ? { name: 'plain split-K decode (no summary)', run: () => void decodeAttention({ queries, keys, values, counts, out, stream: ctx.stream }) }
            : { name: 'plain JS', run: () => void decodeNaive(qf, kf, vf, s.H, s.N, s.d, st) },
        peer: { inputs: { queries: qh, keys: kh, values: vh, n: host.n, muK: host.muK, muV: host.muV, m: host.m } },
      };
    },
  },
];
