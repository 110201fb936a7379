// Node-API module `kvtrim`: the one list of its exports. Every function the TypeScript layer (lib/binding.ts) can
// call is a row of kExports, each wrapped by Guarded so that no C++ exception but a JS error leaves a binding; the
// NativeBuffer class is added by NativeBuffer::Init.
#include <napi.h>

#include <exception>
#include <new>
#include <string>

#include "bindings.h"
#include "native_buffer.h"

namespace {

using namespace kvt::napi;

// Runs a binding and turns any C++ exception other than a JS error into one: std::bad_alloc -> RangeError with code
// ERR_KVTRIM_MEMORY, anything else -> Error with code ERR_KVTRIM_INTERNAL (a bug). Without it, an exception would
// unwind into V8 and abort the process.
template <Binding F>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  const char* what = nullptr;
  bool memory = false;
  struct Call {  // the stream-ordered-free bookkeeping of one call (native_buffer.h)
    Call() { begin_call(); }
    ~Call() { end_call(); }
  } call;
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    memory = true;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "unknown exception";
  }
  Napi::Error err = memory ? Napi::RangeError::New(info.Env(), "out of memory (an allocation in the binding failed)")
                           : Napi::Error::New(info.Env(), std::string("internal error: ") + what);
  err.Set("code", Napi::String::New(info.Env(), memory ? "ERR_KVTRIM_MEMORY" : "ERR_KVTRIM_INTERNAL"));
  throw err;
}

struct Export {
  const char* name;
  Binding fn;
};

const Export kExports[] = {
    // backend (backend.cc, defaults.cc)
    {"init", Guarded<Init>},
    {"defaultOptions", Guarded<DefaultOptions>},
    // streams, events, copies (native_buffer.cc)
    {"streamCreate", Guarded<StreamCreate>},
    {"streamDestroy", Guarded<StreamDestroy>},
    {"streamSynchronize", Guarded<StreamSynchronize>},
    {"eventCreate", Guarded<EventCreate>},
    {"eventRecord", Guarded<EventRecord>},
    {"eventElapsed", Guarded<EventElapsed>},
    {"eventDestroy", Guarded<EventDestroy>},
    {"copyToDevice", Guarded<CopyToDevice>},
    {"copyToHost", Guarded<CopyToHost>},
    {"copyDevice", Guarded<CopyDevice>},
    {"fillBytes", Guarded<FillBytes>},
    {"deviceSynchronize", Guarded<DeviceSynchronize>},
    // ops
    {"keydiffScores", Guarded<KeydiffScores>},
    {"selectTokens", Guarded<SelectTokens>},
    {"selectCapacity", Guarded<SelectCapacity>},
    {"gatherKV", Guarded<GatherKV>},
    {"nestedkvScores", Guarded<NestedkvScores>},
    {"nestedkvBlockSize", Guarded<NestedkvBlockSize>},
    {"snapkvScores", Guarded<SnapkvScores>},
    {"momentsMerge", Guarded<MomentsMerge>},
    {"decodeAttention", Guarded<DecodeAttention>},
    {"momentkvSelect", Guarded<MomentkvSelect>},
    {"spdSolve", Guarded<SpdSolve>},
    {"grkvMerge", Guarded<GrkvMerge>},
    // the ops' async twins (glue.h run_async): same arguments plus an abort cell, a Promise, a libuv worker thread
    {"keydiffScoresAsync", Guarded<KeydiffScoresAsync>},
    {"selectTokensAsync", Guarded<SelectTokensAsync>},
    {"gatherKVAsync", Guarded<GatherKVAsync>},
    {"nestedkvScoresAsync", Guarded<NestedkvScoresAsync>},
    {"snapkvScoresAsync", Guarded<SnapkvScoresAsync>},
    {"momentsMergeAsync", Guarded<MomentsMergeAsync>},
    {"decodeAttentionAsync", Guarded<DecodeAttentionAsync>},
    {"momentkvSelectAsync", Guarded<MomentkvSelectAsync>},
    {"spdSolveAsync", Guarded<SpdSolveAsync>},
    {"grkvMergeAsync", Guarded<GrkvMergeAsync>},
    // runtime-shaped caches (docs/runtime-caches.md), with async twins of the long ones
    {"keydiffScoresBatched", Guarded<KeydiffScoresBatched>},
    {"keydiffScoresBatchedAsync", Guarded<KeydiffScoresBatchedAsync>},
    {"nestedkvScoresBatched", Guarded<NestedkvScoresBatched>},
    {"nestedkvScoresBatchedAsync", Guarded<NestedkvScoresBatchedAsync>},
    {"snapkvScoresBatched", Guarded<SnapkvScoresBatched>},
    {"snapkvScoresBatchedAsync", Guarded<SnapkvScoresBatchedAsync>},
    {"selectTokensBatched", Guarded<SelectTokensBatched>},
    {"selectTokensBatchedAsync", Guarded<SelectTokensBatchedAsync>},
    {"gatherKVBatched", Guarded<GatherKVBatched>},
    {"gatherKVBatchedAsync", Guarded<GatherKVBatchedAsync>},
    {"momentsMergeBatched", Guarded<MomentsMergeBatched>},
    {"momentsMergeBatchedAsync", Guarded<MomentsMergeBatchedAsync>},
    {"decodeAttentionBatched", Guarded<DecodeAttentionBatched>},
    {"decodeAttentionBatchedAsync", Guarded<DecodeAttentionBatchedAsync>},
    {"momentkvSelectBatched", Guarded<MomentkvSelectBatched>},
    {"momentkvSelectBatchedAsync", Guarded<MomentkvSelectBatchedAsync>},
    {"grkvMergeBatched", Guarded<GrkvMergeBatched>},
    {"grkvMergeBatchedAsync", Guarded<GrkvMergeBatchedAsync>},
    {"compactInPlace", Guarded<CompactInPlace>},
    {"compactInPlaceAsync", Guarded<CompactInPlaceAsync>},
    {"tpSelectRounds", Guarded<TpSelectRounds>},
    {"tpSelectStateWords", Guarded<TpSelectStateWords>},
    {"tpSelectBegin", Guarded<TpSelectBegin>},
    {"tpSelectHistogram", Guarded<TpSelectHistogram>},
    {"tpSelectAdvance", Guarded<TpSelectAdvance>},
    {"tpSelectFinish", Guarded<TpSelectFinish>},
    // kvtrim bench (bench.cc): the CPU yardstick; the GPU baselines only where they can run
    {"hostCopy", Guarded<HostCopy>},
    {"fmaPeak", Guarded<FmaPeak>},
#if defined(KVT_WITH_CUDA)
    {"baselineKeydiff", Guarded<BaselineKeydiff>},
    {"baselineSelect", Guarded<BaselineSelect>},
    {"baselineGather", Guarded<BaselineGather>},
    {"baselineSnapkv", Guarded<BaselineSnapkv>},
#endif
};

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  NativeBuffer::Init(env, exports);
  for (const Export& e : kExports) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  return exports;
}

}  // namespace

NODE_API_MODULE(kvtrim, InitModule)
