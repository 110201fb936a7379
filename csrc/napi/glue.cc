// The shared argument handling of the bindings (glue.h): JS exceptions from kvt_status, option objects, streams,
// tensor descriptors checked against their JS buffers when they are used, moment states.
#include "glue.h"

#include <cmath>
#include <iomanip>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "native_buffer.h"

namespace kvt {
namespace napi {

namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1: JS integers beyond it are not exact

// "[a, b, c]", the way the C ABI prints shapes in its messages.
std::string dims_str(const int64_t* v, int n) {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < n; i++) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

// How a JS value prints in a message.
std::string show(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) {
    const double x = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(x)) return "NaN";
    if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
    std::ostringstream os;
    os << std::setprecision(17) << x;
    return os.str();
  }
  if (v.IsString()) return "'" + v.As<Napi::String>().Utf8Value() + "'";
  if (v.IsBigInt()) return "a bigint";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsArray()) return "an array";
  if (v.IsTypedArray()) return "a typed array";
  if (v.IsFunction()) return "a function";
  if (v.IsObject()) return "an object";
  return "a symbol";
}

// An integer-valued JS number in [lo, hi] (TypeError for a non-number or a fraction, RangeError outside).
int64_t int_value(const Napi::Value& v, const std::string& name, double lo, double hi) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), name + ": expected an integer, got " + show(v));
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!(std::floor(x) == x)) throw Napi::TypeError::New(v.Env(), name + ": expected an integer, got " + show(v));
  if (!(x >= lo && x <= hi)) {
    std::ostringstream os;
    os << std::setprecision(17) << name << ": must be in [" << lo << ", " << hi << "], got " << x;
    throw Napi::RangeError::New(v.Env(), os.str());
  }
  return int64_t(x);
}

bool parse_dtype(const std::string& s, kvt_dtype* dt, int* es) {
  if (s == "f32") *dt = {KVT_DTYPE_FLOAT, 32, 1}, *es = 4;
  else if (s == "f16") *dt = {KVT_DTYPE_FLOAT, 16, 1}, *es = 2;
  else if (s == "bf16") *dt = {KVT_DTYPE_BFLOAT, 16, 1}, *es = 2;
  else if (s == "i32") *dt = {KVT_DTYPE_INT, 32, 1}, *es = 4;
  else return false;
  return true;
}

// The typed array kind that holds a dtype: Float32Array f32, Int32Array i32, Uint16Array f16 / bf16.
napi_typedarray_type array_type_of(const kvt_dtype& dt) {
  if (dt.code == KVT_DTYPE_INT) return napi_int32_array;
  return dt.bits == 32 ? napi_float32_array : napi_uint16_array;
}

const char* array_type_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "a typed array";
  }
}

size_t array_elem_size(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: return 1;
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    default: return 8;
  }
}

const char* dtype_str(const kvt_dtype& dt) {
  if (dt.code == KVT_DTYPE_INT) return "i32";
  if (dt.code == KVT_DTYPE_BFLOAT) return "bf16";
  return dt.bits == 32 ? "f32" : "f16";
}

}  // namespace

static Napi::Error coded(Napi::Env env, const std::string& msg, const char* code) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

void throw_coded(Napi::Env env, const std::string& msg, const char* code) { throw coded(env, msg, code); }

// The JS values whose memory a call being prepared for run_async points into (typed arrays, DeviceBuffers), recorded
// by TensorArg::resolve, and whether any of them is device memory. Set only while a Prepare runs on this thread.
struct Pins {
  std::vector<Napi::Reference<Napi::Value>> refs;
  bool device = false;
};
static thread_local Pins* t_pins = nullptr;

Napi::Error status_error(Napi::Env env, kvt_status st, const std::string& msg) {
  switch (st) {
    case KVT_ERR_TYPE: return Napi::TypeError::New(env, msg);
    case KVT_ERR_RANGE: return Napi::RangeError::New(env, msg);
    case KVT_ERR_CUDA: return coded(env, msg, "ERR_KVTRIM_CUDA");
    case KVT_ERR_UNSUPPORTED: return coded(env, msg, "ERR_KVTRIM_UNSUPPORTED");
    case KVT_ERR_MEMORY: {
      Napi::Error e = Napi::RangeError::New(env, msg);
      e.Set("code", Napi::String::New(env, "ERR_KVTRIM_MEMORY"));
      return e;
    }
    default: return coded(env, msg.empty() ? "internal error" : msg, "ERR_KVTRIM_INTERNAL");
  }
}

