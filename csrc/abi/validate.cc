// The checks of validate.h and the thread-local last error behind kvt_last_error.
#include "abi/validate.h"

#include <algorithm>
#include <sstream>

namespace kvt {
namespace {
thread_local std::string g_last_error;
}

kvt_status fail(kvt_status st, const std::string& msg) {
  g_last_error = msg;
  return st;
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

bool View::contiguous() const {
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
  if (!t->data && ndim > 0) {
    bool empty = false;
    for (int i = 0; i < ndim; i++) empty |= t->shape[i] == 0;
    if (!empty) return fail(KVT_ERR_TYPE, std::string(name) + ": data pointer is NULL");
  }
  v->base = static_cast<char*>(t->data) + t->byte_offset;
  v->dtype = dt;
  v->ndim = ndim;
  v->device_type = t->device.device_type == KVT_DEVICE_CUDA ? KVT_DEVICE_CUDA : KVT_DEVICE_CPU;
  v->device_id = t->device.device_id;
  int64_t expect = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    if (t->shape[i] < 0) return fail(KVT_ERR_RANGE, std::string(name) + ": negative dimension in shape " + shape_str(t->shape, ndim));
    v->shape[i] = t->shape[i];
    v->stride[i] = t->strides ? t->strides[i] : expect;
    expect *= t->shape[i];
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

}  // namespace kvt

extern "C" const char* kvt_last_error(void) { return kvt::g_last_error.c_str(); }
