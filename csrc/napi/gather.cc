// Binding of gatherKV (C ABI kvt_gather_kv): compaction, optionally merging the evicted rows into a moment state.
#include "bindings.h"
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

}  // namespace napi
}  // namespace kvt
