// Shared pieces of the Node-API bindings: tensor descriptor parsing (with bounds checks against the JS buffer),
// option objects, stream arguments, moment-state arguments, and the kvt_status -> JS exception mapping.
//
// Time of check = time of use. Reading an argument's properties (shape, options, ...) can run JavaScript (getters,
// proxies) that detaches, shrinks or disposes a buffer named by another argument. So a binding first parses every
// argument (parse_tensor, parse_moments, options), which only records the JS values, and resolves the buffers to
// pointers and checks each view against its buffer's current size in `ptr()`, inside the argument list of the C call,
// where no JavaScript can run before the op does.
//
// One op, two exports: a binding parses its arguments in a Prepare function, resolves every view last (`resolve`),
// and returns an OpCall holding the C call with its arguments by value; `<op>` runs it at once on the JS thread
// (run_now), `<op>Async` on a libuv worker thread (run_async). Resolving is the last JavaScript-visible step of a
// Prepare in both cases; for an async call the resolved buffers are pinned until it settles.
#pragma once

#include <napi.h>

#include <functional>
#include <string>

#include "kvtrim.h"

namespace kvt {
namespace napi {

// A parsed tensor argument: dtype, shape, strides and offset checked as numbers; the data is resolved (and the view
// checked against it) by resolve(). Copies re-point `t.shape` and `t.strides` at their own storage.
struct TensorArg {
  kvt_tensor t{};
  int64_t shape[4] = {0, 0, 0, 0};
  int64_t strides[4] = {0, 0, 0, 0};
  int64_t offset = 0;  // elements
  int elem_size = 0;
  bool present = false;
  const char* name = "tensor";
  bool resolved = false;
  Napi::Value data;
  TensorArg() = default;
  TensorArg(const TensorArg& o) { *this = o; }
  TensorArg& operator=(const TensorArg& o);
  // Resolves the data now and checks the view against the buffer's current byte length (TypeError / RangeError
  // naming the argument otherwise); pins the buffer when an async call is being prepared. JS thread only.
  void resolve();
  // The descriptor for the C ABI: null when absent, and null when not resolved (the C ABI then reports the argument
  // as missing, never reads unchecked memory). Touches no JS value: callable on a worker thread.
  const kvt_tensor* ptr() const { return present && resolved ? &t : nullptr; }
  // resolve() then ptr(), for a binding that calls the C ABI at once (no async twin).
  const kvt_tensor* use() {
    resolve();
    return ptr();
  }
};

// Parses {data, dtype, shape, strides, offset} where data is a TypedArray (host) or a native device buffer.
// Throws TypeError/RangeError naming `name` for malformed fields. `optional` accepts undefined/null
// (present = false). `name` must outlive the call (a string literal).
TensorArg parse_tensor(const Napi::Value& v, const char* name, bool optional = false);

// Moment state argument {n, muK, muV, m} of tensors; absent when undefined/null (unless required).
struct MomentsArg {
  TensorArg parts[4];
  bool present = false;
  void resolve();
  // The moment state of the four resolved views in *m (null when absent). Touches no JS value.
  const kvt_moments* fill(kvt_moments* m) const;
};
MomentsArg parse_moments(const Napi::Value& v, bool required);

// The memory of a host typed array. TypeError naming `name` for a SharedArrayBuffer-backed array (shared memory can
// change under a running op: another thread could rewrite indices after their check) or a detached buffer.
struct HostMemory {
  char* data = nullptr;
  size_t bytes = 0;
  napi_typedarray_type type = napi_uint8_array;
};
HostMemory host_memory(const Napi::Value& v, const char* name);

// Resolves every argument given (TensorArg, MomentsArg), in order: the last step of a Prepare.
template <class... A>
void resolve(A&... a) {
  (a.resolve(), ...);
}

// The JS error of a failed kvt call: TypeError, RangeError (code ERR_KVTRIM_MEMORY when memory ran out), or an Error
// with code ERR_KVTRIM_CUDA / _UNSUPPORTED / _INTERNAL; `msg` is kvt_last_error() read on the thread that made the call.
Napi::Error status_error(Napi::Env env, kvt_status st, const std::string& msg);
// Throws the JS exception for a failed kvt call made on this thread.
void throw_status(Napi::Env env, kvt_status st);
inline void check(Napi::Env env, kvt_status st) {
  if (st != KVT_OK) throw_status(env, st);
}

// Throws an Error with `code` set.
[[noreturn]] void throw_coded(Napi::Env env, const std::string& msg, const char* code);

// Stream argument: undefined/null -> default stream, bigint -> cudaStream_t handle. Called after the call's tensors:
// their device buffers are noted as used on this stream (stream-ordered frees, native_buffer.h).
kvt_stream parse_stream(const Napi::Value& v);

// An options argument: the object, or a TypeError "<name>: expected an object".
Napi::Object opts_object(const Napi::Value& v, const char* name = "opts");

// Option fields: `dflt` (the C default of the field) when the field is undefined; otherwise an integer in int32
// range (get_int) or a number (get_num), else a TypeError naming `key`.
int32_t get_int(const Napi::Object& o, const char* key, int32_t dflt);
double get_num(const Napi::Object& o, const char* key, double dflt);
// A plain integer argument (a safe integer), TypeError naming `name` otherwise.
int64_t arg_int(const Napi::Value& v, const char* name);

// ---- One op, two exports: `<op>` (sync) and `<op>Async` (a Promise; the C call runs on a libuv worker thread) -----
// A binding parses its arguments once, in a Prepare function, into an OpCall: the C ABI call with every argument held
// by value (TensorArg copies re-point their shape/stride storage), so it can run later on another thread.
using OpCall = std::function<kvt_status()>;
using Prepare = OpCall (*)(const Napi::CallbackInfo& info);

// `<op>(...)`: prepares and runs the call on the JS thread, throws on failure, returns undefined.
Napi::Value run_now(const Napi::CallbackInfo& info, Prepare prepare);

// `<op>Async(...the arguments of <op>, abort?)` -> Promise<void>. Argument errors throw at once (as in <op>); the C call
// runs on a libuv worker thread and its failure rejects the promise with the error <op> would throw. While it is in
// flight, every typed array and DeviceBuffer the call reads or writes is held by a reference (kept alive; kvtrim
// does not touch them on the JS thread; the caller must not modify, detach or resize them either). info[abort_at]
// is undefined or an Int32Array: when its element 0 is non-zero as the worker starts, the call is skipped and the
// promise rejects with an Error named AbortError (code ABORT_ERR). A call on CUDA tensors is enqueued at once on the
// JS thread (kernel launches never block, and launching from a worker could reorder them against later calls on
// the same stream); its promise is already settled.
Napi::Value run_async(const Napi::CallbackInfo& info, Prepare prepare, size_t abort_at, const char* name);

}  // namespace napi
}  // namespace kvt
