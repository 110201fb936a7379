import t, { Test } from 'tap';
import {
  tensor, Tensor, keydiffScores, nestedkvScores, snapkvScores, selectTokens, gatherKV, momentkvCompress, grkvMerge,
  grkvSurrogates, MomentState,
} from '../lib/index';
import { compress, compressCache, methodScores } from '../lib/compress';
import { generateTrace } from '../lib/trace';
import { hostContiguous } from '../lib/tensor';
import { BACKENDS, Backend, on, place, fetch } from './helpers';

const tr = generateTrace({ tokens: 1536, layers: 2, kvHeads: 4, groupSize: 2, headDim: 64, seed: 5 });
const { Hkv, Hq, N, d, dv, W } = tr;

async function same(t: Test, a: Tensor, b: Tensor, what: string): Promise<void> {
  t.same(Array.from(hostContiguous(await fetch(a))), Array.from(hostContiguous(await fetch(b))), what);
}

const L = tr.layers[0];
/** The first layer of the trace on backend b. */
function layer(b: Backend): { keys: Tensor; values: Tensor; queries: Tensor } {
  return { keys: place(tensor(L.keys, [Hkv, N, d]), b), values: place(tensor(L.values, [Hkv, N, dv]), b), queries: place(tensor(L.windowQueries, [Hq, W, d]), b) };
}

for (const b of BACKENDS) {
  t.test(`compress ${b}: each method equals its ops run by hand`, on(b), async (t) => {
    const { keys, values, queries } = layer(b);
    const kd = compress({ keys, values }, { method: 'keydiff', ratio: 0.8 });
    const sel = selectTokens(keydiffScores(keys), { ratio: 0.8 });
    const g = gatherKV({ keys, values, ...sel });
    await same(t, kd.keys, g.keys, 'keydiff keys');
    await same(t, kd.values, g.values, 'keydiff values');
    await same(t, kd.indices, sel.indices, 'keydiff indices');
    t.equal(kd.keep, Math.floor(N * 0.2));
    t.notOk(kd.moments, 'no moments without a correction');

    const nk = compress({ keys, values }, { method: 'nestedkv', ratio: 0.8 });
    const nsel = selectTokens(nestedkvScores(keys), { ratio: 0.8, budget: 'adaptive', safeguard: 0.2 });
    await same(t, nk.indices, nsel.indices, 'nestedkv: adaptive budget by default');
    const counts = hostContiguous(await fetch(nk.counts)) as Int32Array;
    t.equal(counts.reduce((a, c) => a + c, 0), Hkv * nk.keep, 'ragged counts sum to H*keep');
    const nu = compress({ keys, values }, { method: 'nestedkv', ratio: 0.8, budget: 'uniform', nestedkv: { sinks: 0 } });
    t.same(Array.from(hostContiguous(await fetch(nu.counts))), new Array(Hkv).fill(nu.keep), 'uniform budget on request');

    const sk = compress({ keys, values, queries }, { method: 'snapkv', ratio: 0.8 });
    await same(t, sk.scores, snapkvScores(queries, keys, { kernel: 5, pool: 'avg' }), 'snapkv scores (kernel 5, avg)');

    const mk = compress({ keys, values, queries }, { method: 'momentkv', ratio: 0.8 });
    const manual = momentkvCompress({ scores: snapkvScores(queries, keys, { kernel: 7, pool: 'max' }), keys, values, ratio: 0.8 });
    await same(t, mk.keys, manual.keys, 'momentkv keys');
    await same(t, mk.moments!.m, manual.moments.m, 'momentkv moments');
  });

  t.test(`compress ${b}: GRKV merge (window and stratified) and the moment correction`, on(b), async (t) => {
    const { keys, values, queries } = layer(b);
    const sel = selectTokens(snapkvScores(queries, keys), { ratio: 0.9 });
    const raw = snapkvScores(queries, keys);
    const win = grkvSurrogates(N, { source: 'window', count: W, device: b === 'cuda' ? 0 : undefined });
    const g = grkvMerge({ keys, values, selection: sel, queries, queryPositions: win.queryPositions, weights: win.weights, scores: raw });
    const c = compress({ keys, values, queries }, { method: 'snapkv', ratio: 0.9, merge: 'grkv' });
    await same(t, c.values, g.values, 'window source = grkvMerge with the last-W plan');
    await same(t, c.keys, g.keys, 'merged keys');
    const sq = place(tensor(tr.layers[0].stratifiedQueries, [Hq, tr.layers[0].stratifiedPositions.length, d]), b);
    const st = compress({ keys, values, queries, surrogateQueries: sq }, { method: 'snapkv', ratio: 0.9, merge: 'grkv', grkv: { source: 'stratified' } });
    const plan = grkvSurrogates(N, { source: 'stratified', count: sq.shape[1], device: b === 'cuda' ? 0 : undefined });
    const gs = grkvMerge({ keys, values, selection: sel, queries: sq, queryPositions: plan.queryPositions, weights: plan.weights, scores: raw });
    await same(t, st.values, gs.values, 'stratified source');

    const mc = compress({ keys, values }, { method: 'keydiff', ratio: 0.9, correction: 'moment' });
    const ms = MomentState.create(Hkv, d, dv, b === 'cuda' ? { device: 0 } : {});
    const ksel = selectTokens(keydiffScores(keys), { ratio: 0.9 });
    const kg = gatherKV({ keys, values, ...ksel, moments: ms });
    await same(t, mc.moments!.muV, ms.muV, 'correction: moments of the evicted rows');
    await same(t, mc.keys, kg.keys, 'correction: same compacted keys');
    const both = compress({ keys, values, queries }, { method: 'snapkv', ratio: 0.9, merge: 'grkv', correction: 'moment' });
    t.ok(both.moments, 'merge + correction returns moments');
    await same(t, both.values, c.values, 'merge + correction: same merged values');
  });
}

