// Batched SPD solver (docs/performance.md §3) against the float64 Cholesky reference: random SPD, ill-conditioned
// systems made SPD by the ridge, n ∈ {32, 128, 256}, many right-hand sides, strided/in-place/single-system forms,
// and the non-SPD error on both backends (CPU: SpdError at once; CUDA: info + await check()).
import t from 'tap';
import { spdSolve, SpdError, tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { spdSolveRef } from './ref/spd';
import { matmulRef, frobeniusNorm } from './ref/linalg';
import { BACKENDS, on, place, poisoned, fetch } from './helpers';
import { FILLS, expectWritten } from './ref/compare';

/** B systems: A = M Mᵀ / n + shift I (well conditioned) or a rank-`rank` Gram of attention-like rows (singular). */
function systems(rng: Rng, B: number, n: number, kind: 'random' | 'lowrank'): Float32Array {
  const A = new Float32Array(B * n * n);
  for (let b = 0; b < B; b++) {
    const k = kind === 'random' ? n : 8;
    const M = new Float64Array(n * k);
    for (let i = 0; i < n * k; i++) M[i] = kind === 'random' ? rng.normal() : Math.exp(2 * rng.normal()) / (n * k);
    for (let i = 0; i < n; i++)
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let c = 0; c < k; c++) s += M[i * k + c] * M[j * k + c];
        const v = kind === 'random' ? s / n + (i === j ? 0.5 : 0) : s;
        A[(b * n + i) * n + j] = v;
        A[(b * n + j) * n + i] = v;
      }
  }
  return A;
}

/** Float64 reference of each system (A read as f32 values, + λ on the diagonal). */
function reference(A: Float32Array, Bm: Float32Array, B: number, n: number, r: number, lambda: number) {
  const X = new Float64Array(B * n * r);
  for (let b = 0; b < B; b++) {
    const Ab = Float64Array.from(A.subarray(b * n * n, (b + 1) * n * n));
    for (let i = 0; i < n; i++) Ab[i * n + i] += Math.fround(lambda);
    X.set(spdSolveRef(Ab, n, Bm.subarray(b * n * r, (b + 1) * n * r), r), b * n * r);
  }
  return X;
}

function relErr(x: ArrayLike<number>, ref: ArrayLike<number>): number {
  return frobeniusNorm(Float64Array.from(x, (v, i) => v - ref[i])) / frobeniusNorm(ref);
}

/** max over systems of ‖(A+λI)X − B‖ / (‖A+λI‖·‖X‖): the backward error Cholesky guarantees (~n·eps). */
function backwardErr(A: Float32Array, X: ArrayLike<number>, Bm: Float32Array, B: number, n: number, r: number, lambda: number) {
  let worst = 0;
  for (let b = 0; b < B; b++) {
    const Ab = Float64Array.from(A.subarray(b * n * n, (b + 1) * n * n));
    for (let i = 0; i < n; i++) Ab[i * n + i] += Math.fround(lambda);
    const Xb = Float64Array.from({ length: n * r }, (_, i) => X[b * n * r + i]);
    const AX = matmulRef(Ab, Xb, n, n, r);
    const res = AX.map((v, i) => v - Bm[b * n * r + i]);
    worst = Math.max(worst, frobeniusNorm(res) / (frobeniusNorm(Ab) * frobeniusNorm(Xb)));
  }
  return worst;
}

