// Dispatch of row kernels over dtype, vector width V and register steps (FlashInfer-style: the combinatorics
// live here, kernels are templates on compile-time constants).
#pragma once

#include "common.cuh"

namespace kvt {
namespace cuda {

// Largest head dim the CUDA kernels accept (the generic path keeps per-warp rows in shared memory).
constexpr int64_t kMaxHeadDim = 1024;

// Calls f.template run<DT, V, STEPS>() with V*STEPS <= 8 caching the row in registers (d <= 256), or STEPS =
// LargeSteps for larger d (V = 1; 0 = the generic looped path, otherwise per-thread arrays of that many steps).
template <int DT, int LargeSteps, typename F>
cudaError_t dispatch_vs(int vec, int64_t d, const F& f) {
  if (d > 256) return f.template run<DT, 1, LargeSteps>();
  if constexpr (DT != kF32) {
    if (vec >= 8 && d > 128) return f.template run<DT, 8, 1>();
  }
  if (vec >= 4 && d > 64) return d <= 128 ? f.template run<DT, 4, 1>() : f.template run<DT, 4, 2>();
  if (vec >= 2 && d > 32) {
    if (d <= 64) return f.template run<DT, 2, 1>();
    return d <= 128 ? f.template run<DT, 2, 2>() : f.template run<DT, 2, 4>();
  }
  const int64_t steps = ceil_div(d, kWarp);
  if (steps == 1) return f.template run<DT, 1, 1>();
  if (steps == 2) return f.template run<DT, 1, 2>();
  if (steps <= 4) return f.template run<DT, 1, 4>();
  return f.template run<DT, 1, 8>();
}

// dtype / vector width / register steps of rows of d elements with vector width `vec`.
template <int LargeSteps = 0, typename F>
cudaError_t dispatch_vec(int dtype, int vec, int64_t d, const F& f) {
  switch (dtype) {
    case kF32: return dispatch_vs<kF32, LargeSteps>(vec > 4 ? 4 : vec, d, f);
    case kF16: return dispatch_vs<kF16, LargeSteps>(vec, d, f);
    case kBF16: return dispatch_vs<kBF16, LargeSteps>(vec, d, f);
    default: return cudaErrorInvalidValue;
  }
}

// dtype / vector width / register steps of a [H, N, d] row tensor.
template <int LargeSteps = 0, typename F>
cudaError_t dispatch_rows(const T3& t, const F& f) {
  return dispatch_vec<LargeSteps>(t.dtype, row_vec_width(t), t.n2, f);
}

}  // namespace cuda
}  // namespace kvt
