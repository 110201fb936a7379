// Binding of momentsMerge (C ABI kvt_moments_merge, MomentState.merge in TypeScript).
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

// momentsMerge(keys, values, indices, counts, moments, stream)
Napi::Value MomentsMerge(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  TensorArg parts[4];
  kvt_moments m{};
  if (!parse_moments(info[4], parts, &m)) throw Napi::TypeError::New(info.Env(), "moments: expected a MomentState");
  check(info.Env(), kvt_moments_merge(k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), &m, parse_stream(info[5])));
  return info.Env().Undefined();
}

// momentsMergeBatched(seqs, keys, values, evictedIndices, counts, moments, stream)
Napi::Value MomentsMergeBatched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), v = parse_tensor(info[2], "values");
  TensorArg idx = parse_tensor(info[3], "evictedIndices"), cnt = parse_tensor(info[4], "counts");
  TensorArg parts[4];
  kvt_moments m{};
  if (!parse_moments(info[5], parts, &m)) throw Napi::TypeError::New(info.Env(), "moments: expected a MomentState");
  check(info.Env(), kvt_moments_merge_batched(sq.ptr(), k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), &m, parse_stream(info[6])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