for (const backend of BACKENDS) {
  for (const n of [32, 128, 256]) {
    t.test(`spdSolve ${backend} n=${n}: random SPD and ridge-regularised singular systems, many right-hand sides`, on(backend), async (t) => {
      const rng = new Rng(n * 7 + 1);
      const B = 3;
      for (const [kind, lambda, r] of [['random', 0, n === 256 ? 300 : 129], ['lowrank', 1e-2, 64], ['lowrank', 1e-4, 1]] as const) {
        const A = systems(rng, B, n, kind);
        const Bm = new Float32Array(B * n * r).map(() => rng.normal());
        // the upper triangle is never read: poison it
        const Ap = Float32Array.from(A);
        for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) Ap[(b * n + i) * n + j] = NaN;
        const ref = reference(A, Bm, B, n, r, lambda);
        for (const fill of FILLS) {
        const out = poisoned([B, n, r], 'f32', backend, fill);
        const res = spdSolve({ a: place(tensor(Ap, [B, n, n]), backend), b: place(tensor(Bm, [B, n, r]), backend), lambda, out, info: poisoned([B], 'i32', backend, fill) });
        t.equal(res.x, out, 'writes into the given output');
        await res.check();
        const hx = await fetch(res.x);
        expectWritten(t, hx, `${kind} ${fill} poison: x`);
        const X = hx.host as Float32Array;
        const info = (await fetch(res.info)).host as Int32Array;
        t.same(Array.from(info), [0, 0, 0], `${kind} ${fill} poison: info all 0`);
        const fwd = relErr(X, ref), bwd = backwardErr(A, X, Bm, B, n, r, lambda);
        // Cholesky is backward stable: the backward error is ~n·eps whatever the conditioning; the forward error of
        // a singular Gram + λI grows with its condition number (up to ‖A‖/λ).
        const fwdTol = kind === 'random' ? 1e-5 : lambda >= 1e-2 ? 1e-4 : 2e-3;
        t.ok(bwd < 2e-6, `${kind} λ=${lambda} r=${r}: backward error ${bwd.toExponential(2)} < 2e-6`);
        t.ok(fwd < fwdTol, `${kind} λ=${lambda} r=${r}: forward error vs float64 ${fwd.toExponential(2)} < ${fwdTol}`);
        }
      }
    });
  }

  t.test(`spdSolve ${backend}: strided views, in place, one system, lambda`, on(backend), async (t) => {
    const rng = new Rng(99);
    const B = 2, n = 40, r = 7;
    const A = systems(rng, B, n, 'random');
    const Bm = new Float32Array(B * n * r).map(() => rng.normal());
    const ref = reference(A, Bm, B, n, r, 0.25);
    // a stored as [n, B, n] (systems interleaved), b stored transposed [B, r, n]
    const As = new Float32Array(B * n * n);
    for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) As[(i * B + b) * n + j] = A[(b * n + i) * n + j];
    const Bt = new Float32Array(B * n * r);
    for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let c = 0; c < r; c++) Bt[(b * r + c) * n + i] = Bm[(b * n + i) * r + c];
    // host views (strided, and b overwritten in place); CUDA runs the contiguous copies `place` makes
    await t.test('strided host views, in place', { skip: backend !== 'cpu' && 'host tensors only' }, async (t) => {
      const a = tensor(As, [B, n, n], { strides: [n, B * n, 1] });
      const b = tensor(Bt, [B, n, r], { strides: [r * n, 1, n] });
      const res = spdSolve({ a, b, lambda: 0.25 });
      const hx = await fetch(res.x);
      expectWritten(t, hx, 'x');
      t.ok(relErr(hx.host as Float32Array, ref) < 1e-5, 'strided a and b');
      // in place: out = b (same view)
      const b2 = tensor(Float32Array.from(Bm), [B, n, r]);
      const res2 = spdSolve({ a: tensor(A, [B, n, n]), b: b2, lambda: 0.25, out: b2 });
      t.equal(res2.x, b2, 'in-place result is b');
      t.ok(relErr(b2.host as Float32Array, ref) < 1e-5, 'in-place solve');
    });
    // one system as 2-D tensors
    const one = spdSolve({ a: place(tensor(A.slice(0, n * n), [n, n]), backend), b: place(tensor(Bm.slice(0, n * r), [n, r]), backend), lambda: 0.25 });
    t.same(one.x.shape, [n, r], '2-D in, 2-D out');
    t.same(one.info.shape, [1]);
    t.ok(relErr((await fetch(one.x)).host as Float32Array, ref.subarray(0, n * r)) < 1e-5, 'single system');
  });

  t.test(`spdSolve ${backend}: a system that is not positive definite`, on(backend), async (t) => {
    const rng = new Rng(5);
    const B = 4, n = 32, r = 3;
    const A = systems(rng, B, n, 'random');
    A[(2 * n + 9) * n + 9] = -4; // system 2: pivot 9 negative
    A[(3 * n + 0) * n + 0] = NaN; // system 3: pivot 0 not finite
    const Bm = new Float32Array(B * n * r).map(() => rng.normal());
    const args = { a: place(tensor(A, [B, n, n]), backend), b: place(tensor(Bm, [B, n, r]), backend) };
    if (backend === 'cpu') {
      // the finite poison: the NaN rows of failed systems must be written, not left over
      const out = poisoned([B, n, r], 'f32', backend, 'finite'), info = poisoned([B], 'i32', backend, 'finite');
      let err: unknown;
      try {
        spdSolve({ ...args, out, info });
      } catch (e) {
        err = e;
      }
      t.ok(err instanceof SpdError && err instanceof RangeError, 'throws an SpdError (a RangeError)');
      const e = err as SpdError;
      t.match(e.message, /^a: system 2 of 4 is not positive definite: pivot 9 \(leading minor of order 10\) is -?[\d.e+-]+; info\[2\] = 10 \(2 systems failed\)/, e.message);
      t.equal(e.system, 2);
      t.equal(e.minor, 10);
      t.equal(e.failures, 2);
      t.same(Array.from(info.host), [0, 0, 10, 1], 'info written first (LAPACK convention)');
      const X = out.host as Float32Array;
      t.ok(X.subarray(2 * n * r, 4 * n * r).every((x) => Number.isNaN(x)), 'rows of failed systems are NaN');
      t.ok(X.subarray(0, 2 * n * r).every((x) => Number.isFinite(x)), 'other systems solved');
      // LAPACK style: no throw, inspect info / check()
      const res = spdSolve({ ...args, throwOnError: false });
      t.same(Array.from(res.info.host), [0, 0, 10, 1]);
      await t.rejects(res.check(), { name: 'SpdError', system: 2, minor: 10, failures: 2 }, 'check() rejects');
    } else {
      const res = spdSolve(args); // enqueues only: cannot throw for a pivot
      await t.rejects(res.check(), { name: 'SpdError', system: 2, minor: 10, failures: 2 }, 'await check() rejects with the SpdError');
      t.same(Array.from((await fetch(res.info)).host), [0, 0, 10, 1]);
    }
    // λ > 0 repairs a singular (PSD) system
    const S = new Float32Array(n * n); // rank one: all ones
    S.fill(1);
    const bad = spdSolve({ a: place(tensor(S, [n, n]), backend), b: place(tensor(new Float32Array(n).fill(1), [n, 1]), backend), throwOnError: false });
    await t.rejects(bad.check(), /not positive definite/, 'singular without ridge fails');
    const good = spdSolve({ a: place(tensor(S, [n, n]), backend), b: place(tensor(new Float32Array(n).fill(1), [n, 1]), backend), lambda: 1e-2 });
    await good.check();
    const x = (await fetch(good.x)).host as Float32Array;
    t.ok(x.every((v) => Math.abs(v - 1 / (n + 0.01)) < 1e-5), 'ridge makes it SPD: x = 1/(n+λ)');
  });

  t.test(`spdSolve ${backend}: empty batch and zero right-hand sides`, on(backend), async (t) => {
    const e = spdSolve({ a: place(tensor(new Float32Array(0), [0, 4, 4]), backend), b: place(tensor(new Float32Array(0), [0, 4, 2]), backend) });
    t.same(e.x.shape, [0, 4, 2]);
    const z = spdSolve({ a: place(tensor(systems(new Rng(1), 2, 8, 'random'), [2, 8, 8]), backend), b: place(tensor(new Float32Array(0), [2, 8, 0]), backend) });
    await z.check();
    t.same(Array.from((await fetch(z.info)).host), [0, 0], 'factorisation still checked');
    const info = poisoned([2], 'i32', backend);
    const z2 = spdSolve({ a: place(tensor(systems(new Rng(1), 2, 8, 'random'), [2, 8, 8]), backend), b: place(tensor(new Float32Array(0), [2, 8, 0]), backend), info });
    t.equal(z2.info, info);
    t.same(Array.from((await fetch(z2.info)).host), [0, 0], 'info written into the given output');
  });
}
