// Row access helpers for the CPU backend: load a strided row of any float dtype into f32, and small reductions
// written so the compiler can vectorise them (independent partial sums).
#pragma once

#include <stdint.h>

#include <algorithm>
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

// Loads the row of a 3-D float view `v` that starts at `p` as f32. Returns a pointer to the row: either `p` itself
// (f32 with unit stride; zero copy) or `buf`.
inline const float* load_row_at(const View& v, const char* p, std::vector<float>& buf) {
  const int64_t d = v.shape[2], s = v.stride[2];
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
// Loads row (a, b, :) of a 3-D float view as f32 (see load_row_at).
inline const float* load_row(const View& v, int64_t a, int64_t b, std::vector<float>& buf) {
  return load_row_at(v, row_ptr(v, a, b), buf);
}

// The order a pass over a [H, N, d] view visits its rows in. A contiguous head-major view is read one head at a time
// (one head per task). Where the heads are interleaved token by token (token-major storage: the rows of a ragged
// batch, NHD pages, an NHD tensor viewed as [H, N, d]) one head's consecutive rows lie H·d elements apart, so walking
// one head touches a new 4 KB page per row (no hardware prefetch, a TLB miss each): such a view is read token by token
// across all heads. HND pages hold [H, page, d] blocks: read page by page across all heads. Every head's rows are
// still visited in ascending order, so per-head arithmetic (and its bits) does not depend on the order.
struct RowWalk {
  bool all_heads;  // a task covers every head of its rows
  int64_t block;   // rows visited per head before moving to the next head
};
inline RowWalk row_walk(const View& v) {
  const int64_t s0 = v.stride[0] < 0 ? -v.stride[0] : v.stride[0], s1 = v.stride[1] < 0 ? -v.stride[1] : v.stride[1];
  if (v.shape[0] > 1 && s0 < s1) return {true, 1};
  if (v.shape[0] > 1 && v.pages) return {true, v.page_size};
  return {false, INT64_MAX};
}
// fn(h, i, p) for heads [h0, h1) and rows [i0, i1) of v in the order of w (blocks aligned to multiples of w.block),
// p = the bytes of row (h, i). The page table is read once per page, not once per row: rows of one page lie at
// fixed strides from the page's first row.
template <typename F>
inline void walk_rows(const View& v, const RowWalk& w, int64_t h0, int64_t h1, int64_t i0, int64_t i1, const F& fn) {
  const int64_t es = dtype_size(v.dtype), hs = v.stride[0] * es, rs = v.stride[1] * es;
  for (int64_t s0 = i0; s0 < i1;) {
    // a run of rows at fixed strides from one base: one page of a paged view, every row otherwise
    const int64_t s1 = v.pages ? std::min(i1, (s0 / v.page_size + 1) * v.page_size) : i1;
    const char* base = row_ptr(v, 0, s0);
    for (int64_t b0 = s0; b0 < s1;) {
      const int64_t b1 = w.block >= s1 - b0 ? s1 : std::min(s1, (b0 / w.block + 1) * w.block);
      for (int64_t h = h0; h < h1; h++)
        for (int64_t i = b0; i < b1; i++) fn(h, i, base + h * hs + (i - s0) * rs);
      b0 = b1;
    }
    s0 = s1;
  }
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
