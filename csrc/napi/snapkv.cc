// Binding of snapkvScores (C ABI kvt_snapkv_scores) and the defaults of the SnapKV options.
#include "bindings.h"
#include "glue.h"

namespace kvt {
namespace napi {

Napi::Object SnapkvDefaults(Napi::Env env) {
  kvt_snapkv_opts o;
  kvt_snapkv_default_opts(&o);
  Napi::Object d = Napi::Object::New(env);
  d.Set("window", o.window);  // 0: every query row
  d.Set("kernel", o.kernel);
  d.Set("pool", o.pool == KVT_POOL_MAX ? "max" : "avg");
  d.Set("scale", o.scale);  // 0: 1/sqrt(d)
  return d;
}

// snapkvScores(queries, keys, opts, out, stream); opts = {window, kernel, pool (0 avg | 1 max), scale}
static OpCall prepare_snapkv(const Napi::CallbackInfo& info) {
  TensorArg q = parse_tensor(info[0], "queries"), k = parse_tensor(info[1], "keys");
  Napi::Object ob = opts_object(info[2]);
  kvt_snapkv_opts o;
  kvt_snapkv_default_opts(&o);
  o.window = get_int(ob, "window", o.window);
  o.kernel = get_int(ob, "kernel", o.kernel);
  o.pool = get_int(ob, "pool", o.pool);
  o.scale = get_num(ob, "scale", o.scale);
  TensorArg out = parse_tensor(info[3], "out");
  kvt_stream st = parse_stream(info[4]);
  resolve(q, k, out);
  return [=] { return kvt_snapkv_scores(q.ptr(), k.ptr(), &o, out.ptr(), st); };
}
Napi::Value SnapkvScores(const Napi::CallbackInfo& info) { return run_now(info, prepare_snapkv); }
Napi::Value SnapkvScoresAsync(const Napi::CallbackInfo& info) {
  return run_async(info, prepare_snapkv, 5, "kvtrim.snapkvScores");
}

}  // namespace napi
}  // namespace kvt