void throw_status(Napi::Env env, kvt_status st) { throw status_error(env, st, kvt_last_error()); }

int32_t get_int(const Napi::Object& o, const char* key, int32_t dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  return int32_t(int_value(v, key, -2147483648.0, 2147483647.0));
}
double get_num(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + ": expected a number, got " + show(v));
  return v.As<Napi::Number>().DoubleValue();
}
int64_t arg_int(const Napi::Value& v, const char* name) { return int_value(v, name, -kMaxSafe, kMaxSafe); }

kvt_stream parse_stream(const Napi::Value& v) {
  uint64_t h = 0;
  if (!v.IsUndefined() && !v.IsNull()) {
    if (!v.IsBigInt()) throw Napi::TypeError::New(v.Env(), "stream: expected a bigint handle, got " + show(v));
    bool lossless = true;
    h = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), "stream: the handle is not an unsigned 64-bit value");
  }
  // the device buffers this call resolves are used on this stream (stream-ordered frees, native_buffer.h): noted when
  // the binding returns (call_stream)
  call_stream(uintptr_t(h));
  return reinterpret_cast<kvt_stream>(uintptr_t(h));
}

HostMemory host_memory(const Napi::Value& v, const char* name) {
  napi_env env = v.Env();
  HostMemory m;
  size_t length = 0, offset = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  if (!v.IsTypedArray() || napi_get_typedarray_info(env, v, &m.type, &length, &data, &buffer, &offset) != napi_ok)
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a typed array, got " + show(v));
  bool plain = false, detached = false;
  if (napi_is_arraybuffer(env, buffer, &plain) != napi_ok || !plain)
    throw Napi::TypeError::New(v.Env(), std::string(name) +
                                            ": a typed array over a SharedArrayBuffer is not accepted: another thread "
                                            "could change it while an op reads it (e.g. indices after their check); "
                                            "copy it into an ordinary typed array");
  if (napi_is_detached_arraybuffer(env, buffer, &detached) != napi_ok || detached)
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": its ArrayBuffer is detached (transferred)");
  m.data = static_cast<char*>(data);
  m.bytes = length * array_elem_size(m.type);
  return m;
}

TensorArg& TensorArg::operator=(const TensorArg& o) {
  t = o.t;
  for (int i = 0; i < 4; i++) {
    shape[i] = o.shape[i];
    strides[i] = o.strides[i];
  }
  offset = o.offset;
  elem_size = o.elem_size;
  present = o.present;
  resolved = o.resolved;
  name = o.name;
  data = o.data;
  t.shape = shape;
  t.strides = o.t.strides ? strides : nullptr;
  return *this;
}

