// The moment state (MomentState.create / from / merge, gatherKV with moments) rejects bad input with a
// TypeError/RangeError naming the argument; nothing is written and the process survives.
import t from 'tap';
import * as kv from '../lib/index';
import { expectBadCalls, BadCall } from './helpers';
import { f32, i32, small } from './moments-helpers';

const cuda = kv.backendInfo().cuda;
const { H, N, d, dv, keys, vals, ev, evCnt, st } = small;

const cases: BadCall[] = [
  // MomentState.create / from
  ['create: H negative', () => kv.MomentState.create(-1, d, dv), 'RangeError', /H: must be in \[0,/],
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
];
if (!cuda) {
  cases.push(['create: CUDA device without CUDA', () => kv.MomentState.create(H, d, dv, { device: 0 }), 'Error', /CUDA is not available/]);
}

t.ok(cases.length >= 28, `${cases.length} bad calls`);
expectBadCalls(t, cases);

t.test('a rejected merge writes nothing: the state keeps its contents', async (t) => {
  const s = st();
  const before = Float32Array.from(s.m.data as Float32Array);
  t.throws(() => s.merge(keys, vals, kv.tensor(i32([0, 2, 9, -1, 1, 3, -1, -1]), [H, 4]), evCnt));
  t.same(Array.from(s.m.data as Float32Array), Array.from(before), 'state untouched');
});

t.test('the process survives and merges still work after all of that', async (t) => {
  const s = st().merge(keys, vals, ev, evCnt);
  t.same(Array.from(s.n.host.subarray(s.n.offset, s.n.offset + 2)), [3, 2]);
});

t.test('MomentState.create(0, d, dv) is the (empty) state of an empty batch', async (t) => {
  const s = kv.MomentState.create(0, d, dv);
  t.same([s.H, s.d, s.dv], [0, d, dv]);
  t.same([s.n.shape, s.muK.shape, s.muV.shape, s.m.shape], [[0], [0, d], [0, dv], [0, dv, d]]);
});
