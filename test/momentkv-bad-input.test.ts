// Every MomentKV op rejects bad input with a TypeError/RangeError naming the argument; nothing is written and the
// process survives.
import t from 'tap';
import * as kv from '../lib/index';
import { expectBadCalls, BadCall } from './helpers';

const f32 = (n: number) => new Float32Array(n);
const i32 = (a: number[]) => new Int32Array(a);
const cuda = kv.backendInfo().cuda;
const H = 2, N = 8, d = 4, dv = 3;
const keys = kv.tensor(f32(H * N * d).map((_, i) => Math.sin(i)), [H, N, d]);
const vals = kv.tensor(f32(H * N * dv).map((_, i) => Math.cos(i)), [H, N, dv]);
const ev = kv.tensor(i32([0, 2, 5, -1, 1, 3, -1, -1]), [H, 4]);
const evCnt = kv.tensor(i32([3, 2]), [H]);
const st = () => kv.MomentState.create(H, d, dv);
// decode: compacted cache [Hkv=2, cap=4, d], queries [Hq=4, T=2, d]
const cK = kv.tensor(f32(H * 4 * d).fill(0.5), [H, 4, d]);
const cV = kv.tensor(f32(H * 4 * dv).fill(0.25), [H, 4, dv]);
const cCnt = kv.tensor(i32([4, 2]), [H]);
const q3 = kv.tensor(f32(4 * 2 * d).fill(1), [4, 2, d]);
const dec = (o: Record<string, unknown>) => () => kv.decodeAttention({ queries: q3, keys: cK, values: cV, counts: cCnt, ...o } as never);
// selection
const sc = kv.tensor(f32(H * N).map((_, i) => (i % 7) / 7), [H, N]);
const sel = (o: Record<string, unknown>) => () => kv.momentkvSelect({ scores: sc, keys, values: vals, keep: 4, ...o } as never);
const scWith = (pos: number, x: number) => {
  const a = f32(H * N).map((_, i) => (i % 7) / 7);
  a[pos] = x;
  return kv.tensor(a, [H, N]);
};

