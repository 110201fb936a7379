// The device memory of the JS DeviceBuffer (NativeBuffer) and the bindings of CUDA streams, events and copies, on the
// CUDA runtime directly (no kvtrim op involved); without a usable GPU they throw ERR_KVTRIM_NO_CUDA.
#include "native_buffer.h"

#include <mutex>
#include <string>
#include <unordered_map>

#include "bindings.h"
#include "glue.h"

#if defined(KVT_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace kvt {
namespace napi {
namespace {

const napi_type_tag kBufferTag = {0x6b767472696d4255ull, 0x4e61746976654275ull};  // "kvtrimBU" "NativeBu"

[[noreturn]] void no_cuda(Napi::Env env, const char* what) {
  throw_coded(env, std::string(what) + ": CUDA is not available (see backendInfo().reason)", "ERR_KVTRIM_NO_CUDA");
}

#if defined(KVT_WITH_CUDA)
void cuda_check(Napi::Env env, cudaError_t e, const char* where) {
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw_coded(env, std::string(where) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")",
                "ERR_KVTRIM_CUDA");
  }
}
void use_device(Napi::Env env, int dev) {
  int cur = -1;
  cuda_check(env, cudaGetDevice(&cur), "cudaGetDevice");
  if (cur != dev) cuda_check(env, cudaSetDevice(dev), "cudaSetDevice");
}
cudaStream_t stream_of(const Napi::Value& v) { return static_cast<cudaStream_t>(parse_stream(v)); }

// Streams created by Stream.create (handle -> generation). A stream-ordered allocation is freed on its stream with
// cudaFreeAsync; once that stream is destroyed its handle is invalid (and may be reused by a new stream), so a buffer
// that outlives its stream (disposed later, or collected) is freed with cudaFree instead, which waits for the device.
// Streams wrapped from another runtime (Stream.wrap) are not tracked: their owner keeps them alive while kvtrim
// allocates on them; a buffer merely used on one is freed with cudaFree (its owner may have destroyed it since).
std::mutex g_streams_mu;
std::unordered_map<uintptr_t, uint64_t> g_streams;
uint64_t g_stream_gen = 0;
uint64_t stream_generation(uintptr_t s) {
  if (s == 0) return 0;
  std::lock_guard<std::mutex> lk(g_streams_mu);
  auto it = g_streams.find(s);
  return it == g_streams.end() ? 0 : it->second;
}
bool stream_alive(uintptr_t s, uint64_t gen) {
  if (gen == 0 || s == 0) return true;
  std::lock_guard<std::mutex> lk(g_streams_mu);
  auto it = g_streams.find(s);
  return it != g_streams.end() && it->second == gen;
}
// Makes `waiter` wait for the work enqueued on `on` so far (an event, destroyed at once: released when it completes).
void stream_after(uintptr_t waiter, uintptr_t on) {
  cudaEvent_t ev;
  if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) return;
  if (cudaEventRecord(ev, reinterpret_cast<cudaStream_t>(on)) == cudaSuccess)
    cudaStreamWaitEvent(reinterpret_cast<cudaStream_t>(waiter), ev, 0);
  cudaEventDestroy(ev);
}

// Device buffers of the call being parsed (main thread of each JS environment).
thread_local std::vector<NativeBuffer*> t_pending;
#endif

#if defined(KVT_WITH_CUDA)
uint64_t big_u64(const Napi::Value& v, const char* name) {
  if (!v.IsBigInt()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a bigint");
  bool lossless = true;
  return v.As<Napi::BigInt>().Uint64Value(&lossless);
}

int64_t num_i64(const Napi::Value& v, const char* name) { return arg_int(v, name); }

// A promise-returning background job (stream synchronisation, device-to-host copies).
class CudaJob : public Napi::AsyncWorker {
 public:
  CudaJob(Napi::Env env, std::function<std::string()> job, Napi::Value keep)
      : Napi::AsyncWorker(env), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {
    if (!keep.IsUndefined()) keep_ = Napi::Persistent(keep);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::string err = job_();
    if (!err.empty()) SetError(err);
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override {
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    err.Set("code", Napi::String::New(Env(), "ERR_KVTRIM_CUDA"));
    deferred_.Reject(err.Value());
  }

 private:
  std::function<std::string()> job_;
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Value> keep_;
};
#endif

}  // namespace

void NativeBuffer::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "NativeBuffer", {InstanceMethod("free", &NativeBuffer::Free)});
  exports.Set("NativeBuffer", cls);
}

NativeBuffer* NativeBuffer::From(const Napi::Value& v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.CheckTypeTag(&kBufferTag)) return nullptr;
  return Napi::ObjectWrap<NativeBuffer>::Unwrap(o);
}

