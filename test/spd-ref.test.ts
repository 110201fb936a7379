// The float64 SPD-solve references (test/ref/spd.ts): Cholesky factors, solve residuals over conditioning and
// ridge, and the errors for non-SPD, non-symmetric and non-finite input.
import t from 'tap';
import { Rng } from '../lib/rng';
import { choleskyRef, spdSolveRef } from './ref/spd';
import { frobeniusNorm, matmulRef, transposeRef } from './ref/linalg';

/** A = XᵀX/m + ridge·I for X [m, n] Gaussian: SPD, well conditioned when m ≫ n. */
function randomSpd(rng: Rng, n: number, m: number, ridge: number): Float64Array {
  const X = rng.normals64(m * n);
  const A = matmulRef(transposeRef(X, m, n), X, n, m, n);
  for (let i = 0; i < n * n; i++) A[i] /= m;
  for (let i = 0; i < n; i++) A[i * n + i] += ridge;
  return A;
}

function sub(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (x, i) => x - b[i]);
}

t.test('Cholesky: L lower triangular, L Lᵀ = A, on random SPD matrices', async (t) => {
  const rng = new Rng(11);
  for (const n of [1, 2, 32, 128, 256]) {
    const A = randomSpd(rng, n, n + 16, 0.05);
    const L = choleskyRef(A, n);
    let upper = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) upper = Math.max(upper, Math.abs(L[i * n + j]));
    t.equal(upper, 0, `n=${n}: strictly upper part is zero`);
    const LLt = matmulRef(L, transposeRef(L, n, n), n, n, n);
    const rel = frobeniusNorm(sub(LLt, A)) / frobeniusNorm(A);
    t.ok(rel < 1e-14, `n=${n}: ‖LLᵀ−A‖/‖A‖ = ${rel.toExponential(2)} < 1e-14`);
  }
  // a 2x2 hand case: [[4,2],[2,3]] = [[2,0],[1,√2]]·[[2,1],[0,√2]]
  const L = choleskyRef([4, 2, 2, 3], 2);
  t.same(Array.from(L), [2, 0, 1, Math.SQRT2]);
});

t.test('SPD solve: small residual with many RHS, well and ill conditioned (+ridge)', async (t) => {
  const rng = new Rng(12);
  for (const n of [32, 128, 256]) {
    for (const kind of ['random', 'lowrank+ridge'] as const) {
      let A: Float64Array;
      if (kind === 'random') {
        A = randomSpd(rng, n, 2 * n, 0.01);
      } else {
        // rank-8 Gram matrix + tiny ridge: condition number ~1e8 (the GRKV dual system's shape)
        const r = 8;
        const X = rng.normals64(n * r);
        A = matmulRef(X, transposeRef(X, n, r), n, r, n);
        const lam = 1e-8 * frobeniusNorm(A);
        for (let i = 0; i < n; i++) A[i * n + i] += lam;
      }
      const nrhs = n === 256 ? 64 : 128;
      const Xtrue = rng.normals64(n * nrhs);
      const B = matmulRef(A, Xtrue, n, n, nrhs);
      const X = spdSolveRef(A, n, B, nrhs);
      const res = frobeniusNorm(sub(matmulRef(A, X, n, n, nrhs), B));
      const rel = res / (frobeniusNorm(A) * frobeniusNorm(X));
      t.ok(rel < 1e-14, `${kind} n=${n} nrhs=${nrhs}: backward residual ${rel.toExponential(2)} < 1e-14`);
      if (kind === 'random') {
        const fwd = frobeniusNorm(sub(X, Xtrue)) / frobeniusNorm(Xtrue);
        t.ok(fwd < 1e-11, `random n=${n}: forward error ${fwd.toExponential(2)} < 1e-11`);
      }
    }
  }
});

t.test('Cholesky rejects non-SPD and non-symmetric input with a clear error', async (t) => {
  // indefinite: eigenvalues 3 and -1
  t.throws(() => choleskyRef([1, 2, 2, 1], 2), /not positive definite \(pivot 1/);
  t.throws(() => choleskyRef([0, 0, 0, 1], 2), /not positive definite \(pivot 0 = 0\)/);
  t.throws(() => choleskyRef([NaN, 0, 0, 1], 2), /A\[0,0\] = NaN is not finite/);
  t.throws(() => choleskyRef([2, 1, 0, 2], 2), /not symmetric/);
  t.throws(() => spdSolveRef([1, 2, 2, 1], 2, [1, 1], 1), /not positive definite/);
  // a random SPD matrix made singular by a rank deficiency (no ridge) must fail too
  const rng = new Rng(5);
  const n = 16;
  const X = rng.normals64(n * 4);
  const A = matmulRef(X, transposeRef(X, n, 4), n, 4, n);
  t.throws(() => choleskyRef(A, n), /not positive definite/);
});
