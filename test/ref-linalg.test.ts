// The shared float64 linear-algebra references (test/ref/linalg.ts): products and norms, the Jacobi
// eigen-decomposition and the top left singular vectors.
import t from 'tap';
import { Rng } from '../lib/rng';
import { dotRef, frobeniusNorm, matmulRef, symmetricEigenJacobiRef, topLeftSingularVectorsRef, transposeRef } from './ref/linalg';

t.test('matmul / transpose / norms on a hand case', async (t) => {
  const A = [1, 2, 3, 4, 5, 6]; // [2,3]
  const B = [7, 8, 9, 10, 11, 12]; // [3,2]
  t.same(Array.from(matmulRef(A, B, 2, 3, 2)), [58, 64, 139, 154]);
  t.same(Array.from(transposeRef(A, 2, 3)), [1, 4, 2, 5, 3, 6]);
  t.equal(frobeniusNorm([3, 4]), 5);
  t.equal(dotRef([1, 2, 3], [4, 5, 6]), 32);
});

t.test('Jacobi eigen-decomposition: residuals, orthonormality, ordering', async (t) => {
  const rng = new Rng(13);
  for (const n of [1, 5, 40, 128]) {
    const X = rng.normals64(n * n);
    const S = Float64Array.from({ length: n * n }, (_, k) => {
      const i = Math.floor(k / n), j = k % n;
      return X[i * n + j] + X[j * n + i];
    });
    const { values, vectors } = symmetricEigenJacobiRef(S, n);
    const sn = frobeniusNorm(S);
    let worst = 0, orth = 0, ordered = true;
    for (let i = 0; i < n; i++) {
      const v = vectors.subarray(i * n, (i + 1) * n);
      const Sv = matmulRef(S, v, n, n, 1);
      for (let k = 0; k < n; k++) worst = Math.max(worst, Math.abs(Sv[k] - values[i] * v[k]) / sn);
      for (let j = 0; j <= i; j++) {
        const dot = dotRef(v, vectors.subarray(j * n, (j + 1) * n));
        orth = Math.max(orth, Math.abs(dot - (i === j ? 1 : 0)));
      }
      if (i > 0 && values[i] > values[i - 1]) ordered = false;
    }
    t.ok(worst < 1e-13, `n=${n}: max |Sv−λv|/‖S‖ = ${worst.toExponential(2)}`);
    t.ok(orth < 1e-13, `n=${n}: orthonormal to ${orth.toExponential(2)}`);
    t.ok(ordered, `n=${n}: eigenvalues descending`);
    let tr = 0, sum = 0;
    for (let i = 0; i < n; i++) { tr += S[i * n + i]; sum += values[i]; }
    t.ok(Math.abs(tr - sum) <= 1e-12 * sn, `n=${n}: trace preserved`);
  }
});

t.test('top left singular vectors: planted spectrum and power iteration agree', async (t) => {
  const rng = new Rng(14);
  // planted: M = U diag(σ) Wᵀ with orthonormal U [rows, k], W [cols, k]
  const rows = 24, cols = 16, k = 6;
  const orth = (m: number, c: number) => {
    const Q: Float64Array[] = [];
    for (let i = 0; i < c; i++) {
      const v = rng.normals64(m);
      for (let pass = 0; pass < 2; pass++) {
        for (const b of Q) { const p = dotRef(b, v); for (let x = 0; x < m; x++) v[x] -= p * b[x]; }
      }
      const nv = frobeniusNorm(v);
      Q.push(v.map((x) => x / nv));
    }
    return Q;
  };
  const U = orth(rows, k), Wm = orth(cols, k);
  const sig = [10, 5, 3, 2, 1, 0.5];
  const M = new Float64Array(rows * cols);
  for (let i = 0; i < k; i++) {
    for (let a = 0; a < rows; a++) for (let b = 0; b < cols; b++) M[a * cols + b] += sig[i] * U[i][a] * Wm[i][b];
  }
  const { vectors, values } = topLeftSingularVectorsRef(M, rows, cols, 3);
  for (let i = 0; i < 3; i++) {
    t.ok(Math.abs(values[i] - sig[i]) < 1e-12, `σ_${i} = ${values[i]} ≈ ${sig[i]}`);
    const c = Math.abs(dotRef(vectors.subarray(i * rows, (i + 1) * rows), U[i]));
    t.ok(Math.abs(c - 1) < 1e-12, `u_${i} matches the planted vector (|cos| = ${c})`);
  }
  // random 128 x 128 (the MomentKV C shape) vs power iteration on M Mᵀ
  const n = 128;
  const R = rng.normals64(n * n);
  // add a dominant rank-1 part so power iteration converges fast
  const u0 = rng.normals64(n), w0 = rng.normals64(n);
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) R[a * n + b] += 0.3 * u0[a] * w0[b];
  const top = topLeftSingularVectorsRef(R, n, n, 1);
  let v = rng.normals64(n);
  for (let it = 0; it < 500; it++) {
    const y = matmulRef(transposeRef(R, n, n), v, n, n, 1);
    const z = matmulRef(R, y, n, n, 1);
    const nz = frobeniusNorm(z);
    v = z.map((x) => x / nz);
  }
  const cos = Math.abs(dotRef(v, top.vectors));
  t.ok(Math.abs(1 - cos) < 1e-12, `128x128: Jacobi vs power iteration, |1−|cos|| = ${Math.abs(1 - cos).toExponential(2)}`);
  const Mv = matmulRef(transposeRef(R, n, n), top.vectors, n, n, 1);
  t.ok(Math.abs(frobeniusNorm(Mv) - top.values[0]) < 1e-10 * top.values[0], 'σ_1 = ‖Mᵀu_1‖');
});
