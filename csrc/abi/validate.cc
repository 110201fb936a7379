// The checks of validate.h and the thread-local last error behind kvt_last_error.
#include "abi/validate.h"

#include <algorithm>
#include <exception>
#include <new>
#include <sstream>

namespace kvt {
namespace {
thread_local std::string g_last_error;
// Set instead of g_last_error when even the message could not be stored.
thread_local const char* g_fixed_error = nullptr;
}

kvt_status fail(kvt_status st, const std::string& msg) noexcept {
  try {
    g_last_error = msg;
    g_fixed_error = nullptr;
  } catch (...) {
    g_fixed_error = "out of memory while reporting an error";
  }
  return st;
}

kvt_status api_exception(const char* fn) noexcept {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return fail(KVT_ERR_MEMORY, std::string(fn) + ": out of memory (a scratch allocation failed)");
  } catch (const std::exception& e) {
    return fail(KVT_ERR_INTERNAL, std::string(fn) + ": internal error: " + e.what());
  } catch (...) {
    return fail(KVT_ERR_INTERNAL, std::string(fn) + ": internal error (unknown exception)");
  }
}

std::string shape_str(const int64_t* shape, int ndim) {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < ndim; i++) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

const char* dtype_name(int dt) {
  switch (dt) {
    case kF32: return "f32";
    case kF16: return "f16";
    case kBF16: return "bf16";
    case kI32: return "i32";
    default: return "?";
  }
}

kvt_status check_view(const char* name, int ndim, const int64_t* shape, const int64_t* strides, int elem_size,
                      ViewExtent* out) {
  *out = ViewExtent{};
  if (ndim < 0 || ndim > kMaxDims) {
    return fail(KVT_ERR_TYPE, std::string(name) + ": at most " + std::to_string(kMaxDims) + " dimensions, got " +
                                  std::to_string(ndim));
  }
  if (ndim > 0 && !shape) return fail(KVT_ERR_TYPE, std::string(name) + ": shape pointer is NULL");
  int64_t numel = 1, lo = 0, hi = 0, compact = 1;
  bool overflow = false;
  for (int i = ndim - 1; i >= 0; i--) {
    const int64_t n = shape[i];
    if (n < 0 || n > kMaxDim) {
      return fail(KVT_ERR_RANGE, std::string(name) + ": dimension " + std::to_string(i) + " is " + std::to_string(n) +
                                     ", must be in [0, 2^31 - 1] (shape " + shape_str(shape, ndim) + ")");
    }
    const int64_t s = strides ? strides[i] : compact;
    int64_t span = 0;
    if (n > 0) {
      overflow |= __builtin_mul_overflow(n - 1, s, &span);
      overflow |= span < 0 ? __builtin_add_overflow(lo, span, &lo) : __builtin_add_overflow(hi, span, &hi);
    }
    overflow |= __builtin_mul_overflow(numel, n, &numel);
    if (!strides) overflow |= __builtin_mul_overflow(compact, n, &compact);
  }
  int64_t blo = 0, bhi = 0, width = 0;
  if (!overflow) {
    overflow |= __builtin_sub_overflow(hi, lo, &width);
    overflow |= __builtin_mul_overflow(lo, int64_t(elem_size), &blo);
    overflow |= __builtin_add_overflow(hi, int64_t(1), &bhi) || __builtin_mul_overflow(bhi, int64_t(elem_size), &bhi);
  }
  if (overflow && numel != 0) {
    std::ostringstream os;
    os << name << ": the view (shape " << shape_str(shape, ndim);
    if (strides) os << ", strides " << shape_str(strides, ndim);
    os << ") reaches past 2^63 bytes (its size or extent overflows 64-bit arithmetic)";
    return fail(KVT_ERR_RANGE, os.str());
  }
  if (numel == 0) return KVT_OK;  // nothing is addressed, whatever the strides
  out->numel = numel;
  out->lo = lo;
  out->hi = hi;
  if (numel > out->span() && numel > kMaxRepeatedElements) {
    std::ostringstream os;
    os << name << ": the view (shape " << shape_str(shape, ndim) << ", strides "
       << (strides ? shape_str(strides, ndim) : std::string("compact")) << ") names "
       << numel << " elements but spans only " << out->span()
       << " (a zero or overlapping stride repeats elements); such views are limited to " << kMaxRepeatedElements
       << " elements";
    return fail(KVT_ERR_RANGE, os.str());
  }
  return KVT_OK;
}

void View::byte_extent(int64_t* lo, int64_t* hi) const {
  int64_t l = 0, h = 0;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] == 0) {
      *lo = *hi = 0;
      return;
    }
    int64_t span = (shape[i] - 1) * stride[i];
    if (span < 0) l += span; else h += span;
  }
  int64_t es = dtype_size(dtype);
  *lo = l * es;
  *hi = (h + 1) * es;
}

double View::span_bytes() const {
  int64_t lo, hi;
  byte_extent(&lo, &hi);
  return double(hi) - double(lo);
}

