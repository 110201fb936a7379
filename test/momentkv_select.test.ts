// Multi-round moment-informed eviction (docs/methods/momentkv.md §5.2-§5.4) on every backend, against the float64
// references of test/ref/momentkv_select.ts: counts, protection, the merged moments, rounds, streaming mode.
import t from 'tap';
import { momentkvSelect, tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { miFactorRef, momentkvSelectRef } from './ref/momentkv_select';
import { complement, evictedMomentsRef } from './ref/moments';
import { BACKENDS, on, place, poisoned, fetch, values, rows } from './helpers';
import { FILLS, expectWritten } from './ref/compare';
import { stateHost, stateErrors } from './moments-helpers';
import { validateRoundsTolerant } from './momentkv_select-helpers';

for (const b of BACKENDS) {
  t.test(`momentkvSelect ${b}: r = 4 of dv = 6 value channels (the subspace block is all of them): rounds as the float64 keys`, on(b), async (t) => {
    // Values coupled to the keys through channel scales 8, 4, 2, 1, 0.5, 0.25: the co-moment has six well separated
    // singular values, and with r = 4 the 4th summary direction differs from the 5th by a factor 2
    // (docs/methods/momentkv.md §5.2); every round must evict the lowest keys of the float64 reference.
    const rng = new Rng(107);
    const H = 2, N = 400, d = 8, dv = 6, keep = 100, r = 4;
    const K = rng.normals(H * N * d), V = new Float32Array(H * N * dv);
    const scale = [8, 4, 2, 1, 0.5, 0.25];
    for (let x = 0; x < H * N; x++)
      for (let a = 0; a < dv; a++) V[x * dv + a] = scale[a] * (K[x * d + a] + 0.3 * K[x * d + a + 1]) + 0.05 * rng.normal();
    const sc = new Float32Array(H * N).map(() => 0.5 + 0.1 * rng.uniform());
    const sel = momentkvSelect({ scores: place(tensor(sc, [H, N]), b), keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b), keep, r, rounds: 3, evictedRound: true });
    const v = validateRoundsTolerant({ scores: sc, K, V, Hkv: H, N, d, dv, keep, r, rounds: 3, evictedRound: values(await fetch(sel.evictedRound!)) });
    t.equal(v.error, null, `rounds valid against float64 keys (worst ${v.worst.toExponential(1)}, near ties ${v.nearTies})`);
  });

  t.test(`momentkvSelect ${b}: element-strided scores select as dense ones`, on(b), async (t) => {
    const rng = new Rng(106);
    const H = 2, N = 90, d = 8, dv = 6, keep = 30;
    const K = rng.normals(H * N * d), V = rng.normals(H * N * dv);
    const sc = new Float32Array(H * N).map(() => rng.uniform());
    // the scores [H, N] with element stride 2; the gaps hold NaN, which must never be read
    const wide = new Float32Array(2 * H * N).fill(NaN);
    sc.forEach((x, i) => (wide[2 * i] = x));
    const args = { keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b), keep, evictedRound: true };
    const dense = momentkvSelect({ ...args, scores: place(tensor(sc, [H, N]), b) });
    const strided = momentkvSelect({ ...args, scores: place(tensor(wide, [H, N], { strides: [2 * N, 2] }), b) });
    t.same(rows(await fetch(strided.indices), await fetch(strided.counts)), rows(await fetch(dense.indices), await fetch(dense.counts)), 'same kept rows');
    t.same(Array.from(values(await fetch(strided.evictedRound!))), Array.from(values(await fetch(dense.evictedRound!))), 'same eviction rounds');
    const ref = momentkvSelectRef({ scores: sc, K, V, Hkv: H, N, d, dv, keep, mi: false });
    const plain = momentkvSelect({ ...args, mi: false, scores: place(tensor(wide, [H, N], { strides: [2 * N, 2] }), b) });
    t.same(rows(await fetch(plain.indices), await fetch(plain.counts)), ref.kept, 'mi=false on strided scores = top-keep by score');
  });

  t.test(`momentkvSelect ${b}: counts, protection, moments = batch stats of the evicted rows, rounds`, on(b), async (t) => {
    const rng = new Rng(105);
    const H = 3, N = 501, d = 16, dv = 12, keep = 120;
    const K = rng.normals(H * N * d), V = rng.normals(H * N * dv);
    const sc = new Float32Array(H * N).map(() => rng.uniform());
    for (let h = 0; h < H; h++) {
      for (let s = N - 16; s < N; s++) sc[h * N + s] = Infinity;
      sc[h * N + 0] = Infinity;
    }
    const run = (fill: 'nan' | 'finite') => momentkvSelect({
      scores: place(tensor(sc, [H, N]), b), keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b),
      keep, evictedRound: poisoned([H, N], 'i32', b, fill), indices: poisoned([H, keep + 3], 'i32', b, fill), counts: poisoned([H], 'i32', b, fill),
    });
    for (const fill of FILLS) {
      const r = run(fill);
      for (const [name, o] of [['indices', r.indices], ['counts', r.counts], ['evictedRound', r.evictedRound!]] as const) expectWritten(t, await fetch(o), `${fill} poison: ${name}`);
    }
    const sel = run('nan');
    const idx = await fetch(sel.indices), cnt = await fetch(sel.counts), er = values(await fetch(sel.evictedRound!));
    t.same(Array.from(cnt.host), [keep, keep, keep], 'counts = keep');
    const kept = rows(idx, cnt);
    const ref = momentkvSelectRef({ scores: sc, K, V, Hkv: H, N, d, dv, keep });
    const tol = validateRoundsTolerant({ scores: sc, K, V, Hkv: H, N, d, dv, keep, evictedRound: er });
    t.equal(tol.error, null, `every round evicts the lowest float64 keys (worst violation ${tol.worst.toExponential(1)})`);
    // CUDA's f32 keys may order a near-tie differently (the tolerant validation above covers it): the exact
    // comparisons are visible skips there, never silent
    const exact = JSON.stringify(kept) === JSON.stringify(ref.kept);
    const inexact = b !== 'cpu' && !exact ? 'CUDA: a near-tie ordered differently (validated within 1e-5 above)' : false;
    t.same(kept, ref.kept, 'kept sets equal the float64 reference', { skip: inexact });
    for (let h = 0; h < H; h++) {
      t.same(Array.from(idx.host.subarray(h * (keep + 3) + keep, (h + 1) * (keep + 3))), [-1, -1, -1], `head ${h}: -1 padding`);
      const rounds = [0, 1, 2, 3].map((r) => Array.from({ length: N }, (_, s) => s).filter((s) => er[h * N + s] === r));
      t.same(rounds, ref.evicted[h], `head ${h}: per-round evicted sets equal the reference`, { skip: inexact });
      t.ok(kept[h].every((s) => er[h * N + s] === -1), `head ${h}: kept tokens have round -1`);
    }
    const own = evictedMomentsRef(K, V, H, N, d, dv, kept.map((k) => complement(k, N)));
    const e = stateErrors(await stateHost(sel.moments), own);
    t.ok(e.n === 0 && e.mu <= 1e-5 && e.C <= 1e-5, `moments = statistics of the evicted rows (mu ${e.mu.toExponential(2)}, C ${e.C.toExponential(2)})`);
    // the validator itself rejects a wrong round: swap an evicted token of round 0 with a kept one
    const bad = Float64Array.from(er);
    const victim = Array.from({ length: N }, (_, s) => s).find((s) => bad[s] === 0)!;
    const survivor = kept[0].find((s) => sc[s] !== Infinity && sc[s] > sc[victim] + 0.2)!;
    bad[victim] = -1;
    bad[survivor] = 0;
    t.not(validateRoundsTolerant({ scores: sc, K, V, Hkv: H, N, d, dv, keep, evictedRound: bad }).error, null, 'validator catches a wrong eviction');
    // mi = false: plain score eviction in one round (moments still built)
    const plain = momentkvSelect({ scores: place(tensor(sc, [H, N]), b), keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b), keep, mi: false, evictedRound: true });
    const refPlain = momentkvSelectRef({ scores: sc, K, V, Hkv: H, N, d, dv, keep, mi: false });
    t.same(rows(await fetch(plain.indices), await fetch(plain.counts)), refPlain.kept, 'mi=false equals top-keep by score (exact: no f32 arithmetic on the keys)');
    t.ok(values(await fetch(plain.evictedRound!)).every((x) => x === -1 || x === 0), 'mi=false: one round');
    // keep = N: nothing evicted; ratio
    const none = momentkvSelect({ scores: place(tensor(sc, [H, N]), b), keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b), keep: N });
    t.same(rows(await fetch(none.indices), await fetch(none.counts))[1], Array.from({ length: N }, (_, i) => i), 'keep = N keeps everything');
    t.same(Array.from((await stateHost(none.moments)).n), [0, 0, 0], 'and merges nothing');
    const byRatio = momentkvSelect({ scores: place(tensor(sc, [H, N]), b), keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b), ratio: 0.9 });
    t.same(Array.from((await fetch(byRatio.counts)).host), [50, 50, 50], 'ratio 0.9 → keep ⌊501·0.1⌋ = 50');
    // r = 0 and r = 2, eps 0, rounds 3
    for (const o of [{ r: 0 }, { r: 2, eps: 0 }, { rounds: 3, r: 3 }]) {
      const s2 = momentkvSelect({ scores: place(tensor(sc, [H, N]), b), keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b), keep, evictedRound: true, ...o });
      const k2 = rows(await fetch(s2.indices), await fetch(s2.counts));
      const v2 = validateRoundsTolerant({ scores: sc, K, V, Hkv: H, N, d, dv, keep, evictedRound: values(await fetch(s2.evictedRound!)), ...o });
      t.equal(v2.error, null, `options ${JSON.stringify(o)}: rounds valid against float64 keys`);
      t.same(k2, momentkvSelectRef({ scores: sc, K, V, Hkv: H, N, d, dv, keep, ...o }).kept, `options ${JSON.stringify(o)}: equals the reference`, { skip: b !== 'cpu' && 'CUDA: near-ties may differ (validated within 1e-5 above)' });
    }
  });

  t.test(`momentkvSelect ${b}: continues from a non-empty state (streaming mode, docs/methods/momentkv.md §5.4)`, on(b), async (t) => {
    const rng = new Rng(106);
    const H = 2, N = 400, d = 8, dv = 8;
    const K = rng.normals(H * N * d), V = rng.normals(H * N * dv);
    const sc = new Float32Array(H * N).map(() => rng.uniform());
    const first = momentkvSelect({ scores: place(tensor(sc, [H, N]), b), keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b), keep: 200 });
    const S0 = await stateHost(first.moments);
    // a second chunk of tokens, scored against the state accumulated so far: round 1 already uses the MI factor
    const K2 = rng.normals(H * N * d), V2 = rng.normals(H * N * dv), sc2 = new Float32Array(H * N).map(() => rng.uniform());
    const second = momentkvSelect({ scores: place(tensor(sc2, [H, N]), b), keys: place(tensor(K2, [H, N, d]), b), values: place(tensor(V2, [H, N, dv]), b), keep: 300, rounds: 1, moments: first.moments, evictedRound: true });
    const kept2 = rows(await fetch(second.indices), await fetch(second.counts));
    for (let h = 0; h < H; h++) {
      // one round against S0: lowest score·factor
      const f = miFactorRef(V2.subarray(h * N * dv, (h + 1) * N * dv), S0, h, 1, 0.05);
      const order = Array.from({ length: N }, (_, s) => ({ s, key: Math.fround(sc2[h * N + s] * Math.fround(f[s])) }));
      order.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : y.s - x.s));
      const drop = new Set(order.slice(0, 100).map((o) => o.s));
      const want = Array.from({ length: N }, (_, s) => s).filter((s) => !drop.has(s));
      const diff = want.filter((s) => !kept2[h].includes(s)).length;
      t.ok(diff <= 1, `head ${h}: round 1 uses the existing summary (${diff} near-tie differences)`);
    }
    t.same(Array.from((await stateHost(second.moments)).n), [300, 300], 'n = 200 + 100 per head');
  });
}
