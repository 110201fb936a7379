// Node wrappers of the foundation ops: KeyDiff scoring, selection, compaction. Each parses its tensors (bounds
// checked against their buffers), reads options, and calls the C ABI, whose status becomes the JS exception.
#include "glue.h"

namespace kvt {
namespace napi {

// keydiffScores(keys, out, stream)
static Napi::Value KeydiffScores(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), o = parse_tensor(info[1], "out");
  check(info.Env(), kvt_keydiff_scores(k.ptr(), o.ptr(), parse_stream(info[2])));
  return info.Env().Undefined();
}
KVT_EXPORT("keydiffScores", KeydiffScores);

static kvt_select_opts select_opts(const Napi::Value& v) {
  kvt_select_opts o{};
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "opts: expected an object");
  Napi::Object ob = v.As<Napi::Object>();
  o.keep = get_int(ob, "keep", 0);
  o.budget = get_int(ob, "budget", KVT_BUDGET_UNIFORM);
  o.safeguard = get_num(ob, "safeguard", 0.2);
  o.sinks = get_int(ob, "sinks", 0);
  o.recent = get_int(ob, "recent", 0);
  return o;
}

// selectTokens(scores, opts, indices, counts, stream)
static Napi::Value SelectTokens(const Napi::CallbackInfo& info) {
  TensorArg s = parse_tensor(info[0], "scores");
  kvt_select_opts o = select_opts(info[1]);
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  check(info.Env(), kvt_select_tokens(s.ptr(), &o, idx.ptr(), cnt.ptr(), parse_stream(info[4])));
  return info.Env().Undefined();
}
KVT_EXPORT("selectTokens", SelectTokens);

// selectCapacity(H, N, opts) -> number
static Napi::Value SelectCapacity(const Napi::CallbackInfo& info) {
  kvt_select_opts o = select_opts(info[2]);
  int64_t H = info[0].As<Napi::Number>().Int64Value(), N = info[1].As<Napi::Number>().Int64Value();
  return Napi::Number::New(info.Env(), double(kvt_select_capacity(H, N, &o)));
}
KVT_EXPORT("selectCapacity", SelectCapacity);

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

// gatherKV(keys, values, indices, counts, keysOut, valuesOut, countsOut, moments, stream)
static Napi::Value GatherKV(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  TensorArg ko = parse_tensor(info[4], "keysOut"), vo = parse_tensor(info[5], "valuesOut");
  TensorArg co = parse_tensor(info[6], "countsOut");
  TensorArg parts[4];
  kvt_moments m{};
  bool has_m = parse_moments(info[7], parts, &m);
  check(info.Env(), kvt_gather_kv(k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), ko.ptr(), vo.ptr(), co.ptr(),
                                  has_m ? &m : nullptr, parse_stream(info[8])));
  return info.Env().Undefined();
}
KVT_EXPORT("gatherKV", GatherKV);

}  // namespace napi
}  // namespace kvt
