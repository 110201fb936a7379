// Shared pieces of the Node-API bindings: tensor descriptor parsing (with bounds checks against the JS buffer),
// option objects, stream arguments, moment-state arguments, and the kvt_status -> JS exception mapping.
#pragma once

#include <napi.h>

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

// Throws the JS exception for a failed kvt call.
void throw_status(Napi::Env env, kvt_status st);
inline void check(Napi::Env env, kvt_status st) {
  if (st != KVT_OK) throw_status(env, st);
}

// Throws an Error with `code` set.
[[noreturn]] void throw_coded(Napi::Env env, const std::string& msg, const char* code);

// Stream argument: undefined/null -> default stream, bigint -> cudaStream_t handle. Called after the call's tensors:
// their device buffers are noted as used on this stream (stream-ordered frees, native_buffer.h).
kvt_stream parse_stream(const Napi::Value& v);

// Moment state {n, muK, muV, m} of tensors; false when undefined/null.
bool parse_moments(const Napi::Value& v, TensorArg* parts, kvt_moments* m);

// An options argument: the object, or a TypeError "<name>: expected an object".
Napi::Object opts_object(const Napi::Value& v, const char* name = "opts");

// Option fields: the number under `key`, or `dflt` (the C default of the field) when it is not a number.
int32_t get_int(const Napi::Object& o, const char* key, int32_t dflt);
double get_num(const Napi::Object& o, const char* key, double dflt);

}  // namespace napi
}  // namespace kvt
