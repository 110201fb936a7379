// Small dense fp32 matrix products for the CPU backend (GRKV): row-major, explicit leading dimensions, a 4x8
// register tile the compiler vectorises. Accumulation is in fp32 like the CUDA kernels.
#pragma once

#include <stdint.h>

#include <algorithm>
#include <cstring>

namespace kvt {
namespace cpu {

// C[m x n] = A[m x k] * B[k x n]  (accumulate: C += ...). T = float or double. Register tile: 4 rows x 2 vectors
// of 32 bytes (GCC vector extensions: one AVX register each, or two SSE registers in the baseline build).
template <typename T>
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline void gemm_nn_body(int64_t m, int64_t n, int64_t k, const T* __restrict__ A, int64_t lda, const T* __restrict__ B,
                         int64_t ldb, T* __restrict__ C, int64_t ldc, bool accumulate) {
  typedef T vec __attribute__((vector_size(32)));
  constexpr int64_t L = int64_t(32 / sizeof(T)), NB = 2 * L;
#define KVT_VLOAD(v, p) std::memcpy(&(v), (p), sizeof(vec))
#define KVT_VSTORE(p, v)                  \
  do {                                    \
    vec t_ = (v);                         \
    if (accumulate) {                     \
      vec o_;                             \
      KVT_VLOAD(o_, (p));                 \
      t_ += o_;                           \
    }                                     \
    std::memcpy((p), &t_, sizeof(vec));   \
  } while (0)
  int64_t j0 = 0;
  for (; j0 + NB <= n; j0 += NB) {
    int64_t i0 = 0;
    for (; i0 + 4 <= m; i0 += 4) {
      vec c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {};
      const T* a0 = A + i0 * lda;
      const T* a1 = a0 + lda;
      const T* a2 = a1 + lda;
      const T* a3 = a2 + lda;
      for (int64_t p = 0; p < k; p++) {
        vec b0, b1;
        KVT_VLOAD(b0, B + p * ldb + j0);
        KVT_VLOAD(b1, B + p * ldb + j0 + L);
        const T x0 = a0[p], x1 = a1[p], x2 = a2[p], x3 = a3[p];
        c00 += x0 * b0;
        c01 += x0 * b1;
        c10 += x1 * b0;
        c11 += x1 * b1;
        c20 += x2 * b0;
        c21 += x2 * b1;
        c30 += x3 * b0;
        c31 += x3 * b1;
      }
      T* o = C + i0 * ldc + j0;
      KVT_VSTORE(o, c00);
      KVT_VSTORE(o + L, c01);
      KVT_VSTORE(o + ldc, c10);
      KVT_VSTORE(o + ldc + L, c11);
      KVT_VSTORE(o + 2 * ldc, c20);
      KVT_VSTORE(o + 2 * ldc + L, c21);
      KVT_VSTORE(o + 3 * ldc, c30);
      KVT_VSTORE(o + 3 * ldc + L, c31);
    }
    for (; i0 < m; i0++) {
      vec c0 = {}, c1 = {};
      const T* a = A + i0 * lda;
      for (int64_t p = 0; p < k; p++) {
        vec b0, b1;
        KVT_VLOAD(b0, B + p * ldb + j0);
        KVT_VLOAD(b1, B + p * ldb + j0 + L);
        c0 += a[p] * b0;
        c1 += a[p] * b1;
      }
      KVT_VSTORE(C + i0 * ldc + j0, c0);
      KVT_VSTORE(C + i0 * ldc + j0 + L, c1);
    }
  }
  if (j0 < n) {  // ragged last columns
    const int64_t nb = n - j0;
    for (int64_t i0 = 0; i0 < m; i0++) {
      T c[NB] = {};
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
#undef KVT_VLOAD
#undef KVT_VSTORE
}

// Entry points (csrc/cpu/gemm.cc): this body compiled per instruction-set level, picked at load time (csrc/cpu/simd.h).
void gemm_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
              int64_t ldc, bool accumulate);
void gemm_f64(int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb, double* C,
              int64_t ldc, bool accumulate);
inline void gemm_nn(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                    int64_t ldc, bool accumulate) {
  gemm_f32(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}
inline void gemm_nn(int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb,
                    double* C, int64_t ldc, bool accumulate) {
  gemm_f64(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

// out[c x r] = in[r x c]^T (leading dimensions ldi >= c, ldo >= r).
template <typename T>
inline void transpose(const T* in, int64_t r, int64_t c, int64_t ldi, T* out, int64_t ldo) {
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++) out[j * ldo + i] = in[i * ldi + j];
}

}  // namespace cpu
}  // namespace kvt
