// Runtime instruction-set dispatch of the CPU backend's hot loops (docs/performance.md §12): one binary holds every
// kernel of csrc/cpu/simd_body.h compiled for AVX-512 (x86-64-v4), AVX2 + FMA (x86-64-v3) and the baseline of the
// build (SSE2 on x86-64, NEON on arm64), through compiler target attributes on the same portable source (GCC/Clang
// vector extensions, no intrinsics). The level is picked once, when the library loads: the best the CPU has, or a
// lower one forced by KVTRIM_CPU_ISA=avx512|avx2|baseline.
#pragma once

#include <stdint.h>

namespace kvt {
namespace cpu {

struct SimdOps {
  const char* isa;  // "avx512", "avx2" or "baseline"
  int nr;           // columns per packed panel of the GEMM (pack_nt)
  // C[m x n] = alpha * A[m x k] * Bp, A row-major (lda), Bp = pack_nt of n rows of k (panels of nr columns, k-major,
  // the last one zero-padded), C row-major (ldc). Register-tiled micro-kernel; f32 accumulation.
  void (*gemm_packed)(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* Bp,
                      float* C, int64_t ldc);
  // C[m x n] = A[m x k] * B[k x n] (+= C when accumulate): the dense product of csrc/cpu/gemm.h.
  void (*gemm_nn_f32)(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb,
                      float* C, int64_t ldc, bool accumulate);
  void (*gemm_nn_f64)(int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb,
                      double* C, int64_t ldc, bool accumulate);
  // max(x[0..n)) (-inf for n = 0; NaN-free inputs)
  float (*max)(const float* x, int64_t n);
  // sum of exp(x[i] - m) over i < n (x[i] <= m), f32 lanes summed into a double
  double (*sum_exp)(const float* x, int64_t n, float m);
  // acc[i] += exp(x[i] - m) for i < n
  void (*acc_exp)(const float* x, int64_t n, float m, float* acc);
  // Several dot products against one row, and several scaled copies of one row added into accumulators (decode's
  // K and V passes over a head's G·T queries): out[q] = sum_j a[q * lda + j] * x[j] and acc[q * ldacc + j] += p[q] * x[j]
  // for q < nq, j < n. Sums run in lanes of the level's vector width, so their last bits depend on the level.
  void (*dots)(const float* a, int64_t lda, int64_t nq, const float* x, int64_t n, float* out);
  void (*axpys)(const float* p, int64_t nq, const float* x, int64_t n, float* acc, int64_t ldacc);
  // NestedKV's rows (csrc/cpu/nestedkv.cc). dotds: out[q] = sum x[j]·y[q][j] in double for q < ny (exact products;
  // the order of each sum is the level's, the same whatever ny). scale_finite: out = row · s in f32, false when an
  // element is not finite. fixed_add: acc[j] += to_fixed(x[j]) (math/nestedkv.h). window_step: B −= old (unless
  // null), A += kh, S = A + B in f32.
  void (*dotds)(const float* x, const float* const* y, int ny, int64_t n, double* out);
  bool (*scale_finite)(const float* row, int64_t n, float s, float* out);
  void (*fixed_add)(const float* x, int64_t n, int64_t* acc);
  void (*window_step)(float* A, float* B, const float* kh, const float* old, float* S, int64_t n);
  // The bench's FMA peak yardstick: `iters` rounds of independent multiply-add chains; *flops = the flops done.
  double (*fma_chains)(int64_t iters, double* flops);
};

// The kernels in use (chosen on first call; thread-safe).
const SimdOps& simd();
// The levels this CPU can run, best first (each one a valid KVTRIM_CPU_ISA value).
int simd_levels(const char** names, int cap);

// Packs rows [0, n) of a row source into the panels gemm_packed reads: Bp[(j / nr) * k * nr + p * nr + j % nr] =
// row(j)[p], zero for j >= n up to a multiple of nr. `row(j)` returns a pointer to k f32 values.
template <typename RowFn>
inline void pack_nt(int64_t n, int64_t k, int nr, RowFn row, float* Bp) {
  for (int64_t j0 = 0; j0 < n; j0 += nr) {
    float* panel = Bp + j0 * k;
    const int64_t w = n - j0 < nr ? n - j0 : nr;
    for (int64_t j = 0; j < w; j++) {
      const float* r = row(j0 + j);
      for (int64_t p = 0; p < k; p++) panel[p * nr + j] = r[p];
    }
    for (int64_t j = w; j < nr; j++)
      for (int64_t p = 0; p < k; p++) panel[p * nr + j] = 0.f;
  }
}

}  // namespace cpu
}  // namespace kvt
