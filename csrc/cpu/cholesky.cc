// Dense fp32 Cholesky factor and solve of cpu/cholesky.h (row-wise, the compiler vectorises the row dot products).
#include "cpu/cholesky.h"

#include <math.h>

#include <vector>

#include "cpu/rows.h"
#include "math/grkv.h"

namespace kvt {
namespace cpu {

int64_t cholesky_inplace(float* L, int64_t n, float* pivot) {
  // Cholesky-Banachiewicz by rows: L_ij = (A_ij - sum_{k<j} L_ik L_jk) / L_jj, pivots L_jj^2 = A_jj - sum L_jk^2.
  std::vector<float> inv(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) {
    float* Li = L + i * n;
    for (int64_t j = 0; j < i; j++) {
      const float s = Li[j] - dot8(Li, L + j * n, j);
      Li[j] = s * inv[size_t(j)];
    }
    const float p = Li[i] - sumsq8(Li, i);
    if (!(p > 0.0f) || !finite_f(p)) {
      *pivot = p;
      return i + 1;
    }
    const float lii = sqrtf(p);
    Li[i] = lii;
    inv[size_t(i)] = 1.0f / lii;
  }
  return 0;
}

void cholesky_solve(const float* L, int64_t n, float* Y, int64_t r, int64_t ldy) {
  // forward: L Z = Y, row form (Y_i -= L_ik Z_k, then scale). No product is skipped, not even by a zero L_ik: a
  // non-finite entry of Y then reaches every later row (0·NaN = NaN), as in the CUDA kernel (docs/performance.md §3).
  for (int64_t i = 0; i < n; i++) {
    float* yi = Y + i * ldy;
    const float* Li = L + i * n;
    for (int64_t k = 0; k < i; k++) {
      const float l = Li[k];
      const float* yk = Y + k * ldy;
      for (int64_t c = 0; c < r; c++) yi[c] -= l * yk[c];
    }
    const float inv = 1.0f / Li[i];
    for (int64_t c = 0; c < r; c++) yi[c] *= inv;
  }
  // back: L^T X = Z (column i of L below the diagonal)
  for (int64_t i = n - 1; i >= 0; i--) {
    float* yi = Y + i * ldy;
    for (int64_t k = i + 1; k < n; k++) {
      const float l = L[k * n + i];
      const float* yk = Y + k * ldy;
      for (int64_t c = 0; c < r; c++) yi[c] -= l * yk[c];
    }
    const float inv = 1.0f / L[i * n + i];
    for (int64_t c = 0; c < r; c++) yi[c] *= inv;
  }
}

}  // namespace cpu
}  // namespace kvt
