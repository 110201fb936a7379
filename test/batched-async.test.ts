// The async forms of the runtime-shaped ops (README "Non-blocking ops", docs/runtime-caches.md §3) give the same bits
// as their sync forms, also when all of them are in flight at once, on a paged batch with empty and one-token
// sequences; compactInPlaceAsync moves the same rows and frees the same pages as compactInPlace.
import t from 'tap';
import {
  MomentState, tensor, keydiffScoresBatched, keydiffScoresBatchedAsync, nestedkvScoresBatched, nestedkvScoresBatchedAsync,
  snapkvScoresBatched, snapkvScoresBatchedAsync, selectTokensBatched, selectTokensBatchedAsync, gatherKVBatched, gatherKVBatchedAsync,
  decodeAttentionBatched, decodeAttentionBatchedAsync, momentkvSelectBatched, momentkvSelectBatchedAsync, grkvMergeBatched,
  grkvMergeBatchedAsync, compactInPlace, compactInPlaceAsync,
} from '../lib/index';
import type { QueryBatch, Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { makeCache, makeTable, makeData, flat, sameBits } from './batch-helpers';

const H = 2, G = 2, d = 16, dv = 8;

function setup(seed: number) {
  const rng = new Rng(seed);
  const lengths = [70, 0, 1, 150, 33];
  const B = lengths.length;
  const made = makeCache(rng, 'NHD', lengths, H, d, dv, 'f32', 16);
  // window queries: up to 4 per sequence (ragged), for SnapKV and GRKV
  const qtb = makeTable(rng, 'ragged', lengths.map((n) => Math.min(4, n)));
  const q = makeData(rng, qtb, H * G, d);
  const queries = { ...qtb.seqs, queries: q.data } as QueryBatch;
  const decodeQ = tensor(Float32Array.from({ length: B * H * G * d }, () => 0.3 * rng.normal()), [B, H * G, d]);
  return { rng, lengths, B, ...made, queries, qtb, decodeQ };
}

function bitsOf(x: Tensor | undefined): number[] {
  return x ? flat(x) : [];
}

t.test('every batched async form equals its sync form, all in flight together', async (t) => {
  const s = setup(9101);
  const { cache, queries, lengths, B } = s;
  const scores = keydiffScoresBatched(cache);
  const sel = selectTokensBatched(scores, s.tb.seqs, { keep: 9 });
  // the position of each query row (rows outside the sequences: canaries, any valid value)
  const pos = new Int32Array(s.qtb.T);
  lengths.forEach((n, b) => {
    const w = s.qtb.lengths[b];
    for (let j = 0; j < w; j++) pos[s.qtb.first[b] + j] = n - w + j;
  });
  const positions = tensor(pos, [s.qtb.T]);
  const moments = () => MomentState.create(B * H, d, dv);
  const counts = tensor(Int32Array.from({ length: B * H }, (_, i) => Math.min(lengths[Math.floor(i / H)], 5)), [B, H]);
  const jobs: [string, () => unknown, () => Promise<unknown>, (r: unknown) => number[]][] = [
    ['keydiffScoresBatched', () => keydiffScoresBatched(cache), () => keydiffScoresBatchedAsync(cache), (r) => bitsOf(r as Tensor)],
    ['nestedkvScoresBatched', () => nestedkvScoresBatched(cache, { window: 8 }), () => nestedkvScoresBatchedAsync(cache, { window: 8 }), (r) => bitsOf(r as Tensor)],
    ['snapkvScoresBatched', () => snapkvScoresBatched(queries, cache), () => snapkvScoresBatchedAsync(queries, cache), (r) => bitsOf(r as Tensor)],
    ['selectTokensBatched', () => selectTokensBatched(scores, s.tb.seqs, { keep: 9, budget: 'adaptive' }), () => selectTokensBatchedAsync(scores, s.tb.seqs, { keep: 9, budget: 'adaptive' }),
      (r) => [...bitsOf((r as { indices: Tensor }).indices), ...bitsOf((r as { counts: Tensor }).counts)]],
    ['gatherKVBatched', () => gatherKVBatched({ cache, ...sel }), () => gatherKVBatchedAsync({ cache, ...sel }),
      (r) => [...bitsOf((r as { keys: Tensor }).keys), ...bitsOf((r as { values: Tensor }).values), ...bitsOf((r as { counts: Tensor }).counts)]],
    ['decodeAttentionBatched', () => decodeAttentionBatched({ queries: s.decodeQ, cache, counts }), () => decodeAttentionBatchedAsync({ queries: s.decodeQ, cache, counts }), (r) => bitsOf(r as Tensor)],
    ['momentkvSelectBatched', () => momentkvSelectBatched({ scores, cache, keep: 7, moments: moments() }), () => momentkvSelectBatchedAsync({ scores, cache, keep: 7, moments: moments() }),
      (r) => [...bitsOf((r as { indices: Tensor }).indices), ...bitsOf((r as { moments: MomentState }).moments.muK)]],
    ['grkvMergeBatched', () => grkvMergeBatched({ cache, selection: sel, queries, queryPositions: positions, scores }),
      () => grkvMergeBatchedAsync({ cache, selection: sel, queries, queryPositions: positions, scores }),
      (r) => [...bitsOf((r as { keys: Tensor }).keys), ...bitsOf((r as { values: Tensor }).values)]],
  ];
  const want = jobs.map(([, sync]) => sync());
  const got = await Promise.all(jobs.map(([, , run]) => run()));
  jobs.forEach(([name, , , bits], i) => {
    const w = bits(want[i]);
    t.ok(w.length > 0, `${name}: outputs to compare`);
    sameBits(t, bits(got[i]), w, `${name}: async = sync`);
  });
  const m1 = moments(), m2 = moments();
  m1.mergeBatched(cache, sel.indices, sel.counts);
  await m2.mergeBatchedAsync(cache, sel.indices, sel.counts);
  sameBits(t, [...flat(m2.n), ...flat(m2.muK), ...flat(m2.m)], [...flat(m1.n), ...flat(m1.muK), ...flat(m1.m)], 'MomentState.mergeBatchedAsync = mergeBatched');
});

t.test('compactInPlaceAsync moves the same rows and frees the same pages as compactInPlace', async (t) => {
  const x = setup(9202), y = setup(9202);
  const selX = selectTokensBatched(keydiffScoresBatched(x.cache), x.tb.seqs, { keep: 6 });
  const selY = selectTokensBatched(keydiffScoresBatched(y.cache), y.tb.seqs, { keep: 6 });
  const rx = compactInPlace({ cache: x.cache, indices: selX.indices, counts: selX.counts });
  const ry = await compactInPlaceAsync({ cache: y.cache, indices: selY.indices, counts: selY.counts });
  sameBits(t, flat(ry.lengths), flat(rx.lengths), 'lengths');
  t.ok(rx.freedPages && rx.freedPages.length > 0, `${rx.freedPages?.length} pages freed`);
  sameBits(t, Array.from(ry.freedPages ?? []), Array.from(rx.freedPages ?? []), 'freed pages');
  sameBits(t, flat(y.keys.data), flat(x.keys.data), 'the compacted key pages (free space and canaries included)');
  sameBits(t, flat(y.values.data), flat(x.values.data), 'the compacted value pages');
});

t.test('an aborted batched call rejects with AbortError and writes nothing', async (t) => {
  const s = setup(9303);
  const ac = new AbortController();
  ac.abort();
  const out = tensor(new Float32Array(s.B * H * 160).fill(-7), [s.B, H, 160]);
  await t.rejects(keydiffScoresBatchedAsync(s.cache, { out, maxLength: 160, signal: ac.signal }), { name: 'AbortError' });
  t.ok(flat(out).every((v) => v === -7), 'output untouched');
});