// new NativeBuffer('alloc', bytes, device, stream?) | new NativeBuffer('wrap', ptr: bigint, bytes, device)
NativeBuffer::NativeBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeBuffer>(info) {
  try {
    construct(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {  // no C++ exception other than a JS error leaves a binding
    throw Napi::Error::New(info.Env(), std::string("DeviceBuffer: internal error: ") + e.what());
  }
}

void NativeBuffer::construct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kBufferTag);
  std::string mode = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (!cuda_enabled()) no_cuda(env, mode == "wrap" ? "DeviceBuffer.wrap" : "DeviceBuffer.alloc");
#if defined(KVT_WITH_CUDA)
  if (mode == "alloc") {
    int64_t bytes = num_i64(info[1], "bytes");
    if (bytes < 0) throw Napi::RangeError::New(env, "bytes: must be >= 0");
    device_ = int(num_i64(info[2], "device"));
    use_device(env, device_);
    bytes_ = size_t(bytes);
    owned_ = true;
    // Stream-ordered on the given stream, or on the legacy default stream (0) — where ops without a stream run.
    stream_ = info.Length() > 3 && info[3].IsBigInt() ? uintptr_t(big_u64(info[3], "stream")) : 0;
    stream_gen_ = stream_generation(stream_);
    async_ = true;
    cuda_check(env, cudaMallocAsync(&ptr_, bytes_ ? bytes_ : 1, reinterpret_cast<cudaStream_t>(stream_)),
               "cudaMallocAsync");
  } else if (mode == "wrap") {
    ptr_ = reinterpret_cast<void*>(uintptr_t(big_u64(info[1], "ptr")));
    const int64_t bytes = num_i64(info[2], "bytes");
    if (bytes < 0) throw Napi::RangeError::New(env, "bytes: must be >= 0");
    bytes_ = size_t(bytes);
    device_ = int(num_i64(info[3], "device"));
    owned_ = false;
  } else {
    throw Napi::TypeError::New(env, "NativeBuffer: mode must be 'alloc' or 'wrap'");
  }
  info.This().As<Napi::Object>().Set("ptr", Napi::BigInt::New(env, uint64_t(uintptr_t(ptr_))));
#endif
}

void NativeBuffer::note_stream(uintptr_t stream) {
#if defined(KVT_WITH_CUDA)
  if (!owned_ || freed_ || stream == stream_) return;
  for (const auto& u : uses_)
    if (u.first == stream) return;
  // first use on this stream: it waits for the allocation (ordered on the allocation stream only)
  if (stream_alive(stream_, stream_gen_)) stream_after(stream, stream_);
  cudaGetLastError();
  uses_.emplace_back(stream, stream_generation(stream));
#else
  (void)stream;
#endif
}

void NativeBuffer::release() {
  if (freed_) return;
  freed_ = true;
#if defined(KVT_WITH_CUDA)
  for (auto& p : t_pending)
    if (p == this) p = nullptr;
  if (owned_ && ptr_) {
    int cur = -1;
    cudaGetDevice(&cur);
    if (cur != device_) cudaSetDevice(device_);
    // Stream-ordered when the allocation stream and every stream the buffer was used on are known to be alive: the free
    // waits for those streams' work so far. Otherwise (a destroyed stream, or a borrowed one kvtrim cannot vouch for)
    // cudaFree, which waits for the device.
    bool ordered = async_ && stream_alive(stream_, stream_gen_);
    for (const auto& u : uses_)
      if ((u.second == 0 && u.first != 0) || !stream_alive(u.first, u.second)) ordered = false;
    if (ordered) {
      for (const auto& u : uses_) stream_after(stream_, u.first);
      cudaFreeAsync(ptr_, reinterpret_cast<cudaStream_t>(stream_));
    } else {
      cudaFree(ptr_);
    }
    cudaGetLastError();
  }
#endif
  ptr_ = nullptr;
}

#if defined(KVT_WITH_CUDA)
// The stream of the binding call being made, once parse_stream has read it.
thread_local bool t_stream_known = false;
thread_local uintptr_t t_stream = 0;
#endif

void note_pending(NativeBuffer* b) {
#if defined(KVT_WITH_CUDA)
  if (t_stream_known) b->note_stream(t_stream);
  else t_pending.push_back(b);
#else
  (void)b;
#endif
}

void call_stream(uintptr_t stream) {
#if defined(KVT_WITH_CUDA)
  t_stream_known = true;
  t_stream = stream;
  flush_pending(stream);
#else
  (void)stream;
#endif
}

void begin_call() {
#if defined(KVT_WITH_CUDA)
  t_pending.clear();
  t_stream_known = false;
#endif
}

void end_call() { begin_call(); }

