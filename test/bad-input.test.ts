// Every op rejects bad input with a TypeError/RangeError naming the argument, and the process survives.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as kv from '../lib/index';
import { expectBadCalls, BadCall } from './helpers';

const f32 = (n: number) => new Float32Array(n);
const keys = kv.tensor(f32(2 * 8 * 4), [2, 8, 4]);
const scores = kv.tensor(f32(16), [2, 8]);
const idx = kv.tensor(new Int32Array(8), [2, 4]);
const cnt = kv.tensor(new Int32Array([2, 2]), [2]);
const cuda = kv.backendInfo().cuda;

const cases: BadCall[] = [
  // tensor()
  ['tensor: plain array data', () => kv.tensor([1, 2, 3] as never, [3]), 'TypeError', /tensor\.data: expected a Float32Array/],
  ['tensor: Uint16Array without dtype', () => kv.tensor(new Uint16Array(4), [4]), 'TypeError', /needs dtype 'f16' or 'bf16'/],
  ['tensor: dtype mismatch', () => kv.tensor(f32(4), [4], { dtype: 'i32' }), 'TypeError', /dtype 'i32' does not match/],
  ['tensor: unknown dtype', () => kv.tensor(f32(4), [4], { dtype: 'f64' as never }), 'RangeError', /tensor\.dtype: expected one of/],
  ['tensor: shape not an array', () => kv.tensor(f32(4), 4 as never), 'TypeError', /tensor\.shape: expected an array/],
  ['tensor: fractional dim', () => kv.tensor(f32(4), [1.5]), 'TypeError', /tensor\.shape\[0\]: expected an integer/],
  ['tensor: negative dim', () => kv.tensor(f32(4), [-1]), 'RangeError', /tensor\.shape\[0\]: must be in/],
  ['tensor: 5 dims', () => kv.tensor(f32(4), [1, 1, 1, 1, 4]), 'RangeError', /at most 4 dimensions/],
  ['tensor: view past the end', () => kv.tensor(f32(10), [3, 4]), 'RangeError', /reaches elements \[0, 11\] but its data holds 10/],
  ['tensor: strides length', () => kv.tensor(f32(10), [2, 5], { strides: [5] }), 'RangeError', /strides: expected 2 entries/],
  ['tensor: strided view past the end', () => kv.tensor(f32(10), [2, 5], { strides: [1, 3] }), 'RangeError', /reaches elements/],
  ['tensor: negative offset', () => kv.tensor(f32(10), [2], { offset: -1 }), 'RangeError', /tensor\.offset: must be in/],
  ['tensor: negative stride below 0', () => kv.tensor(f32(10), [3], { strides: [-1] }), 'RangeError', /reaches elements \[-2, 0\]/],
  ['tensor: fractional stride', () => kv.tensor(f32(10), [2], { strides: [0.5] }), 'TypeError', /strides\[0\]: expected an integer/],
  // keydiffScores
  ['keydiff: not a tensor', () => kv.keydiffScores(42 as never), 'TypeError', /keys: expected a tensor/],
  ['keydiff: rank 2', () => kv.keydiffScores(scores), 'TypeError', /keys: expected a 3-D tensor \[H, N, d\], got 2-D/],
  ['keydiff: i32 keys', () => kv.keydiffScores(kv.tensor(new Int32Array(8), [1, 2, 4])), 'TypeError', /keys: expected dtype f32 \| f16 \| bf16, got i32/],
  ['keydiff: out wrong shape', () => kv.keydiffScores(keys, { out: kv.tensor(f32(15), [3, 5]) }), 'RangeError', /out: expected shape \[2, 8\], got \[3, 5\]/],
  ['keydiff: out wrong dtype', () => kv.keydiffScores(keys, { out: kv.tensor(new Int32Array(16), [2, 8]) }), 'TypeError', /out: expected dtype f32, got i32/],
  ['keydiff: out aliases keys', () => kv.keydiffScores(keys, { out: kv.tensor(keys.data, [2, 8]) }), 'RangeError', /out: must not overlap keys/],
  ['keydiff: unknown option', () => kv.keydiffScores(keys, { outt: 1 } as never), 'TypeError', /options: unknown option 'outt'/],
  ['keydiff: options not object', () => kv.keydiffScores(keys, 5 as never), 'TypeError', /options: expected an options object/],
  ['keydiff: stream on host tensors', () => kv.keydiffScores(keys, { stream: {} as never }), 'TypeError', /stream: expected a Stream/],
  ['keydiff: keys plain object bad data', () => kv.keydiffScores({ data: 'x' as never, shape: [1, 1, 1] }), 'TypeError', /keys\.data: expected/],
  ['keydiff: keys view too large', () => kv.keydiffScores({ data: f32(8), shape: [2, 2, 4] }), 'RangeError', /keys: view .* holds 8 f32 elements/],
  // selectTokens
  ['select: no ratio/keep', () => kv.selectTokens(scores, {} as never), 'TypeError', /exactly one of `ratio` or `keep`/],
  ['select: both ratio and keep', () => kv.selectTokens(scores, { ratio: 0.5, keep: 2 }), 'TypeError', /exactly one/],
  ['select: ratio 1', () => kv.selectTokens(scores, { ratio: 1 }), 'RangeError', /ratio: must be in \[0, 1\), got 1/],
  ['select: ratio negative', () => kv.selectTokens(scores, { ratio: -0.1 }), 'RangeError', /ratio: must be in/],
  ['select: ratio NaN', () => kv.selectTokens(scores, { ratio: NaN }), 'TypeError', /ratio: expected a number/],
  ['select: keep too large', () => kv.selectTokens(scores, { keep: 9 }), 'RangeError', /keep: must be in \[1, 8\], got 9/],
  ['select: keep fractional', () => kv.selectTokens(scores, { keep: 2.5 }), 'TypeError', /keep: expected an integer/],
  ['select: bad budget', () => kv.selectTokens(scores, { keep: 2, budget: 'global' as never }), 'RangeError', /budget: expected one of 'uniform', 'adaptive'/],
  ['select: safeguard > 1', () => kv.selectTokens(scores, { keep: 2, safeguard: 1.5 }), 'RangeError', /safeguard: must be in \[0, 1\]/],
  ['select: negative sinks', () => kv.selectTokens(scores, { keep: 2, sinks: -1 }), 'RangeError', /sinks: must be in/],
  ['select: recent string', () => kv.selectTokens(scores, { keep: 2, recent: '4' as never }), 'TypeError', /recent: expected an integer/],
  ['select: cap below bound', () => kv.selectTokens(scores, { keep: 4, cap: 3 }), 'RangeError', /cap: must be in \[4,/],
  ['select: scores rank 3', () => kv.selectTokens(keys, { keep: 2 }), 'TypeError', /scores: expected a 2-D tensor \[H, N\]/],
  ['select: scores bf16', () => kv.selectTokens(kv.tensor(new Uint16Array(16), [2, 8], { dtype: 'bf16' }), { keep: 2 }), 'TypeError', /scores: expected dtype f32, got bf16/],
  ['select: indices too small', () => kv.selectTokens(scores, { keep: 4, indices: kv.tensor(new Int32Array(6), [2, 3]) }), 'RangeError', /indices: capacity .* at least 4/],
  ['select: counts wrong H', () => kv.selectTokens(scores, { keep: 2, counts: kv.tensor(new Int32Array(3), [3]) }), 'RangeError', /counts: expected shape \[2\]/],
  ['select: indices f32', () => kv.selectTokens(scores, { keep: 2, indices: kv.tensor(f32(4), [2, 2]) }), 'TypeError', /indices: expected dtype i32/],
  ['select: empty scores', () => kv.selectTokens(kv.tensor(f32(0), [2, 0]), { keep: 1 }), 'RangeError', /keep: must be in \[1, 0\]/],
  // gatherKV
  ['gather: args not object', () => kv.gatherKV(null as never), 'TypeError', /args: expected an options object/],
  ['gather: missing values', () => kv.gatherKV({ keys, indices: idx, counts: cnt } as never), 'TypeError', /values: expected a tensor/],
  ['gather: values H mismatch', () => kv.gatherKV({ keys, values: kv.tensor(f32(3 * 8 * 4), [3, 8, 4]), indices: idx, counts: cnt }), 'RangeError', /values: dimension 0 must equal H of keys \(2\)/],
  ['gather: values N mismatch', () => kv.gatherKV({ keys, values: kv.tensor(f32(2 * 7 * 4), [2, 7, 4]), indices: idx, counts: cnt }), 'RangeError', /values: dimension 1 must equal N of keys \(8\)/],
  ['gather: indices rank', () => kv.gatherKV({ keys, values: keys, indices: cnt, counts: cnt }), 'TypeError', /indices: expected a 2-D tensor/],
  ['gather: counts f32', () => kv.gatherKV({ keys, values: keys, indices: idx, counts: kv.tensor(f32(2), [2]) }), 'TypeError', /counts: expected dtype i32, got f32/],
  ['gather: index out of range', () => kv.gatherKV({ keys, values: keys, indices: kv.tensor(new Int32Array([0, 8, 0, 0, 0, 1, 0, 0]), [2, 4]), counts: cnt }), 'RangeError', /indices: row 0 .* entry 1 is 8/],
  ['gather: count above capacity', () => kv.gatherKV({ keys, values: keys, indices: idx, counts: kv.tensor(new Int32Array([5, 0]), [2]) }), 'RangeError', /counts: counts\[0\] = 5/],
  ['gather: cap 0', () => kv.gatherKV({ keys, values: keys, indices: idx, counts: cnt, cap: 0 }), 'RangeError', /cap: must be in \[1,/],
  ['gather: keysOut dtype', () => kv.gatherKV({ keys, values: keys, indices: idx, counts: cnt, keysOut: kv.tensor(new Uint16Array(32), [2, 4, 4], { dtype: 'f16' }) }), 'TypeError', /keysOut: expected dtype f32, got f16/],
  ['gather: keysOut overlaps keys', () => kv.gatherKV({ keys, values: kv.tensor(f32(64), [2, 8, 4]), indices: idx, counts: cnt, keysOut: kv.tensor(keys.data, [2, 4, 4]) }), 'RangeError', /keysOut: must not overlap keys/],
  ['gather: moments bad', () => kv.gatherKV({ keys, values: keys, indices: kv.tensor(new Int32Array([0, 1, 0, 0, 0, 1, 0, 0]), [2, 4]), counts: cnt, moments: {} as never }), 'TypeError', /moments\.n: expected a tensor/],
  // devices and streams (no GPU: clear error; with a GPU: argument errors)
  ['DeviceBuffer.wrap: number pointer', () => kv.DeviceBuffer.wrap(1234 as never, 16), 'TypeError', /ptr: expected a bigint device address/],
  ['DeviceBuffer.wrap: null pointer', () => kv.DeviceBuffer.wrap(0n, 16), 'RangeError', /ptr: must be a non-null/],
  ['Stream.wrap: number handle', () => kv.Stream.wrap(5 as never), 'TypeError', /handle: expected a bigint/],
  ['toDevice: not a tensor', () => kv.toDevice({} as never), 'TypeError', /tensor: expected a tensor/],
  ['fillBytes: byte 300', () => kv.fillBytes(scores, 300), 'RangeError', /byte: must be in \[0, 255\]/],
];
if (!cuda) {
  cases.push(
    ['DeviceBuffer.alloc without CUDA', () => kv.DeviceBuffer.alloc(16), 'Error', /DeviceBuffer\.alloc: CUDA is not available/],
    ['Stream.create without CUDA', () => kv.Stream.create(), 'Error', /Stream\.create: CUDA is not available/],
    ['toDevice without CUDA', () => kv.toDevice(scores), 'Error', /CUDA is not available/],
  );
} else {
  cases.push(
    ['DeviceBuffer.alloc negative', () => kv.DeviceBuffer.alloc(-1), 'RangeError', /bytes: must be in/],
    ['DeviceBuffer.alloc bad device', () => kv.DeviceBuffer.alloc(16, { device: 999 }), 'RangeError', /device: no supported CUDA device with id 999/],
    ['mixed devices', () => kv.keydiffScores(kv.toDevice(keys), { out: kv.tensor(f32(16), [2, 8]) }), 'TypeError', /out: must be on the same device/],
  );
}

t.ok(cases.length >= 40, `${cases.length} bad calls`);
expectBadCalls(t, cases);

t.test('the process survives and ops still work after all of that', async (t) => {
  const s = kv.keydiffScores(kv.tensor(new Float32Array([1, 0, 0, 1, 1, 1]), [1, 3, 2]));
  t.equal(s.shape[1], 3);
  t.ok(Array.from(s.host).every(Number.isFinite));
});

t.test('CUDA errors carry code ERR_KVTRIM_NO_CUDA or ERR_KVTRIM_CUDA', { skip: cuda && 'a GPU is present' }, async (t) => {
  try {
    kv.DeviceBuffer.alloc(1);
    t.fail('should throw');
  } catch (e) {
    t.equal((e as { code?: string }).code, 'ERR_KVTRIM_NO_CUDA');
  }
});

t.test('a crashing call in a child process is not possible: bad views never reach native code', async (t) => {
  const script = `const kv=require(${JSON.stringify(require.resolve('../lib/index'))});
    try { kv.keydiffScores({ data: new Float32Array(4), shape: [1, 1000000, 128] }); } catch (e) { console.log(e.name); }`;
  const r = spawnSync(process.execPath, [...process.execArgv, '-e', script], { encoding: 'utf8' });
  t.equal(r.status, 0, 'child exits normally');
  t.match(r.stdout, /RangeError/);
});
