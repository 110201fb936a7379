// Node-API module: backend initialisation and info, device buffers, streams, events, copies, and the shared
// tensor-argument parsing used by every op wrapper (ops register themselves through KVT_EXPORT).
#include <napi.h>

#include <cstring>
#include <sstream>
#include <string>
#include <thread>

#include "../cpu/parallel.h"
#include "../kvt_internal.h"
#include "glue.h"
#include "native_buffer.h"

#if defined(KVT_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

#ifndef KVTRIM_VERSION
#define KVTRIM_VERSION "0.0.0"
#endif
#ifndef KVTRIM_CUDA_ARCHS
#define KVTRIM_CUDA_ARCHS ""
#endif

namespace kvt {
namespace napi {

std::vector<Export>& registry() {
  static std::vector<Export> r;
  return r;
}
Registrar::Registrar(const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
  registry().push_back({name, fn});
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
    os << name << ": view (offset " << offset << ", shape " << shape_str(a.shape, int(nd)) << ", strides "
       << shape_str(a.strides, int(nd)) << ") reaches elements [" << lo << ", " << hi << "] but its buffer holds "
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

// ---------------------------------------------------------------------------------------------------------
// Backend info.
static bool g_cuda_enabled = false;

bool cuda_enabled() { return g_cuda_enabled; }

static Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool want = info.Length() > 0 && info[0].IsObject() && info[0].As<Napi::Object>().Get("cuda").ToBoolean();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
  Napi::Object versions = Napi::Object::New(env);
  versions.Set("kvtrim", KVTRIM_VERSION);
  versions.Set("napi", 8);
  versions.Set("abi", kvt_abi_version());
  versions.Set("compiledWithCuda", Napi::Boolean::New(env, kvt_built_with_cuda() != 0));
  std::string reason;
  bool ok = false;
#if defined(KVT_WITH_CUDA)
  versions.Set("cudaArchs", KVTRIM_CUDA_ARCHS);
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  versions.Set("cudaRuntime", std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10));
  if (!want) {
    reason = "CUDA disabled by KVTRIM_BACKEND=cpu";
  } else {
    int drv = 0;
    if (cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0)
      versions.Set("cudaDriver", std::to_string(drv / 1000) + "." + std::to_string((drv % 1000) / 10));
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      reason = std::string("CUDA is unavailable: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
      cudaGetLastError();
    } else if (count == 0) {
      reason = "no CUDA device found";
    } else {
      std::string unsupported;
      for (int d = 0; d < count; d++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
        bool sup = p.major >= 8;
        Napi::Object dev = Napi::Object::New(env);
        dev.Set("id", d);
        dev.Set("name", p.name);
        dev.Set("sm", std::to_string(p.major) + "." + std::to_string(p.minor));
        dev.Set("memory", double(p.totalGlobalMem));
        dev.Set("multiprocessors", p.multiProcessorCount);
        dev.Set("supported", sup);
        devices.Set(devices.Length(), dev);
        if (sup) {
          ok = true;
          // Stream-ordered allocations (op outputs, scratch) come from the default pool; keep freed memory in
          // the pool instead of returning it to the driver at every synchronisation.
          cudaMemPool_t pool;
          if (cudaDeviceGetDefaultMemPool(&pool, d) == cudaSuccess) {
            uint64_t keep = UINT64_MAX;
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
          }
          cudaGetLastError();
        }
        else unsupported += std::string(unsupported.empty() ? "" : ", ") + p.name + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
      }
      if (!ok) reason = "no supported GPU: kvtrim's CUDA kernels need compute capability 8.0 or newer; found " + unsupported;
    }
  }
#else
  (void)want;
  reason = "this kvtrim binary was built without CUDA (no CUDA compiler was found when it was built)";
#endif
  g_cuda_enabled = ok;
  out.Set("cuda", Napi::Boolean::New(env, ok));
  if (!ok) out.Set("reason", reason);
  out.Set("devices", devices);
  out.Set("threads", cpu::num_threads());
  out.Set("versions", versions);
  return out;
}
KVT_EXPORT("init", Init);

}  // namespace napi
}  // namespace kvt

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  kvt::napi::NativeBuffer::Init(env, exports);
  for (const auto& e : kvt::napi::registry()) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  return exports;
}

NODE_API_MODULE(kvtrim, InitModule)