const cases: BadCall[] = [
  // MomentState.create / from
  ['create: H 0', () => kv.MomentState.create(0, d, dv), 'RangeError', /H: must be in \[1,/],
  ['create: d fractional', () => kv.MomentState.create(H, 1.5, dv), 'TypeError', /d: expected an integer/],
  ['create: dv string', () => kv.MomentState.create(H, d, '3' as never), 'TypeError', /dv: expected an integer/],
  ['create: bad device', () => kv.MomentState.create(H, d, dv, { device: 'gpu' as never }), 'TypeError', /device: expected 'cpu', a CUDA device id or a Device/],
  ['create: unknown option', () => kv.MomentState.create(H, d, dv, { devise: 'cpu' } as never), 'TypeError', /options: unknown option 'devise'/],
  ['from: m inconsistent with muK', () => kv.MomentState.from({ n: kv.tensor(f32(2), [2]), muK: kv.tensor(f32(6), [2, 3]), muV: kv.tensor(f32(6), [2, 3]), m: kv.tensor(f32(24), [2, 3, 4]) }),
    'RangeError', /moments\.m: expected shape \[2, 3, 3\], got \[2, 3, 4\]/],
  ['from: muK H mismatch', () => kv.MomentState.from({ n: kv.tensor(f32(2), [2]), muK: kv.tensor(f32(12), [3, 4]), muV: kv.tensor(f32(6), [2, 3]), m: kv.tensor(f32(24), [2, 3, 4]) }),
    'RangeError', /moments\.muK: expected shape \[2, 4\], got \[3, 4\]/],
  ['from: n f16', () => kv.MomentState.from({ n: kv.tensor(new Uint16Array(2), [2], { dtype: 'f16' }), muK: kv.tensor(f32(8), [2, 4]), muV: kv.tensor(f32(6), [2, 3]), m: kv.tensor(f32(24), [2, 3, 4]) }),
    'TypeError', /moments\.n: expected dtype f32, got f16/],
  ['from: m not contiguous', () => kv.MomentState.from({ n: kv.tensor(f32(2), [2]), muK: kv.tensor(f32(8), [2, 4]), muV: kv.tensor(f32(6), [2, 3]), m: kv.tensor(f32(48), [2, 3, 4], { strides: [24, 8, 2] }) }),
    'TypeError', /moments\.m: must be contiguous/],
  ['from: missing m', () => kv.MomentState.from({ n: kv.tensor(f32(2), [2]), muK: kv.tensor(f32(8), [2, 4]), muV: kv.tensor(f32(6), [2, 3]) } as never), 'TypeError', /moments\.m: expected a tensor/],
  // MomentState.merge
  ['merge: keys H mismatch', () => st().merge(kv.tensor(f32(3 * N * d), [3, N, d]), vals, ev, evCnt), 'RangeError', /keys: H \(3\) must equal the state's H \(2\)/],
  ['merge: d mismatch', () => st().merge(kv.tensor(f32(H * N * 5), [H, N, 5]), vals, ev, evCnt), 'RangeError', /keys: d \(5\) must equal the state's d \(4\)/],
  ['merge: dv mismatch', () => st().merge(keys, kv.tensor(f32(H * N * 2), [H, N, 2]), ev, evCnt), 'RangeError', /values: dv \(2\) must equal the state's dv \(3\)/],
  ['merge: values N mismatch', () => st().merge(keys, kv.tensor(f32(H * 7 * dv), [H, 7, dv]), ev, evCnt), 'RangeError', /values: dimension 1 must equal N of keys \(8\)/],
  ['merge: keys i32', () => st().merge(kv.tensor(new Int32Array(H * N * d), [H, N, d]), vals, ev, evCnt), 'TypeError', /keys: expected dtype f32 \| f16 \| bf16, got i32/],
  ['merge: indices 1-D', () => st().merge(keys, vals, evCnt, evCnt), 'TypeError', /evictedIndices: expected a 2-D tensor/],
  ['merge: indices not ascending', () => st().merge(keys, vals, kv.tensor(i32([2, 0, 5, -1, 1, 3, -1, -1]), [H, 4]), evCnt), 'RangeError', /evictedIndices: row 0 must hold strictly ascending positions in \[0, 8\)/],
  ['merge: duplicate index', () => st().merge(keys, vals, kv.tensor(i32([0, 2, 2, -1, 1, 3, -1, -1]), [H, 4]), evCnt), 'RangeError', /strictly ascending/],
  ['merge: index out of range', () => st().merge(keys, vals, kv.tensor(i32([0, 2, 8, -1, 1, 3, -1, -1]), [H, 4]), evCnt), 'RangeError', /entry 2 is 8/],
  ['merge: count above capacity', () => st().merge(keys, vals, ev, kv.tensor(i32([5, 0]), [H])), 'RangeError', /counts: counts\[0\] = 5 must be in \[0, 4\]/],
  ['merge: negative count', () => st().merge(keys, vals, ev, kv.tensor(i32([-1, 0]), [H])), 'RangeError', /counts: counts\[0\] = -1/],
  ['merge: counts f32', () => st().merge(keys, vals, ev, kv.tensor(f32(2), [H])), 'TypeError', /counts: expected dtype i32, got f32/],
  ['merge: corrupt state n', () => {
    const s = st();
    (s.n.data as Float32Array)[s.n.offset] = NaN;
    return s.merge(keys, vals, ev, evCnt);
  }, 'RangeError', /moments\.n: n\[0\] = nan must be a finite count >= 0/],
  ['merge: state overlaps keys', () => kv.MomentState.from({ n: kv.tensor(keys.data, [2]), muK: kv.tensor(f32(8), [2, 4]), muV: kv.tensor(f32(6), [2, 3]), m: kv.tensor(f32(24), [2, 3, 4]) }).merge(keys, vals, ev, evCnt),
    'RangeError', /moments\.n: must not overlap keys/],
  ['merge: unknown option', () => st().merge(keys, vals, ev, evCnt, { strem: 1 } as never), 'TypeError', /options: unknown option 'strem'/],
  // gatherKV with moments
  ['gather: moments d mismatch', () => kv.gatherKV({ keys, values: vals, indices: ev, counts: evCnt, moments: kv.MomentState.create(H, 5, dv) }), 'RangeError', /moments\.muK: dimension 1 must equal d \(key dim\) \(4\)/],
  ['gather: moments H mismatch', () => kv.gatherKV({ keys, values: vals, indices: ev, counts: evCnt, moments: kv.MomentState.create(3, d, dv) }), 'RangeError', /moments\.n: dimension 0 must equal H \(heads\) \(2\)/],
  ['gather: moments not an object', () => kv.gatherKV({ keys, values: vals, indices: ev, counts: evCnt, moments: 7 as never }), 'TypeError', /moments: expected a MomentState/],
  // decodeAttention
  ['decode: args not object', () => kv.decodeAttention(null as never), 'TypeError', /args: expected an options object/],
  ['decode: unknown option', dec({ orderr: 1 }), 'TypeError', /args: unknown option 'orderr'/],
  ['decode: missing queries', () => kv.decodeAttention({ keys: cK, values: cV, counts: cCnt } as never), 'TypeError', /queries: expected a tensor/],
  ['decode: queries 1-D', dec({ queries: kv.tensor(f32(4), [4]) }), 'TypeError', /queries: expected a 2-D \[Hq, d\] or 3-D \[Hq, T, d\] tensor, got 1-D/],
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
  // momentkvSelect
  ['select: args not object', () => kv.momentkvSelect(undefined as never), 'TypeError', /scores: expected a tensor/],
  ['select: unknown option', sel({ rounds: 2, window: 32 }), 'TypeError', /args: unknown option 'window'/],
  ['select: keep and ratio', sel({ ratio: 0.5 }), 'TypeError', /exactly one of `ratio` or `keep`/],
  ['select: neither keep nor ratio', sel({ keep: undefined }), 'TypeError', /exactly one of `ratio` or `keep`/],
  ['select: keep > N', sel({ keep: 9 }), 'RangeError', /keep: must be in \[1, 8\], got 9/],
  ['select: keep 0', sel({ keep: 0 }), 'RangeError', /keep: must be in \[1, 8\], got 0/],
  ['select: ratio 1', sel({ keep: undefined, ratio: 1 }), 'RangeError', /ratio: must be in \[0, 1\)/],
  ['select: NaN score', sel({ scores: scWith(3, NaN) }), 'RangeError', /scores: scores\[0, 3\] = nan \(must be finite, or \+Infinity for a protected token\)/],
  ['select: -Infinity score', sel({ scores: scWith(N + 1, -Infinity) }), 'RangeError', /scores: scores\[1, 1\] = -inf/],
  ['select: too many protected', sel({ scores: kv.tensor(f32(H * N).fill(Infinity), [H, N]) }), 'RangeError', /keep: head 0 has 8 protected \(\+Infinity\) tokens, more than keep = 4/],
  ['select: scores bf16', sel({ scores: kv.tensor(new Uint16Array(H * N), [H, N], { dtype: 'bf16' }) }), 'TypeError', /scores: expected dtype f32, got bf16/],
  ['select: scores 3-D', sel({ scores: keys }), 'TypeError', /scores: expected a 2-D tensor \[H, N\]/],
  ['select: keys N mismatch', sel({ keys: kv.tensor(f32(H * 7 * d), [H, 7, d]) }), 'RangeError', /keys: expected shape \[2, 8, d\]/],
  ['select: values H mismatch', sel({ values: kv.tensor(f32(3 * N * dv), [3, N, dv]) }), 'RangeError', /values: expected shape \[2, 8, dv\]/],
  ['select: rounds 0', sel({ rounds: 0 }), 'RangeError', /rounds: must be in \[1,/],
  ['select: rounds fractional', sel({ rounds: 1.5 }), 'TypeError', /rounds: expected an integer/],
  ['select: r 9', sel({ r: 9 }), 'RangeError', /r: must be in \[0, 8\], got 9/],
  ['select: eps negative', sel({ eps: -0.1 }), 'RangeError', /eps: must be in \[0,/],
  ['select: mi number', sel({ mi: 1 }), 'TypeError', /mi: expected a boolean, got 1/],
  ['select: cap below keep', sel({ cap: 3 }), 'RangeError', /cap: must be in \[4,/],
  ['select: indices too small', sel({ indices: kv.tensor(new Int32Array(6), [2, 3]) }), 'RangeError', /indices: capacity \(dimension 1\) must be at least keep = 4, got 3/],
  ['select: counts wrong H', sel({ counts: kv.tensor(new Int32Array(3), [3]) }), 'RangeError', /counts: expected shape \[2\]/],
  ['select: moments for other H', sel({ moments: kv.MomentState.create(3, d, dv) }), 'RangeError', /moments: expected a state for H=2, d=4, dv=3, got H=3/],
  ['select: moments bad', sel({ moments: { n: 1 } }), 'TypeError', /moments\.n: expected a tensor/],
  ['select: evictedRound shape', sel({ evictedRound: kv.tensor(new Int32Array(8), [2, 4]) }), 'RangeError', /evictedRound: expected shape \[2, 8\]/],
  ['select: evictedRound f32', sel({ evictedRound: kv.tensor(f32(16), [2, 8]) }), 'TypeError', /evictedRound: expected dtype i32/],
  ['select: indices overlap counts', () => {
    const buf = new Int32Array(10);
    return kv.momentkvSelect({ scores: sc, keys, values: vals, keep: 4, indices: kv.tensor(buf, [2, 4]), counts: kv.tensor(buf, [2], { offset: 7 }) });
  }, 'RangeError', /counts: must not overlap indices/],
  // momentkvCompress
  ['compress: unknown option', () => kv.momentkvCompress({ scores: sc, keys, values: vals, keep: 4, order: 1 } as never), 'TypeError', /args: unknown option 'order'/],
  ['compress: keysOut dtype', () => kv.momentkvCompress({ scores: sc, keys, values: vals, keep: 4, keysOut: kv.tensor(new Uint16Array(32), [2, 4, 4], { dtype: 'bf16' }) }), 'TypeError', /keysOut: expected dtype f32, got bf16/],
];
if (!cuda) {
  cases.push(['create: CUDA device without CUDA', () => kv.MomentState.create(H, d, dv, { device: 0 }), 'Error', /CUDA is not available/]);
}

t.ok(cases.length >= 60, `${cases.length} bad calls`);
expectBadCalls(t, cases);

t.test('rejected calls write nothing: state, indices and outputs keep their contents', async (t) => {
  const s = st();
  const before = Float32Array.from(s.m.data as Float32Array);
  t.throws(() => s.merge(keys, vals, kv.tensor(i32([0, 2, 9, -1, 1, 3, -1, -1]), [H, 4]), evCnt));
  t.same(Array.from(s.m.data as Float32Array), Array.from(before), 'state untouched');
  const idx = kv.tensor(new Int32Array(8).fill(77), [2, 4]);
  t.throws(() => kv.momentkvSelect({ scores: scWith(3, NaN), keys, values: vals, keep: 4, indices: idx, moments: s }));
  t.same(Array.from(idx.host), new Array(8).fill(77), 'indices untouched');
  t.same(Array.from(s.m.data as Float32Array), Array.from(before), 'state untouched by the rejected select');
  const out = kv.tensor(f32(24).fill(3), [4, 2, 3]);
  t.throws(() => kv.decodeAttention({ queries: q3, keys: cK, values: cV, counts: kv.tensor(i32([4, 9]), [2]), out }));
  t.ok(Array.from(out.host).every((x) => x === 3), 'decode output untouched');
});

t.test('the process survives and MomentKV ops still work after all of that', async (t) => {
  const s = st().merge(keys, vals, ev, evCnt);
  t.same(Array.from(s.n.host.subarray(s.n.offset, s.n.offset + 2)), [3, 2]);
  const o = kv.decodeAttention({ queries: q3, keys: cK, values: cV, counts: cCnt, moments: s });
  t.ok(Array.from(o.host).every(Number.isFinite));
});