TensorArg parse_tensor(const Napi::Value& v, const char* name, bool optional) {
  Napi::Env env = v.Env();
  const std::string n(name);
  TensorArg a;
  a.name = name;
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return a;
    throw Napi::TypeError::New(env, n + ": expected a tensor, got " + show(v));
  }
  if (!v.IsObject()) throw Napi::TypeError::New(env, n + ": expected a tensor object, got " + show(v));
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value dv = o.Get("dtype");
  const std::string dts = dv.IsString() ? dv.As<Napi::String>().Utf8Value() : "";
  if (!parse_dtype(dts, &a.t.dtype, &a.elem_size))
    throw Napi::TypeError::New(env, n + ".dtype: expected 'f32', 'f16', 'bf16' or 'i32', got " + show(dv));
  Napi::Value sv = o.Get("shape");
  if (!sv.IsArray()) throw Napi::TypeError::New(env, n + ".shape: expected an array, got " + show(sv));
  Napi::Array sa = sv.As<Napi::Array>();
  const uint32_t nd = sa.Length();
  if (nd > 4) throw Napi::RangeError::New(env, n + ".shape: at most 4 dimensions, got " + std::to_string(nd));
  for (uint32_t i = 0; i < nd; i++)
    a.shape[i] = int_value(sa.Get(i), n + ".shape[" + std::to_string(i) + "]", 0, kMaxSafe);
  Napi::Value stv = o.Get("strides");
  const bool has_strides = !stv.IsUndefined() && !stv.IsNull();
  if (has_strides) {
    if (!stv.IsArray()) throw Napi::TypeError::New(env, n + ".strides: expected an array, got " + show(stv));
    Napi::Array st = stv.As<Napi::Array>();
    if (st.Length() != nd)
      throw Napi::RangeError::New(env, n + ".strides: expected " + std::to_string(nd) + " entries (one per dimension), got " +
                                           std::to_string(st.Length()));
    for (uint32_t i = 0; i < nd; i++)
      a.strides[i] = int_value(st.Get(i), n + ".strides[" + std::to_string(i) + "]", -kMaxSafe, kMaxSafe);
  }
  Napi::Value ov = o.Get("offset");
  a.offset = ov.IsUndefined() ? 0 : int_value(ov, n + ".offset", 0, kMaxSafe);
  a.data = o.Get("data");
  if (!a.data.IsTypedArray() && !NativeBuffer::From(a.data))
    throw Napi::TypeError::New(env, n + ".data: expected a typed array or a DeviceBuffer, got " + show(a.data));
  a.t.ndim = int32_t(nd);
  a.t.shape = a.shape;
  a.t.strides = has_strides ? a.strides : nullptr;
  a.t.byte_offset = uint64_t(a.offset) * uint64_t(a.elem_size);  // < 2^56: no wrap
  a.present = true;
  return a;
}

void TensorArg::resolve() {
  if (!present) return;
  Napi::Env env = data.Env();
  const std::string n(name);
  int64_t capacity = 0;
  if (data.IsTypedArray()) {
    const HostMemory m = host_memory(data, name);
    if (m.type != array_type_of(t.dtype))
      throw Napi::TypeError::New(env, n + ": dtype " + dtype_str(t.dtype) + " data must be a " +
                                          array_type_name(array_type_of(t.dtype)) + ", got " + array_type_name(m.type));
    t.data = m.data;
    capacity = int64_t(m.bytes);
    t.device = {KVT_DEVICE_CPU, 0};
  } else if (NativeBuffer* nb = NativeBuffer::From(data)) {
    if (nb->freed()) throw Napi::TypeError::New(env, n + ": its DeviceBuffer was disposed");
    note_pending(nb);
    t.data = nb->ptr();
    capacity = int64_t(nb->bytes());
    t.device = {KVT_DEVICE_CUDA, nb->device()};
  } else {
    throw Napi::TypeError::New(env, n + ".data: expected a typed array or a DeviceBuffer, got " + show(data));
  }
  int64_t lo = 0, hi = 0;
  const kvt_status st = kvt_tensor_extent(&t, name, &lo, &hi);
  if (st != KVT_OK) throw_status(env, st);
  if (hi > lo && (lo < 0 || hi > capacity)) {
    std::ostringstream os;
    os << n << ": view (offset " << offset << ", shape " << dims_str(shape, t.ndim);
    if (t.strides) os << ", strides " << dims_str(strides, t.ndim);
    os << ") reaches elements [" << lo / elem_size << ", " << hi / elem_size - 1 << "] but its buffer holds "
       << capacity / elem_size << " elements";
    throw Napi::RangeError::New(env, os.str());
  }
  if (t_pins) {
    t_pins->refs.push_back(Napi::Persistent(data));
    t_pins->device = t_pins->device || t.device.device_type != KVT_DEVICE_CPU;
  }
  resolved = true;
}

Napi::Object opts_object(const Napi::Value& v, const char* name) {
  if (!v.IsObject() || v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected an object, got " + show(v));
  return v.As<Napi::Object>();
}

MomentsArg parse_moments(const Napi::Value& v, bool required) {
  MomentsArg a;
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw Napi::TypeError::New(v.Env(), "moments: expected a MomentState, got " + show(v));
    return a;
  }
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "moments: expected a MomentState, got " + show(v));
  Napi::Object o = v.As<Napi::Object>();
  a.parts[0] = parse_tensor(o.Get("n"), "moments.n");
  a.parts[1] = parse_tensor(o.Get("muK"), "moments.muK");
  a.parts[2] = parse_tensor(o.Get("muV"), "moments.muV");
  a.parts[3] = parse_tensor(o.Get("m"), "moments.m");
  a.present = true;
  return a;
}