t.test('compressCache, precomputed scores, errors', async (t) => {
  const layers = tr.layers.map((l) => ({ keys: tensor(l.keys, [Hkv, N, d]), values: tensor(l.values, [Hkv, N, dv]), queries: tensor(l.windowQueries, [Hq, W, d]) }));
  const all = compressCache(layers, { method: 'keydiff', keep: 100 });
  t.equal(all.length, 2);
  t.ok(all.every((c) => c.keys.shape[1] === 100));
  const s = methodScores(layers[0], { method: 'keydiff' });
  const pre = compress(layers[0], { method: 'keydiff', keep: 100, scores: s });
  t.same(Array.from(pre.indices.host), Array.from(all[0].indices.host), 'precomputed scores give the same selection');
  t.throws(() => compress(layers[0], { method: 'foo' as never, keep: 1 }), { name: 'RangeError', message: /method: expected one of 'keydiff', 'nestedkv', 'snapkv', 'momentkv'/ });
  t.throws(() => compress({ keys: layers[0].keys, values: layers[0].values }, { method: 'snapkv', keep: 10 }), { name: 'TypeError', message: /queries: method 'snapkv' needs/ });
  t.throws(() => compress({ keys: layers[0].keys, values: layers[0].values }, { method: 'keydiff', keep: 10, merge: 'grkv' }), { name: 'TypeError', message: /merge 'grkv' needs/ });
  t.throws(() => compress(layers[0], { method: 'momentkv', keep: 10, budget: 'adaptive' }), { name: 'RangeError', message: /uniform budget/ });
  t.throws(() => compress(layers[0], { method: 'snapkv', keep: 10, merge: 'grkv', grkv: { source: 'stratified' } }), { name: 'TypeError', message: /surrogateQueries/ });
  t.throws(() => compress(layers[0], { method: 'keydiff', keep: 10, merge: 'mean' as never }), { name: 'RangeError', message: /merge: expected one of 'grkv'/ });
  t.throws(() => compress(layers[0], { method: 'keydiff', keep: 10, correction: 'x' as never }), { name: 'RangeError', message: /correction: expected one of 'moment'/ });
  t.throws(() => compress(layers[0], { method: 'keydiff', keep: 10, ratoi: 0.5 } as never), { name: 'TypeError', message: /unknown option 'ratoi'/ });
  t.throws(() => compress(null as never, { method: 'keydiff', keep: 10 }), { name: 'TypeError', message: /input: expected/ });
  t.throws(() => compressCache({} as never, { method: 'keydiff', keep: 10 }), { name: 'TypeError', message: /layers: expected an array/ });
  t.throws(() => compressCache([layers[0], { keys: layers[0].keys } as never], { method: 'keydiff', keep: 10 }), { message: /^layer 1: values: expected a tensor/ });
});
