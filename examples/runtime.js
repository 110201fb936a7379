// A serving runtime's paged KV cache (one layer): score, select with per-head budgets, compact in place, give the
// freed pages back to the pool, then decode and append with ragged per-head counts. Run: node examples/runtime.js
const kv = require('kvtrim');

const H = 4, d = 64, PAGE = 16, POOL = 64;
let seed = 7;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
// The runtime's page pools (NHD: [pages, pageSize, H, d]) and its free list.
const keys = kv.tensor(new Float32Array(POOL * PAGE * H * d).map(rand), [POOL, PAGE, H, d]);
const values = kv.tensor(new Float32Array(POOL * PAGE * H * d).map(rand), [POOL, PAGE, H, d]);
const free = Array.from({ length: POOL }, (_, i) => POOL - 1 - i);
// Three sequences after prefill: their page tables (FlashInfer's indptr / indices / lastPageLen).
const lengths = [300, 17, 180];
let seqs = kv.pagedSeqs(lengths, { pageSize: PAGE, layout: 'NHD', pages: lengths.flatMap((n) => Array.from({ length: Math.ceil(n / PAGE) }, () => free.pop())) });
const cache = () => ({ ...seqs, keys, values });

// 1. Score every sequence in place and keep 25 % per sequence, NestedKV's head-adaptive budget.
const scores = kv.nestedkvScoresBatched(cache()); // [B, H, maxLength]
const sel = kv.selectTokensBatched(scores, seqs, { ratio: 0.75, budget: 'adaptive' });
// 2. Move the kept rows to the front of each sequence's own pages; summarise the evicted rows for decode.
const moments = kv.MomentState.create(lengths.length * H, d, d);
const res = kv.compactInPlace({ cache: cache(), ...sel, moments });
free.push(...res.freedPages); // pages nobody uses any more
seqs = kv.compactPageTable(seqs, res); // each sequence keeps its first pageCounts[b] pages
console.log(`kept rows per head: ${Array.from(res.counts.data).join(' ')}`);
console.log(`pages: ${lengths.map((n) => Math.ceil(n / PAGE)).join('+')} -> ${Array.from(res.pageCounts.data).join('+')}; ${res.freedPages.length} freed, ${free.length} free`);

// 3. Decode one token per sequence: head h of sequence b reads its rows j < counts[b, h].
const counts = res.counts;
const q = kv.tensor(new Float32Array(lengths.length * H * d).map(rand), [lengths.length, H, d]);
const out = kv.decodeAttentionBatched({ queries: q, cache: cache(), counts, moments });
console.log(`decode output: [${out.shape.join(', ')}]`);

// 4. Append the new token's K/V: head h of sequence b writes row counts[b, h] (a new page when the longest head
//    crosses a page boundary), then counts[b, h] += 1.
const ip = seqs.indptr.data, ids = seqs.indices.data, c = counts.data;
const indptr = [0], indices = [], last = [];
for (let b = 0; b < lengths.length; b++) {
  const pages = Array.from(ids.subarray(ip[b], ip[b + 1]));
  const longest = Math.max(...c.subarray(b * H, (b + 1) * H));
  if (longest + 1 > pages.length * PAGE) pages.push(free.pop());
  for (let h = 0; h < H; h++) {
    const i = c[b * H + h]++, page = pages[Math.floor(i / PAGE)], slot = i % PAGE;
    for (const pool of [keys, values]) pool.data.set(new Float32Array(d).map(rand), ((page * PAGE + slot) * H + h) * d);
  }
  indices.push(...pages);
  indptr.push(indices.length);
  last.push(longest + 1 - (pages.length - 1) * PAGE);
}
seqs = { ...seqs, indptr: kv.tensor(Int32Array.from(indptr), [indptr.length]), indices: kv.tensor(Int32Array.from(indices), [indices.length]), lastPageLen: kv.tensor(Int32Array.from(last), [last.length]) };
const next = kv.decodeAttentionBatched({ queries: q, cache: cache(), counts, moments });
console.log(`after the append: rows per head ${Array.from(c).join(' ')}; decode output [${next.shape.join(', ')}]`);
