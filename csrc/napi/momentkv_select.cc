// Binding of momentkvSelect (C ABI kvt_momentkv_select) and the defaults of its options.
#include "bindings.h"
#include "glue.h"

namespace kvt {
namespace napi {

Napi::Object MomentkvSelectDefaults(Napi::Env env) {
  kvt_momentkv_select_opts o;
  kvt_momentkv_select_default_opts(&o);
  Napi::Object d = Napi::Object::New(env);  // keep has no default: every call names it
  d.Set("rounds", o.rounds);
  d.Set("r", o.r);
  d.Set("eps", o.eps);
  d.Set("mi", o.mi != 0);
  return d;
}

// momentkvSelect(scores, keys, values, {keep, rounds, r, mi, eps}, indices, counts, moments, evictedRound?, stream)
static OpCall prepare_momentkv_select(const Napi::CallbackInfo& info) {
  TensorArg s = parse_tensor(info[0], "scores"), k = parse_tensor(info[1], "keys");
  TensorArg v = parse_tensor(info[2], "values");
  Napi::Object o = opts_object(info[3]);
  kvt_momentkv_select_opts opts;
  kvt_momentkv_select_default_opts(&opts);
  opts.keep = get_int(o, "keep", opts.keep);
  opts.rounds = get_int(o, "rounds", opts.rounds);
  opts.r = get_int(o, "r", opts.r);
  opts.mi = get_int(o, "mi", opts.mi);
  opts.eps = get_num(o, "eps", opts.eps);
  TensorArg idx = parse_tensor(info[4], "indices"), cnt = parse_tensor(info[5], "counts");
  MomentsArg m = parse_moments(info[6], true);
  TensorArg er = parse_tensor(info[7], "evictedRound", true);
  kvt_stream st = parse_stream(info[8]);
  resolve(s, k, v, idx, cnt, m, er);
  return [=] {
    kvt_moments mm;
    return kvt_momentkv_select(s.ptr(), k.ptr(), v.ptr(), &opts, idx.ptr(), cnt.ptr(), m.fill(&mm), er.ptr(), st);
  };
}
Napi::Value MomentkvSelect(const Napi::CallbackInfo& info) { return run_now(info, prepare_momentkv_select); }
Napi::Value MomentkvSelectAsync(const Napi::CallbackInfo& info) {
  return run_async(info, prepare_momentkv_select, 9, "kvtrim.momentkvSelect");
}

}  // namespace napi
}  // namespace kvt
