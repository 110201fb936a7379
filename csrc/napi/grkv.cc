// Binding of grkvMerge (C ABI kvt_grkv_merge) and the defaults of the GRKV options.
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

Napi::Object GrkvDefaults(Napi::Env env) {
  kvt_grkv_opts o;
  kvt_grkv_default_opts(&o);
  Napi::Object d = Napi::Object::New(env);
  d.Set("window", o.window);
  d.Set("gamma", o.gamma);
  d.Set("lambda", o.lambda);
  Napi::Object caps = Napi::Object::New(env);
  caps.Set("key", o.cap_key);
  caps.Set("value", o.cap_value);
  d.Set("caps", caps);
  d.Set("cgIters", o.cg_iters);
  d.Set("tol", o.tol);
  d.Set("scale", o.scale);  // 0: 1/sqrt(d)
  d.Set("acceptance", o.accept == KVT_GRKV_ACCEPT_JOINT ? "joint" : "best");
  return d;
}

// {window, cgIters, gamma, lambda, capKey, capValue, tol, scale, accept} over kvt_grkv_default_opts.
static kvt_grkv_opts grkv_opts(const Napi::Value& v) {
  Napi::Object o = opts_object(v);
  kvt_grkv_opts opts;
  kvt_grkv_default_opts(&opts);
  opts.window = get_int(o, "window", opts.window);
  opts.cg_iters = get_int(o, "cgIters", opts.cg_iters);
  opts.gamma = get_num(o, "gamma", opts.gamma);
  opts.lambda = get_num(o, "lambda", opts.lambda);
  opts.cap_key = get_num(o, "capKey", opts.cap_key);
  opts.cap_value = get_num(o, "capValue", opts.cap_value);
  opts.tol = get_num(o, "tol", opts.tol);
  opts.scale = get_num(o, "scale", opts.scale);
  opts.accept = get_int(o, "accept", opts.accept);
  return opts;
}

// grkvMerge(keys, values, indices, counts, queries, queryPositions, weights, scores, opts, keysOut, valuesOut,
//           countsOut, diagnostics, stream)
static OpCall prepare_grkv(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  TensorArg q = parse_tensor(info[4], "queries"), qp = parse_tensor(info[5], "queryPositions");
  TensorArg w = parse_tensor(info[6], "weights", true), sc = parse_tensor(info[7], "scores");
  const kvt_grkv_opts opts = grkv_opts(info[8]);
  TensorArg ko = parse_tensor(info[9], "keysOut"), vo = parse_tensor(info[10], "valuesOut");
  TensorArg co = parse_tensor(info[11], "countsOut"), dg = parse_tensor(info[12], "diagnostics", true);
  kvt_stream st = parse_stream(info[13]);
  resolve(k, v, idx, cnt, q, qp, w, sc, ko, vo, co, dg);
  return [=] {
    return kvt_grkv_merge(k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), q.ptr(), qp.ptr(), w.ptr(), sc.ptr(), &opts, ko.ptr(),
                          vo.ptr(), co.ptr(), dg.ptr(), st);
  };
}
Napi::Value GrkvMerge(const Napi::CallbackInfo& info) { return run_now(info, prepare_grkv); }
Napi::Value GrkvMergeAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_grkv, 14, "kvtrim.grkvMerge"); }

// grkvMergeBatched(seqs, keys, values, indices, counts, qseqs, queries, queryPositions, weights?, scores, opts,
//                  keysOut, valuesOut, countsOut, diagnostics?, stream); grkvMergeBatchedAsync(..., abort)
static OpCall prepare_grkv_batched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), v = parse_tensor(info[2], "values");
  TensorArg idx = parse_tensor(info[3], "indices"), cnt = parse_tensor(info[4], "counts");
  SeqsArg qs = parse_seqs(info[5], "qseqs");
  TensorArg q = parse_tensor(info[6], "queries"), qp = parse_tensor(info[7], "queryPositions");
  TensorArg w = parse_tensor(info[8], "weights", true), sc = parse_tensor(info[9], "scores");
  const kvt_grkv_opts opts = grkv_opts(info[10]);
  TensorArg ko = parse_tensor(info[11], "keysOut"), vo = parse_tensor(info[12], "valuesOut");
  TensorArg co = parse_tensor(info[13], "countsOut"), dg = parse_tensor(info[14], "diagnostics", true);
  kvt_stream st = parse_stream(info[15]);
  resolve(sq, k, v, idx, cnt, qs, q, qp, w, sc, ko, vo, co, dg);
  return [=] {
    kvt_seqs s, t;
    return kvt_grkv_merge_batched(sq.fill(&s), k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), qs.fill(&t), q.ptr(), qp.ptr(), w.ptr(),
                                  sc.ptr(), &opts, ko.ptr(), vo.ptr(), co.ptr(), dg.ptr(), st);
  };
}
Napi::Value GrkvMergeBatched(const Napi::CallbackInfo& info) { return run_now(info, prepare_grkv_batched); }
Napi::Value GrkvMergeBatchedAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_grkv_batched, 16, "kvtrim.grkvMergeBatched"); }

}  // namespace napi
}  // namespace kvt
