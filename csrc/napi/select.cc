// Bindings of selectTokens and selectCapacity (C ABI kvt_select_tokens, kvt_select_capacity) and the defaults of
// their options.
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

// {keep, budget (0 uniform | 1 adaptive), safeguard, sinks, recent} over kvt_select_default_opts.
static kvt_select_opts select_opts(const Napi::Value& v) {
  Napi::Object ob = opts_object(v);
  kvt_select_opts o;
  kvt_select_default_opts(&o);
  o.keep = get_int(ob, "keep", o.keep);
  o.budget = get_int(ob, "budget", o.budget);
  o.safeguard = get_num(ob, "safeguard", o.safeguard);
  o.sinks = get_int(ob, "sinks", o.sinks);
  o.recent = get_int(ob, "recent", o.recent);
  return o;
}

Napi::Object SelectDefaults(Napi::Env env) {
  kvt_select_opts o;
  kvt_select_default_opts(&o);
  Napi::Object d = Napi::Object::New(env);  // keep has no default: every call names it
  d.Set("budget", o.budget == KVT_BUDGET_ADAPTIVE ? "adaptive" : "uniform");
  d.Set("safeguard", o.safeguard);
  d.Set("sinks", o.sinks);
  d.Set("recent", o.recent);
  return d;
}

// selectTokens(scores, opts, indices, counts, stream)
static OpCall prepare_select(const Napi::CallbackInfo& info) {
  TensorArg s = parse_tensor(info[0], "scores");
  kvt_select_opts o = select_opts(info[1]);
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  kvt_stream st = parse_stream(info[4]);
  resolve(s, idx, cnt);
  return [=] { return kvt_select_tokens(s.ptr(), &o, idx.ptr(), cnt.ptr(), st); };
}
Napi::Value SelectTokens(const Napi::CallbackInfo& info) { return run_now(info, prepare_select); }
Napi::Value SelectTokensAsync(const Napi::CallbackInfo& info) {
  return run_async(info, prepare_select, 5, "kvtrim.selectTokens");
}

// selectTokensBatched(seqs, scores, opts, keep?, indices, counts, stream); selectTokensBatchedAsync(..., abort)
static OpCall prepare_select_batched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg s = parse_tensor(info[1], "scores");
  const kvt_select_opts o = select_opts(info[2]);
  TensorArg keep = parse_tensor(info[3], "keep", true);
  TensorArg idx = parse_tensor(info[4], "indices"), cnt = parse_tensor(info[5], "counts");
  kvt_stream st = parse_stream(info[6]);
  resolve(sq, s, keep, idx, cnt);
  return [=] {
    kvt_seqs t;
    return kvt_select_tokens_batched(sq.fill(&t), s.ptr(), &o, keep.ptr(), idx.ptr(), cnt.ptr(), st);
  };
}
Napi::Value SelectTokensBatched(const Napi::CallbackInfo& info) { return run_now(info, prepare_select_batched); }
Napi::Value SelectTokensBatchedAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_select_batched, 7, "kvtrim.selectTokensBatched"); }

// selectCapacity(H, N, opts) -> number
Napi::Value SelectCapacity(const Napi::CallbackInfo& info) {
  kvt_select_opts o = select_opts(info[2]);
  const int64_t H = arg_int(info[0], "H"), N = arg_int(info[1], "N");
  return Napi::Number::New(info.Env(), double(kvt_select_capacity(H, N, &o)));
}

}  // namespace napi
}  // namespace kvt
