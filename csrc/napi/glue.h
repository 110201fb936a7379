// Shared pieces of the Node-API bindings: tensor descriptor parsing (with bounds checks against the JS buffer),
// option objects, stream arguments, moment-state arguments, and the kvt_status -> JS exception mapping.
//
// Time of check = time of use. Reading an argument's properties (shape, options, ...) can run JavaScript (getters,
// proxies) that detaches, shrinks or disposes a buffer named by another argument. So a binding first parses every
// argument (parse_tensor, parse_moments, options), which only records the JS values, and resolves the buffers to
// pointers and checks each view against its buffer's current size in `ptr()`, inside the argument list of the C call,
// where no JavaScript can run before the op does.
#pragma once

#include <napi.h>

#include <string>

#include "kvtrim.h"

namespace kvt {
namespace napi {

// A parsed tensor argument: dtype, shape, strides and offset checked as numbers; the data is resolved (and the view
// checked against it) by ptr(). Copies re-point `t.shape` and `t.strides` at their own storage.
struct TensorArg {
  kvt_tensor t{};
  int64_t shape[4] = {0, 0, 0, 0};
  int64_t strides[4] = {0, 0, 0, 0};
  int64_t offset = 0;  // elements
  int elem_size = 0;
  bool present = false;
  const char* name = "tensor";
  Napi::Value data;
  TensorArg() = default;
  TensorArg(const TensorArg& o) { *this = o; }
  TensorArg& operator=(const TensorArg& o);
  // The descriptor for the C ABI (null when absent): the data resolved now, the view checked against the buffer's
  // current byte length (TypeError / RangeError naming the argument otherwise).
  const kvt_tensor* ptr();
};

// Parses {data, dtype, shape, strides, offset} where data is a TypedArray (host) or a native device buffer.
// Throws TypeError/RangeError naming `name` for malformed fields. `optional` accepts undefined/null
// (present = false). `name` must outlive the call (a string literal).
TensorArg parse_tensor(const Napi::Value& v, const char* name, bool optional = false);

// Moment state argument {n, muK, muV, m} of tensors; absent when undefined/null (unless required).
struct MomentsArg {
  TensorArg parts[4];
  kvt_moments m{};
  bool present = false;
  // The four views resolved and checked (null when absent).
  const kvt_moments* ptr();
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

// Throws the JS exception for a failed kvt call.
void throw_status(Napi::Env env, kvt_status st);
inline void check(Napi::Env env, kvt_status st) {
  if (st != KVT_OK) throw_status(env, st);
}

// Throws an Error with `code` set.
[[noreturn]] void throw_coded(Napi::Env env, const std::string& msg, const char* code);

// Stream argument: undefined/null -> default stream, bigint -> cudaStream_t handle.
kvt_stream parse_stream(const Napi::Value& v);

// An options argument: the object, or a TypeError "<name>: expected an object".
Napi::Object opts_object(const Napi::Value& v, const char* name = "opts");

// Option fields: `dflt` (the C default of the field) when the field is undefined; otherwise an integer in int32
// range (get_int) or a number (get_num), else a TypeError naming `key`.
int32_t get_int(const Napi::Object& o, const char* key, int32_t dflt);
double get_num(const Napi::Object& o, const char* key, double dflt);
// A plain integer argument (a safe integer), TypeError naming `name` otherwise.
int64_t arg_int(const Napi::Value& v, const char* name);

}  // namespace napi
}  // namespace kvt
