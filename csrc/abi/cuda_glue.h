// Glue between the C ABI entry points and the CUDA launchers (builds with CUDA only): CUDA errors as kvt_status,
// the current device, and checked views as the launchers' tensor descriptors (cuda/launch.h).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "abi/moment_state.h"
#include "abi/validate.h"
#include "launch.h"

namespace kvt {

inline kvt_status cuda_status(cudaError_t e, const char* where) {
  if (e == cudaSuccess) return KVT_OK;
  return fail(KVT_ERR_CUDA, std::string(where) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline cudaError_t set_device(int id) {
  int cur = -1;
  cudaError_t e = cudaGetDevice(&cur);
  if (e != cudaSuccess) return e;
  return cur == id ? cudaSuccess : cudaSetDevice(id);
}

inline cuda::T3 t3(const View& v) {
  return cuda::T3{v.base, v.dtype, v.shape[0], v.shape[1], v.shape[2], v.stride[0], v.stride[1], v.stride[2]};
}
inline cuda::O3 o3(const View& v) {
  return cuda::O3{v.base, v.dtype, v.shape[0], v.shape[1], v.shape[2], v.stride[0], v.stride[1], v.stride[2]};
}
inline cuda::T2 t2(const View& v) {
  return cuda::T2{v.base, v.dtype, v.shape[0], v.ndim > 1 ? v.shape[1] : 1, v.stride[0], v.ndim > 1 ? v.stride[1] : 1};
}
// An f32 3-D view as the launchers' F3 (mutable pointer; inputs are only read).
inline cuda::F3 f3(const View& v) {
  return cuda::F3{v.ptr<float>(), v.shape[0], v.shape[1], v.shape[2], v.stride[0], v.stride[1], v.stride[2]};
}
// The moment state's four f32 buffers.
inline cuda::Moments cuda_moments(const MomentViews& m) {
  return cuda::Moments{m.n().ptr<float>(), m.mu_k().ptr<float>(), m.mu_v().ptr<float>(), m.m().ptr<float>()};
}

}  // namespace kvt

#define KVT_CUDA_TRY(expr)                                                      \
  do {                                                                          \
    cudaError_t _e = (expr);                                                    \
    if (_e != cudaSuccess) return ::kvt::cuda_status(_e, #expr);                \
  } while (0)
