// Non-finite inputs (README "Errors", docs/methods/*): each op's documented rule on the CPU backend — the planted NaN /
// ±Infinity reaches exactly the outputs the rule names, every other output is bitwise what a clean input gives. (The
// same rules on CUDA: the nonfinite entries of `kvtrim check`, lib/checks/nonfinite.ts, run on the emulator.)
import t from 'tap';
import {
  tensor, keydiffScores, nestedkvScores, snapkvScores, decodeAttention, MomentState, momentkvSelect, spdSolve, grkvMerge,
  grkvSurrogates, selectTokens, Tensor,
} from '../lib/index';
import { Rng } from '../lib/rng';

const H = 3, N = 300, d = 16;

function randn(n: number, seed: number, bias = 0.5): Float32Array {
  const r = new Rng(seed);
  const dir = Array.from({ length: d }, () => r.normal());
  return Float32Array.from({ length: n }, (_, i) => bias * dir[i % d] + r.normal());
}
/** Flat index of element (a, b, c) of an [A, B, C] array. */
const at = (B: number, C: number, a: number, b: number, c: number) => (a * B + b) * C + c;
const arr = (x: Tensor) => Array.from(x.host);
const rows = (x: Tensor, r0: number, r1: number, w: number) => arr(x).slice(r0 * w, r1 * w);

for (const bad of [NaN, Infinity, -Infinity]) {
  t.test(`keydiff and nestedkv: ${bad} in a key of head 1 makes head 1 NaN, the other heads unchanged`, async (t) => {
    const k = randn(H * N * d, 1), kb = k.slice();
    kb[at(N, d, 1, 123, 5)] = bad;
    for (const [name, f] of [['keydiffScores', keydiffScores], ['nestedkvScores', nestedkvScores]] as const) {
      const clean = f(tensor(k, [H, N, d])), dirty = f(tensor(kb, [H, N, d]));
      t.ok(rows(dirty, 1, 2, N).every(Number.isNaN), `${name}: every score of head 1 is NaN (sinks included)`);
      t.same(rows(dirty, 0, 1, N), rows(clean, 0, 1, N), `${name}: head 0 bitwise unchanged`);
      t.same(rows(dirty, 2, 3, N), rows(clean, 2, 3, N), `${name}: head 2 bitwise unchanged`);
    }
  });
}

t.test('snapkv: a non-finite window query or key makes the prefix scores of its KV head NaN; window +Infinity', async (t) => {
  const G = 2, W = 8, q = randn(H * G * W * d, 2, 0.2), k = randn(H * N * d, 3);
  for (const pool of ['avg', 'max'] as const) {
    const clean = snapkvScores(tensor(q, [H * G, W, d]), tensor(k, [H, N, d]), { pool });
    const cases: [string, Float32Array, Float32Array, number][] = [];
    const qn = q.slice();
    qn[at(W, d, 3, 2, 1)] = NaN; // query head 3 -> KV head 1
    cases.push(['NaN query', qn, k, 1]);
    const kn = k.slice();
    kn[at(N, d, 2, 40, 0)] = -Infinity; // a -Infinity logit must not drop out of the softmax silently
    cases.push(['-Infinity key', q, kn, 2]);
    const kw = k.slice();
    kw[at(N, d, 0, N - 2, 3)] = Infinity; // a window key: only the last queries see it
    cases.push(['Infinity window key', q, kw, 0]);
    for (const [what, qq, kk, h] of cases) {
      const s = snapkvScores(tensor(qq, [H * G, W, d]), tensor(kk, [H, N, d]), { pool });
      const row = rows(s, h, h + 1, N);
      t.ok(row.slice(0, N - W).every(Number.isNaN), `${pool} ${what}: prefix of KV head ${h} NaN`);
      t.ok(row.slice(N - W).every((x) => x === Infinity), `${pool} ${what}: window +Infinity`);
      for (let o = 0; o < H; o++) if (o !== h) t.same(rows(s, o, o + 1, N), rows(clean, o, o + 1, N), `${pool} ${what}: KV head ${o} unchanged`);
    }
  }
});

