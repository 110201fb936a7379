// Hostile input (README "Errors"): tensors that cannot lie, views checked natively with overflow-checked arithmetic
// and the documented limits, raw descriptors that no TypeScript check has seen, JavaScript that runs while arguments
// are read, shared and detached memory, and the pipeline / I/O layer validating like the ops. Each call must fail with
// a TypeError / RangeError naming the argument — or, where so documented, succeed — and the process survives.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as kv from '../lib/index';
import { native } from '../lib/binding';
import { expectBadCalls, BadCall } from './helpers';

const f32 = (n: number, fill = 0.5) => new Float32Array(n).fill(fill);
const H = 2, N = 16, d = 4, G = 2;
const keys = kv.tensor(Float32Array.from({ length: H * N * d }, (_, i) => Math.sin(i)), [H, N, d]);
const values = kv.tensor(Float32Array.from({ length: H * N * d }, (_, i) => Math.cos(i)), [H, N, d]);
const queries = kv.tensor(Float32Array.from({ length: H * G * 3 * d }, (_, i) => Math.sin(3 * i)), [H * G, 3, d]);
/** A raw descriptor for the addon. */
const raw = (data: unknown, shape: unknown[], extra: Record<string, unknown> = {}) => ({ data, dtype: 'f32', shape, strides: undefined, offset: 0, ...extra });
const out2 = () => raw(f32(H * N), [H, N]);

t.test('a Tensor is frozen, and recognised by what built it, not by its prototype', async (t) => {
  const x = kv.tensor(f32(8), [2, 4]);
  t.throws(() => ((x as unknown as { offset: number }).offset = 1000), TypeError, 'offset cannot be reassigned');
  t.throws(() => ((x as unknown as { shape: number[] }).shape = [1000, 1000]), TypeError, 'shape cannot be reassigned');
  t.throws(() => (x.shape as number[]).push(3), TypeError, 'shape cannot grow');
  t.equal(x.offset, 0);
  const fake = Object.create(kv.Tensor.prototype) as Record<string, unknown>;
  Object.assign(fake, { data: f32(8), dtype: 'f32', shape: [2, 1000, 4], strides: [4000, 4, 1], offset: 0 });
  t.throws(() => kv.keydiffScores(fake as never), { name: 'RangeError', message: /^keys: view .* holds 8 f32 elements/ }, "Tensor's prototype with a lying shape");
  t.notOk(kv.Tensor.is(fake));
});

const sab = new Float32Array(new SharedArrayBuffer(4 * H * N * d));
const detached = (() => {
  const k = kv.tensor(f32(H * N * d), [H, N, d]);
  structuredClone(k.data, { transfer: [(k.data as Float32Array).buffer as ArrayBuffer] });
  return k;
})();
const detachedNative = (() => {
  const a = f32(H * N * d);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
})();