bool View::contiguous() const {
  for (int i = 0; i < ndim; i++)
    if (shape[i] == 0) return true;  // nothing to lay out
  int64_t expect = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    if (shape[i] != 1 && stride[i] != expect) return false;
    expect *= shape[i];
  }
  return true;
}

static int decode_dtype(const kvt_dtype& d) {
  if (d.lanes != 1) return -1;
  if (d.code == KVT_DTYPE_FLOAT && d.bits == 32) return kF32;
  if (d.code == KVT_DTYPE_FLOAT && d.bits == 16) return kF16;
  if (d.code == KVT_DTYPE_BFLOAT && d.bits == 16) return kBF16;
  if (d.code == KVT_DTYPE_INT && d.bits == 32) return kI32;
  return -1;
}

static std::string mask_names(uint32_t mask) {
  std::string s;
  for (int dt = 0; dt < 4; dt++) {
    if (mask & (1u << dt)) {
      if (!s.empty()) s += " | ";
      s += dtype_name(dt);
    }
  }
  return s;
}

kvt_status check_tensor(const kvt_tensor* t, const char* name, int ndim, uint32_t dtype_mask, const char* dims,
                        View* v) {
  if (!t) return fail(KVT_ERR_TYPE, std::string(name) + ": missing tensor");
  if (t->ndim != ndim) {
    std::ostringstream os;
    os << name << ": expected a " << ndim << "-D tensor " << dims << ", got " << t->ndim << "-D";
    return fail(KVT_ERR_TYPE, os.str());
  }
  int dt = decode_dtype(t->dtype);
  if (dt < 0 || !(dtype_mask & (1u << dt))) {
    std::ostringstream os;
    os << name << ": expected dtype " << mask_names(dtype_mask) << ", got "
       << (dt < 0 ? std::string("an unsupported dtype") : std::string(dtype_name(dt)));
    return fail(KVT_ERR_TYPE, os.str());
  }
  if (t->device.device_type != KVT_DEVICE_CPU && t->device.device_type != KVT_DEVICE_CUDA &&
      t->device.device_type != KVT_DEVICE_CUDA_HOST)
    return fail(KVT_ERR_TYPE, std::string(name) + ": unsupported device type");
  ViewExtent ext;
  KVT_TRY(check_view(name, ndim, t->shape, t->strides, dtype_size(dt), &ext));
  // Address arithmetic in uintptr_t, checked: data + byte_offset + [lo, hi) bytes must not wrap.
  const uintptr_t data = reinterpret_cast<uintptr_t>(t->data);
  uintptr_t base = 0;
  if (__builtin_add_overflow(data, t->byte_offset, &base) || t->byte_offset > uint64_t(INT64_MAX))
    return fail(KVT_ERR_RANGE, std::string(name) + ": byte_offset " + std::to_string(t->byte_offset) +
                                   " overflows the address space");
  if (!ext.empty()) {
    if (!t->data) return fail(KVT_ERR_TYPE, std::string(name) + ": data pointer is NULL");
    const int64_t es = dtype_size(dt);
    const uint64_t below = uint64_t(-ext.lo) * uint64_t(es), above = (uint64_t(ext.hi) + 1) * uint64_t(es);
    uintptr_t end = 0;
    if (below > base || __builtin_add_overflow(base, above, &end))
      return fail(KVT_ERR_RANGE, std::string(name) + ": the view's address range wraps around the address space (data " +
                                     "pointer, byte_offset and strides do not describe memory)");
  }
  v->base = reinterpret_cast<char*>(base);
  v->dtype = dt;
  v->ndim = ndim;
  v->device_type = t->device.device_type == KVT_DEVICE_CUDA ? KVT_DEVICE_CUDA : KVT_DEVICE_CPU;
  v->device_id = t->device.device_id;
  // An empty view addresses nothing, whatever its strides: they become 0, so that no address a kernel computes for
  // it (for its other, non-empty dimensions) can leave the base.
  int64_t compact = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    v->shape[i] = t->shape[i];
    v->stride[i] = ext.empty() ? 0 : t->strides ? t->strides[i] : compact;
    compact = ext.empty() ? 0 : compact * t->shape[i];  // cannot overflow: numel fits
  }
  return check_backend(*v, name);
}

kvt_status check_dim(const View& v, const char* name, int dim, int64_t expect, const char* what) {
  if (v.shape[dim] != expect) {
    std::ostringstream os;
    os << name << ": dimension " << dim << " must equal " << what << " (" << expect << "), got shape "
       << shape_str(v.shape, v.ndim);
    return fail(KVT_ERR_RANGE, os.str());
  }
  return KVT_OK;
}

kvt_status check_same_device(const View& ref, const char* ref_name, const View& v, const char* name) {
  if (ref.device_type != v.device_type || (ref.on_cuda() && ref.device_id != v.device_id)) {
    std::ostringstream os;
    auto dev = [](const View& x) {
      return x.on_cuda() ? std::string("cuda:") + std::to_string(x.device_id) : std::string("cpu");
    };
    os << name << ": must be on the same device as " << ref_name << " (" << dev(ref) << "), got " << dev(v);
    return fail(KVT_ERR_TYPE, os.str());
  }
  return KVT_OK;
}

