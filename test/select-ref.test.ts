// Tests of the float64 selection reference (test/ref/select.ts): hand cases, a brute-force formulation, the docs/methods/selection.md §10
// lexsort procedure, and the tie-tolerant helpers (the references are the oracles of the real kernels).
import t from 'tap';
import { Rng } from '../lib/rng';
import {
  checkSelectionValid,
  keptScoreMultiset,
  sameLayerSelectionUpToTies,
  sameSelectionUpToTies,
  selectRef,
  type SelectOptions,
} from './ref/select';

/**
 * Brute-force alternative: rank every token by counting how many tokens beat it under a key-tuple
 * ordering written independently of selectRef's comparator. Key (compared lexicographically, larger
 * first): [forced, forced ? −i : (NaN ? 0 : 1), forced ? −h : score, −i, −h]
 */
function tupleKey(forced: boolean, s: number, h: number, i: number): number[] {
  if (forced) return [1, -i, -h, 0, 0];
  if (Number.isNaN(s)) return [0, 0, 0, -i, -h];
  return [0, 1, s === 0 ? 0 : s, -i, -h];
}
function beats(a: number[], b: number[]): boolean {
  for (let k = 0; k < a.length; k++) {
    if (a[k] > b[k]) return true;
    if (a[k] < b[k]) return false;
  }
  return false;
}
function selectBrute(scores: ArrayLike<number>, H: number, N: number, o: SelectOptions): { indices: number[][]; counts: number[] } {
  const sinks = o.sinks ?? 0, recent = o.recent ?? 0;
  const forced: boolean[] = [];
  for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) forced.push(i < sinks || i >= N - recent);
  const key = (h: number, i: number): number[] => tupleKey(forced[h * N + i], scores[h * N + i], h, i);
  const keptMask = new Array<boolean>(H * N).fill(false);
  if (o.budget === 'uniform') {
    for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) {
      let better = 0;
      for (let j = 0; j < N; j++) if (beats(key(h, j), key(h, i))) better++;
      keptMask[h * N + i] = better < o.keep;
    }
  } else {
    const nSafe = Math.floor(o.keep * (o.safeguard ?? 0.2));
    const safe: boolean[] = [];
    for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) {
      let better = 0;
      for (let j = 0; j < N; j++) if (beats(key(h, j), key(h, i))) better++;
      safe.push(better < nSafe);
    }
    for (let k = 0; k < H * N; k++) forced[k] = forced[k] || safe[k];
    for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) {
      let better = 0;
      for (let g = 0; g < H; g++) for (let j = 0; j < N; j++) if (beats(key(g, j), key(h, i))) better++;
      keptMask[h * N + i] = better < H * o.keep;
    }
  }
  const indices: number[][] = [];
  for (let h = 0; h < H; h++) indices.push(Array.from({ length: N }, (_, i) => i).filter((i) => keptMask[h * N + i]));
  return { indices, counts: indices.map((x) => x.length) };
}

/** Spec docs/methods/selection.md §10 `nestedkv_select` transcribed (BIG sentinels, lexsort by (−score, position)); no ties. */
function selectSpec10(scores: ArrayLike<number>, H: number, N: number, keep: number, nSink: number, alphaSafe: number, adaptive: boolean): number[][] {
  const BIG = 1e9;
  const s = Array.from(scores);
  for (let h = 0; h < H; h++) for (let i = 0; i < Math.min(nSink, N); i++) s[h * N + i] = BIG + 1;
  const order = (h: number): number[] => Array.from({ length: N }, (_, i) => i).sort((a, b) => s[h * N + b] - s[h * N + a] || a - b);
  const keepMask = new Array<boolean>(H * N).fill(false);
  if (!adaptive) {
    for (let h = 0; h < H; h++) order(h).slice(0, keep).forEach((i) => (keepMask[h * N + i] = true));
  } else {
    const nSafe = Math.floor(keep * alphaSafe);
    for (let h = 0; h < H; h++) for (const i of order(h).slice(0, nSafe)) s[h * N + i] = Math.max(s[h * N + i], BIG);
    const flat = Array.from({ length: H * N }, (_, k) => k).sort((a, b) => s[b] - s[a] || (a % N) - (b % N) || a - b);
    flat.slice(0, H * keep).forEach((k) => (keepMask[k] = true));
  }
  const out: number[][] = [];
  for (let h = 0; h < H; h++) out.push(Array.from({ length: N }, (_, i) => i).filter((i) => keepMask[h * N + i]));
  return out;
}