const cases: BadCall[] = [
  // shared and detached memory
  ['SharedArrayBuffer data', () => kv.tensor(sab, [H, N, d]), 'TypeError', /^tensor\.data: a typed array over a SharedArrayBuffer is not accepted/],
  ['SharedArrayBuffer to the addon', () => native.keydiffScores(raw(sab, [H, N, d]) as never, out2() as never), 'TypeError', /^keys: a typed array over a SharedArrayBuffer/],
  ['a buffer detached after the Tensor was made', () => kv.keydiffScores(detached), 'TypeError', /^keys\.data: its ArrayBuffer is detached/],
  ['a detached buffer to the addon', () => native.keydiffScores(raw(detachedNative, [H, N, d]) as never, out2() as never), 'TypeError', /^keys: its ArrayBuffer is detached/],
  // raw descriptors: every number checked natively
  ['shape NaN', () => native.keydiffScores(raw(f32(H * N * d), [H, NaN, d]) as never, out2() as never), 'TypeError', /^keys\.shape\[1\]: expected an integer, got NaN/],
  ['shape bigint', () => native.keydiffScores(raw(f32(H * N * d), [H, 16n, d]) as never, out2() as never), 'TypeError', /^keys\.shape\[1\]: expected an integer/],
  ['shape fractional', () => native.keydiffScores(raw(f32(H * N * d), [H, 15.5, d]) as never, out2() as never), 'TypeError', /^keys\.shape\[1\]: expected an integer, got 15\.5/],
  ['shape negative', () => native.keydiffScores(raw(f32(H * N * d), [H, -16, d]) as never, out2() as never), 'RangeError', /^keys\.shape\[1\]: must be in \[0,/],
  ['shape beyond 2^31', () => native.keydiffScores(raw(f32(H * N * d), [H, 2 ** 40, d]) as never, out2() as never), 'RangeError', /^keys: dimension 1 is 1099511627776, must be in \[0, 2\^31 - 1\]/],
  ['strides that overflow 64 bits', () => native.keydiffScores(raw(f32(64), [2 ** 31 - 1, 2 ** 31 - 1, 2], { strides: [2 ** 53 - 1, 2 ** 53 - 1, 1] }) as never, out2() as never), 'RangeError', /^keys: the view .* overflows 64-bit arithmetic/],
  ['a far offset', () => native.keydiffScores(raw(f32(H * N * d), [H, N, d], { offset: 2 ** 53 - 1 }) as never, out2() as never), 'RangeError', /^keys: view \(offset 9007199254740991/],
  ['negative strides past the start', () => native.keydiffScores(raw(f32(H * N * d), [H, N, d], { strides: [-N * d, d, 1] }) as never, out2() as never), 'RangeError', /^keys: view .* reaches elements \[-/],
  ['dtype and typed array disagree', () => native.keydiffScores(raw(new Int32Array(H * N * d), [H, N, d]) as never, out2() as never), 'TypeError', /^keys: dtype f32 data must be a Float32Array, got Int32Array/],
  ['options as an array', () => native.snapkvScores(queries.toNative(), keys.toNative(), [] as never, out2() as never), 'TypeError', /^opts: expected an object/],
  ['an option that is not an integer', () => native.selectTokens(raw(f32(H * N), [H, N]) as never, { keep: 2.5 } as never, raw(new Int32Array(H * N), [H, N], { dtype: 'i32' }) as never, raw(new Int32Array(H), [H], { dtype: 'i32' }) as never), 'TypeError', /^keep: expected an integer, got 2\.5/],
  ['evictedIndices named in the binding', () => native.momentsMerge(keys.toNative(), values.toNative(), raw(f32(4), [2, 2]) as never, raw(new Int32Array(2), [2], { dtype: 'i32' }) as never, kv.MomentState.create(H, d, d) as never), 'TypeError', /^evictedIndices: expected dtype i32/],
  // the documented limits
  ['a broadcast view beyond 2^14 elements', () => kv.keydiffScores(kv.tensor(f32(4), [1, 2 ** 20, 4], { strides: [0, 0, 1] })), 'RangeError', /^keys: the view .* names 4194304 elements but spans only 4 .* limited to 16384 elements/],
  ['an output with a zero stride', () => kv.keydiffScores(keys, { out: kv.tensor(f32(N), [H, N], { strides: [0, 1] }) }), 'RangeError', /^out: its elements overlap/],
  ['CPU scratch beyond the limit', () => kv.snapkvScores(kv.tensor(f32(1), [2 ** 14, 1, 1], { strides: [0, 0, 0] }), kv.tensor(f32(2 ** 17, 0.1), [1, 2 ** 17, 1])), 'RangeError', /^queries: snapkvScores would need .* GiB of scratch memory on the CPU backend/],
  ['GRKV rows beyond the CPU limit', () => kv.grkvMerge({
    keys, values, selection: kv.selectTokens(kv.keydiffScores(keys), { keep: 8 }), queries: kv.tensor(f32(H * 2 * 600 * d), [H * 2, 600, d]),
    queryPositions: kv.tensor(new Int32Array(600).fill(N - 1), [600]), scores: kv.keydiffScores(keys),
  }), 'RangeError', /^queries: the CPU backend fits at most 1024 query rows per KV head .* G\*Qs = 2\*600/],
  // option limits equal in TypeScript and the C ABI
  ['grkv lambda 1e30', () => kv.grkvMerge({ keys, values, selection: kv.selectTokens(kv.keydiffScores(keys), { keep: 8 }), queries, queryPositions: kv.tensor(new Int32Array(3).fill(N - 1), [3]), scores: kv.keydiffScores(keys), lambda: 1e30 }), 'RangeError', /^lambda: must be in \(0, 1e\+30\)/],
  ['native grkv lambda 1e30', () => native.grkvMerge(keys.toNative(), values.toNative(), raw(new Int32Array(H * 4), [H, 4], { dtype: 'i32' }) as never, raw(new Int32Array(H), [H], { dtype: 'i32' }) as never, queries.toNative(), raw(new Int32Array(3).fill(N - 1), [3], { dtype: 'i32' }) as never, undefined, out2() as never, { lambda: 1e30 } as never, raw(f32(H * 4 * d), [H, 4, d]) as never, raw(f32(H * 4 * d), [H, 4, d]) as never, raw(new Int32Array(H), [H], { dtype: 'i32' }) as never, undefined), 'RangeError', /^lambda: must be finite and > 0/],
  ['spd lambda 1e30', () => kv.spdSolve({ a: kv.tensor(f32(4, 1), [2, 2]), b: kv.tensor(f32(2), [2, 1]), lambda: 1e30 }), 'RangeError', /^lambda: must be in \[0, 1e\+30\)/],
  ['spd b named', () => kv.spdSolve({ a: kv.tensor(f32(4, 1), [2, 2]), b: kv.tensor(f32(3), [3, 1]) }), 'RangeError', /^b: expected shape \[1, 2, r\]/],
  // small functions check their numbers
  ['dtypeSize', () => kv.dtypeSize('f64' as never), 'RangeError', /^dtype: expected one of/],
  ['empty shape', () => kv.empty([2, -1], 'f32'), 'RangeError', /^shape\[1\]: must be in/],
  ['selectCapacity H', () => kv.selectCapacity(1.5, 10, { keep: 2 }), 'TypeError', /^H: expected an integer/],
  ['keepFromRatio N', () => kv.keepFromRatio(NaN, 0.5), 'TypeError', /^N: expected an integer/],
  ['tensor options', () => kv.tensor(f32(4), [4], { strides: [1], stride: [1] } as never), 'TypeError', /^options: unknown option 'stride'/],
  ['a null option', () => kv.selectTokens(kv.keydiffScores(keys), { keep: 4, sinks: null } as never), 'TypeError', /^sinks: got null/],
];

// compress(), compressCache(), methodScores(), attentionError(), loadDump()
const sel = () => kv.compress({ keys, values }, { method: 'keydiff', keep: 4 });
cases.push(
  ['compress: unknown input field', () => kv.compress({ keys, values, querys: queries } as never, { method: 'keydiff', keep: 4 }), 'TypeError', /^input: unknown option 'querys'/],
  ['compress: scores of another N', () => kv.compress({ keys, values }, { method: 'keydiff', keep: 4, scores: kv.tensor(f32(H * 12), [H, 12]) }), 'RangeError', /^scores: expected shape \[2, 16\]/],
  ['compress: sinks beyond N', () => kv.compress({ keys, values }, { method: 'keydiff', keep: 4, sinks: 17 }), 'RangeError', /^sinks: must be in \[0, 16\]/],
  ['compress: sinks with momentkv', () => kv.compress({ keys, values, queries }, { method: 'momentkv', keep: 4, sinks: 2 }), 'RangeError', /^sinks: method 'momentkv' takes no sinks/],
  ['compressCache: unknown method, empty list', () => kv.compressCache([], { method: 'foo' as never, keep: 4 }), 'RangeError', /^method: expected one of/],
  ['compressCache: no keep, empty list', () => kv.compressCache([], { method: 'keydiff' } as never), 'TypeError', /^options: give exactly one of `ratio` or `keep`/],
  ['compress: unknown option', () => kv.compress({ keys, values }, { method: 'keydiff', keep: 4, ratoi: 0.5 } as never), 'TypeError', /^options: unknown option 'ratoi'/],
  ['compress: unused invalid queries', () => kv.compress({ keys, values, queries: kv.tensor(f32(3 * 3 * d), [3, 3, d]) }, { method: 'keydiff', keep: 4 }), 'RangeError', /^queries: dimension 0 must be a multiple of the number of KV heads H = 2/],
  ['compress: unknown nested option', () => kv.compress({ keys, values }, { method: 'nestedkv', keep: 4, nestedkv: { windw: 8 } as never }), 'TypeError', /^nestedkv: unknown option 'windw'/],
  ['compress: options of another method', () => kv.compress({ keys, values, queries }, { method: 'snapkv', keep: 4, nestedkv: { window: 8 } }), 'RangeError', /^nestedkv: these options are used by method 'nestedkv' only/],
  ['compress: grkv source x', () => kv.compress({ keys, values, queries }, { method: 'snapkv', keep: 4, merge: 'grkv', grkv: { source: 'x' as never } }), 'RangeError', /^grkv\.source: expected one of 'window', 'stratified', got 'x'/],
  ['compress: grkv options without the merge', () => kv.compress({ keys, values, queries }, { method: 'snapkv', keep: 4, grkv: { lambda: 1 } }), 'RangeError', /^grkv: these options are used by merge 'grkv' only/],
  ['compress: grkv lambda named', () => kv.compress({ keys, values, queries }, { method: 'snapkv', keep: 4, merge: 'grkv', grkv: { lambda: -1 } }), 'RangeError', /^grkv\.lambda: must be in \(0, 1e\+30\)/],
  ['compress: nestedkv option named', () => kv.compress({ keys, values }, { method: 'nestedkv', keep: 4, nestedkv: { tail: 2 } }), 'RangeError', /^nestedkv\.tail: must be in \[0, 1\]/],
  ['compress: scoring options with precomputed scores', () => kv.compress({ keys, values }, { method: 'nestedkv', keep: 4, scores: kv.keydiffScores(keys), nestedkv: { window: 8 } }), 'RangeError', /^nestedkv: scoring options have no effect with precomputed scores/],
  ['compress: surrogate queries unused', () => kv.compress({ keys, values, queries, surrogateQueries: queries }, { method: 'snapkv', keep: 4 }), 'RangeError', /^surrogateQueries: only merge 'grkv' with grkv\.source 'stratified' uses them/],
  ['compress: null nested option', () => kv.compress({ keys, values }, { method: 'nestedkv', keep: 4, nestedkv: { window: null } as never }), 'TypeError', /^nestedkv\.window: got null/],
  ['compressCache: layer named', () => kv.compressCache([{ keys, values }, { keys, values: kv.tensor(f32(H * 15 * d), [H, 15, d]) }], { method: 'keydiff', keep: 4 }), 'RangeError', /^layer 1: values: dimension 1 must equal N of keys \(16\)/],
  ['methodScores: invalid unused option', () => kv.methodScores({ keys, values }, { method: 'keydiff', recent: '1' } as never), 'TypeError', /^recent: expected an integer/],
  ['loadDump: unknown option', () => kv.loadDump(os.tmpdir(), { layot: 'nhd' } as never), 'TypeError', /^loadDump: options: unknown option 'layot'/],
  ['loadDump: u16', () => kv.loadDump(os.tmpdir(), { u16: 'x' } as never), 'TypeError', /^loadDump: u16 must be 'bf16' or 'f16'/],
  ['loadDump: allowNonFinite', () => kv.loadDump(os.tmpdir(), { allowNonFinite: 'yes' } as never), 'TypeError', /^loadDump: allowNonFinite must be a boolean/],
  ['loadDump: path', () => kv.loadDump(42 as never), 'TypeError', /^loadDump: path must be a non-empty string/],
);
expectBadCalls(t, cases);

t.test('attentionError: compressed.* and reference are checked and named', async (t) => {
  const c = sel();
  const q2 = kv.tensor(f32(H * G * d), [H * G, d]);
  await t.rejects(kv.attentionError({ queries: q2, keys, values, compressed: c, reference: kv.tensor(f32(H * G * d), [2, 8]) }), { name: 'RangeError', message: /^reference: expected shape \[4, 4\] .*, got \[2, 8\]/ }, 'a reference of the wrong shape with the right element count');
  await t.rejects(kv.attentionError({ queries: q2, keys, values, compressed: { ...c, keys: kv.tensor(f32(H * 4 * 3), [H, 4, 3]) } }), { name: 'RangeError', message: /^compressed\.keys: expected shape \[2, cap, 4\]/ });
  await t.rejects(kv.attentionError({ queries: q2, keys, values, compressed: { ...c, counts: kv.tensor(new Int32Array([5, 0]), [H]) } }), { name: 'RangeError', message: /^compressed\.counts: counts\[0\] = 5/ }, 'an error of decodeAttention names compressed.counts');
  const r = await kv.attentionError({ queries: q2, keys, values, compressed: c });
  t.ok(r.errors.length === H * G && r.errors.every(Number.isFinite), 'a valid call still works');
});

t.test('JavaScript run while a binding reads its arguments cannot free what was already checked', async (t) => {
  const k = f32(H * N * d);
  const o = f32(H * N);
  const out = { data: o, dtype: 'f32', strides: [N, 1], offset: 0 } as Record<string, unknown>;
  Object.defineProperty(out, 'shape', {
    get() {
      structuredClone(k.buffer, { transfer: [k.buffer] }); // detaches the keys, parsed before
      return [H, N];
    },
  });
  t.throws(() => native.keydiffScores(raw(k, [H, N, d]) as never, out as never), { name: 'TypeError', message: /^keys: its ArrayBuffer is detached/ });
});

t.test('fillBytes writes only its view', async (t) => {
  const a = new Float32Array(10).fill(1);
  kv.fillBytes(kv.tensor(a, [2, 2], { strides: [4, 1], offset: 1 }), 0xff);
  t.same(Array.from(a, (x) => (Number.isNaN(x) ? 'N' : x)), [1, 'N', 'N', 1, 1, 'N', 'N', 1, 1, 1]);
});

t.test('loadDump rejects a null option (a temporary dump)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-hostile-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  kv.saveTraceAsDump(kv.generateTrace({ tokens: 96, layers: 1, kvHeads: 1, groupSize: 1, headDim: 16, window: 8, heldOut: 2, needles: 1, segments: 2 }), dir);
  t.throws(() => kv.loadDump(dir, { layout: null } as never), { name: 'TypeError', message: /^loadDump: layout is null/ });
  t.equal(kv.loadDump(dir).layers.length, 1, 'the same dump loads');
});
