// The shared argument handling of the bindings (glue.h): JS exceptions from kvt_status, option objects, streams,
// tensor descriptors checked against their JS buffers, moment states.
#include "glue.h"

#include <sstream>
#include <string>

#include "native_buffer.h"

namespace kvt {
namespace napi {

// "[a, b, c]", the way the C ABI prints shapes in its messages.
static std::string dims_str(const int64_t* v, int n) {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < n; i++) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

void throw_coded(Napi::Env env, const std::string& msg, const char* code) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

void throw_status(Napi::Env env, kvt_status st) {
  std::string msg = kvt_last_error();
  switch (st) {
    case KVT_ERR_TYPE: throw Napi::TypeError::New(env, msg);
    case KVT_ERR_RANGE: throw Napi::RangeError::New(env, msg);
    case KVT_ERR_CUDA: throw_coded(env, msg, "ERR_KVTRIM_CUDA");
    case KVT_ERR_UNSUPPORTED: throw_coded(env, msg, "ERR_KVTRIM_UNSUPPORTED");
    default: throw_coded(env, msg.empty() ? "internal error" : msg, "ERR_KVTRIM_INTERNAL");
  }
}

int32_t get_int(const Napi::Object& o, const char* key, int32_t dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : dflt;
}
double get_num(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

kvt_stream parse_stream(const Napi::Value& v) {
  uint64_t h = 0;
  if (!v.IsUndefined() && !v.IsNull()) {
    if (!v.IsBigInt()) throw Napi::TypeError::New(v.Env(), "stream: expected a bigint handle");
    bool lossless = true;
    h = v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  // the device buffers of this call's tensors are used on this stream (stream-ordered frees, native_buffer.h)
  flush_pending(uintptr_t(h));
  return reinterpret_cast<kvt_stream>(uintptr_t(h));
}

static bool parse_dtype(const std::string& s, kvt_dtype* dt, int* es) {
  if (s == "f32") *dt = {KVT_DTYPE_FLOAT, 32, 1}, *es = 4;
  else if (s == "f16") *dt = {KVT_DTYPE_FLOAT, 16, 1}, *es = 2;
  else if (s == "bf16") *dt = {KVT_DTYPE_BFLOAT, 16, 1}, *es = 2;
  else if (s == "i32") *dt = {KVT_DTYPE_INT, 32, 1}, *es = 4;
  else return false;
  return true;
}

TensorArg parse_tensor(const Napi::Value& v, const char* name, bool optional) {
  Napi::Env env = v.Env();
  TensorArg a;
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return a;
    throw Napi::TypeError::New(env, std::string(name) + ": expected a tensor, got " + (v.IsNull() ? "null" : "undefined"));
  }
  if (!v.IsObject()) throw Napi::TypeError::New(env, std::string(name) + ": expected a tensor object");
  Napi::Object o = v.As<Napi::Object>();
  std::string dts = o.Get("dtype").IsString() ? o.Get("dtype").As<Napi::String>().Utf8Value() : "";
  int es = 0;
  if (!parse_dtype(dts, &a.t.dtype, &es))
    throw Napi::TypeError::New(env, std::string(name) + ": unknown dtype '" + dts + "'");
  Napi::Value sv = o.Get("shape"), stv = o.Get("strides");
  if (!sv.IsArray()) throw Napi::TypeError::New(env, std::string(name) + ": shape must be an array");
  Napi::Array sa = sv.As<Napi::Array>();
  const uint32_t nd = sa.Length();
  if (nd > 4) throw Napi::RangeError::New(env, std::string(name) + ": at most 4 dimensions are supported");
  Napi::Array st = stv.IsArray() ? stv.As<Napi::Array>() : Napi::Array::New(env);
  if (stv.IsArray() && st.Length() != nd)
    throw Napi::RangeError::New(env, std::string(name) + ": strides must have one entry per dimension");
  int64_t expect = 1;
  for (int i = int(nd) - 1; i >= 0; i--) {
    int64_t n = sa.Get(uint32_t(i)).As<Napi::Number>().Int64Value();
    if (n < 0) throw Napi::RangeError::New(env, std::string(name) + ": negative dimension");
    a.shape[i] = n;
    a.strides[i] = stv.IsArray() ? st.Get(uint32_t(i)).As<Napi::Number>().Int64Value() : expect;
    expect *= n;
  }
  int64_t offset = o.Get("offset").IsNumber() ? o.Get("offset").As<Napi::Number>().Int64Value() : 0;
  // Data: a host TypedArray or a native device buffer.
  Napi::Value dv = o.Get("data");
  char* base = nullptr;
  int64_t capacity = 0;
  if (dv.IsTypedArray()) {
    Napi::TypedArray ta = dv.As<Napi::TypedArray>();
    if (int(ta.ElementSize()) != es)
      throw Napi::TypeError::New(env, std::string(name) + ": dtype " + dts + " does not match the element size of its typed array");
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    base = static_cast<char*>(ab.Data()) + ta.ByteOffset();
    capacity = int64_t(ta.ByteLength());
    a.t.device = {KVT_DEVICE_CPU, 0};
  } else if (NativeBuffer* nb = NativeBuffer::From(dv)) {
    if (nb->freed()) throw Napi::TypeError::New(env, std::string(name) + ": its DeviceBuffer was disposed");
    note_pending(nb);
    base = static_cast<char*>(nb->ptr());
    capacity = int64_t(nb->bytes());
    a.t.device = {KVT_DEVICE_CUDA, nb->device()};
  } else {
    throw Napi::TypeError::New(env, std::string(name) + ": data must be a typed array or a DeviceBuffer");
  }
  // Bounds: every addressed element must lie inside the buffer.
  int64_t lo = offset, hi = offset;
  bool empty = false;
  for (uint32_t i = 0; i < nd; i++) {
    if (a.shape[i] == 0) empty = true;
    int64_t span = (a.shape[i] - 1) * a.strides[i];
    if (span < 0) lo += span; else hi += span;
  }
  if (!empty && (lo < 0 || (hi + 1) * es > capacity)) {
    std::ostringstream os;
    os << name << ": view (offset " << offset << ", shape " << dims_str(a.shape, int(nd)) << ", strides "
       << dims_str(a.strides, int(nd)) << ") reaches elements [" << lo << ", " << hi << "] but its buffer holds "
       << capacity / es << " elements";
    throw Napi::RangeError::New(env, os.str());
  }
  a.t.data = base;
  a.t.byte_offset = uint64_t(offset * es);
  a.t.ndim = int32_t(nd);
  a.t.shape = a.shape;
  a.t.strides = a.strides;
  a.present = true;
  return a;
}

Napi::Object opts_object(const Napi::Value& v, const char* name) {
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected an object");
  return v.As<Napi::Object>();
}

// Moment state argument {n, muK, muV, m} of tensors, or undefined.
bool parse_moments(const Napi::Value& v, TensorArg* parts, kvt_moments* m) {
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "moments: expected a MomentState");
  Napi::Object o = v.As<Napi::Object>();
  parts[0] = parse_tensor(o.Get("n"), "moments.n");
  parts[1] = parse_tensor(o.Get("muK"), "moments.muK");
  parts[2] = parse_tensor(o.Get("muV"), "moments.muV");
  parts[3] = parse_tensor(o.Get("m"), "moments.m");
  m->n = parts[0].t;
  m->mu_k = parts[1].t;
  m->mu_v = parts[2].t;
  m->m = parts[3].t;
  return true;
}

}  // namespace napi
}  // namespace kvt
