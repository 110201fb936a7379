// The one-call pipeline on one layer of the built-in LLM-like trace: compress with three methods at 90 %
// eviction and measure the attention-output error of held-out decode queries against the full cache.
// Run: node examples/pipeline.js
const { generateTrace, tensor, compress, attentionError } = require('kvtrim');

async function main() {
  const tr = generateTrace({ tokens: 4096, layers: 1 });
  const L = tr.layers[0];
  const keys = tensor(L.keys, [tr.Hkv, tr.N, tr.d]);
  const values = tensor(L.values, [tr.Hkv, tr.N, tr.dv]);
  const queries = tensor(L.windowQueries, [tr.Hq, tr.W, tr.d]); // observation window (last W prompt queries)
  const heldOut = tensor(L.heldOutQueries, [tr.Hq, tr.T, tr.d]); // later decode queries, never shown to compress()

  for (const [label, opts] of [
    ['nestedkv (adaptive budgets)', { method: 'nestedkv' }],
    ['snapkv + GRKV merge', { method: 'snapkv', merge: 'grkv' }],
    ['momentkv (+ moment summary)', { method: 'momentkv' }],
  ]) {
    const c = compress({ keys, values, queries }, { ...opts, ratio: 0.9 });
    const e = await attentionError({ queries: heldOut, keys, values, compressed: c });
    console.log(`${label.padEnd(28)} kept ${c.keep}/${tr.N} per head, median error ${e.median.toFixed(4)}, p90 ${e.p90.toFixed(4)}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
