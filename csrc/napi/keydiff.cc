// Binding of keydiffScores (C ABI kvt_keydiff_scores).
#include "bindings.h"
#include "glue.h"

namespace kvt {
namespace napi {

// keydiffScores(keys, out, stream)
Napi::Value KeydiffScores(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), o = parse_tensor(info[1], "out");
  check(info.Env(), kvt_keydiff_scores(k.ptr(), o.ptr(), parse_stream(info[2])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
