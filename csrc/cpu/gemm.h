// Small dense fp32 matrix products for the CPU backend (GRKV): row-major, explicit leading dimensions, a 4x8
// register tile the compiler vectorises. Accumulation is in fp32 like the CUDA kernels.
#pragma once

#include <stdint.h>

#include <algorithm>

namespace kvt {
namespace cpu {

// C[m x n] = A[m x k] * B[k x n]  (accumulate: C += ...). T = float or double.
template <typename T>
inline void gemm_nn(int64_t m, int64_t n, int64_t k, const T* __restrict__ A, int64_t lda, const T* __restrict__ B,
                    int64_t ldb, T* __restrict__ C, int64_t ldc, bool accumulate) {
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    const int64_t nb = std::min<int64_t>(8, n - j0);
    int64_t i0 = 0;
    if (nb == 8) {
      for (; i0 + 4 <= m; i0 += 4) {
        T c0[8] = {0, 0, 0, 0, 0, 0, 0, 0}, c1[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        T c2[8] = {0, 0, 0, 0, 0, 0, 0, 0}, c3[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        const T* a0 = A + i0 * lda;
        const T* a1 = a0 + lda;
        const T* a2 = a1 + lda;
        const T* a3 = a2 + lda;
        for (int64_t p = 0; p < k; p++) {
          const T* b = B + p * ldb + j0;
          const T x0 = a0[p], x1 = a1[p], x2 = a2[p], x3 = a3[p];
          for (int j = 0; j < 8; j++) {
            const T bj = b[j];
            c0[j] += x0 * bj;
            c1[j] += x1 * bj;
            c2[j] += x2 * bj;
            c3[j] += x3 * bj;
          }
        }
        T* o0 = C + i0 * ldc + j0;
        T* rowsC[4] = {o0, o0 + ldc, o0 + 2 * ldc, o0 + 3 * ldc};
        const T* cs[4] = {c0, c1, c2, c3};
        for (int r = 0; r < 4; r++)
          for (int j = 0; j < 8; j++) rowsC[r][j] = accumulate ? rowsC[r][j] + cs[r][j] : cs[r][j];
      }
    }
    for (; i0 < m; i0++) {  // remaining rows (and the ragged last column block)
      T c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      const T* a = A + i0 * lda;
      for (int64_t p = 0; p < k; p++) {
        const T* b = B + p * ldb + j0;
        const T x = a[p];
        for (int64_t j = 0; j < nb; j++) c[j] += x * b[j];
      }
      T* o = C + i0 * ldc + j0;
      for (int64_t j = 0; j < nb; j++) o[j] = accumulate ? o[j] + c[j] : c[j];
    }
  }
}

// out[c x r] = in[r x c]^T (leading dimensions ldi >= c, ldo >= r).
template <typename T>
inline void transpose(const T* in, int64_t r, int64_t c, int64_t ldi, T* out, int64_t ldo) {
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++) out[j * ldo + i] = in[i * ldi + j];
}

}  // namespace cpu
}  // namespace kvt
