// SnapKV math shared by the CPU backend (csrc/cpu/snapkv.cc) and the CUDA kernels (cuda/snapkv.cu) (docs/methods/grkv.md
// docs/methods/snapkv.md §3.1, kvpress SnapKVPress): the pooling of the window-mean attention along the prefix, in a fixed summation order.
#pragma once

#include "math/common.h"

namespace kvt {
namespace snap {

// Pooled value at prefix position i of row `x` (length L), kernel k (odd), stride 1, padding k/2.
// avg: zero padding counted (count_include_pad); max: padding ignored. Fixed summation order (ascending).
KVT_HD float pool_at(const float* x, int64_t xs, int64_t L, int64_t i, int k, bool max_pool) {
  const int64_t p = k / 2;
  const int64_t lo = i - p < 0 ? 0 : i - p, hi = i + p >= L ? L - 1 : i + p;
  if (max_pool) {
    float m = -INFINITY;
    for (int64_t q = lo; q <= hi; q++) m = fmaxf(m, x[q * xs]);
    return m;
  }
  float s = 0.0f;
  for (int64_t q = lo; q <= hi; q++) s = fadd(s, x[q * xs]);
  return s / float(k);
}

}  // namespace snap
}  // namespace kvt