kvt_status check_distinct(const View& v, const char* name) {
  for (int i = 0; i < v.ndim; i++)
    if (v.shape[i] == 0) return KVT_OK;  // no element at all
  // Dimensions longer than 1, by |stride|: each stride must step past everything the smaller ones reach.
  int dims[4], n = 0;
  for (int i = 0; i < v.ndim && i < 4; i++) {
    if (v.shape[i] <= 1) continue;
    int k = n++;  // insertion by |stride|
    for (; k > 0 && std::llabs(v.stride[dims[k - 1]]) > std::llabs(v.stride[i]); k--) dims[k] = dims[k - 1];
    dims[k] = i;
  }
  int64_t reach = 0;  // elements spanned by the dimensions so far, minus one
  for (int k = 0; k < n; k++) {
    const int64_t s = std::llabs(v.stride[dims[k]]);
    if (s <= reach) {
      return fail(KVT_ERR_RANGE, std::string(name) + ": its elements overlap (strides " + shape_str(v.stride, v.ndim) +
                                     " for shape " + shape_str(v.shape, v.ndim) +
                                     "); an output needs one memory location per element");
    }
    reach += (v.shape[dims[k]] - 1) * s;  // bounded by the view's extent
  }
  return KVT_OK;
}

kvt_status check_no_overlap(const View& a, const char* an, const View& b, const char* bn) {
  if (a.device_type != b.device_type) return KVT_OK;
  int64_t alo, ahi, blo, bhi;
  a.byte_extent(&alo, &ahi);
  b.byte_extent(&blo, &bhi);
  if (ahi == alo || bhi == blo) return KVT_OK;
  uintptr_t a0 = uintptr_t(a.base) + alo, a1 = uintptr_t(a.base) + ahi;
  uintptr_t b0 = uintptr_t(b.base) + blo, b1 = uintptr_t(b.base) + bhi;
  if (a0 < b1 && b0 < a1)
    return fail(KVT_ERR_RANGE, std::string(an) + ": must not overlap " + bn + " (the op is out of place)");
  return KVT_OK;
}

kvt_status check_backend(const View& v, const char* name) {
#if !defined(KVT_WITH_CUDA)
  if (v.on_cuda())
    return fail(KVT_ERR_UNSUPPORTED, std::string(name) + ": is a CUDA tensor but this kvtrim build has no CUDA support");
#else
  (void)v;
  (void)name;
#endif
  return KVT_OK;
}

kvt_status check_range(double v, double lo, double hi, const char* name) {
  if (!(v >= lo && v <= hi)) {
    std::ostringstream os;
    os << name << ": must be in [" << lo << ", " << hi << "], got " << v;
    return fail(KVT_ERR_RANGE, os.str());
  }
  return KVT_OK;
}

kvt_status check_scratch(double bytes, double arg_bytes, const char* name, const char* op, const char* what) {
  const double limit = std::max(kMaxScratchBytes, kScratchPerArgByte * arg_bytes);
  if (bytes <= limit) return KVT_OK;
  std::ostringstream os;
  os.precision(3);
  os << name << ": " << op << " would need " << bytes / 1073741824.0 << " GiB of scratch memory on the CPU backend ("
     << what << "), above its limit of " << limit / 1073741824.0 << " GiB for this call (the larger of 4 GiB and "
     << kScratchPerArgByte << " times the bytes of the tensor arguments)";
  return fail(KVT_ERR_RANGE, os.str());
}

}  // namespace kvt

extern "C" const char* kvt_last_error(void) {
  return kvt::g_fixed_error ? kvt::g_fixed_error : kvt::g_last_error.c_str();
}

extern "C" kvt_status kvt_tensor_extent(const kvt_tensor* t, const char* name, int64_t* lo, int64_t* hi) try {
  using namespace kvt;
  if (!name) name = "tensor";
  if (!t || !lo || !hi) return fail(KVT_ERR_TYPE, std::string(name) + ": missing tensor or output pointer");
  const int dt = decode_dtype(t->dtype);
  if (dt < 0) return fail(KVT_ERR_TYPE, std::string(name) + ": unsupported dtype");
  ViewExtent ext;
  KVT_TRY(check_view(name, t->ndim, t->shape, t->strides, dtype_size(dt), &ext));
  *lo = *hi = 0;
  if (ext.empty()) return KVT_OK;
  const int64_t es = dtype_size(dt);
  int64_t off = 0, a = 0, b = 0;
  if (t->byte_offset > uint64_t(INT64_MAX) || __builtin_add_overflow(int64_t(t->byte_offset), ext.lo * es, &a) ||
      __builtin_mul_overflow(ext.hi + 1, es, &off) || __builtin_add_overflow(int64_t(t->byte_offset), off, &b))
    return fail(KVT_ERR_RANGE, std::string(name) + ": byte_offset " + std::to_string(t->byte_offset) +
                                   " puts the view past 2^63 bytes");
  *lo = a;
  *hi = b;
  return KVT_OK;
}
KVT_API_CATCH
