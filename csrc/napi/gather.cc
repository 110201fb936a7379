// Binding of gatherKV (C ABI kvt_gather_kv): compaction, optionally merging the evicted rows into a moment state.
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

// gatherKV(keys, values, indices, counts, keysOut, valuesOut, countsOut, moments, stream)
Napi::Value GatherKV(const Napi::CallbackInfo& info) {
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

// gatherKVBatched(seqs, keys, values, indices, counts, keysOut, valuesOut, countsOut, moments, stream)
Napi::Value GatherKVBatched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), v = parse_tensor(info[2], "values");
  TensorArg idx = parse_tensor(info[3], "indices"), cnt = parse_tensor(info[4], "counts");
  TensorArg ko = parse_tensor(info[5], "keysOut"), vo = parse_tensor(info[6], "valuesOut");
  TensorArg co = parse_tensor(info[7], "countsOut");
  TensorArg parts[4];
  kvt_moments m{};
  bool has_m = parse_moments(info[8], parts, &m);
  check(info.Env(), kvt_gather_kv_batched(sq.ptr(), k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), ko.ptr(), vo.ptr(), co.ptr(),
                                          has_m ? &m : nullptr, parse_stream(info[9])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
