// Binding of spdSolve (C ABI kvt_spd_solve) and the defaults of its options.
#include "bindings.h"
#include "glue.h"

namespace kvt {
namespace napi {

Napi::Object SpdDefaults(Napi::Env env) {
  kvt_spd_opts o;
  kvt_spd_default_opts(&o);
  Napi::Object d = Napi::Object::New(env);
  d.Set("lambda", o.lambda);
  d.Set("throwOnError", o.check != 0);
  return d;
}

// spdSolve(a, b, x, info, { lambda, check }, stream); spdSolveAsync(..., abort)
static OpCall prepare_spd(const Napi::CallbackInfo& info) {
  TensorArg a = parse_tensor(info[0], "a"), b = parse_tensor(info[1], "b"), x = parse_tensor(info[2], "out");
  TensorArg in = parse_tensor(info[3], "info", true);
  Napi::Object o = opts_object(info[4]);
  kvt_spd_opts opts;
  kvt_spd_default_opts(&opts);
  opts.lambda = get_num(o, "lambda", opts.lambda);
  opts.check = get_int(o, "check", opts.check);
  kvt_stream st = parse_stream(info[5]);
  resolve(a, b, x, in);
  return [=] { return kvt_spd_solve(a.ptr(), b.ptr(), &opts, x.ptr(), in.ptr(), st); };
}
Napi::Value SpdSolve(const Napi::CallbackInfo& info) { return run_now(info, prepare_spd); }
Napi::Value SpdSolveAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_spd, 6, "kvtrim.spdSolve"); }

}  // namespace napi
}  // namespace kvt
