// KeyDiff on a view that repeats elements: keys with element stride 0 (each row one value repeated d times; validate.cc
// accepts such views up to 2^14 elements). A row is read element by element, never as d consecutive floats, so the
// scores equal those of the same keys stored densely and the float64 reference (docs/methods/keydiff.md §3).
import t from 'tap';
import { keydiffScores, tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { keydiffScoresRef } from './ref/keydiff';
import { BACKENDS, on, place, poisoned, fetch, values } from './helpers';
import { expectWritten, maxRelErr } from './ref/compare';

for (const b of BACKENDS) {
  t.test(`keydiff ${b}: f32 keys with element stride 0 = the same keys stored densely`, on(b), async (t) => {
    const H = 2, N = 40, d = 16;
    const rng = new Rng(1701);
    // one value per row, of both signs and different magnitudes (rows differ: a wrong row read changes the scores)
    const per = new Float32Array(H * N).map(() => rng.normal() * (1 + rng.uniform()));
    const dense = new Float32Array(H * N * d).map((_, i) => per[Math.floor(i / d)]);
    const repeated = tensor(per, [H, N, d], { strides: [N, 1, 0] });
    const out = poisoned([H, N], 'f32', b);
    const got = await fetch(keydiffScores(place(repeated, b), { out }));
    expectWritten(t, got, 'scores');
    const want = values(await fetch(keydiffScores(place(tensor(dense, [H, N, d]), b))));
    t.same(Array.from(values(got)), Array.from(want), 'element stride 0 = dense storage (bit-identical)');
    const ref = keydiffScoresRef(Float64Array.from(dense), H, N, d);
    const e = maxRelErr(values(got), ref, 1e-2);
    t.ok(e.err <= 1e-5, `float64 reference: max rel err ${e.err.toExponential(2)} at ${e.at}`);
  });
}
