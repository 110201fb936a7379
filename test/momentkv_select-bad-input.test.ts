// momentkvSelect and momentkvCompress reject bad input with a TypeError/RangeError naming the argument; nothing is
// written and the process survives.
import t from 'tap';
import * as kv from '../lib/index';
import { expectBadCalls, BadCall } from './helpers';
import { f32, small } from './moments-helpers';

const { H, N, d, dv, keys, vals, st } = small;
const sc = kv.tensor(f32(H * N).map((_, i) => (i % 7) / 7), [H, N]);
const sel = (o: Record<string, unknown>) => () => kv.momentkvSelect({ scores: sc, keys, values: vals, keep: 4, ...o } as never);
const scWith = (pos: number, x: number) => {
  const a = f32(H * N).map((_, i) => (i % 7) / 7);
  a[pos] = x;
  return kv.tensor(a, [H, N]);
};

const cases: BadCall[] = [
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

t.ok(cases.length >= 29, `${cases.length} bad calls`);
expectBadCalls(t, cases);

t.test('a rejected select writes nothing: indices and the state keep their contents', async (t) => {
  const s = st();
  const before = Float32Array.from(s.m.data as Float32Array);
  const idx = kv.tensor(new Int32Array(8).fill(77), [2, 4]);
  t.throws(() => kv.momentkvSelect({ scores: scWith(3, NaN), keys, values: vals, keep: 4, indices: idx, moments: s }));
  t.same(Array.from(idx.host), new Array(8).fill(77), 'indices untouched');
  t.same(Array.from(s.m.data as Float32Array), Array.from(before), 'state untouched by the rejected select');
});

t.test('the process survives and momentkvSelect still works after all of that', async (t) => {
  const r = kv.momentkvSelect({ scores: sc, keys, values: vals, keep: 4 });
  t.same(Array.from(r.counts.host), [4, 4], 'keep rows per head');
});
