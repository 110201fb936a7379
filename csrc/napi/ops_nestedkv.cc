// Node wrappers of the NestedKV and SnapKV scorers. Option values are validated by the TypeScript layer and again
// by the C ABI (whose status becomes the JS exception).
#include "glue.h"

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

}  // namespace napi
}  // namespace kvt
