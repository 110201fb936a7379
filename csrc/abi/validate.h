// Argument validation of the C ABI entry points (csrc/abi/<op>.cc): checked strided views of kvt_tensor arguments,
// checks whose errors name the argument, and the thread-local last error. Not part of the public ABI.
#pragma once

#include <stdint.h>

#include <string>

#include "kvtrim.h"
#include "math/common.h"

namespace kvt {

// ---- Limits of every tensor argument (README "Errors": the documented limits) --------------------------------------
// At most 4 dimensions, each < 2^31 (positions and counts are i32).
constexpr int kMaxDims = 4;
constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;
// A view that names more elements than the memory it spans (a zero stride on a dimension longer than 1, or strides
// that overlap: broadcasting) may name at most this many: its logical size would otherwise be unbounded by any buffer,
// and the work and scratch memory of an op grow with logical sizes.
constexpr int64_t kMaxRepeatedElements = int64_t(1) << 14;
// Scratch memory the CPU backend may allocate for one call (checked before the op starts): this much, or
// kScratchPerArgByte times the bytes spanned by the call's main tensor arguments, whichever is larger.
constexpr double kMaxScratchBytes = 4294967296.0;  // 4 GiB
constexpr double kScratchPerArgByte = 16.0;

// Sets the thread-local error message and returns `st`. Never throws (a failed allocation of the message keeps a
// fixed one).
kvt_status fail(kvt_status st, const std::string& msg) noexcept;
std::string shape_str(const int64_t* shape, int ndim);
const char* dtype_name(int dt);

// The overflow-checked geometry of a strided view, in elements relative to its first element: numel = prod(shape),
// the lowest and highest element offsets reached (negative strides allowed). Empty views: numel 0, lo = hi = 0.
struct ViewExtent {
  int64_t numel = 0;
  int64_t lo = 0, hi = 0;
  bool empty() const { return numel == 0; }
  // Elements of the memory range [lo, hi] (1 + hi - lo; 0 when empty).
  int64_t span() const { return numel == 0 ? 0 : hi - lo + 1; }
};

// Checks shape and strides (NULL = compact row-major) of an `ndim`-D view and computes its extent: dimensions in
// [0, kMaxDim], every product and sum computed with overflow checks (an extent that does not fit in int64 bytes is
// rejected), and the repeated-element limit. Errors name `name`. The one check of a view's arithmetic: check_tensor
// uses it, and so can any entry point that takes views in another form (e.g. pages of a cache).
kvt_status check_view(const char* name, int ndim, const int64_t* shape, const int64_t* strides, int elem_size,
                      ViewExtent* out);

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
  // Lowest and one-past-highest byte touched, relative to base (negative strides allowed). Cannot overflow for a view
  // that check_tensor accepted (or a sub-view of one).
  void byte_extent(int64_t* lo, int64_t* hi) const;
  bool contiguous() const;
  // Bytes of the memory range it spans (0 when empty).
  double span_bytes() const;
};

constexpr uint32_t kMaskF32 = 1u << kF32;
constexpr uint32_t kMaskFloat = (1u << kF32) | (1u << kF16) | (1u << kBF16);
constexpr uint32_t kMaskI32 = 1u << kI32;

// Checks rank, dtype, device, shape, strides (check_view) and the address arithmetic of `t` (data + byte_offset +
// extent must not wrap) and fills `v`. `dims` names the expected dims for messages, e.g. "[H, N, d]".
kvt_status check_tensor(const kvt_tensor* t, const char* name, int ndim, uint32_t dtype_mask, const char* dims,
                        View* v);
// Requires `v.shape[dim] == expect` (RangeError otherwise).
kvt_status check_dim(const View& v, const char* name, int dim, int64_t expect, const char* what);
// Requires all views on the same device as `ref`.
kvt_status check_same_device(const View& ref, const char* ref_name, const View& v, const char* name);
// Requires an output to have one memory location per element (no zero stride on a dimension longer than 1, no
// interleaved strides): a sufficient test, by strides sorted by magnitude.
kvt_status check_distinct(const View& v, const char* name);
// Requires the byte ranges of two views not to overlap (out-of-place ops).
kvt_status check_no_overlap(const View& a, const char* an, const View& b, const char* bn);
// Rejects CUDA tensors in a build without CUDA, and host tensors when `cuda` is required.
kvt_status check_backend(const View& v, const char* name);

// Common prologue for float option checks.
kvt_status check_range(double v, double lo, double hi, const char* name);

// CPU backend: the scratch memory an op needs for these shapes (`bytes`, estimated in double so it cannot overflow)
// must stay within max(kMaxScratchBytes, kScratchPerArgByte * arg_bytes), arg_bytes = the span_bytes() of its main
// tensor arguments. `name` is the argument whose size drives it, `what` says what is allocated.
kvt_status check_scratch(double bytes, double arg_bytes, const char* name, const char* op, const char* what);

// Turns the exception being handled into a kvt_status (std::bad_alloc -> KVT_ERR_MEMORY, anything else ->
// KVT_ERR_INTERNAL) naming the entry point `fn`. Used by KVT_API_CATCH; never throws.
kvt_status api_exception(const char* fn) noexcept;

}  // namespace kvt

// Every C ABI entry point is a function-try-block ending in KVT_API_CATCH: no C++ exception crosses the C ABI.
//   extern "C" kvt_status kvt_op(...) try { ... } KVT_API_CATCH
#define KVT_API_CATCH \
  catch (...) {        \
    return ::kvt::api_exception(__func__); \
  }

#define KVT_TRY(expr)                        \
  do {                                       \
    kvt_status _st = (expr);                 \
    if (_st != KVT_OK) return _st;           \
  } while (0)
