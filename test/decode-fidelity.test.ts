// MomentKV fidelity on the built-in LLM-like trace (lib/trace/: topic segments with mutually orthogonal value
// directions, i.e. evicted and retained values point in nearly orthogonal directions; sinks, needles, RoPE).
// Held-out decode queries (never seen by the compressor) attend the compressed cache; the error is the relative
// error of the attention output against the full cache, median over all query heads and held-out queries.
// Expected (docs/methods/momentkv.md §14.3): order 1 < order 0 < plain eviction, at keep 5 %, 10 % and 25 %.
import t from 'tap';
import { generateTrace } from '../lib/trace';
import { decodeAttention, gatherKV, momentkvSelect, tensor } from '../lib/index';
import type { Tensor } from '../lib/index';
import type { Test } from 'tap';
import { snapkvScoresRef } from './ref/snapkv';
import { attentionRef, median, relativeErrors } from './ref/attention';
import { BACKENDS, EMULATED_CUDA, on, place, fetch, QUICK, QUICK_SKIP } from './helpers';
import { expectWritten } from './ref/compare';

// KVTRIM_TEST_QUICK=1 (reduced sizes): the fidelity claims are about the N = 8192 trace, a visible skip
const tr = generateTrace({ seed: 1, layers: 2, kvHeads: 8, groupSize: 4, tokens: QUICK ? 256 : 8192, headDim: 128 });
const { Hkv, Hq, N, d, dv, W, T } = tr;

for (const [li, L] of tr.layers.entries()) {
  // SnapKV base scores (docs/methods/momentkv.md §5.1: window 32, max-pool kernel 7, group mean), window = +Infinity.
  const scores = Float32Array.from(snapkvScoresRef(L.windowQueries, Hq, W, L.keys, Hkv, N, d, { kernel: 7, pool: 'max' }));
  const hostKeys = tensor(L.keys, [Hkv, N, d]), hostValues = tensor(L.values, [Hkv, N, dv]);
  const hostQ = tensor(L.heldOutQueries, [Hq, T, d]);
  // the full-cache output: float64 attention (test/ref/attention.ts), not the library's own decode
  const full = attentionRef({ q: L.heldOutQueries, Hq, T, d, K: L.keys, V: L.values, Hkv, N, dv, scale: 1 / Math.sqrt(d) }).out;
  let checked = 0;
  const err = async (o: Tensor, t: Test) => {
    const h = await fetch(o);
    if (checked++ < 3) expectWritten(t, h, 'decode output');
    return median(relativeErrors(h.host as Float32Array, full, Hq * T, dv));
  };

  for (const b of BACKENDS) {
    // Under the CUDA emulator (test/helpers.ts EMULATED_CUDA) the CUDA part runs one layer at keep 10 %.
    const reduced = b === 'cuda' && EMULATED_CUDA;
    t.test(`fidelity ${b}: trace layer ${li} (Hkv=${Hkv}, G=${Hq / Hkv}, N=${N}, d=${d}), held-out queries T=${T}${reduced ? ', keep 10 % (emulated CUDA)' : ''}`, on(b, { skip: QUICK_SKIP || (reduced && li > 0 && 'emulated CUDA: layer 0 only') }), async (t) => {
      const keys = place(hostKeys, b), values = place(hostValues, b), queries = place(hostQ, b), sc = place(tensor(scores, [Hkv, N]), b);
      const rows: string[] = [];
      for (const keepFrac of reduced ? [0.1] : [0.05, 0.1, 0.25]) {
        const ratio = 1 - keepFrac;
        const e: Record<string, number> = {};
        for (const mi of [false, true]) {
          const sel = momentkvSelect({ scores: sc, keys, values, ratio, mi });
          const g = gatherKV({ keys, values, indices: sel.indices, counts: sel.counts });
          const tag = mi ? 'mi' : 'snap';
          e[`${tag}-plain`] = await err(decodeAttention({ queries, keys: g.keys, values: g.values, counts: g.counts }), t);
          e[`${tag}-order0`] = await err(decodeAttention({ queries, keys: g.keys, values: g.values, counts: g.counts, moments: sel.moments, order: 0 }), t);
          e[`${tag}-order1`] = await err(decodeAttention({ queries, keys: g.keys, values: g.values, counts: g.counts, moments: sel.moments, order: 1 }), t);
        }
        const pct = `${Math.round(keepFrac * 100)} %`;
        rows.push(
          `| ${li} | ${pct} | ${e['snap-plain'].toFixed(4)} | ${e['snap-order1'].toFixed(4)} | ${e['mi-plain'].toFixed(4)} | ` +
            `${e['mi-order0'].toFixed(4)} | ${e['mi-order1'].toFixed(4)} |`,
        );
        // MomentKV (MI eviction + NC correction): order 1 < order 0 < plain eviction (SnapKV, no correction).
        t.ok(e['mi-order1'] < e['mi-order0'], `keep ${pct}: order 1 (${e['mi-order1'].toFixed(4)}) < order 0 (${e['mi-order0'].toFixed(4)})`);
        t.ok(e['mi-order0'] < e['snap-plain'], `keep ${pct}: order 0 (${e['mi-order0'].toFixed(4)}) < plain SnapKV eviction (${e['snap-plain'].toFixed(4)})`);
        // The correction alone also helps on the same retained set, and MI eviction alone helps too.
        t.ok(e['mi-order0'] < e['mi-plain'], `keep ${pct}: on the MI-selected set, order 0 < plain attention`);
        t.ok(e['snap-order1'] < e['snap-plain'], `keep ${pct}: on the SnapKV set, order 1 < plain attention`);
      }
      t.comment('median rel. error of the attention output vs the full cache (held-out queries):');
      t.comment('| layer | keep | SnapKV plain | SnapKV + NC order 1 | MI plain | MomentKV order 0 | MomentKV order 1 |');
      for (const r of rows) t.comment(r);
    });
  }
}
