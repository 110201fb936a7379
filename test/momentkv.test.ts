// MomentKV (spec/momentkv.md): moment state merges, gatherKV with moments, corrected decode attention and the
// multi-round moment-informed eviction, on every backend, against the float64 references of test/ref/momentkv.ts.
import t from 'tap';
import { MomentState, decodeAttention, gatherKV, momentkvSelect, momentkvCompress, tensor, toHost } from '../lib/index';
import type { DType, Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { attentionRef } from './ref/attention';
import {
  batchMomentsRef,
  decodeAttentionRef,
  miFactorRef,
  momentkvSelectRef,
  momentsInitRef,
  momentsMergeRef,
  MomentStateRef,
  complement,
  gatherRows,
} from './ref/momentkv';
import { BACKENDS, Backend, place, poisoned, fetch, randomTensor, values, rows, Layout } from './helpers';
import { validateRoundsTolerant } from './momentkv-util';
import { maxAbs, maxAbsDiff, maxRowRel } from './ref/compare';

/** [H, cap] i32 index tensor (−1 padded) and counts from per-head lists. */
function lists(l: number[][], cap = Math.max(1, ...l.map((x) => x.length))): { indices: Tensor; counts: Tensor } {
  const H = l.length;
  const idx = new Int32Array(H * cap).fill(-1);
  l.forEach((r, h) => r.forEach((s, j) => (idx[h * cap + j] = s)));
  return { indices: tensor(idx, [H, cap]), counts: tensor(Int32Array.from(l.map((r) => r.length)), [H]) };
}
async function stateHost(st: MomentState): Promise<MomentStateRef> {
  const [n, muK, muV, m] = await Promise.all([st.n, st.muK, st.muV, st.m].map((x) => fetch(x)));
  return { H: st.H, d: st.d, dv: st.dv, n: values(n), muK: values(muK), muV: values(muV), M: values(m) };
}
function newState(H: number, d: number, dv: number, b: Backend): MomentState {
  return MomentState.create(H, d, dv, { device: b === 'cuda' ? 0 : 'cpu' });
}
/** Relative errors of a state against a reference: n exact, means and C = M/n relative to their max. */
function stateErrors(got: MomentStateRef, ref: MomentStateRef): { n: number; mu: number; C: number } {
  const C = (S: MomentStateRef) => {
    const out = new Float64Array(S.M.length);
    const per = S.d * S.dv;
    for (let i = 0; i < out.length; i++) {
      const n = S.n[Math.floor(i / per)];
      out[i] = n > 0 ? S.M[i] / n : 0;
    }
    return out;
  };
  const muErr = Math.max(maxAbsDiff(got.muK, ref.muK) / Math.max(maxAbs(ref.muK), 1e-30), maxAbsDiff(got.muV, ref.muV) / Math.max(maxAbs(ref.muV), 1e-30));
  const cr = C(ref);
  return { n: maxAbsDiff(got.n, ref.n), mu: muErr, C: maxAbsDiff(C(got), cr) / Math.max(maxAbs(cr), 1e-30) };
}
function refState(K: ArrayLike<number>, V: ArrayLike<number>, H: number, N: number, d: number, dv: number, ev: number[][]): MomentStateRef {
  const S = momentsInitRef(H, d, dv);
  for (let h = 0; h < H; h++) momentsMergeRef(S, h, gatherRows(K, h, N, d, ev[h]), gatherRows(V, h, N, dv, ev[h]));
  return S;
}
function shuffled(rng: Rng, a: number[]): number[] {
  const p = a.slice();
  for (let i = p.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

for (const b of BACKENDS) {
  t.test(`moments ${b}: streaming merges over any chunking equal batch mean/covariance to 1e-6`, async (t) => {
    const rng = new Rng(101);
    const H = 3, N = 2003, d = 24, dv = 20;
    // Large common offsets (cancellation-prone for raw sums) and a real value-key covariance (v depends on k).
    const B = rng.normals64(dv * d, 0.3);
    const K = new Float32Array(H * N * d), V = new Float32Array(H * N * dv);
    for (let r = 0; r < H * N; r++) {
      const z = rng.normals64(d);
      for (let c = 0; c < d; c++) K[r * d + c] = 50 + (c % 5) + z[c];
      for (let a = 0; a < dv; a++) {
        let s = -30 + 0.1 * a;
        for (let c = 0; c < d; c++) s += B[a * d + c] * z[c];
        V[r * dv + a] = s + 0.2 * rng.normal();
      }
    }
    const kt = place(tensor(K, [H, N, d]), b), vt = place(tensor(V, [H, N, dv]), b);
    const ev = Array.from({ length: H }, () => Array.from({ length: N }, (_, s) => s).filter(() => rng.uniform() < 0.7));
    const ref: MomentStateRef = { H, d, dv, n: new Float64Array(H), muK: new Float64Array(H * d), muV: new Float64Array(H * dv), M: new Float64Array(H * dv * d) };
    for (let h = 0; h < H; h++) {
      const bm = batchMomentsRef(gatherRows(K, h, N, d, ev[h]), gatherRows(V, h, N, dv, ev[h]), d, dv);
      ref.n[h] = bm.n;
      ref.muK.set(bm.muK, h * d);
      ref.muV.set(bm.muV, h * dv);
      ref.M.set(bm.M, h * dv * d);
    }
    const chunkings: [string, (h: number) => number[][]][] = [
      ['one merge', (h) => [ev[h]]],
      ['two halves (interleaved positions)', (h) => [ev[h].filter((_, i) => i % 2 === 0), ev[h].filter((_, i) => i % 2 === 1)]],
      ['random sizes, random order', (h) => {
        const p = shuffled(rng, ev[h]);
        const out: number[][] = [];
        for (let i = 0; i < p.length;) {
          const sz = 1 + rng.int(300);
          out.push(p.slice(i, i + sz).sort((x, y) => x - y));
          i += sz;
        }
        return out;
      }],
      ['200 single rows, then the rest', (h) => [...ev[h].slice(0, 200).map((s) => [s]), ev[h].slice(200)]],
    ];
    for (const [name, chunk] of chunkings) {
      const st = newState(H, d, dv, b);
      const perHead = Array.from({ length: H }, (_, h) => chunk(h));
      const calls = Math.max(...perHead.map((c) => c.length));
      for (let i = 0; i < calls; i++) {
        const l = lists(perHead.map((c) => c[i] ?? []));
        st.merge(kt, vt, place(l.indices, b), place(l.counts, b));
      }
      const e = stateErrors(await stateHost(st), ref);
      t.equal(e.n, 0, `${name}: n exact`);
      t.ok(e.mu <= 1e-6, `${name}: means (${e.mu.toExponential(2)})`);
      t.ok(e.C <= 1e-6, `${name}: covariance C = M/n (${e.C.toExponential(2)})`);
    }
    // Merging nothing is a no-op; heads merge independently.
    const st = newState(H, d, dv, b);
    const l0 = lists([[], [5, 9], []]);
    st.merge(kt, vt, place(l0.indices, b), place(l0.counts, b));
    const s0 = await stateHost(st);
    t.same(Array.from(s0.n), [0, 2, 0], 'only head 1 merged');
    t.equal(maxAbs(s0.M.subarray(0, dv * d)) + maxAbs(s0.muK.subarray(0, d)), 0, 'head 0 untouched');
  });

  t.test(`moments ${b}: gatherKV with moments = merge of the complement (bit for bit); compaction unchanged`, async (t) => {
    const rng = new Rng(102);
    const H = 4, N = 1501, d = 64, dv = 48;
    for (const [dtype, layout] of [['bf16', 'nhd'], ['f32', 'padded']] as [DType, Layout][]) {
      const K = randomTensor(rng, H, N, d, dtype, layout), V = randomTensor(rng, H, N, dv, dtype, layout);
      const keep = [100, 731, 0, N].map((c) => Math.min(c, N));
      const kept = keep.map((c) => shuffled(rng, Array.from({ length: N }, (_, i) => i)).slice(0, c).sort((x, y) => x - y));
      const kt = place(K.t, b), vt = place(V.t, b);
      const viaGather = newState(H, d, dv, b);
      const cap = 800;
      const capped = kept.map((r) => r.slice(0, cap));
      const lc = lists(capped, cap);
      const g = gatherKV({
        keys: kt, values: vt, indices: place(lc.indices, b), counts: place(lc.counts, b), moments: viaGather,
        keysOut: poisoned([H, cap, d], dtype, b), valuesOut: poisoned([H, cap, dv], dtype, b), countsOut: poisoned([H], 'i32', b),
      });
      const plain = gatherKV({ keys: kt, values: vt, indices: place(lc.indices, b), counts: place(lc.counts, b) });
      t.ok(maxAbsDiff(values(await fetch(g.keys)), values(await fetch(plain.keys))) === 0, `${dtype}: compacted keys identical to plain gatherKV`);
      t.ok(maxAbsDiff(values(await fetch(g.values)), values(await fetch(plain.values))) === 0, `${dtype}: compacted values identical`);
      t.same(Array.from((await fetch(g.counts)).host), capped.map((r) => r.length), `${dtype}: counts`);
      const viaMerge = newState(H, d, dv, b);
      const ev = capped.map((r) => complement(r, N));
      const le = lists(ev, N);
      viaMerge.merge(kt, vt, place(le.indices, b), place(le.counts, b));
      const a = await stateHost(viaGather), m = await stateHost(viaMerge);
      t.ok(maxAbsDiff(a.M, m.M) === 0 && maxAbsDiff(a.muK, m.muK) === 0 && maxAbsDiff(a.muV, m.muV) === 0 && maxAbsDiff(a.n, m.n) === 0,
        `${dtype} ${layout}: identical states`);
      const e = stateErrors(a, refState(K.v, V.v, H, N, d, dv, ev));
      t.ok(e.n === 0 && e.mu <= 1e-6 && e.C <= 1e-6, `${dtype}: equals the float64 batch statistics (mu ${e.mu.toExponential(2)}, C ${e.C.toExponential(2)})`);
    }
  });

  t.test(`decode ${b}: one evicted token gives exact attention; no eviction gives plain attention`, async (t) => {
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
      const o = values(await fetch(decodeAttention({ queries: qt, keys: g.keys, values: g.values, counts: g.counts, moments: st, order, out: poisoned([Hq, T, dv], 'f32', b) })));
      const e = maxRowRel(o, full, dv);
      t.ok(e <= 1e-5, `order ${order}: equals full attention (${e.toExponential(2)})`);
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

  t.test(`decode ${b}: ragged counts, padding never read, counts 0, clip semantics, GQA, strided out`, async (t) => {
    const rng = new Rng(104);
    const Hkv = 3, G = 2, Hq = Hkv * G, N = 300, d = 16, dv = 16, T = 4, cap = 120;
    const K = rng.normals(Hkv * N * d), V = rng.normals(Hkv * N * dv);
    const kept = [shuffled(rng, Array.from({ length: N }, (_, i) => i)).slice(0, 97).sort((x, y) => x - y), [], [4, 200]];
    const ev = kept.map((k) => complement(k, N));
    const S = refState(K, V, Hkv, N, d, dv, ev);
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
    t.equal(kept[1].length, 0);
    // strided output: stored [T, Hq, dv], viewed [Hq, T, dv]
    const store = poisoned([T * Hq * dv], 'f32', b);
    const view = store.view([Hq, T, dv], [dv, Hq * dv, 1]);
    decodeAttention({ ...args, out: view });
    const host = values(await fetch(store));
    const r = decodeAttentionRef({ ...base, order: 1 });
    let e = 0;
    for (let j = 0; j < Hq; j++) for (let tt = 0; tt < T; tt++) for (let c = 0; c < dv; c++) e = Math.max(e, Math.abs(host[(tt * Hq + j) * dv + c] - r[(j * T + tt) * dv + c]));
    t.ok(e <= 1e-5, `strided output written through its strides (${e.toExponential(2)})`);
  });

  t.test(`momentkvSelect ${b}: counts, protection, moments = batch stats of the evicted rows, rounds`, async (t) => {
    const rng = new Rng(105);
    const H = 3, N = 501, d = 16, dv = 12, keep = 120;
    const K = rng.normals(H * N * d), V = rng.normals(H * N * dv);
    const sc = new Float32Array(H * N).map(() => rng.uniform());
    for (let h = 0; h < H; h++) {
      for (let s = N - 16; s < N; s++) sc[h * N + s] = Infinity;
      sc[h * N + 0] = Infinity;
    }
    const sel = momentkvSelect({
      scores: place(tensor(sc, [H, N]), b), keys: place(tensor(K, [H, N, d]), b), values: place(tensor(V, [H, N, dv]), b),
      keep, evictedRound: true, indices: poisoned([H, keep + 3], 'i32', b), counts: poisoned([H], 'i32', b),
    });
    const idx = await fetch(sel.indices), cnt = await fetch(sel.counts), er = values(await fetch(sel.evictedRound!));
    t.same(Array.from(cnt.host), [keep, keep, keep], 'counts = keep');
    const kept = rows(idx, cnt);
    const ref = momentkvSelectRef({ scores: sc, K, V, Hkv: H, N, d, dv, keep });
    const tol = validateRoundsTolerant({ scores: sc, K, V, Hkv: H, N, d, dv, keep, evictedRound: er });
    t.equal(tol.error, null, `every round evicts the lowest float64 keys (worst violation ${tol.worst.toExponential(1)})`);
    const exact = JSON.stringify(kept) === JSON.stringify(ref.kept);
    if (b === 'cpu' || exact) t.same(kept, ref.kept, 'kept sets equal the float64 reference');
    for (let h = 0; h < H; h++) {
      t.same(Array.from(idx.host.subarray(h * (keep + 3) + keep, (h + 1) * (keep + 3))), [-1, -1, -1], `head ${h}: -1 padding`);
      const rounds = [0, 1, 2, 3].map((r) => Array.from({ length: N }, (_, s) => s).filter((s) => er[h * N + s] === r));
      if (exact) t.same(rounds, ref.evicted[h], `head ${h}: per-round evicted sets equal the reference`);
      t.ok(kept[h].every((s) => er[h * N + s] === -1), `head ${h}: kept tokens have round -1`);
    }
    const own = refState(K, V, H, N, d, dv, kept.map((k) => complement(k, N)));
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
      if (b === 'cpu') t.same(k2, momentkvSelectRef({ scores: sc, K, V, Hkv: H, N, d, dv, keep, ...o }).kept, `options ${JSON.stringify(o)}: equals the reference`);
    }
  });

  t.test(`momentkvSelect ${b}: continues from a non-empty state (streaming mode, spec §5.4)`, async (t) => {
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

