// Benchmark support: a threaded host memcpy, the yardstick for the CPU backend's memory bandwidth in
// `kvtrim bench` (the GPU yardstick is a device-to-device cudaMemcpyAsync).
#include <cstring>

#include "../cpu/parallel.h"
#include "glue.h"

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

}  // namespace napi
}  // namespace kvt
