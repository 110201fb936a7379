// SnapKV math shared by the CPU backend (csrc/cpu/snapkv.cc) and the CUDA kernels (cuda/snapkv.cu) (docs/methods/grkv.md
// docs/methods/snapkv.md §3.1, kvpress SnapKVPress): the pooling of the window-mean attention along the prefix, in a fixed summation order.
#pragma once

#include "math/common.h"

namespace kvt {
namespace snap {

// Non-finite inputs (docs/methods/snapkv.md §7): a logit scale·q·k that is not finite (a NaN or ±Infinity in a window
// query or a key, or an overflow) is taken as +Infinity, so the log-sum-exp of its query is NaN and every prefix
// score of the KV head becomes NaN (a -Infinity logit would otherwise drop out of the softmax silently).
KVT_HD float logit_or_inf(float l) { return finite_f(l) ? l : INFINITY; }

// Pooled value at prefix position i of row `x` (length L), kernel k (odd), stride 1, padding k/2.
// avg: zero padding counted (count_include_pad); max: padding ignored, NaN propagates. Fixed summation order
// (ascending).
KVT_HD float pool_at(const float* x, int64_t xs, int64_t L, int64_t i, int k, bool max_pool) {
  const int64_t p = k / 2;
  const int64_t lo = i - p < 0 ? 0 : i - p, hi = i + p >= L ? L - 1 : i + p;
  if (max_pool) {
    float m = -INFINITY;
    for (int64_t q = lo; q <= hi; q++) {
      const float v = x[q * xs];
      m = v != v ? v : fmaxf(m, v);  // fmaxf would drop a NaN
      if (m != m) break;
    }
    return m;
  }
  float s = 0.0f;
  for (int64_t q = lo; q <= hi; q++) s = fadd(s, x[q * xs]);
  return s / float(k);
}

}  // namespace snap
}  // namespace kvt
