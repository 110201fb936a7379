// GEMM entry points of the CPU backend (see gemm.h): the body of gemm.h compiled per instruction-set level in
// csrc/cpu/simd.cc and picked at load time (csrc/cpu/simd.h, KVTRIM_CPU_ISA).
#include "cpu/gemm.h"

#include "cpu/simd.h"

namespace kvt {
namespace cpu {

void gemm_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
              int64_t ldc, bool accumulate) {
  simd().gemm_nn_f32(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

void gemm_f64(int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb, double* C,
              int64_t ldc, bool accumulate) {
  simd().gemm_nn_f64(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace cpu
}  // namespace kvt
