// Binding of decodeAttention (C ABI kvt_decode_attention) and the defaults of its options.
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

Napi::Object DecodeDefaults(Napi::Env env) {
  kvt_decode_opts o;
  kvt_decode_default_opts(&o);
  Napi::Object d = Napi::Object::New(env);
  d.Set("order", o.order);
  d.Set("scale", o.scale);  // 0: 1/sqrt(d)
  // null: no clip of the first-order term (use_clip = 0); otherwise the scalar radius
  d.Set("clip", o.use_clip ? Napi::Value(Napi::Number::New(env, o.clip)) : env.Null());
  return d;
}

// {order, scale, useClip, clip} over kvt_decode_default_opts.
static kvt_decode_opts decode_opts(const Napi::Value& v) {
  Napi::Object o = opts_object(v);
  kvt_decode_opts opts;
  kvt_decode_default_opts(&opts);
  opts.order = get_int(o, "order", opts.order);
  opts.use_clip = get_int(o, "useClip", opts.use_clip);
  opts.scale = get_num(o, "scale", opts.scale);
  opts.clip = get_num(o, "clip", opts.clip);
  return opts;
}

// decodeAttention(queries, keys, values, counts, moments?, clip?, {order, scale, useClip, clip}, out, stream)
static OpCall prepare_decode(const Napi::CallbackInfo& info) {
  TensorArg q = parse_tensor(info[0], "queries"), k = parse_tensor(info[1], "keys");
  TensorArg v = parse_tensor(info[2], "values"), cnt = parse_tensor(info[3], "counts");
  MomentsArg m = parse_moments(info[4], false);
  TensorArg clip = parse_tensor(info[5], "clip", true);
  const kvt_decode_opts opts = decode_opts(info[6]);
  TensorArg out = parse_tensor(info[7], "out");
  kvt_stream st = parse_stream(info[8]);
  resolve(q, k, v, cnt, m, clip, out);
  return [=] {
    kvt_moments mm;
    return kvt_decode_attention(q.ptr(), k.ptr(), v.ptr(), cnt.ptr(), m.fill(&mm), clip.ptr(), &opts, out.ptr(), st);
  };
}
Napi::Value DecodeAttention(const Napi::CallbackInfo& info) { return run_now(info, prepare_decode); }
Napi::Value DecodeAttentionAsync(const Napi::CallbackInfo& info) {
  return run_async(info, prepare_decode, 9, "kvtrim.decodeAttention");
}

// decodeAttentionBatched(seqs, queries, keys, values, counts, moments?, clip?, opts, out, stream);
// decodeAttentionBatchedAsync(..., abort)
static OpCall prepare_decode_batched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg q = parse_tensor(info[1], "queries"), k = parse_tensor(info[2], "keys");
  TensorArg v = parse_tensor(info[3], "values"), cnt = parse_tensor(info[4], "counts");
  MomentsArg m = parse_moments(info[5], false);
  TensorArg clip = parse_tensor(info[6], "clip", true);
  const kvt_decode_opts opts = decode_opts(info[7]);
  TensorArg out = parse_tensor(info[8], "out");
  kvt_stream st = parse_stream(info[9]);
  resolve(sq, q, k, v, cnt, m, clip, out);
  return [=] {
    kvt_seqs s;
    kvt_moments mm;
    return kvt_decode_attention_batched(sq.fill(&s), q.ptr(), k.ptr(), v.ptr(), cnt.ptr(), m.fill(&mm), clip.ptr(), &opts, out.ptr(), st);
  };
}
Napi::Value DecodeAttentionBatched(const Napi::CallbackInfo& info) { return run_now(info, prepare_decode_batched); }
Napi::Value DecodeAttentionBatchedAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_decode_batched, 10, "kvtrim.decodeAttentionBatched"); }

}  // namespace napi
}  // namespace kvt
