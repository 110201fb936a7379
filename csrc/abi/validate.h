// Argument validation of the C ABI entry points (csrc/abi/<op>.cc): checked strided views of kvt_tensor arguments,
// checks whose errors name the argument, and the thread-local last error. Not part of the public ABI.
#pragma once

#include <stdint.h>

#include <string>

#include "kvtrim.h"
#include "math/common.h"

namespace kvt {

// Sets the thread-local error message and returns `st`.
kvt_status fail(kvt_status st, const std::string& msg);
std::string shape_str(const int64_t* shape, int ndim);
const char* dtype_name(int dt);

// A checked view of a kvt_tensor with at most 4 dims: element strides, base pointer already offset.
struct View {
  char* base = nullptr;  // data + byte_offset
  int dtype = kF32;
  int ndim = 0;
  int64_t shape[4] = {1, 1, 1, 1};
  int64_t stride[4] = {0, 0, 0, 0};
  int device_type = KVT_DEVICE_CPU;
  int device_id = 0;
  // A sequence of a paged cache (abi/batch.h): row b of dim 1 lives at slot b % page_size of page
  // pages[(b / page_size) * pages_stride], pages `page_stride` elements apart; stride[1] is then the slot stride.
  const int32_t* pages = nullptr;
  int64_t pages_stride = 1, page_size = 0, page_stride = 0;

  bool on_cuda() const { return device_type == KVT_DEVICE_CUDA; }
  template <typename T>
  T* ptr() const {
    return reinterpret_cast<T*>(base);
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
  }
  // Lowest and one-past-highest byte touched, relative to base (negative strides allowed).
  void byte_extent(int64_t* lo, int64_t* hi) const;
  bool contiguous() const;
};

constexpr uint32_t kMaskF32 = 1u << kF32;
constexpr uint32_t kMaskFloat = (1u << kF32) | (1u << kF16) | (1u << kBF16);
constexpr uint32_t kMaskI32 = 1u << kI32;

// Checks rank and dtype of `t` and fills `v`. `dims` names the expected dims for messages, e.g. "[H, N, d]".
kvt_status check_tensor(const kvt_tensor* t, const char* name, int ndim, uint32_t dtype_mask, const char* dims,
                        View* v);
// Requires `v.shape[dim] == expect` (RangeError otherwise).
kvt_status check_dim(const View& v, const char* name, int dim, int64_t expect, const char* what);
// Requires all views on the same device as `ref`.
kvt_status check_same_device(const View& ref, const char* ref_name, const View& v, const char* name);
// Requires the byte ranges of two views not to overlap (out-of-place ops).
kvt_status check_no_overlap(const View& a, const char* an, const View& b, const char* bn);
// Rejects CUDA tensors in a build without CUDA, and host tensors when `cuda` is required.
kvt_status check_backend(const View& v, const char* name);

// Common prologue for float option checks.
kvt_status check_range(double v, double lo, double hi, const char* name);

}  // namespace kvt

#define KVT_TRY(expr)                        \
  do {                                       \
    kvt_status _st = (expr);                 \
    if (_st != KVT_OK) return _st;           \
  } while (0)
