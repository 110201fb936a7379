// Bindings of nestedkvScores and nestedkvBlockSize (C ABI kvt_nestedkv_scores, kvt_nestedkv_block_size) and the
// defaults of the NestedKV options. Option values are validated by the TypeScript layer and again by the C ABI
// (whose status becomes the JS exception).
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

Napi::Object NestedkvDefaults(Napi::Env env) {
  kvt_nestedkv_opts o;
  kvt_nestedkv_default_opts(&o);
  Napi::Object d = Napi::Object::New(env);
  d.Set("window", o.window);
  d.Set("block", o.block);  // 0: clip(floor(N/32), 128, 256)
  Napi::Array prior = Napi::Array::New(env, 3);
  for (uint32_t x = 0; x < 3; x++) prior.Set(x, o.prior[x]);
  d.Set("prior", prior);
  d.Set("beta", o.beta);
  d.Set("tau", o.tau);
  d.Set("kappa", o.kappa);
  d.Set("tail", o.tail);
  d.Set("sinks", o.sinks);
  d.Set("scales", o.scales == KVT_SCALES_GLOBAL ? "global" : "all");
  return d;
}

// {window, block, prior: [3], beta, tau, kappa, tail, sinks, scales} over kvt_nestedkv_default_opts.
static kvt_nestedkv_opts nestedkv_opts(const Napi::Value& v) {
  Napi::Object ob = opts_object(v);
  kvt_nestedkv_opts o;
  kvt_nestedkv_default_opts(&o);
  o.window = get_int(ob, "window", o.window);
  o.block = get_int(ob, "block", o.block);
  Napi::Value pr = ob.Get("prior");
  if (pr.IsArray()) {
    Napi::Array a = pr.As<Napi::Array>();
    if (a.Length() != 3) throw Napi::RangeError::New(v.Env(), "prior: expected 3 numbers");
    for (uint32_t x = 0; x < 3; x++) {
      Napi::Value e = a.Get(x);
      if (!e.IsNumber()) throw Napi::TypeError::New(v.Env(), "prior: expected 3 numbers");
      o.prior[x] = e.As<Napi::Number>().DoubleValue();
    }
  } else if (!pr.IsUndefined()) {
    throw Napi::TypeError::New(v.Env(), "prior: expected an array of 3 numbers");
  }
  o.beta = get_num(ob, "beta", o.beta);
  o.tau = get_num(ob, "tau", o.tau);
  o.kappa = get_num(ob, "kappa", o.kappa);
  o.tail = get_num(ob, "tail", o.tail);
  o.sinks = get_int(ob, "sinks", o.sinks);
  o.scales = get_int(ob, "scales", o.scales);
  return o;
}

// nestedkvScores(keys, opts, out, stream); opts = {window, block, prior: [3], beta, tau, kappa, tail, sinks, scales}
static OpCall prepare_nestedkv(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys");
  const kvt_nestedkv_opts o = nestedkv_opts(info[1]);
  TensorArg out = parse_tensor(info[2], "out");
  kvt_stream st = parse_stream(info[3]);
  resolve(k, out);
  return [=] { return kvt_nestedkv_scores(k.ptr(), &o, out.ptr(), st); };
}
Napi::Value NestedkvScores(const Napi::CallbackInfo& info) { return run_now(info, prepare_nestedkv); }
Napi::Value NestedkvScoresAsync(const Napi::CallbackInfo& info) {
  return run_async(info, prepare_nestedkv, 4, "kvtrim.nestedkvScores");
}

// nestedkvScoresBatched(seqs, keys, opts, out, stream); nestedkvScoresBatchedAsync(..., abort)
static OpCall prepare_nestedkv_batched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys");
  const kvt_nestedkv_opts o = nestedkv_opts(info[2]);
  TensorArg out = parse_tensor(info[3], "out");
  kvt_stream st = parse_stream(info[4]);
  resolve(sq, k, out);
  return [=] {
    kvt_seqs s;
    return kvt_nestedkv_scores_batched(sq.fill(&s), k.ptr(), &o, out.ptr(), st);
  };
}
Napi::Value NestedkvScoresBatched(const Napi::CallbackInfo& info) { return run_now(info, prepare_nestedkv_batched); }
Napi::Value NestedkvScoresBatchedAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_nestedkv_batched, 5, "kvtrim.nestedkvScoresBatched"); }

// nestedkvBlockSize(N) -> number
Napi::Value NestedkvBlockSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(kvt_nestedkv_block_size(arg_int(info[0], "N"))));
}

}  // namespace napi
}  // namespace kvt
