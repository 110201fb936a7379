// spdSolve, grkvMerge, grkvSurrogates and decodeGrkvDiagnostics reject bad input with a TypeError/RangeError naming the
// argument (and never write outside their outputs).
import t from 'tap';
import * as kv from '../lib/index';
import { expectBadCalls, BadCall } from './helpers';

const f32 = (n: number) => new Float32Array(n);
const i32 = (a: number[]) => new Int32Array(a);
const H = 2, N = 40, d = 8, Hq = 4, Qs = 3, cap = 10;

const A = kv.tensor(f32(2 * 4 * 4), [2, 4, 4]);
const B = kv.tensor(f32(2 * 4 * 3), [2, 4, 3]);

const keys = kv.tensor(f32(H * N * d), [H, N, d]);
const vals = kv.tensor(f32(H * N * d), [H, N, d]);
const idx = kv.tensor(new Int32Array(H * cap).map((_, i) => (i % cap) * 3), [H, cap]);
const cnt = kv.tensor(i32([cap, cap]), [H]);
const queries = kv.tensor(f32(Hq * Qs * d), [Hq, Qs, d]);
const qpos = kv.tensor(i32([N - 1, N - 1, N - 1]), [Qs]);
const scores = kv.tensor(f32(H * N), [H, N]);
const base = { keys, values: vals, selection: { indices: idx, counts: cnt }, queries, queryPositions: qpos, scores };
const merge = (o: Record<string, unknown>) => () => kv.grkvMerge({ ...base, ...o } as never);

