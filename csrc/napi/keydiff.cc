// Binding of keydiffScores (C ABI kvt_keydiff_scores).
#include "bindings.h"
#include "batch.h"
#include "glue.h"

namespace kvt {
namespace napi {

// keydiffScores(keys, out, stream); keydiffScoresAsync(keys, out, stream, abort)
static OpCall prepare_keydiff(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), o = parse_tensor(info[1], "out");
  kvt_stream st = parse_stream(info[2]);
  resolve(k, o);
  return [=] { return kvt_keydiff_scores(k.ptr(), o.ptr(), st); };
}
Napi::Value KeydiffScores(const Napi::CallbackInfo& info) { return run_now(info, prepare_keydiff); }
Napi::Value KeydiffScoresAsync(const Napi::CallbackInfo& info) {
  return run_async(info, prepare_keydiff, 3, "kvtrim.keydiffScores");
}

// keydiffScoresBatched(seqs, keys, out, stream); keydiffScoresBatchedAsync(..., abort)
static OpCall prepare_keydiff_batched(const Napi::CallbackInfo& info) {
  SeqsArg sq = parse_seqs(info[0], "seqs");
  TensorArg k = parse_tensor(info[1], "keys"), out = parse_tensor(info[2], "out");
  kvt_stream st = parse_stream(info[3]);
  resolve(sq, k, out);
  return [=] {
    kvt_seqs s;
    return kvt_keydiff_scores_batched(sq.fill(&s), k.ptr(), out.ptr(), st);
  };
}
Napi::Value KeydiffScoresBatched(const Napi::CallbackInfo& info) { return run_now(info, prepare_keydiff_batched); }
Napi::Value KeydiffScoresBatchedAsync(const Napi::CallbackInfo& info) { return run_async(info, prepare_keydiff_batched, 4, "kvtrim.keydiffScoresBatched"); }

}  // namespace napi
}  // namespace kvt
