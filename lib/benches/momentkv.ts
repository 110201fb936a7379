/**
 * Bench cases of the MomentKV kernels (spec/performance.md §0 row 4, §5.4): the compaction with the moment update
 * fused in, the corrected split-K decode, and the multi-round moment-informed selection. Queries use GQA G = 4.
 */
import { MomentState } from '../ops/moments';
import { gatherKV } from '../ops/gather';
import { decodeAttention } from '../ops/decode';
import { momentkvSelect } from '../ops/momentkv_select';
import { keepFromRatio, selectTokens } from '../ops/select';
import { Tensor, tensor, dtypeSize, hostContiguous } from '../tensor';
import { bf16ToF32, f16ToF32 } from '../half';
import { randomHost } from '../checks/util';
import type { BenchCase, BenchContext } from './types';
import { compactionSetup } from './shared';

const KEEP = 0.25;
const G = 4;

function stateOn(H: number, d: number, dv: number, ctx: BenchContext): MomentState {
  return MomentState.create(H, d, dv, ctx.backend === 'cuda' ? { device: ctx.device, ...(ctx.stream ? { stream: ctx.stream } : {}) } : {});
}

function decoded(t: Tensor): Float32Array {
  const h = hostContiguous(t);
  if (t.dtype === 'f32') return h as Float32Array;
  const cv = t.dtype === 'bf16' ? bf16ToF32 : f16ToF32;
  return Float32Array.from(h, (x) => cv(x));
}

/** Straightforward corrected decode in plain JavaScript (one token per query head). */
function decodeNaive(q: Float32Array, K: Float32Array, V: Float32Array, H: number, N: number, d: number, st: { n: Float32Array; muK: Float32Array; muV: Float32Array; M: Float32Array }): Float32Array {
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

export const momentkvBenches: BenchCase[] = [
  {
    op: 'MomentState.merge',
    variant: `fused into gatherKV, keep ${KEEP * 100}%`,
    // One pass over all K and V rows (kept ones copied, evicted ones merged) plus the kept rows written.
    solBytes: ({ H, N, d, dtype }) => 2 * H * N * d * dtypeSize(dtype) + 2 * H * keepFromRatio(N, 1 - KEEP) * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const { keys, values, indices, counts, keysOut, valuesOut, countsOut } = compactionSetup(s, ctx, KEEP);
      const moments = stateOn(s.H, s.d, s.d, ctx);
      return {
        run: () => void gatherKV({ keys, values, indices, counts, keysOut, valuesOut, countsOut, moments, stream: ctx.stream }),
        baseline: { name: 'compaction alone', run: () => void gatherKV({ keys, values, indices, counts, keysOut, valuesOut, countsOut, stream: ctx.stream }) },
      };
    },
  },
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
      };
    },
  },
  {
    op: 'momentkvSelect',
    variant: 'keep 10% rounds 4 r 1',
    // Per round one pass over V for the residuals; the evicted K and V rows are read once by the merges.
    solBytes: ({ H, N, d, dtype }) => 4 * H * N * d * dtypeSize(dtype) + 2 * H * (N - keepFromRatio(N, 0.9)) * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const kh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype), vh = randomHost(ctx.rng, [s.H, s.N, s.d], s.dtype);
      const sc = new Float32Array(s.H * s.N).map((_, i) => (i % s.N >= s.N - 32 ? Infinity : Math.exp(2 * ctx.rng.normal())));
      const scores = ctx.place(tensor(sc, [s.H, s.N])), keys = ctx.place(kh), values = ctx.place(vh);
      const keep = keepFromRatio(s.N, 0.9);
      const indices = ctx.alloc([s.H, keep], 'i32'), counts = ctx.alloc([s.H], 'i32');
      const moments = stateOn(s.H, s.d, s.d, ctx);
      return {
        run: () => {
          moments.reset({ stream: ctx.stream });
          momentkvSelect({ scores, keys, values, keep, moments, indices, counts, stream: ctx.stream });
        },
        baseline: {
          name: 'plain score eviction (mi=false)',
          run: () => {
            moments.reset({ stream: ctx.stream });
            momentkvSelect({ scores, keys, values, keep, moments, indices, counts, mi: false, stream: ctx.stream });
          },
        },
      };
    },
  },
];
