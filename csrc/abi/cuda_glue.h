// Glue between the C ABI layer and the CUDA launchers (builds with CUDA only).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "../cuda/kvt_cuda.h"
#include "kvt_internal.h"

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

}  // namespace kvt

#define KVT_CUDA_TRY(expr)                                                      \
  do {                                                                          \
    cudaError_t _e = (expr);                                                    \
    if (_e != cudaSuccess) return ::kvt::cuda_status(_e, #expr);                \
  } while (0)
