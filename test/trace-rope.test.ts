// RoPE of the built-in trace (lib/trace/rope.ts): the rotate-half convention, inverse, norms, broadcasting.
import t from 'tap';
import { applyRope, ropeInvFreq } from '../lib/trace/rope';

t.test('applyRope: rotate-half convention, inverse, norms, position broadcasting', async (t) => {
  const d = 8, base = 10000;
  const inv = ropeInvFreq(d, base);
  t.same(Array.from(inv).map((v) => +v.toPrecision(12)), [1, 0.1, 0.01, 0.001]);
  // explicit single-row check: pair (c, c + d/2), angle = pos * θ_c
  const x = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const y = Float32Array.from(x);
  applyRope(y, 1, d, [3], base);
  for (let c = 0; c < 4; c++) {
    const a = 3 * inv[c];
    t.ok(Math.abs(y[c] - (x[c] * Math.cos(a) - x[c + 4] * Math.sin(a))) < 1e-5, `channel ${c}`);
    t.ok(Math.abs(y[c + 4] - (x[c + 4] * Math.cos(a) + x[c] * Math.sin(a))) < 1e-5, `channel ${c + 4}`);
  }
  // position 0 is the identity; −p undoes p; norms are preserved
  const z = Float32Array.from(x);
  applyRope(z, 1, d, [0], base);
  t.same(Array.from(z), Array.from(x));
  const rows = 6;
  const r = new Float32Array(rows * d).map((_, i) => Math.sin(i * 1.7) * 3);
  const r0 = Float32Array.from(r);
  applyRope(r, rows, d, [5, 900, 12345], base); // positions repeat: rows 0..2, 3..5
  const rowNorm = (a: Float32Array, i: number): number => Math.hypot(...a.subarray(i * d, (i + 1) * d));
  for (let i = 0; i < rows; i++) t.ok(Math.abs(rowNorm(r, i) - rowNorm(r0, i)) < 1e-4, `row ${i} norm kept`);
  t.ok(Math.abs(r[3 * d + 1] - r0[3 * d + 1]) > 1e-3, 'rotated');
  applyRope(r, rows, d, [-5, -900, -12345], base);
  let err = 0;
  for (let i = 0; i < r.length; i++) err = Math.max(err, Math.abs(r[i] - r0[i]));
  t.ok(err < 1e-4, `inverse rotation recovers the input (max err ${err.toExponential(2)})`);
  // relative-position property: <R_m q, R_n k> depends on m − n only
  const qv = Float64Array.from([0.3, -1, 2, 0.5, 1, 1, -0.2, 0.7]);
  const kv = Float64Array.from([1, 0.2, -0.4, 2, 0.1, -1, 0.5, 0.3]);
  const dotAt = (m: number, n: number): number => {
    const a = Float64Array.from(qv), b = Float64Array.from(kv);
    applyRope(a, 1, d, [m], base);
    applyRope(b, 1, d, [n], base);
    return a.reduce((s, v, i) => s + v * b[i], 0);
  };
  t.ok(Math.abs(dotAt(10, 3) - dotAt(107, 100)) < 1e-9, 'scores depend on the relative position only');
  t.throws(() => applyRope(new Float32Array(7), 1, 7, [0]), RangeError);
  t.throws(() => applyRope(new Float32Array(16), 2, 8, [0, 1, 2]), /multiple of positions.length/);
  t.throws(() => applyRope(new Float32Array(8), 2, 8, [0, 1]), /expected at least rows\*d/);
});
