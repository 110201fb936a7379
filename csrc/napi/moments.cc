// Binding of momentsMerge (C ABI kvt_moments_merge, MomentState.merge in TypeScript).
#include "bindings.h"
#include "glue.h"

namespace kvt {
namespace napi {

// momentsMerge(keys, values, indices, counts, moments, stream)
Napi::Value MomentsMerge(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "evictedIndices"), cnt = parse_tensor(info[3], "counts");
  MomentsArg m = parse_moments(info[4], true);
  check(info.Env(), kvt_moments_merge(k.ptr(), v.ptr(), idx.ptr(), cnt.ptr(), m.ptr(), parse_stream(info[5])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
