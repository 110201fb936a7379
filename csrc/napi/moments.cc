// Binding of momentsMerge (C ABI kvt_moments_merge, MomentState.merge in TypeScript).
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

// momentsMerge(keys, values, indices, counts, moments, stream)
static OpCall prepare_moments(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "evictedIndices"), cnt = parse_tensor(info[3], "counts");
  MomentsArg m = parse_moments(info[4], true);
  kvt_stream st = parse_stream(info[5]);
  resolve(k, v, idx, cnt, m);
  return [=] {
    kvt_moments mm;
    return kvt_moments_merge(k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), m.fill(&mm), st);
  };
}
Napi::Value MomentsMerge(const Napi::CallbackInfo& info) { return run_now(info, prepare_moments); }
Napi::Value MomentsMergeAsync(const Napi::CallbackInfo& info) {
  return run_async(info, prepare_moments, 6, "kvtrim.momentsMerge");
}

// momentsMergeBatched(seqs, keys, values, evictedIndices, counts, moments, stream); momentsMergeBatchedAsync(..., abort)
static OpCall prepare_moments_batched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), v = parse_tensor(info[2], "values");
  TensorArg idx = parse_tensor(info[3], "evictedIndices"), cnt = parse_tensor(info[4], "counts");
  MomentsArg m = parse_moments(info[5], true);
  kvt_stream st = parse_stream(info[6]);
  resolve(sq, k, v, idx, cnt, m);
  return [=] {
    kvt_seqs s;
    kvt_moments mm;
    return kvt_moments_merge_batched(sq.fill(&s), k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), m.fill(&mm), st);
  };
}
Napi::Value MomentsMergeBatched(const Napi::CallbackInfo& info) { return run_now(info, prepare_moments_batched); }
Napi::Value MomentsMergeBatchedAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_moments_batched, 7, "kvtrim.momentsMergeBatched"); }

}  // namespace napi
}  // namespace kvt
