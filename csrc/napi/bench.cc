// Benchmark support: a threaded host memcpy, the yardstick for the CPU backend's memory bandwidth in
// `kvtrim bench` (the GPU yardstick is a device-to-device cudaMemcpyAsync).
#include <cstring>

#include "../cpu/parallel.h"
#include "../kvt_internal.h"
#include "glue.h"
#if defined(KVT_WITH_CUDA)
#include "../cuda_status.h"
#endif

namespace kvt {
namespace napi {

// hostCopy(dst: TypedArray, src: TypedArray): copies min(byteLength) bytes with the CPU backend's threads.
static Napi::Value HostCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[1].IsTypedArray()) throw Napi::TypeError::New(env, "hostCopy: expected two typed arrays");
  Napi::TypedArray d = info[0].As<Napi::TypedArray>(), s = info[1].As<Napi::TypedArray>();
  char* dst = static_cast<char*>(d.ArrayBuffer().Data()) + d.ByteOffset();
  const char* src = static_cast<const char*>(s.ArrayBuffer().Data()) + s.ByteOffset();
  const int64_t n = int64_t(d.ByteLength() < s.ByteLength() ? d.ByteLength() : s.ByteLength());
  const int64_t chunk = 1 << 20;
  cpu::parallel_for((n + chunk - 1) / chunk, 1, [&](int64_t b, int64_t e) {
    const int64_t lo = b * chunk, hi = e * chunk < n ? e * chunk : n;
    std::memcpy(dst + lo, src + lo, size_t(hi - lo));
  });
  return env.Undefined();
}
KVT_EXPORT("hostCopy", HostCopy);

#if defined(KVT_WITH_CUDA)
// Unfused GPU baselines (cuda/baseline.cu), CUDA tensors only: baselineKeydiff(keys, out, stream),
// baselineSelect(scores, keep, indices, counts, stream), baselineGather(keys, values, indices, counts, keysOut,
// valuesOut, stream).
static View cuda_view(Napi::Env env, const Napi::Value& v, const char* name, int ndim, uint32_t mask) {
  TensorArg a = parse_tensor(v, name);
  View view;
  check(env, check_tensor(a.ptr(), name, ndim, mask, "", &view));
  if (!view.on_cuda()) throw Napi::TypeError::New(env, std::string(name) + ": baselines run on CUDA tensors only");
  check(env, cuda_status(set_device(view.device_id), "cudaSetDevice"));
  return view;
}

static Napi::Value BaselineKeydiff(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View k = cuda_view(env, info[0], "keys", 3, kMaskFloat), o = cuda_view(env, info[1], "out", 2, kMaskF32);
  check(env, cuda_status(cuda::baseline_keydiff(t3(k), t2(o), static_cast<cudaStream_t>(parse_stream(info[2]))), "baselineKeydiff"));
  return env.Undefined();
}
KVT_EXPORT("baselineKeydiff", BaselineKeydiff);

static Napi::Value BaselineSelect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View s = cuda_view(env, info[0], "scores", 2, kMaskF32);
  int64_t keep = info[1].As<Napi::Number>().Int64Value();
  View idx = cuda_view(env, info[2], "indices", 2, kMaskI32), cnt = cuda_view(env, info[3], "counts", 1, kMaskI32);
  if (keep < 1 || keep > s.shape[1] || idx.shape[1] < keep) throw Napi::RangeError::New(env, "keep: out of range");
  check(env, cuda_status(cuda::baseline_select(t2(s), keep, t2(idx), t2(cnt), static_cast<cudaStream_t>(parse_stream(info[4]))), "baselineSelect"));
  return env.Undefined();
}
KVT_EXPORT("baselineSelect", BaselineSelect);

static Napi::Value BaselineGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View k = cuda_view(env, info[0], "keys", 3, kMaskFloat), v = cuda_view(env, info[1], "values", 3, kMaskFloat);
  View idx = cuda_view(env, info[2], "indices", 2, kMaskI32), cnt = cuda_view(env, info[3], "counts", 1, kMaskI32);
  View ko = cuda_view(env, info[4], "keysOut", 3, kMaskFloat), vo = cuda_view(env, info[5], "valuesOut", 3, kMaskFloat);
  check(env, cuda_status(cuda::baseline_gather(t3(k), t3(v), t2(idx), t2(cnt), o3(ko), o3(vo), static_cast<cudaStream_t>(parse_stream(info[6]))), "baselineGather"));
  return env.Undefined();
}
KVT_EXPORT("baselineGather", BaselineGather);
#endif

}  // namespace napi
}  // namespace kvt
