// The comparison helper of every op test (test/ref/compare.ts) and the poisoned outputs (test/helpers.ts): a
// planted NaN, a planted infinity and a planted unwritten element are each caught, whatever comes after them.
import t from 'tap';
import type { Test } from 'tap';
import { tensor, empty, keydiffScores, f32ToF16, f32ToBf16 } from '../lib/index';
import type { DType } from '../lib/index';
import { output } from '../lib/ops/common';
import { closeTo, expectClose, expectWritten, maxRelErr, maxAbs, maxAbsDiff, maxRowRel, poisonBits, rawBits, unwritten, FILLS } from './ref/compare';
import { poisoned, poison, values } from './helpers';

/** A stand-in for a tap Test that records its assertions (to see the helper fail). */
function recorder(): { t: Test; calls: { ok: boolean; msg: string }[] } {
  const calls: { ok: boolean; msg: string }[] = [];
  const rec = {
    ok: (v: unknown, msg: string) => void calls.push({ ok: !!v, msg }),
    equal: (a: unknown, b: unknown, msg: string) => void calls.push({ ok: a === b, msg }),
  };
  return { t: rec as unknown as Test, calls };
}

t.test('maxRelErr and friends never hide a NaN behind a later finite element', async (t) => {
  const ref = [0.5, 0.5, 0.5, 0.5];
  t.same(maxRelErr([0.5, NaN, 0.5, 0.5], ref), { err: Infinity, at: 1 }, 'maxRelErr([0.5, NaN, 0.5, 0.5]) is infinite, at 1');
  t.equal(maxRelErr([NaN, 0.5, 0.5, 0.5], ref).err, Infinity, 'NaN first');
  t.equal(maxRelErr([0.5, 0.5, 0.5, 0.6], ref).at, 3);
  t.equal(maxRelErr([Infinity, 1], [Infinity, 1]).err, 0, 'equal infinities differ by 0');
  t.equal(maxRelErr([1, 2], [1]).err, Infinity, 'length mismatch');
  t.equal(maxAbs([1, NaN, 2]), Infinity);
  t.equal(maxAbsDiff([1, NaN, 2], [1, 1, 2]), Infinity);
  t.equal(maxRowRel([1, 1, NaN, 1, 0, 0], [1, 1, 1, 1, 1, 1], 2), Infinity);
});

t.test('closeTo: planted NaN, infinity and special reference values', async (t) => {
  const ref = Float64Array.from({ length: 64 }, (_, i) => Math.sin(i) + 2);
  const good = Float64Array.from(ref, (x) => x * (1 + 1e-7));
  t.ok(closeTo(good, ref, { tol: 1e-6 }).ok, 'within tolerance passes');
  t.notOk(closeTo(good, ref, { tol: 1e-8 }).ok, 'beyond tolerance fails');
  for (const [what, v] of [['NaN', NaN], ['+Infinity', Infinity], ['-Infinity', -Infinity]] as const) {
    for (const at of [0, 31, 63]) {
      const bad = Float64Array.from(good);
      bad[at] = v;
      const r = closeTo(bad, ref, { tol: 1 });
      t.notOk(r.ok, `a planted ${what} at ${at} fails even with tolerance 1`);
      t.same(r.nonFinite, [at], `and is reported at ${at}`);
    }
  }
  // special reference values must be matched exactly
  const sref = Float64Array.from(ref);
  sref[3] = Infinity;
  sref[4] = NaN;
  const sgot = Float64Array.from(good);
  sgot[3] = Infinity;
  sgot[4] = NaN;
  t.ok(closeTo(sgot, sref, { tol: 1e-6 }).ok, '+Infinity and NaN of the reference matched');
  sgot[3] = 1e30;
  t.same(closeTo(sgot, sref, { tol: 1e-6 }).special, [3], 'a finite value where the reference is +Infinity fails');
  t.notOk(closeTo([1, 2], [1, 2, 3], { tol: 1 }).ok, 'length mismatch fails');
  t.equal(closeTo([1.5], [1], { tol: 0.6, mode: 'abs' }).err, 0.5, 'absolute mode');
});

