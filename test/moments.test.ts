// The MomentKV moment state (docs/methods/momentkv.md §4.1, §4.3): streaming merges and gatherKV with moments, on every
// backend, against the float64 references of test/ref/moments.ts.
import t from 'tap';
import { gatherKV, tensor } from '../lib/index';
import type { DType } from '../lib/index';
import { Rng } from '../lib/rng';
import { complement, evictedMomentsRef } from './ref/moments';
import { BACKENDS, on, place, poisoned, fetch, randomTensor, values, Layout } from './helpers';
import { lists, stateHost, newState, stateErrors, shuffled, setsMomentsRef } from './moments-helpers';
import { FILLS, maxAbs, maxAbsDiff, expectWritten } from './ref/compare';

for (const b of BACKENDS) {
  t.test(`moments ${b}: streaming merges over any chunking equal batch mean/covariance to 1e-6`, on(b), async (t) => {
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
    const ref = setsMomentsRef(K, V, H, N, d, dv, ev);
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

  t.test(`moments ${b}: keys offset by 1e5 (spread 1): merges into an empty and into a non-empty state keep C to 1e-5`, on(b), async (t) => {
    // The running mean is held as a small residual about a shift (the state's mean, or the first window's mean of an
    // empty state: docs/methods/momentkv.md §4.3), so the rounding error is relative to the spread of the rows, not to
    // their offset (f32 spacing at 1e5 is 2^-7). The first set comes in mirrored pairs 1e5 ± z, so its mean, the
    // state's mean after the first merge, is exactly 1e5 in f32; the second merge is then shifted by an exact mean.
    const rng = new Rng(131);
    const H = 2, N = 700, NA = 400, d = 8, dv = 6;
    const K = new Float32Array(H * N * d), V = new Float32Array(H * N * dv);
    for (let h = 0; h < H; h++)
      for (let s = 0; s < N; s++) {
        const r = h * N + s;
        for (let c = 0; c < d; c++) K[r * d + c] = s < NA && s % 2 === 1 ? 2e5 - K[(r - 1) * d + c] : 1e5 + rng.normal();
        for (let a = 0; a < dv; a++) V[r * dv + a] = -3 + 0.5 * (K[r * d + (a % d)] - 1e5) + 0.2 * rng.normal();
      }
    const kt = place(tensor(K, [H, N, d]), b), vt = place(tensor(V, [H, N, dv]), b);
    const first = Array.from({ length: H }, () => Array.from({ length: NA }, (_, s) => s));
    const second = Array.from({ length: H }, () => Array.from({ length: N - NA }, (_, s) => NA + s));
    const refOf = (sets: number[][]) => setsMomentsRef(K, V, H, N, d, dv, sets);
    const st = newState(H, d, dv, b);
    const l1 = lists(first);
    st.merge(kt, vt, place(l1.indices, b), place(l1.counts, b));
    const s1 = await stateHost(st);
    t.ok(Array.from(s1.muK).every((x) => x === 1e5), 'the first set\'s key mean is 1e5 exactly');
    const e1 = stateErrors(s1, refOf(first));
    t.ok(e1.C <= 1e-5, `into an empty state: C (${e1.C.toExponential(2)})`);
    const l2 = lists(second);
    st.merge(kt, vt, place(l2.indices, b), place(l2.counts, b));
    const e2 = stateErrors(await stateHost(st), refOf(first.map((f, h) => [...f, ...second[h]])));
    t.ok(e2.C <= 1e-5, `into a non-empty state: C (${e2.C.toExponential(2)})`);
    t.ok(e2.mu <= 1e-6, `into a non-empty state: means (${e2.mu.toExponential(2)})`);
    // the second set alone into an empty state: shifted by its first window's mean
    const fresh = newState(H, d, dv, b);
    fresh.merge(kt, vt, place(l2.indices, b), place(l2.counts, b));
    const e3 = stateErrors(await stateHost(fresh), refOf(second));
    t.ok(e3.C <= 1e-5, `the second set into an empty state: C (${e3.C.toExponential(2)})`);
  });

  t.test(`moments ${b}: gatherKV with moments = merge of the complement (bit for bit); compaction unchanged`, on(b), async (t) => {
    const rng = new Rng(102);
    const H = 4, N = 1501, d = 64, dv = 48;
    for (const [dtype, layout] of [['bf16', 'nhd'], ['f32', 'padded']] as [DType, Layout][]) {
      const K = randomTensor(rng, H, N, d, dtype, layout), V = randomTensor(rng, H, N, dv, dtype, layout);
      const keep = [100, 731, 0, N].map((c) => Math.min(c, N));
      const kept = keep.map((c) => shuffled(rng, Array.from({ length: N }, (_, i) => i)).slice(0, c).sort((x, y) => x - y));
      const kt = place(K.t, b), vt = place(V.t, b);
      const cap = 800;
      const capped = kept.map((r) => r.slice(0, cap));
      const lc = lists(capped, cap);
      let viaGather = newState(H, d, dv, b), g = gatherKV({ keys: kt, values: vt, indices: place(lc.indices, b), counts: place(lc.counts, b) });
      for (const fill of FILLS) {
        viaGather = newState(H, d, dv, b);
        g = gatherKV({
          keys: kt, values: vt, indices: place(lc.indices, b), counts: place(lc.counts, b), moments: viaGather,
          keysOut: poisoned([H, cap, d], dtype, b, fill), valuesOut: poisoned([H, cap, dv], dtype, b, fill), countsOut: poisoned([H], 'i32', b, fill),
        });
        for (const [name, o] of [['keys', g.keys], ['values', g.values], ['counts', g.counts]] as const) expectWritten(t, await fetch(o), `${dtype} ${fill} poison: ${name}`);
      }
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
      const e = stateErrors(a, evictedMomentsRef(K.v, V.v, H, N, d, dv, ev));
      t.ok(e.n === 0 && e.mu <= 1e-6 && e.C <= 1e-6, `${dtype}: equals the float64 batch statistics (mu ${e.mu.toExponential(2)}, C ${e.C.toExponential(2)})`);
    }
  });
}
