// Node wrappers of the GRKV family: batched SPD solves and the ridge-regression merge. Each parses its tensors
// (bounds checked against their buffers), reads options, and calls the C ABI, whose status becomes the JS exception.
#include "glue.h"

namespace kvt {
namespace napi {

// spdSolve(a, b, x, info, { lambda, check }, stream)
static Napi::Value SpdSolve(const Napi::CallbackInfo& info) {
  TensorArg a = parse_tensor(info[0], "a"), b = parse_tensor(info[1], "b"), x = parse_tensor(info[2], "out");
  TensorArg in = parse_tensor(info[3], "info", true);
  if (!info[4].IsObject()) throw Napi::TypeError::New(info.Env(), "opts: expected an object");
  Napi::Object o = info[4].As<Napi::Object>();
  kvt_spd_opts opts{get_num(o, "lambda", 0.0), get_int(o, "check", 1)};
  check(info.Env(), kvt_spd_solve(a.ptr(), b.ptr(), &opts, x.ptr(), in.ptr(), parse_stream(info[5])));
  return info.Env().Undefined();
}
KVT_EXPORT("spdSolve", SpdSolve);

// grkvMerge(keys, values, indices, counts, queries, queryPositions, weights, scores, opts, keysOut, valuesOut,
//           countsOut, diagnostics, stream)
static Napi::Value GrkvMerge(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  TensorArg q = parse_tensor(info[4], "queries"), qp = parse_tensor(info[5], "queryPositions");
  TensorArg w = parse_tensor(info[6], "weights", true), sc = parse_tensor(info[7], "scores");
  if (!info[8].IsObject()) throw Napi::TypeError::New(info.Env(), "opts: expected an object");
  Napi::Object o = info[8].As<Napi::Object>();
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
  TensorArg ko = parse_tensor(info[9], "keysOut"), vo = parse_tensor(info[10], "valuesOut");
  TensorArg co = parse_tensor(info[11], "countsOut"), dg = parse_tensor(info[12], "diagnostics", true);
  check(info.Env(), kvt_grkv_merge(k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), q.ptr(), qp.ptr(), w.ptr(), sc.ptr(), &opts,
                                   ko.ptr(), vo.ptr(), co.ptr(), dg.ptr(), parse_stream(info[13])));
  return info.Env().Undefined();
}
KVT_EXPORT("grkvMerge", GrkvMerge);

}  // namespace napi
}  // namespace kvt
