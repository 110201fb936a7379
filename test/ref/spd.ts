/**
 * Float64 references of the batched SPD solve (docs/performance.md §3): Cholesky and the two triangular solves. Also
 * the dual ridge solve of the GRKV reference (docs/methods/grkv.md §7.1: `(A Aᵀ + λI) X = r`).
 *
 * Written plainly, for accuracy, not speed. Matrices are row-major and contiguous; outputs are new `Float64Array`s.
 */
import { checkLen } from './linalg';

/**
 * Cholesky factorisation `A = L Lᵀ` of a symmetric positive-definite n×n matrix (row-major).
 * Returns the lower-triangular factor L (row-major n×n, zeros above the diagonal).
 *
 * Throws an `Error` whose message contains "not finite" for a NaN/±Infinity entry, "not symmetric" when |A_ij − A_ji| exceeds
 * 1e-10·max|A|, and "not positive definite" (with the pivot index and value) when a pivot is
 * ≤ 0 or not finite. Used for the dual ridge system of docs/methods/grkv.md §7.1.
 */
export function choleskyRef(A: ArrayLike<number>, n: number): Float64Array {
  checkLen('choleskyRef: A', A, n * n);
  let amax = 0;
  for (let i = 0; i < n * n; i++) {
    if (!Number.isFinite(A[i])) {
      throw new Error(`choleskyRef: A[${Math.floor(i / n)},${i % n}] = ${A[i]} is not finite`);
    }
    amax = Math.max(amax, Math.abs(A[i]));
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const diff = Math.abs(A[i * n + j] - A[j * n + i]);
      if (!(diff <= 1e-10 * amax)) {
        throw new Error(
          `choleskyRef: matrix is not symmetric (|A[${i},${j}] - A[${j},${i}]| = ${diff})`,
        );
      }
    }
  }
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let s = A[j * n + j];
    for (let k = 0; k < j; k++) s -= L[j * n + k] * L[j * n + k];
    if (!(s > 0) || !Number.isFinite(s)) {
      throw new Error(`choleskyRef: matrix is not positive definite (pivot ${j} = ${s})`);
    }
    const ljj = Math.sqrt(s);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let t = A[i * n + j];
      for (let k = 0; k < j; k++) t -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = t / ljj;
    }
  }
  return L;
}

/**
 * Solve `A X = B` for symmetric positive-definite A (n×n) and B row-major [n, nrhs], by
 * {@link choleskyRef} then forward and back substitution. Returns X, row-major [n, nrhs].
 * Throws like {@link choleskyRef} when A is not SPD. (docs/methods/grkv.md §7.1 value step.)
 */
export function spdSolveRef(
  A: ArrayLike<number>,
  n: number,
  B: ArrayLike<number>,
  nrhs: number,
): Float64Array {
  checkLen('spdSolveRef: B', B, n * nrhs);
  const L = choleskyRef(A, n);
  const Y = new Float64Array(n * nrhs);
  // forward: L Y = B
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < nrhs; c++) Y[i * nrhs + c] = B[i * nrhs + c];
    for (let k = 0; k < i; k++) {
      const lik = L[i * n + k];
      if (lik === 0) continue;
      for (let c = 0; c < nrhs; c++) Y[i * nrhs + c] -= lik * Y[k * nrhs + c];
    }
    const lii = L[i * n + i];
    for (let c = 0; c < nrhs; c++) Y[i * nrhs + c] /= lii;
  }
  // back: Lᵀ X = Y
  const X = Y;
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const lki = L[k * n + i];
      if (lki === 0) continue;
      for (let c = 0; c < nrhs; c++) X[i * nrhs + c] -= lki * X[k * nrhs + c];
    }
    const lii = L[i * n + i];
    for (let c = 0; c < nrhs; c++) X[i * nrhs + c] /= lii;
  }
  return X;
}
