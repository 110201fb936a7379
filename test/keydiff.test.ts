import t from 'tap';
import { keydiffScores, selectTokens } from '../lib/index';
import type { DType } from '../lib/index';
import { Rng } from '../lib/rng';
import { keydiffScoresRef } from './ref/keydiff';
import { selectRef, checkSelectionValid } from './ref/select';
import { BACKENDS, on, place, poisoned, fetch, randomTensor, rows, Layout, QUICK_SKIP } from './helpers';
import { FILLS, expectClose } from './ref/compare';

// KeyDiff scores in [-1, 1]; tolerance 1e-5 relative with a 1e-2 floor (cosines near 0 have no meaningful
// relative error; 1e-7 absolute there would still pass).
const TOL = 1e-5;

/** Keys with a shared bias direction plus noise (so the anchor is well defined and cosines spread). */
function biasedGen(rng: Rng, d: number): (a: number, b: number, c: number) => number {
  const bias = Array.from({ length: d }, () => rng.normal());
  return (_a, _b, c) => 0.8 * bias[c] + rng.normal();
}

const cases: { H: number; N: number; d: number; dtype: DType; layout: Layout; full?: true }[] = [
  { H: 8, N: 32768, d: 128, dtype: 'f32', layout: 'hnd', full: true },
  { H: 4, N: 4097, d: 64, dtype: 'bf16', layout: 'nhd' },
  { H: 2, N: 5001, d: 256, dtype: 'f16', layout: 'padded' },
  { H: 8, N: 1023, d: 128, dtype: 'bf16', layout: 'hnd' },
  { H: 3, N: 777, d: 96, dtype: 'f32', layout: 'nhd' },
  { H: 1, N: 1, d: 64, dtype: 'f32', layout: 'hnd' },
  { H: 2, N: 300, d: 300, dtype: 'f16', layout: 'hnd' },
];

for (const b of BACKENDS) {
  for (const c of cases) {
    t.test(`keydiff ${b} H=${c.H} N=${c.N} d=${c.d} ${c.dtype} ${c.layout}`, on(b, { skip: c.full && QUICK_SKIP }), async (t) => {
      const rng = new Rng(c.N * 31 + c.d);
      const { t: keys, v } = randomTensor(rng, c.H, c.N, c.d, c.dtype, c.layout, biasedGen(rng, c.d));
      const ref = keydiffScoresRef(v, c.H, c.N, c.d);
      let res = poisoned([c.H, c.N], 'f32', b);
      for (const fill of FILLS) {
        const out = poisoned([c.H, c.N], 'f32', b, fill);
        res = keydiffScores(place(keys, b), { out });
        t.equal(res, out, `${fill} poison: writes into the given output`);
        expectClose(t, await fetch(res), ref, { tol: TOL, floor: 1e-2 }, `${fill} poison`);
      }
      const got = (await fetch(res)).host as Float32Array;
      // Kept set equals the reference's top-k up to ties (k-th value check against float64 scores).
      const keep = Math.max(1, Math.floor(c.N * 0.25));
      const sel = selectTokens(res, { keep });
      const hostIdx = await fetch(sel.indices), hostCnt = await fetch(sel.counts);
      const kept = rows(hostIdx, hostCnt);
      t.equal(checkSelectionValid(ref, c.H, c.N, { indices: kept }, { keep, budget: 'uniform' }, 1e-6), null, 'top-k valid vs float64 reference');
      t.same(kept, selectRef(got, c.H, c.N, { keep, budget: 'uniform' }).indices, 'selection of the f32 scores equals the reference rule exactly');
    });
  }

  t.test(`keydiff ${b}: invariant to per-token positive scaling; zero keys give 0`, on(b), async (t) => {
    const rng = new Rng(5);
    const H = 2, N = 500, d = 64;
    const { t: keys, v } = randomTensor(rng, H, N, d, 'f32', 'hnd', biasedGen(rng, d));
    const scaled = new Float32Array(H * N * d), zeroed = new Float32Array(H * N * d);
    for (let r = 0; r < H * N; r++) {
      const s = 0.01 + (r % 13) * 3.7;
      for (let c = 0; c < d; c++) {
        scaled[r * d + c] = v[r * d + c] * s;
        zeroed[r * d + c] = r % 7 === 3 ? 0 : v[r * d + c];
      }
    }
    const a = (await fetch(keydiffScores(place(keys, b)))).host as Float32Array;
    const z = await fetch(keydiffScores(place({ data: scaled, shape: [H, N, d] } as never, b)));
    expectClose(t, z, a, { tol: TOL, floor: 1e-2 }, 'positive per-token rescaling leaves every score unchanged');
    // outputs poisoned with both patterns: a zero row's score must be written (0), not left as it was
    for (const fill of FILLS) {
      const zz = await fetch(keydiffScores(place({ data: zeroed, shape: [H, N, d] } as never, b), { out: poisoned([H, N], 'f32', b, fill) }));
      expectClose(t, zz, keydiffScoresRef(zeroed, H, N, d), { tol: TOL, floor: 1e-2 }, `${fill} poison: keys with zero rows match the reference`);
      let zeroOk = true;
      for (let r = 0; r < H * N; r++) if (r % 7 === 3) zeroOk &&= zz.at(Math.floor(r / N), r % N) === 0;
      t.ok(zeroOk, `${fill} poison: zero rows score exactly 0 (no NaN)`);
    }
  });
}

for (const b of BACKENDS) {
  t.test(`keydiff ${b}: element-strided f32 keys; f16 keys with subnormal elements`, on(b), async (t) => {
    const rng = new Rng(8);
    const H = 2, N = 300, d = 24;
    // f32 stored with a gap after every element (element stride 2): the row is gathered, not read in place
    const { t: wide } = randomTensor(rng, H, N, 2 * d, 'f32', 'hnd', biasedGen(rng, 2 * d));
    const strided = wide.view([H, N, d], [N * 2 * d, 2 * d, 2]);
    const dense = new Float64Array(H * N * d);
    for (let r = 0; r < H * N; r++) for (let c = 0; c < d; c++) dense[r * d + c] = (wide.host as Float32Array)[r * 2 * d + 2 * c];
    for (const fill of FILLS) {
      const res = keydiffScores(place(strided, b), { out: poisoned([H, N], 'f32', b, fill) });
      expectClose(t, await fetch(res), keydiffScoresRef(dense, H, N, d), { tol: TOL, floor: 1e-2 }, `f32 element stride 2, ${fill} poison`);
    }
    // f16 keys of magnitude ~1e-6: most elements are f16 subnormals (below 2^-14), decoded exactly
    const tiny = randomTensor(rng, H, N, d, 'f16', 'hnd', (_a, _b, c) => 1e-6 * (c % 3 === 0 ? 40 : 1) * rng.normal());
    let sub = 0;
    for (const x of tiny.v) sub += Number(x !== 0 && Math.abs(x) < 2 ** -14);
    t.ok(sub > H * N * d / 2, `${sub} of ${H * N * d} elements are f16 subnormals`);
    expectClose(t, await fetch(keydiffScores(place(tiny.t, b))), keydiffScoresRef(tiny.v, H, N, d), { tol: TOL, floor: 1e-2 }, 'f16 subnormal keys');
  });
}
