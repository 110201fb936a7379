// defaultOptions(): the defaults of every op's options, read from the C ABI's kvt_<op>_default_opts (the one
// source of truth) and written under the TypeScript option names (camelCase fields, enums as their TS strings,
// 0 where the C struct means "derived from the shapes"). The op binding files write their own part.
#include "bindings.h"

namespace kvt {
namespace napi {

Napi::Value DefaultOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object d = Napi::Object::New(env);
  d.Set("select", SelectDefaults(env));
  d.Set("nestedkv", NestedkvDefaults(env));
  d.Set("snapkv", SnapkvDefaults(env));
  d.Set("decode", DecodeDefaults(env));
  d.Set("momentkvSelect", MomentkvSelectDefaults(env));
  d.Set("spd", SpdDefaults(env));
  d.Set("grkv", GrkvDefaults(env));
  return d;
}

}  // namespace napi
}  // namespace kvt
