// Binding of snapkvScores (C ABI kvt_snapkv_scores) and the defaults of the SnapKV options.
#include "bindings.h"
#include "batch.h"
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

// {window, kernel, pool (0 avg | 1 max), scale} over kvt_snapkv_default_opts.
static kvt_snapkv_opts snapkv_opts(const Napi::Value& v) {
  Napi::Object ob = opts_object(v);
  kvt_snapkv_opts o;
  kvt_snapkv_default_opts(&o);
  o.window = get_int(ob, "window", o.window);
  o.kernel = get_int(ob, "kernel", o.kernel);
  o.pool = get_int(ob, "pool", o.pool);
  o.scale = get_num(ob, "scale", o.scale);
  return o;
}

// snapkvScores(queries, keys, opts, out, stream); opts = {window, kernel, pool (0 avg | 1 max), scale}
static OpCall prepare_snapkv(const Napi::CallbackInfo& info) {
  TensorArg q = parse_tensor(info[0], "queries"), k = parse_tensor(info[1], "keys");
  const kvt_snapkv_opts o = snapkv_opts(info[2]);
  TensorArg out = parse_tensor(info[3], "out");
  kvt_stream st = parse_stream(info[4]);
  resolve(q, k, out);
  return [=] { return kvt_snapkv_scores(q.ptr(), k.ptr(), &o, out.ptr(), st); };
}
Napi::Value SnapkvScores(const Napi::CallbackInfo& info) { return run_now(info, prepare_snapkv); }
Napi::Value SnapkvScoresAsync(const Napi::CallbackInfo& info) {
  return run_async(info, prepare_snapkv, 5, "kvtrim.snapkvScores");
}

// snapkvScoresBatched(seqs, keys, qseqs, queries, opts, out, stream); snapkvScoresBatchedAsync(..., abort)
static OpCall prepare_snapkv_batched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys");
  SeqsArg qs = parse_seqs(info[2], "qseqs");
  TensorArg q = parse_tensor(info[3], "queries");
  const kvt_snapkv_opts o = snapkv_opts(info[4]);
  TensorArg out = parse_tensor(info[5], "out");
  kvt_stream st = parse_stream(info[6]);
  resolve(sq, k, qs, q, out);
  return [=] {
    kvt_seqs s, t;
    return kvt_snapkv_scores_batched(sq.fill(&s), k.ptr(), qs.fill(&t), q.ptr(), &o, out.ptr(), st);
  };
}
Napi::Value SnapkvScoresBatched(const Napi::CallbackInfo& info) { return run_now(info, prepare_snapkv_batched); }
Napi::Value SnapkvScoresBatchedAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_snapkv_batched, 7, "kvtrim.snapkvScoresBatched"); }

}  // namespace napi
}  // namespace kvt
