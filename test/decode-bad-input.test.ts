// decodeAttention rejects bad input with a TypeError/RangeError naming the argument; nothing is written and the
// process survives.
import t from 'tap';
import * as kv from '../lib/index';
import { expectBadCalls, BadCall } from './helpers';
import { f32, i32, small } from './moments-helpers';

const { H, d, dv, keys, vals, ev, evCnt, st } = small;
// a compacted cache [Hkv=2, cap=4, d], queries [Hq=4, T=2, d]
const cK = kv.tensor(f32(H * 4 * d).fill(0.5), [H, 4, d]);
const cV = kv.tensor(f32(H * 4 * dv).fill(0.25), [H, 4, dv]);
const cCnt = kv.tensor(i32([4, 2]), [H]);
const q3 = kv.tensor(f32(4 * 2 * d).fill(1), [4, 2, d]);
const dec = (o: Record<string, unknown>) => () => kv.decodeAttention({ queries: q3, keys: cK, values: cV, counts: cCnt, ...o } as never);

const cases: BadCall[] = [
  // decodeAttention
  ['decode: args not object', () => kv.decodeAttention(null as never), 'TypeError', /args: expected an options object/],
  ['decode: unknown option', dec({ orderr: 1 }), 'TypeError', /args: unknown option 'orderr'/],
  ['decode: missing queries', () => kv.decodeAttention({ keys: cK, values: cV, counts: cCnt } as never), 'TypeError', /queries: expected a tensor/],
  ['decode: queries 1-D', dec({ queries: kv.tensor(f32(4), [4]) }), 'TypeError', /queries: expected a 2-D \[Hq, d\] or 3-D \[Hq, T, d\] tensor, got 1-D/],
  // the message names the shape (the native layer's own check, behind this one, says only the rank)
  ['decode: queries 4-D', dec({ queries: kv.tensor(f32(24), [1, 2, 3, 4]) }), 'TypeError', /queries: expected a 2-D \[Hq, d\] or 3-D \[Hq, T, d\] tensor, got 4-D \[1, 2, 3, 4\]$/],
  ['decode: queries i32', dec({ queries: kv.tensor(new Int32Array(8 * d), [4, 2, d]) }), 'TypeError', /queries: expected dtype f32 \| f16 \| bf16, got i32/],
  ['decode: Hq not a multiple of Hkv', dec({ queries: kv.tensor(f32(5 * d), [5, d]) }), 'RangeError', /queries: Hq \(5\) must be a multiple of Hkv \(2, dimension 0 of keys\)/],
  ['decode: d mismatch', dec({ queries: kv.tensor(f32(4 * 5), [4, 5]) }), 'RangeError', /keys: d \(4\) must equal the head dim of queries \(5\)/],
  ['decode: values dtype', dec({ values: kv.tensor(new Uint16Array(H * 4 * dv), [H, 4, dv], { dtype: 'bf16' }) }), 'TypeError', /values: expected dtype f32, got bf16/],
  ['decode: values cap mismatch', dec({ values: kv.tensor(f32(H * 5 * dv), [H, 5, dv]) }), 'RangeError', /values: expected shape \[2, 4, dv\]/],
  ['decode: counts length', dec({ counts: kv.tensor(i32([1, 1, 1]), [3]) }), 'RangeError', /counts: expected shape \[2\]/],
  ['decode: count above cap', dec({ counts: kv.tensor(i32([4, 9]), [2]) }), 'RangeError', /counts: counts\[1\] = 9 must be in \[0, 4\]/],
  ['decode: negative count', dec({ counts: kv.tensor(i32([-2, 1]), [2]) }), 'RangeError', /counts: counts\[0\] = -2/],
  ['decode: counts f32', dec({ counts: kv.tensor(f32(2), [2]) }), 'TypeError', /counts: expected dtype i32, got f32/],
  ['decode: order 2', dec({ order: 2 }), 'RangeError', /order: expected 0 or 1, got 2/],
  ['decode: order string', dec({ order: '1' }), 'RangeError', /order: expected 0 or 1, got '1'/],
  ['decode: scale 0', dec({ scale: 0 }), 'RangeError', /scale: must be in \(0,/],
  ['decode: scale NaN', dec({ scale: NaN }), 'TypeError', /scale: expected a number/],
  ['decode: clip negative', dec({ clip: -1 }), 'RangeError', /clip: must be >= 0, got -1/],
  ['decode: clip NaN', dec({ clip: NaN }), 'TypeError', /clip: expected a number, got NaN/],
  ['decode: clip string', dec({ clip: 'big' }), 'TypeError', /clip: expected a tensor/],
  ['decode: clip tensor shape', dec({ clip: kv.tensor(f32(3), [3]) }), 'RangeError', /clip: expected shape \[2\]/],
  ['decode: clip tensor negative', dec({ clip: kv.tensor(new Float32Array([-1, 2]), [2]) }), 'RangeError', /clip: clip\[0\] = -1\.0+ must be >= 0/],
  ['decode: clip tensor i32', dec({ clip: kv.tensor(i32([1, 1]), [2]) }), 'TypeError', /clip: expected dtype f32, got i32/],
  ['decode: moments d mismatch', dec({ moments: kv.MomentState.create(H, 5, dv) }), 'RangeError', /moments\.muK: dimension 1 must equal d \(key dim\) \(4\)/],
  ['decode: moments dv mismatch', dec({ moments: kv.MomentState.create(H, d, 7) }), 'RangeError', /moments\.muV: dimension 1 must equal dv \(value dim\) \(3\)/],
  ['decode: moments missing part', dec({ moments: { n: kv.tensor(f32(2), [2]) } }), 'TypeError', /moments\.muK: expected a tensor/],
  ['decode: out shape', dec({ out: kv.tensor(f32(4 * dv), [4, dv]) }), 'TypeError', /out: expected a 3-D tensor \[4, 2, 3\]/],
  ['decode: out wrong dims', dec({ out: kv.tensor(f32(4 * 2 * 4), [4, 2, 4]) }), 'RangeError', /out: expected shape \[4, 2, 3\], got \[4, 2, 4\]/],
  ['decode: out dtype', dec({ out: kv.tensor(new Int32Array(24), [4, 2, 3]) }), 'TypeError', /out: expected dtype f32, got i32/],
  ['decode: out overlaps queries', dec({ out: kv.tensor(q3.data, [4, 2, 3]) }), 'RangeError', /out: must not overlap queries/],
  ['decode: out overlaps moments', () => {
    const m = st();
    return kv.decodeAttention({ queries: q3, keys: cK, values: cV, counts: cCnt, moments: m, out: kv.tensor(m.m.data, [4, 2, 3], { offset: m.m.offset }) });
  }, 'RangeError', /must not overlap/],
  ['decode: stream on host tensors', dec({ stream: {} }), 'TypeError', /stream: expected a Stream/],
];

t.ok(cases.length >= 32, `${cases.length} bad calls`);
expectBadCalls(t, cases);

t.test('a rejected decode writes nothing: the output keeps its contents', async (t) => {
  const out = kv.tensor(f32(24).fill(3), [4, 2, 3]);
  t.throws(() => kv.decodeAttention({ queries: q3, keys: cK, values: cV, counts: kv.tensor(i32([4, 9]), [2]), out }));
  t.ok(Array.from(out.host).every((x) => x === 3), 'decode output untouched');
});

t.test('the process survives and decodeAttention still works after all of that', async (t) => {
  const s = st().merge(keys, vals, ev, evCnt);
  const o = kv.decodeAttention({ queries: q3, keys: cK, values: cV, counts: cCnt, moments: s });
  t.ok(Array.from(o.host).every(Number.isFinite));
});
