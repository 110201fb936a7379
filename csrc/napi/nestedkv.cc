// Node wrappers of the NestedKV and SnapKV scorers. Option values are validated by the TypeScript layer and again
// by the C ABI (whose status becomes the JS exception).
#include <cmath>

#include "../kvt_internal.h"
#include "glue.h"
#if defined(KVT_WITH_CUDA)
#include "../cuda_status.h"
#endif

namespace kvt {
namespace napi {

static Napi::Object as_object(const Napi::Value& v, const char* name) {
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected an object");
  return v.As<Napi::Object>();
}

// nestedkvScores(keys, opts, out, stream); opts = {window, block, prior: [3], beta, tau, kappa, tail, sinks, scales}
static Napi::Value NestedkvScores(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys");
  Napi::Object ob = as_object(info[1], "opts");
  kvt_nestedkv_opts o;
  kvt_nestedkv_default_opts(&o);
  o.window = get_int(ob, "window", o.window);
  o.block = get_int(ob, "block", o.block);
  Napi::Value pr = ob.Get("prior");
  if (pr.IsArray()) {
    Napi::Array a = pr.As<Napi::Array>();
    if (a.Length() != 3) throw Napi::RangeError::New(info.Env(), "prior: expected 3 numbers");
    for (uint32_t x = 0; x < 3; x++) {
      Napi::Value e = a.Get(x);
      if (!e.IsNumber()) throw Napi::TypeError::New(info.Env(), "prior: expected 3 numbers");
      o.prior[x] = e.As<Napi::Number>().DoubleValue();
    }
  }
  o.beta = get_num(ob, "beta", o.beta);
  o.tau = get_num(ob, "tau", o.tau);
  o.kappa = get_num(ob, "kappa", o.kappa);
  o.tail = get_num(ob, "tail", o.tail);
  o.sinks = get_int(ob, "sinks", o.sinks);
  o.scales = get_int(ob, "scales", o.scales);
  TensorArg out = parse_tensor(info[2], "out");
  check(info.Env(), kvt_nestedkv_scores(k.ptr(), &o, out.ptr(), parse_stream(info[3])));
  return info.Env().Undefined();
}
KVT_EXPORT("nestedkvScores", NestedkvScores);

// nestedkvBlockSize(N) -> number
static Napi::Value NestedkvBlockSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(kvt_nestedkv_block_size(info[0].As<Napi::Number>().Int64Value())));
}
KVT_EXPORT("nestedkvBlockSize", NestedkvBlockSize);

// snapkvScores(queries, keys, opts, out, stream); opts = {window, kernel, pool, scale}
static Napi::Value SnapkvScores(const Napi::CallbackInfo& info) {
  TensorArg q = parse_tensor(info[0], "queries"), k = parse_tensor(info[1], "keys");
  Napi::Object ob = as_object(info[2], "opts");
  kvt_snapkv_opts o{};
  o.window = get_int(ob, "window", 0);
  o.kernel = get_int(ob, "kernel", 5);
  o.pool = get_int(ob, "pool", KVT_POOL_AVG);
  o.scale = get_num(ob, "scale", 0.0);
  TensorArg out = parse_tensor(info[3], "out");
  check(info.Env(), kvt_snapkv_scores(q.ptr(), k.ptr(), &o, out.ptr(), parse_stream(info[4])));
  return info.Env().Undefined();
}
KVT_EXPORT("snapkvScores", SnapkvScores);

#if defined(KVT_WITH_CUDA)
// baselineSnapkv(queries, keys, out, stream): the SIMT f32 logit path of the SnapKV kernels forced on, as the
// straightforward baseline of `kvtrim bench` (CUDA tensors only; window = all query rows, kernel 5, avg, 1/sqrt(d)).
static Napi::Value BaselineSnapkv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg qa = parse_tensor(info[0], "queries"), ka = parse_tensor(info[1], "keys"), oa = parse_tensor(info[2], "out");
  View q, k, o;
  check(env, check_tensor(qa.ptr(), "queries", 3, kMaskFloat, "[Hq, W, d]", &q));
  check(env, check_tensor(ka.ptr(), "keys", 3, kMaskFloat, "[Hkv, N, d]", &k));
  check(env, check_tensor(oa.ptr(), "out", 2, kMaskF32, "[Hkv, N]", &o));
  if (!q.on_cuda() || !k.on_cuda() || !o.on_cuda()) throw Napi::TypeError::New(env, "baselineSnapkv: CUDA tensors only");
  if (k.shape[0] < 1 || q.shape[0] % k.shape[0] || q.shape[2] != k.shape[2] || q.shape[1] >= k.shape[1] ||
      o.shape[0] != k.shape[0] || o.shape[1] != k.shape[1])
    throw Napi::RangeError::New(env, "baselineSnapkv: inconsistent shapes");
  check(env, cuda_status(set_device(k.device_id), "cudaSetDevice"));
  cuda::SnapkvParams p{5, 0, float(1.0 / std::sqrt(double(k.shape[2]))), 1};
  check(env, cuda_status(cuda::snapkv_scores(t3(q), t3(k), p, t2(o), static_cast<cudaStream_t>(parse_stream(info[3]))),
                         "baselineSnapkv"));
  return env.Undefined();
}
KVT_EXPORT("baselineSnapkv", BaselineSnapkv);
#endif

}  // namespace napi
}  // namespace kvt
