// The shared argument handling of the bindings (glue.h): JS exceptions from kvt_status, option objects, streams,
// tensor descriptors checked against their JS buffers, moment states.
#include "glue.h"

#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

static Napi::Error coded(Napi::Env env, const std::string& msg, const char* code) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

void throw_coded(Napi::Env env, const std::string& msg, const char* code) { throw coded(env, msg, code); }

// The JS values whose memory a call being prepared for run_async points into (typed arrays, DeviceBuffers), recorded
// by parse_tensor, and whether any of them is device memory. Set only while a Prepare runs on this thread.
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
    default: return coded(env, msg.empty() ? "internal error" : msg, "ERR_KVTRIM_INTERNAL");
  }
}

void throw_status(Napi::Env env, kvt_status st) { throw status_error(env, st, kvt_last_error()); }

int32_t get_int(const Napi::Object& o, const char* key, int32_t dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : dflt;
}
double get_num(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

kvt_stream parse_stream(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsBigInt()) throw Napi::TypeError::New(v.Env(), "stream: expected a bigint handle");
  bool lossless = true;
  uint64_t h = v.As<Napi::BigInt>().Uint64Value(&lossless);
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
  if (t_pins) {
    t_pins->refs.push_back(Napi::Persistent(dv));
    t_pins->device = t_pins->device || a.t.device.device_type != KVT_DEVICE_CPU;
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
