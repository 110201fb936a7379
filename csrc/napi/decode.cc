// Binding of decodeAttention (C ABI kvt_decode_attention) and the defaults of its options.
#include "bindings.h"
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

// decodeAttention(queries, keys, values, counts, moments?, clip?, {order, scale, useClip, clip}, out, stream)
static OpCall prepare_decode(const Napi::CallbackInfo& info) {
  TensorArg q = parse_tensor(info[0], "queries"), k = parse_tensor(info[1], "keys");
  TensorArg v = parse_tensor(info[2], "values"), cnt = parse_tensor(info[3], "counts");
  MomentsArg m = parse_moments(info[4], false);
  TensorArg clip = parse_tensor(info[5], "clip", true);
  Napi::Object o = opts_object(info[6]);
  kvt_decode_opts opts;
  kvt_decode_default_opts(&opts);
  opts.order = get_int(o, "order", opts.order);
  opts.use_clip = get_int(o, "useClip", opts.use_clip);
  opts.scale = get_num(o, "scale", opts.scale);
  opts.clip = get_num(o, "clip", opts.clip);
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

}  // namespace napi
}  // namespace kvt
