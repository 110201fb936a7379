// Multi-versioned GEMM entry points of the CPU backend (see gemm.h): the same source compiled for AVX2+FMA and for the
// x86-64 baseline, selected once at load time (GCC/Clang target_clones, an ifunc on glibc).
#include "cpu/gemm.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define KVT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KVT_CLONES
#endif

namespace kvt {
namespace cpu {

KVT_CLONES void gemm_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb,
                         float* C, int64_t ldc, bool accumulate) {
  gemm_nn_body<float>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

KVT_CLONES void gemm_f64(int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb,
                         double* C, int64_t ldc, bool accumulate) {
  gemm_nn_body<double>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace cpu
}  // namespace kvt