t.test('select: uniform hand cases (ties, NaN, ±0, sinks, recent)', async (t) => {
  const u = (scores: number[], H: number, N: number, o: Partial<SelectOptions> & { keep: number }) =>
    selectRef(scores, H, N, { budget: 'uniform', ...o });
  t.same(u([0.1, 0.9, 0.5, 0.7, 0.2, 3, 1, 2, 0, -1], 2, 5, { keep: 2 }), { indices: [[1, 3], [0, 2]], counts: [2, 2] });
  // ties: lower position first
  t.same(u([0.5, 0.7, 0.5, 0.7, 0.5], 1, 5, { keep: 3 }).indices, [[0, 1, 3]]);
  // NaN below −Infinity; +Infinity on top
  t.same(u([NaN, -Infinity, 0, Infinity, NaN], 1, 5, { keep: 3 }).indices, [[1, 2, 3]]);
  t.same(u([NaN, -Infinity, 0, Infinity, NaN], 1, 5, { keep: 4 }).indices, [[0, 1, 2, 3]]);
  // −0 equals +0: tie broken by position either way round
  t.same(u([-0, 0], 1, 2, { keep: 1 }).indices, [[0]]);
  t.same(u([0, -0], 1, 2, { keep: 1 }).indices, [[0]]);
  // sinks and recent are kept even below NaN / behind +Infinity scores
  t.same(u([NaN, -5, 9, 8, Infinity, 7, -1], 1, 7, { keep: 4, sinks: 2, recent: 1 }).indices, [[0, 1, 4, 6]]);
  // forced tokens beyond the budget: lower position first (sinks before recent)
  t.same(u([1, 2, 3, 4, 5, 6], 1, 6, { keep: 3, sinks: 2, recent: 2 }).indices, [[0, 1, 4]]);
  // n_keep ≤ sinks: each head keeps positions 0..n_keep−1
  t.same(u([9, 1, 1, 1, 9, 9, 1, 1, 1, 9], 2, 5, { keep: 2, sinks: 4 }), { indices: [[0, 1], [0, 1]], counts: [2, 2] });
  t.same(selectRef([9, 1, 1, 1, 9, 9, 1, 1, 1, 9], 2, 5, { keep: 2, sinks: 4, budget: 'adaptive' }), { indices: [[0, 1], [0, 1]], counts: [2, 2] });
  // keep = N keeps everything
  t.same(u([3, NaN, 1], 1, 3, { keep: 3 }).indices, [[0, 1, 2]]);
  t.throws(() => u([1, 2], 1, 2, { keep: 0 }), RangeError);
  t.throws(() => u([1, 2], 1, 2, { keep: 3 }), RangeError);
  t.throws(() => u([1, 2, 3], 1, 2, { keep: 1 }), RangeError);
});