t.test('decodeAttention: a non-finite value in what a row reads makes the whole row NaN; padding is never read', async (t) => {
  const G = 2, cap = 50, T = 2, Hq = H * G;
  const q = randn(Hq * T * d, 4, 0.2), k = randn(H * cap * d, 5), v = randn(H * cap * d, 6);
  const counts = tensor(new Int32Array([cap, 30, 0]), [H]);
  const run = (qq: Float32Array, kk: Float32Array, vv: Float32Array, moments?: MomentState) =>
    decodeAttention({ queries: tensor(qq, [Hq, T, d]), keys: tensor(kk, [H, cap, d]), values: tensor(vv, [H, cap, d]), counts, moments });
  const clean = run(q, k, v);
  const w = T * d; // floats per query head
  const kn = k.slice();
  kn[at(cap, d, 0, 7, 2)] = -Infinity; // read by KV head 0
  let o = run(q, kn, v);
  t.ok(rows(o, 0, 2, w).every(Number.isNaN), '-Infinity key: the rows of both query heads of KV head 0 are NaN');
  t.same(rows(o, 2, 6, w), rows(clean, 2, 6, w), 'other rows unchanged');
  const vp = v.slice();
  vp[at(cap, d, 1, 40, 0)] = NaN; // beyond counts[1] = 30: padding
  o = run(q, k, vp);
  t.same(arr(o), arr(clean), 'a NaN in padding (row >= counts[h]) changes nothing');
  const qn = q.slice();
  qn[at(T, d, 4, 1, 0)] = NaN; // query head 4 (KV head 2, counts 0), token 1: nothing is read
  o = run(qn, k, v);
  t.ok(arr(o).every(Number.isFinite), 'a NaN query of a head with nothing to read (no summary) gives 0, not NaN');
  // the summary: merging a row with a NaN key makes head 1's means NaN -> its rows NaN (n > 0)
  const st = MomentState.create(H, d, d);
  const ek = randn(H * 10 * d, 7), ev = randn(H * 10 * d, 8);
  ek[at(10, d, 1, 3, 4)] = NaN;
  st.merge(tensor(ek, [H, 10, d]), tensor(ev, [H, 10, d]), tensor(Int32Array.from({ length: H * 10 }, (_, i) => i % 10), [H, 10]), tensor(new Int32Array(H).fill(10), [H]));
  t.ok(Array.from(st.muK.host.subarray(st.muK.offset + d, st.muK.offset + 2 * d)).every(Number.isNaN), "moment merge: head 1's muK all NaN");
  t.ok(Array.from(st.m.host.subarray(st.m.offset + d * d, st.m.offset + 2 * d * d)).every(Number.isNaN), "moment merge: head 1's m all NaN");
  t.ok(Array.from(st.muK.host.subarray(st.muK.offset, st.muK.offset + d)).every(Number.isFinite), "moment merge: head 0's muK finite");
  t.same(Array.from(st.n.host.subarray(st.n.offset, st.n.offset + H)), [10, 10, 10], 'n counts the rows as usual');
  o = run(q, k, v, st);
  t.ok(rows(o, 2, 4, w).every(Number.isNaN), 'corrected: the rows of KV head 1 (NaN summary) are NaN');
  t.ok(rows(o, 0, 2, w).concat(rows(o, 4, 6, w)).every(Number.isFinite), 'corrected: the other rows are finite');
});

