// Bindings of the `kvtrim bench` support (kvtrim_bench.h): a threaded host memcpy, the yardstick for the CPU
// backend's memory bandwidth (the GPU yardstick is a device-to-device cudaMemcpyAsync), and the unfused GPU
// baselines the CUDA kernels are timed against (exported in CUDA builds only, addon.cc).
#include "bindings.h"
#include "glue.h"
#include "kvtrim_bench.h"

namespace kvt {
namespace napi {

// hostCopy(dst: TypedArray, src: TypedArray): copies min(byteLength) bytes with the CPU backend's threads.
Napi::Value HostCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const HostMemory d = host_memory(info[0], "dst"), s = host_memory(info[1], "src");
  check(env, kvt_bench_host_copy(d.data, s.data, int64_t(d.bytes < s.bytes ? d.bytes : s.bytes)));
  return env.Undefined();
}

// fmaPeak(): GFLOP/s of the CPU backend's multiply-add yardstick (kvt_bench_fma_peak).
Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  double g = 0;
  check(info.Env(), kvt_bench_fma_peak(&g));
  return Napi::Number::New(info.Env(), g);
}

// baselineKeydiff(keys, out, stream)
Napi::Value BaselineKeydiff(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), o = parse_tensor(info[1], "out");
  check(info.Env(), kvt_bench_keydiff(k.use(), o.use(), parse_stream(info[2])));
  return info.Env().Undefined();
}

// baselineSelect(scores, keep, indices, counts, stream)
Napi::Value BaselineSelect(const Napi::CallbackInfo& info) {
  TensorArg s = parse_tensor(info[0], "scores");
  const int64_t keep = arg_int(info[1], "keep");
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  check(info.Env(), kvt_bench_select(s.use(), keep, idx.use(), cnt.use(), parse_stream(info[4])));
  return info.Env().Undefined();
}

// baselineGather(keys, values, indices, counts, keysOut, valuesOut, stream)
Napi::Value BaselineGather(const Napi::CallbackInfo& info) {
  TensorArg k = parse_tensor(info[0], "keys"), v = parse_tensor(info[1], "values");
  TensorArg idx = parse_tensor(info[2], "indices"), cnt = parse_tensor(info[3], "counts");
  TensorArg ko = parse_tensor(info[4], "keysOut"), vo = parse_tensor(info[5], "valuesOut");
  check(info.Env(), kvt_bench_gather(k.use(), v.use(), idx.use(), cnt.use(), ko.use(), vo.use(), parse_stream(info[6])));
  return info.Env().Undefined();
}

// baselineSnapkv(queries, keys, out, stream)
Napi::Value BaselineSnapkv(const Napi::CallbackInfo& info) {
  TensorArg q = parse_tensor(info[0], "queries"), k = parse_tensor(info[1], "keys"), o = parse_tensor(info[2], "out");
  check(info.Env(), kvt_bench_snapkv_simt(q.use(), k.use(), o.use(), parse_stream(info[3])));
  return info.Env().Undefined();
}

}  // namespace napi
}  // namespace kvt
