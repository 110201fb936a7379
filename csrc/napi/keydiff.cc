// Binding of keydiffScores (C ABI kvt_keydiff_scores).
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

// keydiffScores(keys, out, stream)
Napi::Value KeydiffScores(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), o = parse_tensor(info[1], "out");
  check(info.Env(), kvt_keydiff_scores(k.ptr(), o.ptr(), parse_stream(info[2])));
  return info.Env().Undefined();
}

// keydiffScoresBatched(seqs, keys, out, stream)
Napi::Value KeydiffScoresBatched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), out = parse_tensor(info[2], "out");
  check(info.Env(), kvt_keydiff_scores_batched(sq.ptr(), k.ptr(), out.ptr(), parse_stream(info[3])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
