// C ABI -> CUDA launcher glue of the GRKV family (builds with CUDA only).
#pragma once

#include "cuda_status.h"

namespace kvt {

// An f32 3-D view as the launchers' F3 (mutable pointer; inputs are only read).
inline cuda::F3 f3(const View& v) {
  return cuda::F3{v.ptr<float>(), v.shape[0], v.shape[1], v.shape[2], v.stride[0], v.stride[1], v.stride[2]};
}

}  // namespace kvt