void flush_pending(uintptr_t stream) {
#if defined(KVT_WITH_CUDA)
  for (NativeBuffer* b : t_pending)
    if (b) b->note_stream(stream);
  t_pending.clear();
#else
  (void)stream;
#endif
}

NativeBuffer::~NativeBuffer() { release(); }

Napi::Value NativeBuffer::Free(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------------
// Streams, events and copies. All throw ERR_KVTRIM_NO_CUDA when CUDA is off.
#if defined(KVT_WITH_CUDA)
#define REQUIRE_CUDA(env, what) \
  if (!cuda_enabled()) no_cuda(env, what)
#else
#define REQUIRE_CUDA(env, what) no_cuda(env, what)
#endif

Napi::Value StreamCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "Stream.create");
#if defined(KVT_WITH_CUDA)
  use_device(env, int(num_i64(info[0], "device")));
  cudaStream_t s;
  cuda_check(env, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  {
    std::lock_guard<std::mutex> lk(g_streams_mu);
    g_streams[reinterpret_cast<uintptr_t>(s)] = ++g_stream_gen;
  }
  return Napi::BigInt::New(env, uint64_t(reinterpret_cast<uintptr_t>(s)));
#endif
}
Napi::Value StreamDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "Stream.dispose");
#if defined(KVT_WITH_CUDA)
  cudaStream_t s = stream_of(info[0]);
  {
    std::lock_guard<std::mutex> lk(g_streams_mu);
    g_streams.erase(reinterpret_cast<uintptr_t>(s));
  }
  cuda_check(env, cudaStreamDestroy(s), "cudaStreamDestroy");
  return env.Undefined();
#endif
}
// streamSynchronize(stream: bigint, device) -> Promise<void>; waits on a libuv worker thread.
Napi::Value StreamSynchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "Stream.synchronize");
#if defined(KVT_WITH_CUDA)
  cudaStream_t s = stream_of(info[0]);
  int dev = int(num_i64(info[1], "device"));
  auto* job = new CudaJob(env, [s, dev]() -> std::string {
    cudaSetDevice(dev);
    cudaError_t e = cudaStreamSynchronize(s);
    if (e == cudaSuccess) return "";
    return std::string("stream.synchronize: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  }, env.Undefined());
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
#endif
}
Napi::Value EventCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "Event.create");
#if defined(KVT_WITH_CUDA)
  use_device(env, int(num_i64(info[0], "device")));
  cudaEvent_t e;
  cuda_check(env, cudaEventCreate(&e), "cudaEventCreate");
  return Napi::BigInt::New(env, uint64_t(reinterpret_cast<uintptr_t>(e)));
#endif
}
Napi::Value EventRecord(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "Event.record");
#if defined(KVT_WITH_CUDA)
  auto e = reinterpret_cast<cudaEvent_t>(uintptr_t(big_u64(info[0], "event")));
  cuda_check(env, cudaEventRecord(e, stream_of(info[1])), "cudaEventRecord");
  return env.Undefined();
#endif
}
// eventElapsed(start, end) -> ms; synchronises on `end` (benchmarks only).
Napi::Value EventElapsed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "Event.elapsed");
#if defined(KVT_WITH_CUDA)
  auto a = reinterpret_cast<cudaEvent_t>(uintptr_t(big_u64(info[0], "start")));
  auto b = reinterpret_cast<cudaEvent_t>(uintptr_t(big_u64(info[1], "end")));
  cuda_check(env, cudaEventSynchronize(b), "cudaEventSynchronize");
  float ms = 0;
  cuda_check(env, cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  return Napi::Number::New(env, ms);
#endif
}
Napi::Value EventDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "Event.dispose");
#if defined(KVT_WITH_CUDA)
  cuda_check(env, cudaEventDestroy(reinterpret_cast<cudaEvent_t>(uintptr_t(big_u64(info[0], "event")))),
             "cudaEventDestroy");
  return env.Undefined();
#endif
}
#if defined(KVT_WITH_CUDA)
// [off, off + bytes) must lie inside a buffer of `size` bytes (offsets are safe integers: the sum cannot wrap).
static bool range_ok(int64_t off, int64_t bytes, size_t size) {
  return off >= 0 && bytes >= 0 && uint64_t(off) + uint64_t(bytes) <= uint64_t(size);
}
static char* buffer_at(Napi::Env env, const Napi::Value& b, int64_t off, int64_t bytes, const char* name) {
  NativeBuffer* nb = NativeBuffer::From(b);
  if (!nb) throw Napi::TypeError::New(env, std::string(name) + ": expected a DeviceBuffer");
  if (nb->freed()) throw Napi::TypeError::New(env, std::string(name) + ": its DeviceBuffer was disposed");
  if (!range_ok(off, bytes, nb->bytes()))
    throw Napi::RangeError::New(env, std::string(name) + ": byte range [" + std::to_string(off) + ", " +
                                         std::to_string(off + bytes) + ") exceeds its " + std::to_string(nb->bytes()) +
                                         "-byte buffer");
  use_device(env, nb->device());
  note_pending(nb);
  return static_cast<char*>(nb->ptr()) + off;
}
static char* host_at(Napi::Env env, const Napi::Value& v, int64_t off, int64_t bytes, const char* name) {
  const HostMemory m = host_memory(v, name);
  if (!range_ok(off, bytes, m.bytes)) throw Napi::RangeError::New(env, std::string(name) + ": byte range exceeds the typed array");
  return m.data + off;
}
#endif

