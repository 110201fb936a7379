// Declarations of every Node-API binding of the addon (the export list in addon.cc names each one once) and of the
// per-op option defaults that defaultOptions() assembles. A binding parses its arguments, calls the C ABI
// (kvtrim.h, or kvtrim_bench.h for `kvtrim bench`) and turns a failed kvt_status into the JS exception.
#pragma once

#include <napi.h>

namespace kvt {
namespace napi {

using Binding = Napi::Value (*)(const Napi::CallbackInfo&);

// backend.cc: init({cuda}) -> backend info (devices, versions, threads)
Napi::Value Init(const Napi::CallbackInfo& info);
// defaults.cc: defaultOptions() -> the C *_default_opts of every op, under the TypeScript option names
Napi::Value DefaultOptions(const Napi::CallbackInfo& info);

// native_buffer.cc: streams, events, copies (device memory itself is the NativeBuffer class)
Napi::Value StreamCreate(const Napi::CallbackInfo& info);
Napi::Value StreamDestroy(const Napi::CallbackInfo& info);
Napi::Value StreamSynchronize(const Napi::CallbackInfo& info);
Napi::Value EventCreate(const Napi::CallbackInfo& info);
Napi::Value EventRecord(const Napi::CallbackInfo& info);
Napi::Value EventElapsed(const Napi::CallbackInfo& info);
Napi::Value EventDestroy(const Napi::CallbackInfo& info);
Napi::Value CopyToDevice(const Napi::CallbackInfo& info);
Napi::Value CopyToHost(const Napi::CallbackInfo& info);
Napi::Value CopyDevice(const Napi::CallbackInfo& info);
Napi::Value FillBytes(const Napi::CallbackInfo& info);
Napi::Value DeviceSynchronize(const Napi::CallbackInfo& info);

// One file per op (the op's name through every layer). Every op that can run long on the CPU backend has an `<op>Async`
// twin: the same arguments plus an abort cell, a Promise, the C call on a libuv worker thread (glue.h run_async).
Napi::Value KeydiffScores(const Napi::CallbackInfo& info);       // keydiff.cc
Napi::Value KeydiffScoresAsync(const Napi::CallbackInfo& info);  // keydiff.cc
Napi::Value SelectTokens(const Napi::CallbackInfo& info);        // select.cc
Napi::Value SelectTokensAsync(const Napi::CallbackInfo& info);   // select.cc
Napi::Value SelectCapacity(const Napi::CallbackInfo& info);      // select.cc
Napi::Value GatherKV(const Napi::CallbackInfo& info);            // gather.cc
Napi::Value GatherKVAsync(const Napi::CallbackInfo& info);       // gather.cc
Napi::Value NestedkvScores(const Napi::CallbackInfo& info);      // nestedkv.cc
Napi::Value NestedkvScoresAsync(const Napi::CallbackInfo& info); // nestedkv.cc
Napi::Value NestedkvBlockSize(const Napi::CallbackInfo& info);   // nestedkv.cc
Napi::Value SnapkvScores(const Napi::CallbackInfo& info);        // snapkv.cc
Napi::Value SnapkvScoresAsync(const Napi::CallbackInfo& info);   // snapkv.cc
Napi::Value MomentsMerge(const Napi::CallbackInfo& info);        // moments.cc
Napi::Value MomentsMergeAsync(const Napi::CallbackInfo& info);   // moments.cc
Napi::Value DecodeAttention(const Napi::CallbackInfo& info);     // decode.cc
Napi::Value DecodeAttentionAsync(const Napi::CallbackInfo& info); // decode.cc
Napi::Value MomentkvSelect(const Napi::CallbackInfo& info);      // momentkv_select.cc
Napi::Value MomentkvSelectAsync(const Napi::CallbackInfo& info); // momentkv_select.cc
Napi::Value SpdSolve(const Napi::CallbackInfo& info);            // spd.cc
Napi::Value SpdSolveAsync(const Napi::CallbackInfo& info);       // spd.cc
Napi::Value GrkvMerge(const Napi::CallbackInfo& info);           // grkv.cc
Napi::Value GrkvMergeAsync(const Napi::CallbackInfo& info);      // grkv.cc
// Runtime-shaped caches (docs/runtime-caches.md): the batched form of each op in the op's file, plus compaction in place
// and the tensor-parallel selection.
Napi::Value KeydiffScoresBatched(const Napi::CallbackInfo& info);    // keydiff.cc
Napi::Value KeydiffScoresBatchedAsync(const Napi::CallbackInfo& info);  // keydiff.cc
Napi::Value NestedkvScoresBatched(const Napi::CallbackInfo& info);   // nestedkv.cc
Napi::Value NestedkvScoresBatchedAsync(const Napi::CallbackInfo& info);  // nestedkv.cc
Napi::Value SnapkvScoresBatched(const Napi::CallbackInfo& info);     // snapkv.cc
Napi::Value SnapkvScoresBatchedAsync(const Napi::CallbackInfo& info);  // snapkv.cc
Napi::Value SelectTokensBatched(const Napi::CallbackInfo& info);     // select.cc
Napi::Value SelectTokensBatchedAsync(const Napi::CallbackInfo& info);  // select.cc
Napi::Value GatherKVBatched(const Napi::CallbackInfo& info);         // gather.cc
Napi::Value GatherKVBatchedAsync(const Napi::CallbackInfo& info);  // gather.cc
Napi::Value MomentsMergeBatched(const Napi::CallbackInfo& info);     // moments.cc
Napi::Value MomentsMergeBatchedAsync(const Napi::CallbackInfo& info);  // moments.cc
Napi::Value DecodeAttentionBatched(const Napi::CallbackInfo& info);  // decode.cc
Napi::Value DecodeAttentionBatchedAsync(const Napi::CallbackInfo& info);  // decode.cc
Napi::Value MomentkvSelectBatched(const Napi::CallbackInfo& info);   // momentkv_select.cc
Napi::Value MomentkvSelectBatchedAsync(const Napi::CallbackInfo& info);  // momentkv_select.cc
Napi::Value GrkvMergeBatched(const Napi::CallbackInfo& info);        // grkv.cc
Napi::Value GrkvMergeBatchedAsync(const Napi::CallbackInfo& info);  // grkv.cc
Napi::Value CompactInPlace(const Napi::CallbackInfo& info);          // compact.cc
Napi::Value CompactInPlaceAsync(const Napi::CallbackInfo& info);  // compact.cc
Napi::Value TpSelectRounds(const Napi::CallbackInfo& info);          // tp_select.cc
Napi::Value TpSelectStateWords(const Napi::CallbackInfo& info);      // tp_select.cc
Napi::Value TpSelectBegin(const Napi::CallbackInfo& info);           // tp_select.cc
Napi::Value TpSelectHistogram(const Napi::CallbackInfo& info);       // tp_select.cc
Napi::Value TpSelectAdvance(const Napi::CallbackInfo& info);         // tp_select.cc
Napi::Value TpSelectFinish(const Napi::CallbackInfo& info);          // tp_select.cc

// bench.cc: the yardstick and baselines of `kvtrim bench` (kvtrim_bench.h); the GPU baselines in CUDA builds only
Napi::Value HostCopy(const Napi::CallbackInfo& info);
Napi::Value FmaPeak(const Napi::CallbackInfo& info);
Napi::Value BaselineKeydiff(const Napi::CallbackInfo& info);
Napi::Value BaselineSelect(const Napi::CallbackInfo& info);
Napi::Value BaselineGather(const Napi::CallbackInfo& info);
Napi::Value BaselineSnapkv(const Napi::CallbackInfo& info);

// The defaults of an op's options struct (kvt_<op>_default_opts) as the op's TypeScript options object, written
// next to the parser of the same options in the op's binding file.
Napi::Object SelectDefaults(Napi::Env env);
Napi::Object NestedkvDefaults(Napi::Env env);
Napi::Object SnapkvDefaults(Napi::Env env);
Napi::Object DecodeDefaults(Napi::Env env);
Napi::Object MomentkvSelectDefaults(Napi::Env env);
Napi::Object SpdDefaults(Napi::Env env);
Napi::Object GrkvDefaults(Napi::Env env);

}  // namespace napi
}  // namespace kvt