const cases: BadCall[] = [
  // spdSolve
  ['spd: args not object', () => kv.spdSolve(3 as never), 'TypeError', /args: expected an options object/],
  ['spd: unknown option', () => kv.spdSolve({ a: A, b: B, lamda: 1 } as never), 'TypeError', /args: unknown option 'lamda'/],
  ['spd: a missing', () => kv.spdSolve({ b: B } as never), 'TypeError', /a: expected a tensor/],
  ['spd: a f16', () => kv.spdSolve({ a: kv.tensor(new Uint16Array(32), [2, 4, 4], { dtype: 'f16' }), b: B }), 'TypeError', /a: expected dtype f32, got f16/],
  ['spd: a rank 4', () => kv.spdSolve({ a: kv.tensor(f32(32), [1, 2, 4, 4]), b: B }), 'TypeError', /a: expected a 3-D tensor \[B, n, n\]/],
  ['spd: a not square', () => kv.spdSolve({ a: kv.tensor(f32(24), [2, 4, 3]), b: B }), 'RangeError', /a: expected square systems \[B, n, n\], got \[2, 4, 3\]/],
  ['spd: b rows mismatch', () => kv.spdSolve({ a: A, b: kv.tensor(f32(30), [2, 5, 3]) }), 'RangeError', /b: expected shape \[2, 4, r\]/],
  ['spd: b batch mismatch', () => kv.spdSolve({ a: A, b: kv.tensor(f32(12), [1, 4, 3]) }), 'RangeError', /b: expected shape \[2, 4, r\]/],
  ['spd: 2-D a with 3-D b', () => kv.spdSolve({ a: kv.tensor(f32(16), [4, 4]), b: B }), 'TypeError', /b: expected a 2-D tensor \[n, r\]/],
  ['spd: lambda negative', () => kv.spdSolve({ a: A, b: B, lambda: -1 }), 'RangeError', /lambda: must be in \[0,/],
  ['spd: lambda NaN', () => kv.spdSolve({ a: A, b: B, lambda: NaN }), 'TypeError', /lambda: expected a number/],
  ['spd: lambda Infinity', () => kv.spdSolve({ a: A, b: B, lambda: Infinity }), 'RangeError', /lambda: must be in/],
  ['spd: throwOnError string', () => kv.spdSolve({ a: A, b: B, throwOnError: 'no' as never }), 'TypeError', /throwOnError: expected a boolean/],
  ['spd: out wrong shape', () => kv.spdSolve({ a: A, b: B, out: kv.tensor(f32(24), [2, 4, 3 + 0]).view([2, 3, 4]) }), 'RangeError', /out: expected shape \[2, 4, 3\]/],
  ['spd: out i32', () => kv.spdSolve({ a: A, b: B, out: kv.tensor(new Int32Array(24), [2, 4, 3]) }), 'TypeError', /out: expected dtype f32, got i32/],
  ['spd: out overlaps a', () => kv.spdSolve({ a: A, b: B, out: kv.tensor(A.data, [2, 4, 3]) }), 'RangeError', /out: must not overlap a/],
  ['spd: out partially overlaps b', () => kv.spdSolve({ a: A, b: B, out: kv.tensor(B.data as Float32Array, [2, 4, 3], { strides: [12, 1, 4] }) }), 'RangeError', /out: must not overlap b/],
  ['spd: info wrong shape', () => kv.spdSolve({ a: A, b: B, info: kv.tensor(new Int32Array(3), [3]) }), 'RangeError', /info: expected shape \[2\]/],
  ['spd: info f32', () => kv.spdSolve({ a: A, b: B, info: kv.tensor(f32(2), [2]) }), 'TypeError', /info: expected dtype i32, got f32/],
  ['spd: stream on host', () => kv.spdSolve({ a: A, b: B, stream: {} as never }), 'TypeError', /stream: expected a Stream/],
  ['spd: a view past its buffer', () => kv.spdSolve({ a: { data: f32(10), shape: [2, 4, 4] }, b: B }), 'RangeError', /a: view .* holds 10 f32 elements/],
  // grkvMerge
  ['grkv: args not object', () => kv.grkvMerge(null as never), 'TypeError', /args: expected an options object/],
  ['grkv: unknown option', merge({ cgiters: 3 }), 'TypeError', /args: unknown option 'cgiters'/],
  ['grkv: keys missing', merge({ keys: undefined }), 'TypeError', /keys: expected a tensor/],
  ['grkv: keys rank 2', merge({ keys: scores }), 'TypeError', /keys: expected a 3-D tensor \[H, N, d\]/],
  ['grkv: keys i32', merge({ keys: kv.tensor(new Int32Array(H * N * d), [H, N, d]) }), 'TypeError', /keys: expected dtype f32 \| f16 \| bf16, got i32/],
  ['grkv: values other dtype', merge({ values: kv.tensor(new Uint16Array(H * N * d), [H, N, d], { dtype: 'bf16' }) }), 'TypeError', /values: must have the dtype of keys \(f32\), got bf16/],
  ['grkv: values N mismatch', merge({ values: kv.tensor(f32(H * 39 * d), [H, 39, d]) }), 'RangeError', /values: dimension 1 must equal N of keys \(40\)/],
  ['grkv: selection missing', merge({ selection: undefined }), 'TypeError', /selection: expected \{ indices, counts \}/],
  ['grkv: selection extra key', merge({ selection: { indices: idx, counts: cnt, cap: 3 } }), 'TypeError', /selection: unknown option 'cap'/],
  ['grkv: indices rank', merge({ selection: { indices: cnt, counts: cnt } }), 'TypeError', /selection\.indices: expected a 2-D tensor \[H, cap\]/],
  ['grkv: counts f32', merge({ selection: { indices: idx, counts: kv.tensor(f32(2), [2]) } }), 'TypeError', /counts: expected dtype i32, got f32/],
  ['grkv: indices descending', merge({ selection: { indices: kv.tensor(new Int32Array(H * cap).map((_, i) => 30 - (i % cap)), [H, cap]), counts: cnt } }), 'RangeError', /indices: row 0 must hold strictly ascending positions in \[0, 40\)/],
  ['grkv: index out of range', merge({ selection: { indices: kv.tensor(new Int32Array(H * cap).map((_, i) => (i % cap) * 5), [H, cap]), counts: cnt } }), 'RangeError', /indices: row 0 .* entry 8 is 40/],
  ['grkv: count above capacity', merge({ selection: { indices: idx, counts: kv.tensor(i32([11, 0]), [2]) } }), 'RangeError', /counts: counts\[0\] = 11 must be in \[0, min/],
  ['grkv: queries rank', merge({ queries: keys.view([H * N * d]) }), 'TypeError', /queries: expected a 3-D tensor \[Hq, Qs, d\]/],
  ['grkv: queries head dim', merge({ queries: kv.tensor(f32(Hq * Qs * 4), [Hq, Qs, 4]) }), 'RangeError', /queries: dimension 2 must equal d of keys \(8\)/],
  ['grkv: queries GQA', merge({ queries: kv.tensor(f32(3 * Qs * d), [3, Qs, d]) }), 'RangeError', /queries: the number of query heads \(dimension 0, 3\) must be a positive multiple of H = 2/],
  ['grkv: positions length', merge({ queryPositions: kv.tensor(i32([1, 2]), [2]) }), 'RangeError', /queryPositions: dimension 0 must equal Qs of queries \(3\)/],
  ['grkv: positions f32', merge({ queryPositions: kv.tensor(f32(3), [3]) }), 'TypeError', /queryPositions: expected dtype i32, got f32/],
  ['grkv: position beyond N', merge({ queryPositions: kv.tensor(i32([1, 40, 2]), [3]) }), 'RangeError', /queryPositions: entry 1 is 40, must be a position in \[0, 40\)/],
  ['grkv: weights length', merge({ weights: kv.tensor(f32(4), [4]) }), 'RangeError', /weights: dimension 0 must equal Qs of queries \(3\)/],
  ['grkv: weight negative', merge({ weights: kv.tensor(Float32Array.from([1, -1, 1]), [3]) }), 'RangeError', /weights: entry 1 is -1, must be finite and >= 0/],
  ['grkv: weights number negative', merge({ weights: -2 }), 'RangeError', /weights: must be in \[0,/],
  ['grkv: weights string', merge({ weights: '1' }), 'TypeError', /weights: expected a tensor/],
  ['grkv: scores shape', merge({ scores: kv.tensor(f32(H * 39), [H, 39]) }), 'RangeError', /scores: dimension 1 must equal N of keys \(40\)/],
  ['grkv: scores bf16', merge({ scores: kv.tensor(new Uint16Array(H * N), [H, N], { dtype: 'bf16' }) }), 'TypeError', /scores: expected dtype f32, got bf16/],
  ['grkv: lambda 0', merge({ lambda: 0 }), 'RangeError', /lambda: must be in \(0,/],
  ['grkv: gamma > 1', merge({ gamma: 1.5 }), 'RangeError', /gamma: must be in \[0, 1\]/],
  ['grkv: window fractional', merge({ window: 2.5 }), 'TypeError', /window: expected an integer/],
  ['grkv: window negative', merge({ window: -1 }), 'RangeError', /window: must be in \[0,/],
  ['grkv: cgIters negative', merge({ cgIters: -1 }), 'RangeError', /cgIters: must be in \[0, 100000\]/],
  ['grkv: tol negative', merge({ tol: -1e-3 }), 'RangeError', /tol: must be in \[0,/],
  ['grkv: scale 0', merge({ scale: 0 }), 'RangeError', /scale: must be in \(0,/],
  ['grkv: caps not object', merge({ caps: 0.1 }), 'TypeError', /caps: expected an options object/],
  ['grkv: caps unknown key', merge({ caps: { keys: 0.1 } }), 'TypeError', /caps: unknown option 'keys'/],
  ['grkv: caps.key negative', merge({ caps: { key: -0.1 } }), 'RangeError', /caps\.key: must be in \[0, Infinity\]/],
  ['grkv: caps.value NaN', merge({ caps: { value: NaN } }), 'TypeError', /caps\.value: expected a number/],
  ['grkv: acceptance', merge({ acceptance: 'always' }), 'RangeError', /acceptance: expected one of 'best', 'joint'/],
  ['grkv: cap 0', merge({ cap: 0 }), 'RangeError', /cap: must be in \[1,/],
  ['grkv: cap below counts', merge({ cap: 5 }), 'RangeError', /counts: counts\[0\] = 10 must be in \[0, min\(indices capacity 10, output capacity 5\)\]/],
  ['grkv: keysOut dtype', merge({ keysOut: kv.tensor(new Uint16Array(H * cap * d), [H, cap, d], { dtype: 'f16' }) }), 'TypeError', /keysOut: expected dtype f32, got f16/],
  ['grkv: valuesOut shape', merge({ valuesOut: kv.tensor(f32(H * cap * 4), [H, cap, 4]) }), 'RangeError', /valuesOut: expected shape \[2, 10, 8\]/],
  ['grkv: keysOut overlaps keys', merge({ keysOut: kv.tensor(keys.data, [H, cap, d]) }), 'RangeError', /keysOut: must not overlap keys/],
  ['grkv: valuesOut overlaps keysOut', (() => { const buf = f32(H * cap * d); return merge({ keysOut: kv.tensor(buf, [H, cap, d]), valuesOut: kv.tensor(buf, [H, cap, d]) }); })(), 'RangeError', /valuesOut: must not overlap keysOut/],
  ['grkv: countsOut overlaps counts', merge({ countsOut: cnt }), 'RangeError', /countsOut: must not overlap counts/],
  ['grkv: diagnostics shape', merge({ diagnostics: kv.tensor(f32(H * 13), [H, 13]) }), 'RangeError', /diagnostics: expected shape \[2, 14\]/],
  ['grkv: diagnostics number', merge({ diagnostics: 1 }), 'TypeError', /diagnostics: expected a boolean or an f32 \[H, 14\] tensor/],
  ['grkv: stream on host', merge({ stream: 5 }), 'TypeError', /stream: expected a Stream/],
  // grkvSurrogates / decodeGrkvDiagnostics
  ['surrogates: bad source', () => kv.grkvSurrogates(100, { source: 'middle' as never }), 'RangeError', /source: expected one of 'window', 'stratified'/],
  ['surrogates: no source', () => kv.grkvSurrogates(100, {} as never), 'TypeError', /source: expected one of/],
  ['surrogates: N 0', () => kv.grkvSurrogates(0, { source: 'window' }), 'RangeError', /N: must be in \[1,/],
  ['surrogates: count 0', () => kv.grkvSurrogates(10, { source: 'window', count: 0 }), 'RangeError', /count: must be in \[1,/],
  ['surrogates: unknown option', () => kv.grkvSurrogates(10, { source: 'window', qs: 3 } as never), 'TypeError', /options: unknown option 'qs'/],
];

expectBadCalls(t, cases);

t.test('decodeGrkvDiagnostics: bad tensors', async (t) => {
  await t.rejects(kv.decodeGrkvDiagnostics(kv.tensor(f32(26), [2, 13])), { name: 'RangeError', message: /diagnostics: expected 14 columns, got 13/ });
  await t.rejects(kv.decodeGrkvDiagnostics(kv.tensor(new Int32Array(28), [2, 14])), { name: 'TypeError', message: /diagnostics: expected dtype f32/ });
});

t.test('grkvMerge: a failed call writes nothing', async (t) => {
  const ko = kv.tensor(f32(H * cap * d).fill(7), [H, cap, d]);
  t.throws(merge({ keysOut: ko, lambda: -1 }));
  t.throws(merge({ keysOut: ko, selection: { indices: idx, counts: kv.tensor(i32([11, 0]), [2]) } }));
  t.ok((ko.host as Float32Array).every((x) => x === 7), 'keysOut untouched after validation errors');
});
