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

// Prefetches row (a, b, :) of a paged view: a head's rows lie in page-sized pieces at unrelated addresses, which the
// hardware prefetcher does not follow from one piece to the next, so loops over paged rows ask for a row a page ahead.
constexpr int64_t kPrefetchRows = 16;
inline void prefetch_row(const View& v, int64_t a, int64_t b) {
  if (!v.pages || b >= v.shape[1]) return;
  const char* p = row_ptr(v, a, b);
  const int64_t bytes = v.shape[2] * v.stride[2] * dtype_size(v.dtype);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
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
// fn(h, i) for heads [h0, h1) and rows [i0, i1) in the order of w (blocks aligned to multiples of w.block).
template <typename F>
inline void walk_rows(const RowWalk& w, int64_t h0, int64_t h1, int64_t i0, int64_t i1, const F& fn) {
  for (int64_t b0 = i0; b0 < i1;) {
    const int64_t b1 = w.block >= i1 - b0 ? i1 : std::min(i1, (b0 / w.block + 1) * w.block);
    for (int64_t h = h0; h < h1; h++)
      for (int64_t i = b0; i < b1; i++) fn(h, i);
    b0 = b1;
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