t.test('select: adaptive hand cases (docs/methods/selection.md §4, AdaKV safeguard)', async (t) => {
  const a = (scores: number[], H: number, N: number, o: Partial<SelectOptions> & { keep: number }) =>
    selectRef(scores, H, N, { budget: 'adaptive', ...o });
  const sc = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1, 0.2, 0.05, 0, 0, 0];
  // no safeguard: head 0 takes the whole layer budget of 6
  t.same(a(sc, 2, 6, { keep: 3, safeguard: 0 }), { indices: [[0, 1, 2, 3, 4, 5], []], counts: [6, 0] });
  // n_safe = ⌊3·0.34⌋ = 1: head 1 keeps its best token (position 1)
  t.same(a(sc, 2, 6, { keep: 3, safeguard: 0.34 }), { indices: [[0, 1, 2, 3, 4], [1]], counts: [5, 1] });
  // default safeguard 0.2: n_safe = ⌊5·0.2⌋ = 1
  t.same(a([5, 4, 3, 2, 1, 0, -1, -2, -3, -4], 2, 5, { keep: 5 }).counts, [5, 5]);
  t.same(a([5, 4, 3, 2, 1, 10, 9, 8, 7, 6], 2, 5, { keep: 3 }).indices, [[0], [0, 1, 2, 3, 4]]);
  // cross-head tie at the cut (layer budget 2): lower position wins, then lower head
  t.same(a([1, 0.5, 0, 0.5, 0, 0], 2, 3, { keep: 1, safeguard: 0 }).indices, [[0], [0]], 'tie: lower position');
  t.same(a([1, 0.5, 0, 0, 0.5, 0], 2, 3, { keep: 1, safeguard: 0 }).indices, [[0, 1], []], 'tie at same position: lower head');
  t.same(a([0, 0.5, 0.5, 0.5, 0, 0], 2, 3, { keep: 1, safeguard: 0 }).indices, [[1], [0]], 'three-way tie');
  // sinks count inside the budget and the safeguard
  t.same(a([0, 0, 9, 9, 9, 0, 0, 1, 2, 3], 2, 5, { keep: 3, sinks: 1, safeguard: 0.34 }), { indices: [[0, 2, 3, 4], [0, 4]], counts: [4, 2] });
  // recent: forced in every head
  t.same(a([9, 9, 9, 0, 0, 0, 0, 0, 0], 3, 3, { keep: 1, recent: 1, safeguard: 0 }), { indices: [[2], [2], [2]], counts: [1, 1, 1] });
  // NaN heads lose the competition but keep the safeguard
  t.same(a([NaN, NaN, NaN, NaN, 1, 2, 3, 4], 2, 4, { keep: 2, safeguard: 0.5 }), { indices: [[0], [1, 2, 3]], counts: [1, 3] });
});

t.test('select: agrees with a brute-force formulation on random data with ties, NaN, ±Inf', async (t) => {
  const rng = new Rng(81);
  let cases = 0, mismatches = 0, propFail = 0;
  for (let it = 0; it < 300; it++) {
    const H = 1 + rng.int(4), N = 1 + rng.int(14);
    const scores: number[] = [];
    for (let k = 0; k < H * N; k++) {
      const u = rng.uniform();
      scores.push(u < 0.05 ? NaN : u < 0.1 ? Infinity : u < 0.15 ? -Infinity : u < 0.2 ? -0 : rng.int(5) / 4);
    }
    const o: SelectOptions = {
      keep: 1 + rng.int(N),
      budget: rng.uniform() < 0.5 ? 'uniform' : 'adaptive',
      safeguard: [0, 0.2, 0.5, 1][rng.int(4)],
      sinks: rng.int(4),
      recent: rng.int(3),
    };
    const got = selectRef(scores, H, N, o);
    const want = selectBrute(scores, H, N, o);
    cases++;
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      mismatches++;
      if (mismatches < 3) t.fail(`mismatch ${JSON.stringify({ scores, H, N, o, got, want })}`);
    }
    // properties
    const total = got.counts.reduce((p, q) => p + q, 0);
    const nSafe = Math.floor(o.keep * (o.safeguard ?? 0.2));
    if (total !== H * o.keep) propFail++;
    if (o.budget === 'uniform' && got.counts.some((c) => c !== o.keep)) propFail++;
    if (o.budget === 'adaptive' && got.counts.some((c) => c < nSafe)) propFail++;
    if (got.indices.some((row) => row.some((x, r) => r > 0 && !(row[r - 1] < x)))) propFail++;
    if (checkSelectionValid(scores, H, N, got, o) !== null) propFail++;
  }
  t.equal(mismatches, 0, `selectRef == brute force on ${cases} random cases`);
  t.equal(propFail, 0, 'counts, safeguard floor, ascending indices, validity');
});

t.test('select: agrees with the docs/methods/selection.md §10 lexsort procedure on tie-free data', async (t) => {
  const rng = new Rng(91);
  let bad = 0;
  for (let it = 0; it < 60; it++) {
    const H = 1 + rng.int(8), N = 5 + rng.int(200);
    const scores = rng.normals64(H * N);
    const keep = 1 + rng.int(N);
    const sinks = rng.int(5);
    const adaptive = rng.uniform() < 0.7;
    const ref = selectRef(scores, H, N, { keep, budget: adaptive ? 'adaptive' : 'uniform', sinks });
    const spec = selectSpec10(scores, H, N, keep, sinks, 0.2, adaptive);
    // the docs/methods/selection.md §10 sentinel order among forced tokens differs from ours only when forced tokens exceed
    // the budget, i.e. keep < sinks, where both keep positions 0..keep−1 anyway
    if (JSON.stringify(ref.indices) !== JSON.stringify(spec)) {
      bad++;
      if (bad < 3) t.fail(JSON.stringify({ H, N, keep, sinks, adaptive, ref: ref.indices, spec }));
    }
  }
  t.equal(bad, 0, 'selectRef == docs/methods/selection.md §10 on 60 random tie-free cases');
});

