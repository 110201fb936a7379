// Binding of gatherKV (C ABI kvt_gather_kv): compaction, optionally merging the evicted rows into a moment state.
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

// gatherKV(keys, values, indices, counts, keysOut, valuesOut, countsOut, moments, stream); gatherKVAsync(..., abort)
static OpCall prepare_gather(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  TensorArg ko = parse_tensor(info[4], "keysOut"), vo = parse_tensor(info[5], "valuesOut");
  TensorArg co = parse_tensor(info[6], "countsOut");
  MomentsArg m = parse_moments(info[7], false);
  kvt_stream st = parse_stream(info[8]);
  resolve(k, v, idx, cnt, ko, vo, co, m);
  return [=] {
    kvt_moments mm;
    return kvt_gather_kv(k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), ko.ptr(), vo.ptr(), co.ptr(), m.fill(&mm), st);
  };
}
Napi::Value GatherKV(const Napi::CallbackInfo& info) { return run_now(info, prepare_gather); }
Napi::Value GatherKVAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_gather, 9, "kvtrim.gatherKV"); }

// gatherKVBatched(seqs, keys, values, indices, counts, keysOut, valuesOut, countsOut, moments?, stream);
// gatherKVBatchedAsync(..., abort)
static OpCall prepare_gather_batched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), v = parse_tensor(info[2], "values");
  TensorArg idx = parse_tensor(info[3], "indices"), cnt = parse_tensor(info[4], "counts");
  TensorArg ko = parse_tensor(info[5], "keysOut"), vo = parse_tensor(info[6], "valuesOut");
  TensorArg co = parse_tensor(info[7], "countsOut");
  MomentsArg m = parse_moments(info[8], false);
  kvt_stream st = parse_stream(info[9]);
  resolve(sq, k, v, idx, cnt, ko, vo, co, m);
  return [=] {
    kvt_seqs s;
    kvt_moments mm;
    return kvt_gather_kv_batched(sq.fill(&s), k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), ko.ptr(), vo.ptr(), co.ptr(), m.fill(&mm), st);
  };
}
Napi::Value GatherKVBatched(const Napi::CallbackInfo& info) { return run_now(info, prepare_gather_batched); }
Napi::Value GatherKVBatchedAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_gather_batched, 10, "kvtrim.gatherKVBatched"); }

}  // namespace napi
}  // namespace kvt