// copyToDevice(dst: NativeBuffer, dstOffset, src: TypedArray, srcOffset, bytes, stream)
Napi::Value CopyToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "toDevice");
#if defined(KVT_WITH_CUDA)
  int64_t bytes = num_i64(info[4], "bytes");
  char* dst = buffer_at(env, info[0], num_i64(info[1], "dstOffset"), bytes, "dst");
  char* src = host_at(env, info[2], num_i64(info[3], "srcOffset"), bytes, "src");
  // Pageable source: cudaMemcpyAsync returns once the bytes are staged, so the typed array may be reused at once.
  cuda_check(env, cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyHostToDevice, stream_of(info[5])), "cudaMemcpyAsync");
  return env.Undefined();
#endif
}
// copyToHost(dst: TypedArray, dstOffset, src: NativeBuffer, srcOffset, bytes, stream) -> Promise (off the event loop)
// The copy must see `src` as it is at this point of `stream`'s order: work the caller enqueues after toHost (without
// awaiting it) must not leak into it. A device-to-host copy into pageable memory blocks the calling thread, so it runs
// on a worker — which enqueues it later than the caller's next launches. Hence a stream-ordered snapshot of `src` is
// taken here, on the calling thread (device-to-device, asynchronous), and the worker copies the private snapshot.
Napi::Value CopyToHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "toHost");
#if defined(KVT_WITH_CUDA)
  int64_t bytes = num_i64(info[4], "bytes");
  char* dst = host_at(env, info[0], num_i64(info[1], "dstOffset"), bytes, "dst");
  char* src = buffer_at(env, info[2], num_i64(info[3], "srcOffset"), bytes, "src");
  cudaStream_t s = stream_of(info[5]);
  int dev = NativeBuffer::From(info[2])->device();
  void* snap = nullptr;
  if (bytes > 0) {
    cuda_check(env, cudaMallocAsync(&snap, size_t(bytes), s), "cudaMallocAsync");
    cudaError_t e = cudaMemcpyAsync(snap, src, size_t(bytes), cudaMemcpyDeviceToDevice, s);
    if (e != cudaSuccess) cudaFreeAsync(snap, s);
    cuda_check(env, e, "cudaMemcpyAsync");
  }
  auto* job = new CudaJob(env, [=]() -> std::string {
    cudaSetDevice(dev);
    cudaError_t e = cudaSuccess;
    if (snap) {
      e = cudaMemcpyAsync(dst, snap, size_t(bytes), cudaMemcpyDeviceToHost, s);
      const cudaError_t f = cudaFreeAsync(snap, s);
      if (e == cudaSuccess) e = f;
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (e == cudaSuccess) return "";
    return std::string("toHost: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  }, info[0]);
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
#endif
}
// copyDevice(dst, dstOffset, src, srcOffset, bytes, stream)
Napi::Value CopyDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "copy");
#if defined(KVT_WITH_CUDA)
  int64_t bytes = num_i64(info[4], "bytes");
  char* dst = buffer_at(env, info[0], num_i64(info[1], "dstOffset"), bytes, "dst");
  char* src = buffer_at(env, info[2], num_i64(info[3], "srcOffset"), bytes, "src");
  cuda_check(env, cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDeviceToDevice, stream_of(info[5])), "cudaMemcpyAsync");
  return env.Undefined();
#endif
}
// fillBytes(dst, offset, byte, bytes, stream)
Napi::Value FillBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "fill");
#if defined(KVT_WITH_CUDA)
  int64_t bytes = num_i64(info[3], "bytes");
  char* dst = buffer_at(env, info[0], num_i64(info[1], "offset"), bytes, "dst");
  cuda_check(env, cudaMemsetAsync(dst, int(num_i64(info[2], "byte")), size_t(bytes), stream_of(info[4])), "cudaMemsetAsync");
  return env.Undefined();
#endif
}
Napi::Value DeviceSynchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_CUDA(env, "deviceSynchronize");
#if defined(KVT_WITH_CUDA)
  use_device(env, int(num_i64(info[0], "device")));
  cuda_check(env, cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return env.Undefined();
#endif
}
}  // namespace napi
}  // namespace kvt
