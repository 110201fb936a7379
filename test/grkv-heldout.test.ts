// GRKV on held-out queries (docs/methods/grkv.md §13): on the built-in LLM-like trace (lib/trace/; N = 8192, 8 KV heads,
// GQA 4, d = 128), the attention output of the trace's held-out decode queries (position N; needle, local and topic
// queries never shown to the compressor) over the merged cache must be closer to the full-cache output than over the
// plainly evicted cache (SnapKV raw scores, uniform budget), at keep 10 % and 20 %, for both surrogate sources.
import t from 'tap';
import { grkvMerge, tensor, decodeGrkvDiagnostics } from '../lib/index';
import type { Tensor } from '../lib/index';
import { attentionRef, median, quantile, relativeErrors } from './ref/attention';
import { BACKENDS, on, place, fetch, QUICK, QUICK_SKIP } from './helpers';
import { expectWritten } from './ref/compare';
import { traceLayer, keptRows, snapkvSelection, surrogates, scatterRows } from './grkv-helpers';

// KVTRIM_TEST_QUICK=1 (reduced sizes): the N = 8192 trace is the point of this file, a visible skip
const L = traceLayer({ N: QUICK ? 512 : 8192, Hkv: 8, d: 128, groupSize: 4, seed: 1 });
const { Hkv: H, Hq, N, d, T } = L;
const scale = 1 / Math.sqrt(d);
const full = attentionRef({ q: L.heldOut, Hq, T, d, K: L.K, V: L.V, Hkv: H, N, dv: d, scale }).out;

function errors(K: Float32Array, V: Float32Array, kept: number[][]) {
  const o = attentionRef({ q: L.heldOut, Hq, T, d, K, V, Hkv: H, N, dv: d, kept, scale }).out;
  return relativeErrors(o, full, Hq * T, d);
}

function byKind(e: Float64Array): string {
  return ['needle', 'local', 'topic']
    .map((k) => {
      const xs: number[] = [];
      for (let j = 0; j < Hq; j++) for (let x = 0; x < T; x++) if (L.heldOutKind[x] === k) xs.push(e[j * T + x]);
      return `${k} ${median(xs).toFixed(4)}`;
    })
    .join(', ');
}

for (const backend of BACKENDS) {
  for (const ratio of [0.9, 0.8]) {
    t.test(`grkvMerge ${backend}: held-out decode queries at keep ${Math.round((1 - ratio) * 100)}%`, on(backend, { skip: QUICK_SKIP }), async (t) => {
      const sel = snapkvSelection(L, ratio);
      const kept = keptRows(sel);
      const ePlain = errors(L.K, L.V, kept);
      const mPlain = median(ePlain);
      t.comment(`plain SnapKV eviction: median ${mPlain.toFixed(4)}, p90 ${quantile(ePlain, 0.9).toFixed(4)} (${byKind(ePlain)})`);
      for (const source of ['stratified', 'window'] as const) {
        const s = surrogates(L, source);
        const res = grkvMerge({
          keys: place(tensor(L.K, [H, N, d]), backend), values: place(tensor(L.V, [H, N, d]), backend),
          selection: { indices: place(sel.indices, backend), counts: place(sel.counts, backend) },
          queries: place(tensor(s.q, [Hq, s.Qs, d]), backend), queryPositions: place(tensor(Int32Array.from(s.qpos), [s.Qs]), backend),
          weights: place(tensor(Float32Array.from(s.weights), [s.Qs]), backend), scores: place(tensor(L.raw, [H, N]), backend),
          diagnostics: true,
        });
        const diag = await decodeGrkvDiagnostics(res.diagnostics as Tensor);
        const hk = await fetch(res.keys), hv = await fetch(res.values);
        expectWritten(t, hk, `${source}: keys`);
        expectWritten(t, hv, `${source}: values`);
        const K = scatterRows(L.K, H, N, d, kept, hk);
        const V = scatterRows(L.V, H, N, d, kept, hv);
        const e = errors(K, V, kept);
        const m = median(e);
        t.comment(`GRKV (${source}): median ${m.toFixed(4)}, p90 ${quantile(e, 0.9).toFixed(4)} (${byKind(e)}); per head ${diag.map((x) => x.chosen).join(' ')}`);
        t.ok(m < mPlain, `${source} surrogates: median held-out error ${m.toFixed(4)} < plain eviction ${mPlain.toFixed(4)} (${(100 * (1 - m / mPlain)).toFixed(1)} % lower)`);
        t.ok(diag.every((x) => x.chosen !== 'unchanged'), `${source}: every head accepted a merge`);
      }
    });
  }
}
