// Node-API module `kvtrim`: the one list of its exports. Every function the TypeScript layer (lib/binding.ts) can
// call is a row of kExports; the NativeBuffer class is added by NativeBuffer::Init.
#include <napi.h>

#include "bindings.h"
#include "native_buffer.h"

namespace {

using namespace kvt::napi;

struct Export {
  const char* name;
  Binding fn;
};

const Export kExports[] = {
    // backend (backend.cc, defaults.cc)
    {"init", Init},
    {"defaultOptions", DefaultOptions},
    // streams, events, copies (native_buffer.cc)
    {"streamCreate", StreamCreate},
    {"streamDestroy", StreamDestroy},
    {"streamSynchronize", StreamSynchronize},
    {"eventCreate", EventCreate},
    {"eventRecord", EventRecord},
    {"eventElapsed", EventElapsed},
    {"eventDestroy", EventDestroy},
    {"copyToDevice", CopyToDevice},
    {"copyToHost", CopyToHost},
    {"copyDevice", CopyDevice},
    {"fillBytes", FillBytes},
    {"deviceSynchronize", DeviceSynchronize},
    // ops
    {"keydiffScores", KeydiffScores},
    {"selectTokens", SelectTokens},
    {"selectCapacity", SelectCapacity},
    {"gatherKV", GatherKV},
    {"nestedkvScores", NestedkvScores},
    {"nestedkvBlockSize", NestedkvBlockSize},
    {"snapkvScores", SnapkvScores},
    {"momentsMerge", MomentsMerge},
    {"decodeAttention", DecodeAttention},
    {"momentkvSelect", MomentkvSelect},
    {"spdSolve", SpdSolve},
    {"grkvMerge", GrkvMerge},
    // runtime-shaped caches (docs/runtime-caches.md)
    {"keydiffScoresBatched", KeydiffScoresBatched},
    {"nestedkvScoresBatched", NestedkvScoresBatched},
    {"snapkvScoresBatched", SnapkvScoresBatched},
    {"selectTokensBatched", SelectTokensBatched},
    {"gatherKVBatched", GatherKVBatched},
    {"momentsMergeBatched", MomentsMergeBatched},
    {"decodeAttentionBatched", DecodeAttentionBatched},
    {"momentkvSelectBatched", MomentkvSelectBatched},
    {"grkvMergeBatched", GrkvMergeBatched},
    {"compactInPlace", CompactInPlace},
    {"tpSelectRounds", TpSelectRounds},
    {"tpSelectStateWords", TpSelectStateWords},
    {"tpSelectBegin", TpSelectBegin},
    {"tpSelectHistogram", TpSelectHistogram},
    {"tpSelectAdvance", TpSelectAdvance},
    {"tpSelectFinish", TpSelectFinish},
    // kvtrim bench (bench.cc): the CPU yardstick; the GPU baselines only where they can run
    {"hostCopy", HostCopy},
#if defined(KVT_WITH_CUDA)
    {"baselineKeydiff", BaselineKeydiff},
    {"baselineSelect", BaselineSelect},
    {"baselineGather", BaselineGather},
    {"baselineSnapkv", BaselineSnapkv},
#endif
};

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  NativeBuffer::Init(env, exports);
  for (const Export& e : kExports) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  return exports;
}

}  // namespace

NODE_API_MODULE(kvtrim, InitModule)
