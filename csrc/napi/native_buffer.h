// Device memory handle behind the JS DeviceBuffer: owns (stream-ordered cudaMallocAsync on the given stream, or on the
// legacy default stream when none is given) or borrows (wrap of a runtime's pointer) a range of device memory. Freed
// by free() or, as a safety net, when the JS object is garbage-collected — stream-ordered (cudaFreeAsync on the
// allocation stream, after every other stream the buffer was used on), with no device-wide synchronisation, unless a
// stream it was used on is gone or not kvtrim's (then cudaFree, which waits for the device).
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

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
  // Records that work using this buffer is being enqueued on `stream` (a cudaStream_t; 0 = the legacy default stream).
  // The first use on a stream other than the allocation's makes that stream wait for the allocation; the free waits for
  // every such stream.
  void note_stream(uintptr_t stream);

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
  std::vector<std::pair<uintptr_t, uint64_t>> uses_;  // other streams the buffer was used on, with their generation
};

// The bindings note the device buffers of a call as they resolve its tensors (TensorArg::resolve and the copies) and the
// call's stream when they parse it (parse_stream -> call_stream), in either order, before the work is enqueued: every
// buffer of the call is then noted as used on that stream. Guarded (addon.cc) brackets each binding call with
// begin_call / end_call, so nothing noted by a failed call carries over to the next.
void note_pending(NativeBuffer* b);
void call_stream(uintptr_t stream);
void flush_pending(uintptr_t stream);
void begin_call();
void end_call();

}  // namespace napi
}  // namespace kvt