t.test('poison patterns: NaN or far out of range for floats, impossible values for i32', async (t) => {
  for (const dtype of ['f32', 'f16', 'bf16'] as DType[]) {
    const nan = values(poisoned([3], dtype, 'cpu', 'nan')), fin = values(poisoned([3], dtype, 'cpu', 'finite'));
    t.ok(nan.every(Number.isNaN), `${dtype}: 'nan' poison is NaN`);
    t.ok(fin.every((x) => Number.isFinite(x) && x > 5e4), `${dtype}: 'finite' poison is finite and large (${fin[0]})`);
  }
  const i = poisoned([2], 'i32', 'cpu', 'nan'), j = poisoned([2], 'i32', 'cpu', 'finite');
  t.ok(Array.from(i.host).every((x) => x < -1e9), `i32 'nan' poison ${i.host[0]} is no index, count or -1`);
  t.ok(Array.from(j.host).every((x) => x > 1e9), `i32 'finite' poison ${j.host[0]} is no index or count`);
  t.equal(rawBits(poisoned([1], 'f32', 'cpu'))[0], poisonBits('f32', 'nan') | 0, 'raw bits read back');
});

t.test('a planted unwritten element is caught, in floats and integers, contiguous or strided', async (t) => {
  for (const fill of FILLS) {
    for (const dtype of ['f32', 'f16', 'bf16'] as DType[]) {
      const ref = Float64Array.from({ length: 12 }, (_, k) => k / 4);
      // an "op" that writes every element but one
      const out = poisoned([3, 4], dtype, 'cpu', fill);
      const host = out.host as Float32Array | Uint16Array;
      for (let k = 0; k < 12; k++) if (k !== 7) host[k] = dtype === 'f32' ? ref[k] : dtype === 'f16' ? f32ToF16(ref[k]) : f32ToBf16(ref[k]);
      t.same(unwritten(out), [7], `${dtype} ${fill}: element 7 is unwritten`);
      const r = closeTo(out, ref, { tol: 1 });
      t.notOk(r.ok, `${dtype} ${fill}: closeTo fails on it even with tolerance 1`);
      t.same(r.unwritten, [7], `${dtype} ${fill}: and names it`);
      const rec = recorder();
      expectClose(rec.t, out, ref, { tol: 1 });
      t.same(rec.calls.map((c) => c.ok), [false], `${dtype} ${fill}: expectClose asserts false`);
      t.match(rec.calls[0].msg, /1 unwritten \(first at 7/, 'with the element in its message');
      // a strided view of the same storage: logical order
      const view = out.view([4, 3], [1, 4]);
      t.same(unwritten(view), [3 * 3 + 1], `${dtype} ${fill}: found through strides at logical index 10 (element [3, 1])`);
    }
    const cnt = poisoned([5], 'i32', 'cpu', fill);
    (cnt.host as Int32Array).set([0, 3, -1, 2], 0);
    const rec = recorder();
    expectWritten(rec.t, cnt, 'counts');
    t.same(rec.calls.map((c) => c.ok), [false], `i32 ${fill}: expectWritten fails on a leftover element`);
    (cnt.host as Int32Array)[4] = 0;
    const ok = recorder();
    expectWritten(ok.t, cnt, 'counts');
    t.same(ok.calls.map((c) => c.ok), [true], `i32 ${fill}: and passes once every element is written (-1 included)`);
  }
});

t.test('outputs an op allocates itself start poisoned (lib/ops/common.ts hook, installed by test/helpers.ts)', async (t) => {
  for (const dtype of ['f32', 'i32'] as DType[]) {
    const o = output('out', undefined, [2, 3], dtype, { kind: 'cpu' });
    t.equal(unwritten(o).length, 6, `${dtype}: a fresh output is all poison, not zeros`);
  }
  const given = empty([2, 3], 'f32');
  t.equal(output('out', given, [2, 3], 'f32', { kind: 'cpu' }), given, 'a given output is passed through untouched');
  t.equal(unwritten(given).length, 0, 'and not poisoned by the hook');
  // and an op writes all of it
  const s = keydiffScores(tensor(new Float32Array(2 * 5 * 4).map((_, i) => Math.cos(i)), [2, 5, 4]));
  t.equal(unwritten(s).length, 0, 'keydiffScores writes every element of its fresh output');
  t.equal(unwritten(poison(empty([4], 'f32'), 'finite')).length, 4, 'poison() fills a given tensor');
});

