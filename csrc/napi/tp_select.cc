// Bindings of the tensor-parallel adaptive selection (C ABI kvt_tp_select_*): one problem object per call.
#include "batch.h"
#include "bindings.h"
#include "glue.h"

namespace kvt {
namespace napi {

// tpSelectRounds(radixBits) -> number
Napi::Value TpSelectRounds(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), kvt_tp_select_rounds(info[0].As<Napi::Number>().Int32Value()));
}

// tpSelectStateWords(Hs) -> number
Napi::Value TpSelectStateWords(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(kvt_tp_select_state_words(info[0].As<Napi::Number>().Int64Value())));
}

// tpSelectBegin(problem, stream)
Napi::Value TpSelectBegin(const Napi::CallbackInfo& info) {
  TpArg p = parse_tp(info[0]);
  check(info.Env(), kvt_tp_select_begin(p.ptr(), parse_stream(info[1])));
  return info.Env().Undefined();
}

// tpSelectHistogram(problem, round, hist, stream)
Napi::Value TpSelectHistogram(const Napi::CallbackInfo& info) {
  TpArg p = parse_tp(info[0]);
  TensorArg h = parse_tensor(info[2], "hist");
  check(info.Env(), kvt_tp_select_histogram(p.ptr(), info[1].As<Napi::Number>().Int32Value(), h.ptr(), parse_stream(info[3])));
  return info.Env().Undefined();
}

// tpSelectAdvance(problem, round, histSum, stream)
Napi::Value TpSelectAdvance(const Napi::CallbackInfo& info) {
  TpArg p = parse_tp(info[0]);
  TensorArg h = parse_tensor(info[2], "histSum");
  check(info.Env(), kvt_tp_select_advance(p.ptr(), info[1].As<Napi::Number>().Int32Value(), h.ptr(), parse_stream(info[3])));
  return info.Env().Undefined();
}

// tpSelectFinish(problem, indices, counts, stream)
Napi::Value TpSelectFinish(const Napi::CallbackInfo& info) {
  TpArg p = parse_tp(info[0]);
  TensorArg idx = parse_tensor(info[1], "indices"), cnt = parse_tensor(info[2], "counts");
  check(info.Env(), kvt_tp_select_finish(p.ptr(), idx.ptr(), cnt.ptr(), parse_stream(info[3])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
