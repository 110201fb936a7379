// Dense SPD factor and solve on the CPU backend (fp32, cholesky.cc), used by spdSolve (cpu/spd.cc) and the GRKV value
// step (cpu/grkv_value.cc).
#pragma once

#include <stdint.h>

namespace kvt {
namespace cpu {

// In-place Cholesky of the n x n row-major matrix L (ld = n) whose lower triangle holds A + lambda*I. On success
// returns 0 and L's lower triangle holds the factor (the strict upper triangle is left as is). On failure returns
// k > 0, the order of the leading minor that is not positive definite, and stores its pivot in *pivot.
int64_t cholesky_inplace(float* L, int64_t n, float* pivot);

// Solves L L^T X = Y in place for Y [n, r] row-major (leading dimension ldy >= r), L from cholesky_inplace.
void cholesky_solve(const float* L, int64_t n, float* Y, int64_t r, int64_t ldy);

}  // namespace cpu
}  // namespace kvt
