// Bindings of the tensor-parallel adaptive selection (C ABI kvt_tp_select_*): one problem object per call.
#include "batch.h"
#include "bindings.h"
#include "glue.h"

#include <algorithm>

namespace kvt {
namespace napi {

// A round number (out of int32 range: -1, which every entry point rejects as out of range).
static int32_t round_arg(const Napi::Value& v) {
  const int64_t r = arg_int(v, "round");
  return r < 0 || r > 2147483647 ? -1 : int32_t(r);
}

// tpSelectRounds(radixBits) -> number
Napi::Value TpSelectRounds(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), kvt_tp_select_rounds(int32_t(std::clamp<int64_t>(arg_int(info[0], "radixBits"), -1, 64))));
}

// tpSelectStateWords(Hs) -> number
Napi::Value TpSelectStateWords(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(kvt_tp_select_state_words(arg_int(info[0], "shardHeads"))));
}

// tpSelectBegin(problem, stream)
Napi::Value TpSelectBegin(const Napi::CallbackInfo& info) {
  TpArg p = parse_tp(info[0]);
  check(info.Env(), kvt_tp_select_begin(p.use(), parse_stream(info[1])));
  return info.Env().Undefined();
}

// tpSelectHistogram(problem, round, hist, stream)
Napi::Value TpSelectHistogram(const Napi::CallbackInfo& info) {
  TpArg p = parse_tp(info[0]);
  TensorArg h = parse_tensor(info[2], "hist");
  check(info.Env(), kvt_tp_select_histogram(p.use(), round_arg(info[1]), h.use(), parse_stream(info[3])));
  return info.Env().Undefined();
}

// tpSelectAdvance(problem, round, histSum, stream)
Napi::Value TpSelectAdvance(const Napi::CallbackInfo& info) {
  TpArg p = parse_tp(info[0]);
  TensorArg h = parse_tensor(info[2], "histSum");
  check(info.Env(), kvt_tp_select_advance(p.use(), round_arg(info[1]), h.use(), parse_stream(info[3])));
  return info.Env().Undefined();
}

// tpSelectFinish(problem, indices, counts, stream)
Napi::Value TpSelectFinish(const Napi::CallbackInfo& info) {
  TpArg p = parse_tp(info[0]);
  TensorArg idx = parse_tensor(info[1], "indices"), cnt = parse_tensor(info[2], "counts");
  check(info.Env(), kvt_tp_select_finish(p.use(), idx.use(), cnt.use(), parse_stream(info[3])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
