// Row access helpers for the CPU backend: load a strided row of any float dtype into f32, and small reductions
// written so the compiler can vectorise them (independent partial sums).
#pragma once

#include <stdint.h>

#include <vector>

#include "abi/validate.h"
#include "math/batch.h"

namespace kvt {
namespace cpu {

// Pointer to element (a, b, 0) of a 3-D view, as bytes (through the page table of a paged sequence view).
inline char* row_ptr(const View& v, int64_t a, int64_t b) {
  if (v.pages)
    return v.base + (paged_slot_offset(v.pages, v.pages_stride, v.page_size, v.page_stride, v.stride[1], b) +
                     a * v.stride[0]) * dtype_size(v.dtype);
  return v.base + (a * v.stride[0] + b * v.stride[1]) * dtype_size(v.dtype);
}

// Loads row (a, b, :) of a 3-D float view as f32. Returns a pointer to the row: either straight into the tensor
// (f32 with unit stride; zero copy) or into `buf`.
inline const float* load_row(const View& v, int64_t a, int64_t b, std::vector<float>& buf) {
  const int64_t d = v.shape[2], s = v.stride[2];
  const char* p = row_ptr(v, a, b);
  if (v.dtype == kF32 && s == 1) return reinterpret_cast<const float*>(p);
  buf.resize(size_t(d));
  float* out = buf.data();
  switch (v.dtype) {
    case kF32: {
      const float* q = reinterpret_cast<const float*>(p);
      for (int64_t c = 0; c < d; c++) out[c] = q[c * s];
      break;
    }
    case kF16: {
      const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
      for (int64_t c = 0; c < d; c++) out[c] = f16_to_f32(q[c * s]);
      break;
    }
    default: {
      const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
      for (int64_t c = 0; c < d; c++) out[c] = bf16_to_f32(q[c * s]);
      break;
    }
  }
  return out;
}

inline float dot8(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

inline float sumsq8(const float* a, int64_t n) { return dot8(a, a, n); }

}  // namespace cpu
}  // namespace kvt
