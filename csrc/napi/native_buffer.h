// Device memory handle behind the JS DeviceBuffer: owns (cudaMalloc / stream-ordered cudaMallocAsync) or
// borrows (wrap of a runtime's pointer) a range of device memory. Freed by free() or, as a safety net, when
// the JS object is garbage-collected.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace kvt {
namespace napi {

bool cuda_enabled();

class NativeBuffer : public Napi::ObjectWrap<NativeBuffer> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  // The NativeBuffer behind `v`, or null when `v` is not one.
  static NativeBuffer* From(const Napi::Value& v);

  explicit NativeBuffer(const Napi::CallbackInfo& info);
  ~NativeBuffer() override;

  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  bool freed() const { return freed_; }

 private:
  Napi::Value Free(const Napi::CallbackInfo& info);
  void construct(const Napi::CallbackInfo& info);
  void release();

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
  bool owned_ = false;
  bool freed_ = false;
  uintptr_t stream_ = 0;  // stream of a stream-ordered allocation, freed on the same stream
  uint64_t stream_gen_ = 0;  // that stream's generation when kvtrim created it (0: a stream kvtrim did not create)
  bool async_ = false;
};

}  // namespace napi
}  // namespace kvt
