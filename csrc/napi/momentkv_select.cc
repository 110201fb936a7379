// Node wrappers of the MomentKV ops (spec/momentkv.md): moment-state merge, corrected decode attention and
// multi-round moment-informed eviction. Tensors are parsed (bounds-checked against their buffers), options read,
// and the C ABI called; its status becomes the JS exception.
#include "glue.h"

namespace kvt {
namespace napi {

static Napi::Object opts_object(const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "opts: expected an object");
  return v.As<Napi::Object>();
}

// momentsMerge(keys, values, indices, counts, moments, stream)
static Napi::Value MomentsMerge(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  TensorArg parts[4];
  kvt_moments m{};
  if (!parse_moments(info[4], parts, &m)) throw Napi::TypeError::New(info.Env(), "moments: expected a MomentState");
  check(info.Env(), kvt_moments_merge(k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), &m, parse_stream(info[5])));
  return info.Env().Undefined();
}
KVT_EXPORT("momentsMerge", MomentsMerge);

// decodeAttention(queries, keys, values, counts, moments?, clip?, {order, scale, useClip, clip}, out, stream)
static Napi::Value DecodeAttention(const Napi::CallbackInfo& info) {
  TensorArg q = parse_tensor(info[0], "queries"), k = parse_tensor(info[1], "keys");
  TensorArg v = parse_tensor(info[2], "values"), cnt = parse_tensor(info[3], "counts");
  TensorArg parts[4];
  kvt_moments m{};
  const bool has_m = parse_moments(info[4], parts, &m);
  TensorArg clip = parse_tensor(info[5], "clip", true);
  Napi::Object o = opts_object(info[6]);
  kvt_decode_opts opts{};
  opts.order = get_int(o, "order", 1);
  opts.use_clip = get_int(o, "useClip", 0);
  opts.scale = get_num(o, "scale", 0.0);
  opts.clip = get_num(o, "clip", 0.0);
  TensorArg out = parse_tensor(info[7], "out");
  check(info.Env(), kvt_decode_attention(q.ptr(), k.ptr(), v.ptr(), cnt.ptr(), has_m ? &m : nullptr, clip.ptr(), &opts,
                                         out.ptr(), parse_stream(info[8])));
  return info.Env().Undefined();
}
KVT_EXPORT("decodeAttention", DecodeAttention);

// momentkvSelect(scores, keys, values, {keep, rounds, r, mi, eps}, indices, counts, moments, evictedRound?, stream)
static Napi::Value MomentkvSelect(const Napi::CallbackInfo& info) {
  TensorArg s = parse_tensor(info[0], "scores"), k = parse_tensor(info[1], "keys");
  TensorArg v = parse_tensor(info[2], "values");
  Napi::Object o = opts_object(info[3]);
  kvt_momentkv_select_opts opts{};
  opts.keep = get_int(o, "keep", 0);
  opts.rounds = get_int(o, "rounds", 4);
  opts.r = get_int(o, "r", 1);
  opts.mi = get_int(o, "mi", 1);
  opts.eps = get_num(o, "eps", 0.05);
  TensorArg idx = parse_tensor(info[4], "indices"), cnt = parse_tensor(info[5], "counts");
  TensorArg parts[4];
  kvt_moments m{};
  if (!parse_moments(info[6], parts, &m)) throw Napi::TypeError::New(info.Env(), "moments: expected a MomentState");
  TensorArg er = parse_tensor(info[7], "evictedRound", true);
  check(info.Env(), kvt_momentkv_select(s.ptr(), k.ptr(), v.ptr(), &opts, idx.ptr(), cnt.ptr(), &m, er.ptr(),
                                        parse_stream(info[8])));
  return info.Env().Undefined();
}
KVT_EXPORT("momentkvSelect", MomentkvSelect);

}  // namespace napi
}  // namespace kvt
