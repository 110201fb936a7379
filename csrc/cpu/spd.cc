// Batched SPD solves on the CPU backend (docs/performance.md §3): every system factored and solved in fp32
// (cpu/cholesky.h), the rows of a failing system set to NaN, and the first failure reported to the caller. The CUDA
// backend (cuda/spd.cu) runs one CTA per system with the packed factor in shared memory.
#include <algorithm>
#include <limits>
#include <vector>

#include "cpu/cholesky.h"
#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace kvt {
namespace cpu {

SpdFailure spd_solve(const View& a, const View& b, float lambda, const View& x, const View* info) {
  const int64_t B = a.shape[0], n = a.shape[1], r = b.shape[2];
  std::vector<int64_t> minor(static_cast<size_t>(B), 0);
  std::vector<float> pivots(static_cast<size_t>(B), 0.0f);
  parallel_for(B, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> L(static_cast<size_t>(n * n)), Y(static_cast<size_t>(n * r));
    for (int64_t s = lo; s < hi; s++) {
      const float* ap = a.ptr<float>() + s * a.stride[0];
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) L[size_t(i * n + j)] = ap[i * a.stride[1] + j * a.stride[2]];
      for (int64_t i = 0; i < n; i++) L[size_t(i * n + i)] += lambda;
      float piv = 0;
      const int64_t k = cholesky_inplace(L.data(), n, &piv);
      minor[size_t(s)] = k;
      pivots[size_t(s)] = piv;
      const float* bp = b.ptr<float>() + s * b.stride[0];
      if (k == 0) {
        for (int64_t i = 0; i < n; i++)
          for (int64_t c = 0; c < r; c++) Y[size_t(i * r + c)] = bp[i * b.stride[1] + c * b.stride[2]];
        cholesky_solve(L.data(), n, Y.data(), r, r);
      } else {
        std::fill(Y.begin(), Y.end(), std::numeric_limits<float>::quiet_NaN());
      }
      // A non-finite solution entry (a non-finite right-hand side reaches its whole column) is written as NaN, as on
      // CUDA (cuda/spd_device.cuh).
      float* xp = x.ptr<float>() + s * x.stride[0];
      for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < r; c++) {
          const float y = Y[size_t(i * r + c)];
          xp[i * x.stride[1] + c * x.stride[2]] = finite_f(y) ? y : std::numeric_limits<float>::quiet_NaN();
        }
      if (info) info->ptr<int32_t>()[s * info->stride[0]] = int32_t(k);
    }
  });
  SpdFailure f;
  for (int64_t s = 0; s < B; s++) {
    if (minor[size_t(s)]) {
      f.system = s;
      f.minor = minor[size_t(s)];
      f.pivot = pivots[size_t(s)];
      break;
    }
  }
  return f;
}

}  // namespace cpu
}  // namespace kvt
