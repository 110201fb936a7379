// Corrected decode attention (docs/methods/momentkv.md §4.4, §8) on every backend, against exact attention and the float64
// reference of test/ref/decode.ts: one evicted token, no eviction, ragged counts, clip, GQA, strided outputs.
import t from 'tap';
import { decodeAttention, gatherKV, tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { attentionRef } from './ref/attention';
import { decodeAttentionRef } from './ref/decode';
import { complement, evictedMomentsRef } from './ref/moments';
import { BACKENDS, on, place, poisoned, fetch, randomTensor, values, rows } from './helpers';
import { lists, stateHost, newState, shuffled } from './moments-helpers';
import { FILLS, maxRowRel, unwritten } from './ref/compare';

for (const b of BACKENDS) {
  t.test(`decode ${b}: one evicted token gives exact attention; no eviction gives plain attention`, on(b), async (t) => {
    const rng = new Rng(103);
    const Hkv = 2, G = 3, Hq = Hkv * G, N = 777, d = 32, dv = 24, T = 5;
    const K = randomTensor(rng, Hkv, N, d), V = randomTensor(rng, Hkv, N, dv);
    const q = rng.normals(Hq * T * d, 1.5);
    const scale = 1 / Math.sqrt(d);
    const full = attentionRef({ q, Hq, T, d, K: K.v, V: V.v, Hkv, N, dv, scale }).out;
    const qt = place(tensor(q, [Hq, T, d]), b);
    // one token evicted per head (a different one per head)
    const kept = [complement([17], N), complement([N - 1], N)];
    const l = lists(kept, N);
    const st = newState(Hkv, d, dv, b);
    const g = gatherKV({ keys: place(K.t, b), values: place(V.t, b), indices: place(l.indices, b), counts: place(l.counts, b), moments: st });
    for (const order of [0, 1] as const) {
      for (const fill of FILLS) {
        const res = await fetch(decodeAttention({ queries: qt, keys: g.keys, values: g.values, counts: g.counts, moments: st, order, out: poisoned([Hq, T, dv], 'f32', b, fill) }));
        const e = maxRowRel(values(res), full, dv);
        t.equal(unwritten(res).length, 0, `order ${order}, ${fill} poison: every output element written`);
        t.ok(e <= 1e-5, `order ${order}, ${fill} poison: equals full attention (${e.toExponential(2)})`);
      }
    }
    const plainSet = values(await fetch(decodeAttention({ queries: qt, keys: g.keys, values: g.values, counts: g.counts })));
    t.ok(maxRowRel(plainSet, full, dv) > 1e-4, 'plain attention without the evicted token differs visibly');
    // no eviction: empty state = no moments = plain attention over the full cache
    const all = lists([Array.from({ length: N }, (_, i) => i), Array.from({ length: N }, (_, i) => i)], N);
    const st0 = newState(Hkv, d, dv, b);
    const g0 = gatherKV({ keys: place(K.t, b), values: place(V.t, b), indices: place(all.indices, b), counts: place(all.counts, b), moments: st0 });
    t.same(Array.from((await stateHost(st0)).n), [0, 0], 'nothing merged');
    const noM = values(await fetch(decodeAttention({ queries: qt, keys: g0.keys, values: g0.values, counts: g0.counts })));
    const withM = values(await fetch(decodeAttention({ queries: qt, keys: g0.keys, values: g0.values, counts: g0.counts, moments: st0 })));
    t.same(withM, noM, 'n = 0 state gives exactly the plain result');
    t.ok(maxRowRel(noM, full, dv) <= 1e-5, `plain attention = float64 attention (${maxRowRel(noM, full, dv).toExponential(2)})`);
    // 2-D queries (one token per head) give the T = 1 slice
    const q1 = place(tensor(q.slice(0, Hq * d), [Hq, d]), b);
    const q13 = place(tensor(q.slice(0, Hq * d), [Hq, 1, d]), b);
    const o2 = decodeAttention({ queries: q1, keys: g.keys, values: g.values, counts: g.counts, moments: st });
    t.same(o2.shape, [Hq, dv], '2-D queries give [Hq, dv]');
    t.same(values(await fetch(o2)), values(await fetch(decodeAttention({ queries: q13, keys: g.keys, values: g.values, counts: g.counts, moments: st }))), '2-D = T=1');
  });

  t.test(`decode ${b}: ragged counts, padding never read, counts 0, clip semantics, GQA, strided out`, on(b), async (t) => {
    const rng = new Rng(104);
    const Hkv = 3, G = 2, Hq = Hkv * G, N = 300, d = 16, dv = 16, T = 4, cap = 120;
    const K = rng.normals(Hkv * N * d), V = rng.normals(Hkv * N * dv);
    const kept = [shuffled(rng, Array.from({ length: N }, (_, i) => i)).slice(0, 97).sort((x, y) => x - y), [], [4, 200]];
    const ev = kept.map((k) => complement(k, N));
    const S = evictedMomentsRef(K, V, Hkv, N, d, dv, ev);
    const st = newState(Hkv, d, dv, b);
    const l = lists(kept, cap);
    const g = gatherKV({ keys: place(tensor(K, [Hkv, N, d]), b), values: place(tensor(V, [Hkv, N, dv]), b), indices: place(l.indices, b), counts: place(l.counts, b), moments: st });
    // poison the padding rows of a copy of the compacted cache: they must never be read
    const kc = values(await fetch(g.keys)), vc = values(await fetch(g.values));
    const kp = Float32Array.from(kc), vp = Float32Array.from(vc);
    kept.forEach((r, h) => {
      for (let j = r.length; j < cap; j++) {
        kp.fill(NaN, (h * cap + j) * d, (h * cap + j + 1) * d);
        vp.fill(NaN, (h * cap + j) * dv, (h * cap + j + 1) * dv);
      }
    });
    const q = rng.normals(Hq * T * d, 2);
    const base = { q, Hq, T, d, K_R: kc, V_R: vc, Hkv, cap, dv, counts: kept.map((r) => r.length), scale: 0.3, moments: S };
    const args = { queries: place(tensor(q, [Hq, T, d]), b), keys: place(tensor(kp, [Hkv, cap, d]), b), values: place(tensor(vp, [Hkv, cap, dv]), b), counts: g.counts, moments: st, scale: 0.3 };
    for (const [name, extra, refExtra] of [
      ['order 1', { order: 1 }, { order: 1 }],
      ['order 0', { order: 0 }, { order: 0 }],
      ['clip 0.05 (scalar)', { order: 1, clip: 0.05 }, { order: 1, clip: [0.05, 0.05, 0.05] }],
      ['clip per head', { order: 1, clip: place(tensor(new Float32Array([0.02, 1e9, 0.3]), [Hkv]), b) }, { order: 1, clip: [0.02, 1e9, 0.3] }],
      ['clip Infinity', { order: 1, clip: Infinity }, { order: 1 }],
    ] as [string, Record<string, unknown>, { order: 0 | 1; clip?: number[] }][]) {
      const o = values(await fetch(decodeAttention({ ...args, ...extra } as never)));
      const r = decodeAttentionRef({ ...base, ...refExtra });
      t.ok(o.every(Number.isFinite), `${name}: finite (padding never read)`);
      const e = maxRowRel(o, r, dv);
      t.ok(e <= 1e-5, `${name}: matches the float64 reference (${e.toExponential(2)})`);
    }
    // head 1 has counts 0: its query heads get the summary alone (mu_v + C a)
    t.equal((await fetch(g.counts)).host[1], 0, 'head 1 keeps nothing: counts 0 (its output, compared above, is the summary alone)');
    // strided output: stored [T, Hq, dv], viewed [Hq, T, dv]
    const r = decodeAttentionRef({ ...base, order: 1 });
    for (const fill of FILLS) {
      const store = poisoned([T * Hq * dv], 'f32', b, fill);
      const view = store.view([Hq, T, dv], [dv, Hq * dv, 1]);
      decodeAttention({ ...args, out: view });
      const hs = await fetch(store);
      t.equal(unwritten(hs).length, 0, `${fill} poison: every element of the strided output written`);
      const host = values(hs);
      let e = 0;
      for (let j = 0; j < Hq; j++) for (let tt = 0; tt < T; tt++) for (let c = 0; c < dv; c++) e = Math.max(e, Math.abs(host[(tt * Hq + j) * dv + c] - r[(j * T + tt) * dv + c]));
      t.ok(e <= 1e-5, `${fill} poison: strided output written through its strides (${e.toExponential(2)})`);
    }
  });
}
