/**
 * Float64 dense linear-algebra references shared by the op references (test oracles).
 *
 * Written plainly, for accuracy, not speed. All matrices are row-major and contiguous; inputs are
 * any `ArrayLike<number>` and outputs are new `Float64Array`s. Nothing here modifies its inputs.
 *
 * Used by the GRKV reference (norms, products) and by the MomentKV reference (top left singular vectors of the
 * co-moment C, docs/methods/momentkv.md §5.2). The SPD solve is in spd.ts.
 */

/** Throws a RangeError when `a` holds fewer than `want` elements. */
export function checkLen(name: string, a: ArrayLike<number>, want: number): void {
  if (a.length < want) {
    throw new RangeError(`${name}: expected at least ${want} elements, got ${a.length}`);
  }
}

/** Matrix product C = A·B with A [m, k] and B [k, n], row-major. Returns C [m, n]. */
export function matmulRef(
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
): Float64Array {
  checkLen('matmulRef: A', A, m * k);
  checkLen('matmulRef: B', B, k * n);
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const aip = A[i * k + p];
      if (aip === 0) continue;
      for (let j = 0; j < n; j++) C[i * n + j] += aip * B[p * n + j];
    }
  }
  return C;
}

/** Transpose of A [rows, cols] (row-major). Returns Aᵀ [cols, rows]. */
export function transposeRef(A: ArrayLike<number>, rows: number, cols: number): Float64Array {
  checkLen('transposeRef: A', A, rows * cols);
  const T = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) T[j * rows + i] = A[i * cols + j];
  return T;
}

/** Frobenius (Euclidean) norm √Σx² over all elements of A. */
export function frobeniusNorm(A: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < A.length; i++) s += A[i] * A[i];
  return Math.sqrt(s);
}

/** Dot product Σ a_i b_i over the first `n` elements (default: a.length). */
export function dotRef(a: ArrayLike<number>, b: ArrayLike<number>, n = a.length): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/**
 * Eigen-decomposition of a symmetric n×n matrix S by the cyclic Jacobi method (float64).
 * Returns eigenvalues in descending order and the matching orthonormal eigenvectors as the ROWS
 * of `vectors` ([n, n]: eigenvector i is vectors[i*n .. i*n+n)). Each eigenvector's sign is
 * fixed so that its largest-magnitude component (first one on ties) is positive.
 * Sweeps until the off-diagonal Frobenius norm is ≤ 1e-15·‖S‖_F (at most 100 sweeps).
 */
export function symmetricEigenJacobiRef(
  S: ArrayLike<number>,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  checkLen('symmetricEigenJacobiRef: S', S, n * n);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) a[i * n + j] = 0.5 * (S[i * n + j] + S[j * n + i]);
  }
  const V = new Float64Array(n * n); // columns are eigenvectors during the iteration
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  const total = frobeniusNorm(a);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
    if (Math.sqrt(2 * off) <= 1e-15 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p];
        const aqq = a[q * n + q];
        const tau = (aqq - app) / (2 * apq);
        const t = (tau >= 0 ? 1 : -1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        // A ← A J  (columns p, q)
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        // A ← Jᵀ A  (rows p, q)
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        // V ← V J
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p];
          const vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((i, j) => a[j * n + j] - a[i * n + i] || i - j);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let r = 0; r < n; r++) {
    const col = order[r];
    values[r] = a[col * n + col];
    let big = 0;
    let bigAbs = -1;
    for (let k = 0; k < n; k++) {
      const x = Math.abs(V[k * n + col]);
      if (x > bigAbs) {
        bigAbs = x;
        big = V[k * n + col];
      }
    }
    const sign = big < 0 ? -1 : 1;
    for (let k = 0; k < n; k++) vectors[r * n + k] = sign * V[k * n + col];
  }
  return { values, vectors };
}

/**
 * Top-r left singular vectors of M [rows, cols] (row-major), from the Jacobi eigen-decomposition
 * of the rows×rows matrix M·Mᵀ in float64 (docs/methods/momentkv.md §5.2: U_C, the value-side singular
 * vectors of C [d_v, d]).
 *
 * Returns `vectors` [r, rows] (vector i is a unit row vector at i*rows, sign fixed as in
 * {@link symmetricEigenJacobiRef}) and `values` [r], the singular values √max(λ_i, 0), descending.
 * A singular vector whose singular value is zero (or below ~1e-8·σ_1, i.e. lost in the squaring)
 * is not meaningful; callers decide whether to use it (see momentkv.ts `miFactorRef`).
 */
export function topLeftSingularVectorsRef(
  M: ArrayLike<number>,
  rows: number,
  cols: number,
  r: number,
): { vectors: Float64Array; values: Float64Array } {
  checkLen('topLeftSingularVectorsRef: M', M, rows * cols);
  if (r > rows) throw new RangeError(`topLeftSingularVectorsRef: r=${r} > rows=${rows}`);
  const MMt = new Float64Array(rows * rows);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < cols; k++) s += M[i * cols + k] * M[j * cols + k];
      MMt[i * rows + j] = s;
      MMt[j * rows + i] = s;
    }
  }
  const { values, vectors } = symmetricEigenJacobiRef(MMt, rows);
  return {
    vectors: vectors.slice(0, r * rows),
    values: Float64Array.from(values.slice(0, r), (x) => Math.sqrt(Math.max(x, 0))),
  };
}