t.test('momentkvSelect: a non-finite value row keeps the result well formed; the head summary becomes NaN', async (t) => {
  const keep = 60, k = randn(H * N * d, 9), v = randn(H * N * d, 10);
  v[at(N, d, 1, 150, 2)] = NaN;
  const sc = new Float32Array(H * N).map((_, i) => (i % N >= N - 8 ? Infinity : 1 + ((i * 7919) % 101) / 10));
  const r = momentkvSelect({ scores: tensor(sc, [H, N]), keys: tensor(k, [H, N, d]), values: tensor(v, [H, N, d]), keep });
  t.same(arr(r.counts), [keep, keep, keep], 'counts = keep');
  for (let h = 0; h < H; h++) {
    const idx = rows(r.indices, h, h + 1, keep);
    t.ok(idx.every((x, j) => x >= 0 && x < N && (j === 0 || x > idx[j - 1])), `head ${h}: ascending positions`);
    t.ok(idx.slice(-8).every((x, j) => x === N - 8 + j), `head ${h}: protected (+Infinity) tokens kept`);
  }
  const mv = r.moments.muV;
  t.ok(Array.from(mv.host.subarray(mv.offset + d, mv.offset + 2 * d)).every(Number.isNaN), "head 1's muV is NaN");
  t.ok(Array.from(mv.host.subarray(mv.offset, mv.offset + d)).every(Number.isFinite), "head 0's muV is finite");
});

t.test('spdSolve: a non-finite right-hand side makes its column NaN; a non-finite lower entry fails the system', async (t) => {
  const B = 2, n = 6, rr = 3;
  const A = new Float32Array(B * n * n);
  for (let s = 0; s < B; s++) for (let i = 0; i < n; i++) A[(s * n + i) * n + i] = 2 + i;
  for (let s = 0; s < B; s++) A[(s * n + 4) * n + 1] = A[(s * n + 1) * n + 4] = 0.5;
  const b = randn(B * n * rr, 11);
  b[(0 * n + 2) * rr + 1] = NaN;
  const x = spdSolve({ a: tensor(A, [B, n, n]), b: tensor(b, [B, n, rr]) }).x.host;
  for (let i = 0; i < n; i++) {
    t.ok(Number.isNaN(x[i * rr + 1]), `system 0 row ${i}: column 1 NaN`);
    t.ok(Number.isFinite(x[i * rr]) && Number.isFinite(x[i * rr + 2]), `system 0 row ${i}: columns 0 and 2 finite`);
  }
  t.ok(Array.from(x.subarray(n * rr)).every(Number.isFinite), 'system 1 finite');
  const Ab = A.slice();
  Ab[(1 * n + 5) * n + 0] = Infinity;
  const r = spdSolve({ a: tensor(Ab, [B, n, n]), b: tensor(randn(B * n * rr, 12), [B, n, rr]), throwOnError: false });
  t.equal(r.info.host[1], 6, 'system 1: info = 6 (pivot 5 not finite)');
  t.ok(Array.from(r.x.host.subarray(n * rr)).every(Number.isNaN), 'system 1: x NaN');
  t.equal(r.info.host[0], 0, 'system 0 solved');
});

t.test('grkvMerge: a non-finite fit never yields a merged row with a non-finite value', async (t) => {
  const G = 2, Qs = 8, k = randn(H * N * d, 13), v = randn(H * N * d, 14), q = randn(H * G * Qs * d, 15, 0.2);
  q[at(Qs, d, 2, 3, 1)] = NaN; // a surrogate query of KV head 1
  const scores = snapkvScores(tensor(randn(H * G * Qs * d, 16, 0.2), [H * G, Qs, d]), tensor(k, [H, N, d]));
  const sel = selectTokens(scores, { keep: 80 });
  const plan = grkvSurrogates(N, { source: 'window', count: Qs });
  const r = grkvMerge({
    keys: tensor(k, [H, N, d]), values: tensor(v, [H, N, d]), selection: sel, queries: tensor(q, [H * G, Qs, d]),
    queryPositions: plan.queryPositions, weights: plan.weights, scores, diagnostics: true,
  });
  t.ok(arr(r.keys).every(Number.isFinite) && arr(r.values).every(Number.isFinite), 'every output row finite');
  const chosen = [0, 1, 2].map((h) => r.diagnostics!.host[h * 14]);
  t.ok(chosen.every((c) => c === 0 || c === 1 || c === 2), `a candidate chosen per head (${chosen.join(', ')})`);
});