t.test('select helpers: tie-tolerant comparisons and validity check', async (t) => {
  const scores = [0.5, 0.9, 0.5, 0.1, 0.5, 0.3, 0.3, 0.8];
  const H = 2, N = 4;
  const a = { indices: [[0, 1], [1, 3]], counts: [2, 2] };
  const b = { indices: [[1, 2], [2, 3]], counts: [2, 2] }; // swaps tied 0.5 and tied 0.3
  const c = { indices: [[1, 3], [2, 3]], counts: [2, 2] };
  t.ok(sameSelectionUpToTies(scores, H, N, a, b), 'tie swaps are equal');
  t.notOk(sameSelectionUpToTies(scores, H, N, a, c), 'different kept scores differ');
  t.notOk(sameSelectionUpToTies(scores, H, N, a, { indices: [[0, 1, 2], [3]], counts: [3, 1] }), 'different counts differ');
  t.notOk(sameSelectionUpToTies(scores, H, N, a, { indices: [[0, 0], [1, 3]], counts: [2, 2] }), 'duplicates rejected');
  t.ok(sameSelectionUpToTies([NaN, NaN, -0, 0], 1, 4, { indices: [[0, 2]] }, { indices: [[1, 3]] }), 'NaN = NaN, −0 = +0');
  t.same(keptScoreMultiset(scores, H, N, a), [[0.5, 0.9], [0.3, 0.8]]);
  // padded Int32Array rows with counts (the library's output format)
  const padded = { indices: [Int32Array.from([1, 2, 0, 0]), Int32Array.from([2, 3, 0, 0])], counts: Int32Array.from([2, 2]) };
  t.ok(sameSelectionUpToTies(scores, H, N, a, padded), 'typed arrays with counts');
  // layer-level: a cross-head tie at the cut may move a slot between heads
  const sc2 = [1, 0.5, 0, 0.5];
  t.notOk(sameSelectionUpToTies(sc2, 2, 2, { indices: [[0, 1], [0]] }, { indices: [[0], [0, 1]] }));
  t.ok(sameLayerSelectionUpToTies(sc2, 2, 2, { indices: [[0, 1], []] }, { indices: [[0], [1]] }));
  // validity with a tolerance: a kernel working on f32-rounded scores
  const rng = new Rng(101);
  const Hs = 4, Ns = 500;
  const s64 = rng.normals64(Hs * Ns).map((x) => Math.round(x * 64) / 64 + x * 1e-9); // near-ties
  const s32 = Float64Array.from(Float32Array.from(s64.map((x) => Math.round(x * 64) / 64)));
  for (const budget of ['uniform', 'adaptive'] as const) {
    const o: SelectOptions = { keep: 50, budget, sinks: 4, recent: 8 };
    const selK = selectRef(s32, Hs, Ns, o); // "kernel" selection from rounded scores
    t.equal(checkSelectionValid(s64, Hs, Ns, selK, o, 1e-6), null, `${budget}: valid within tol`);
    t.ok(checkSelectionValid(s64, Hs, Ns, selK, o, 0) !== null || sameSelectionUpToTies(s64, Hs, Ns, selK, selectRef(s64, Hs, Ns, o)), `${budget}: tol matters`);
    const worst = Array.from({ length: Ns }, (_, i) => i).filter((i) => i >= 4 && i < Ns - 8 && !selK.indices[0].includes(i))
      .sort((p, q) => s64[p] - s64[q])[0];
    const broken2 = { indices: selK.indices.map((r) => r.slice()), counts: selK.counts.slice() };
    const victim = selK.indices[0].filter((i) => i >= 4 && i < Ns - 8).sort((p, q) => s64[q] - s64[p])[0]; // best kept
    broken2.indices[0] = broken2.indices[0].filter((i) => i !== victim).concat([worst]).sort((p, q) => p - q);
    t.ok(checkSelectionValid(s64, Hs, Ns, broken2, o, 1e-6) !== null, `${budget}: swapping best kept for worst dropped is caught`);
  }
});
