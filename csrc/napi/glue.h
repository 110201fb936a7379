// Shared pieces of the Node-API bindings: tensor descriptor parsing (with bounds checks against the JS buffer),
// option objects, stream arguments, moment-state arguments, and the kvt_status -> JS exception mapping.
#pragma once

#include <napi.h>

#include <functional>
#include <string>

#include "kvtrim.h"

namespace kvt {
namespace napi {

// A parsed tensor argument: a kvt_tensor plus storage for its shape and strides. Copies re-point `t.shape` and
// `t.strides` at their own storage (a copied kvt_tensor must never point into the source's arrays).
struct TensorArg {
  kvt_tensor t{};
  int64_t shape[4] = {0, 0, 0, 0};
  int64_t strides[4] = {0, 0, 0, 0};
  bool present = false;
  TensorArg() = default;
  TensorArg(const TensorArg& o) { *this = o; }
  TensorArg& operator=(const TensorArg& o) {
    t = o.t;
    for (int i = 0; i < 4; i++) {
      shape[i] = o.shape[i];
      strides[i] = o.strides[i];
    }
    present = o.present;
    t.shape = shape;
    t.strides = strides;
    return *this;
  }
  const kvt_tensor* ptr() const { return present ? &t : nullptr; }
};

// Parses {data, dtype, shape, strides, offset} where data is a TypedArray (host) or a native device buffer.
// Throws TypeError/RangeError naming `name` when the view does not fit its buffer. `optional` accepts
// undefined/null (present = false).
TensorArg parse_tensor(const Napi::Value& v, const char* name, bool optional = false);

// The JS error of a failed kvt call: TypeError, RangeError, or an Error with code ERR_KVTRIM_CUDA / _UNSUPPORTED /
// _INTERNAL; `msg` is kvt_last_error() read on the thread that made the call.
Napi::Error status_error(Napi::Env env, kvt_status st, const std::string& msg);
// Throws the JS exception for a failed kvt call made on this thread.
void throw_status(Napi::Env env, kvt_status st);
inline void check(Napi::Env env, kvt_status st) {
  if (st != KVT_OK) throw_status(env, st);
}

// Throws an Error with `code` set.
[[noreturn]] void throw_coded(Napi::Env env, const std::string& msg, const char* code);

// Stream argument: undefined/null -> default stream, bigint -> cudaStream_t handle.
kvt_stream parse_stream(const Napi::Value& v);

// Moment state {n, muK, muV, m} of tensors; false when undefined/null.
bool parse_moments(const Napi::Value& v, TensorArg* parts, kvt_moments* m);
// The kvt_moments of four parsed parts (call it where the parts live: it points into their shape/stride storage).
inline kvt_moments moments_of(const TensorArg* parts) { return kvt_moments{parts[0].t, parts[1].t, parts[2].t, parts[3].t}; }

// An options argument: the object, or a TypeError "<name>: expected an object".
Napi::Object opts_object(const Napi::Value& v, const char* name = "opts");

// Option fields: the number under `key`, or `dflt` (the C default of the field) when it is not a number.
int32_t get_int(const Napi::Object& o, const char* key, int32_t dflt);
double get_num(const Napi::Object& o, const char* key, double dflt);

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