void MomentsArg::resolve() {
  for (TensorArg& p : parts) p.resolve();
}

const kvt_moments* MomentsArg::fill(kvt_moments* m) const {
  if (!present) return nullptr;
  *m = kvt_moments{parts[0].t, parts[1].t, parts[2].t, parts[3].t};
  return m;
}


Napi::Value run_now(const Napi::CallbackInfo& info, Prepare prepare) {
  OpCall call = prepare(info);
  check(info.Env(), call());
  return info.Env().Undefined();
}

namespace {

Napi::Error abort_error(Napi::Env env) {
  Napi::Error e = coded(env, "The operation was aborted", "ABORT_ERR");
  e.Set("name", Napi::String::New(env, "AbortError"));
  return e;
}

bool aborted(const int32_t* cell) { return cell != nullptr && __atomic_load_n(cell, __ATOMIC_ACQUIRE) != 0; }

// Runs an OpCall, turning a C++ exception (none is expected from the C ABI) into KVT_ERR_INTERNAL.
kvt_status invoke(const OpCall& call, std::string* msg) {
  kvt_status st;
  try {
    st = call();
  } catch (...) {
    *msg = "unexpected C++ exception in the native call";
    return KVT_ERR_INTERNAL;
  }
  if (st != KVT_OK) *msg = kvt_last_error();
  return st;
}

// Settles an async call's promise: AbortError when it was skipped, else the error of a failed status, else undefined.
void settle(Napi::Env env, Napi::Promise::Deferred& d, bool skipped, kvt_status st, const std::string& msg) {
  if (skipped) d.Reject(abort_error(env).Value());
  else if (st != KVT_OK) d.Reject(status_error(env, st, msg).Value());
  else d.Resolve(env.Undefined());
}

// One async op call: Execute runs on a libuv worker thread (the C ABI's last error is thread-local, so it is read
// there); the pins and the abort cell are released on the JS thread when the worker is destroyed.
class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, const char* name, OpCall call, std::vector<Napi::Reference<Napi::Value>> pins,
           const int32_t* abort)
      : Napi::AsyncWorker(env, name),
        call_(std::move(call)),
        pins_(std::move(pins)),
        abort_(abort),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    if (aborted(abort_)) {
      skipped_ = true;
      return;
    }
    status_ = invoke(call_, &message_);
  }
  void OnOK() override { settle(Env(), deferred_, skipped_, status_, message_); }

 private:
  OpCall call_;
  std::vector<Napi::Reference<Napi::Value>> pins_;
  const int32_t* abort_;
  Napi::Promise::Deferred deferred_;
  bool skipped_ = false;
  kvt_status status_ = KVT_OK;
  std::string message_;
};

}  // namespace

Napi::Value run_async(const Napi::CallbackInfo& info, Prepare prepare, size_t abort_at, const char* name) {
  Napi::Env env = info.Env();
  Napi::Value av = info[abort_at];
  const int32_t* abort = nullptr;
  Pins pins;
  if (!av.IsUndefined() && !av.IsNull()) {
    if (!av.IsTypedArray() || av.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        av.As<Napi::TypedArray>().ElementLength() < 1)
      throw Napi::TypeError::New(env, "abort: expected an Int32Array of length >= 1");
    abort = av.As<Napi::Int32Array>().Data();
    pins.refs.push_back(Napi::Persistent(av));
  }
  OpCall call;
  {
    struct Scope {
      explicit Scope(Pins* p) { t_pins = p; }
      ~Scope() { t_pins = nullptr; }
    } scope(&pins);
    call = prepare(info);
  }
  if (pins.device) {
    // CUDA tensors: enqueue now, in call order (see glue.h).
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    std::string msg;
    const bool skip = aborted(abort);
    settle(env, d, skip, skip ? KVT_OK : invoke(call, &msg), msg);
    return d.Promise();
  }
  OpWorker* w = new OpWorker(env, name, std::move(call), std::move(pins.refs), abort);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace napi
}  // namespace kvt
