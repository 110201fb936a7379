/**
 * kvtrim: KV-cache compression kernels for long-context LLMs (KeyDiff, NestedKV, SnapKV, GRKV, MomentKV) on a
 * CUDA and a threaded CPU backend. See README.md for the API guide.
 */
import { backend, nativeInfo, NativeDevice, BackendChoice } from './binding';

export interface BackendInfo {
  /** true when CUDA kernels can run (compiled in, enabled, a supported GPU and driver present). */
  cuda: boolean;
  /** Why CUDA is off (absent when cuda is true). */
  reason?: string;
  /** The KVTRIM_BACKEND setting in effect. */
  backend: BackendChoice;
  devices: NativeDevice[];
  /** CPU backend threads. */
  threads: number;
  versions: Record<string, string | number | boolean>;
}

/** What the addon can do on this machine. */
export function backendInfo(): BackendInfo {
  return {
    cuda: nativeInfo.cuda,
    ...(nativeInfo.reason !== undefined ? { reason: nativeInfo.reason } : {}),
    backend,
    devices: nativeInfo.devices.map((d) => ({ ...d })),
    threads: nativeInfo.threads,
    versions: { ...nativeInfo.versions, node: process.versions.node },
  };
}

export { DeviceBuffer, Stream, Event, deviceSynchronize } from './device';
export {
  Tensor,
  tensor,
  toDevice,
  toHost,
  empty,
  fillBytes,
  dtypeSize,
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
} from './tensor';
export type { DType, Device, TensorLike, TensorData, HostArray } from './tensor';
export { keydiffScores } from './ops/keydiff';
export type { KeydiffOptions } from './ops/keydiff';
export { selectTokens, selectCapacity, keepFromRatio } from './ops/select';
export type { SelectOptions, Selection, Budget } from './ops/select';
export { gatherKV } from './ops/gather';
export type { GatherArgs, CompactKV } from './ops/gather';

// ==== NestedKV and SnapKV scoring ====
export { nestedkvScores, nestedkvBlockSize } from './ops/nestedkv';
export type { NestedkvOptions, NestedkvScales } from './ops/nestedkv';
export { snapkvScores } from './ops/snapkv';
export type { SnapkvOptions, SnapkvPool } from './ops/snapkv';


// ==== MomentKV ====
export { MomentState } from './ops/moments';
export type { MomentTensors, MomentStateCreateOptions } from './ops/moments';
export { decodeAttention } from './ops/decode';
export type { DecodeAttentionArgs } from './ops/decode';
export { momentkvSelect, momentkvCompress } from './ops/momentkv_select';
export type { MomentkvSelectArgs, MomentkvSelection, MomentkvCompressArgs, MomentkvCache } from './ops/momentkv_select';


// ==== GRKV ====
export { spdSolve, SpdError } from './ops/spd';
export type { SpdSolveArgs, SpdSolution } from './ops/spd';
export { grkvMerge, grkvSurrogates, decodeGrkvDiagnostics, GRKV_DIAG_COLS } from './ops/grkv';
export type { GrkvMergeArgs, GrkvResult, GrkvCaps, GrkvHeadDiagnostics, GrkvCandidate, GrkvSource, GrkvSurrogates } from './ops/grkv';


// ==== Runtime-shaped caches (docs/runtime-caches.md) ====
export { raggedSeqs, pagedSeqs, seqLengths } from './ops/batch';
export type { Seqs, RaggedSeqs, PaddedSeqs, PagedSeqs, PageLayout, BatchCache, QueryBatch } from './ops/batch';
export { keydiffScoresBatched } from './ops/keydiff';
export type { BatchedScoreOptions } from './ops/keydiff';
export { nestedkvScoresBatched } from './ops/nestedkv';
export { snapkvScoresBatched } from './ops/snapkv';
export { selectTokensBatched } from './ops/select';
export type { BatchedSelectOptions } from './ops/select';
export { gatherKVBatched } from './ops/gather';
export type { GatherBatchedArgs } from './ops/gather';
export { decodeAttentionBatched } from './ops/decode';
export type { DecodeAttentionBatchedArgs } from './ops/decode';
export { momentkvSelectBatched } from './ops/momentkv_select';
export type { MomentkvSelectBatchedArgs } from './ops/momentkv_select';
export { grkvMergeBatched } from './ops/grkv';
export type { GrkvMergeBatchedArgs } from './ops/grkv';
export { compactInPlace, compactPageTable } from './ops/compact';
export type { CompactInPlaceArgs, CompactInPlaceResult } from './ops/compact';
export { TpSelection, tpSelectTokens } from './ops/tp_select';
export type { TpSelectOptions } from './ops/tp_select';


// ==== compress() pipeline, traces, metrics ====
export { compress, compressCache, methodScores } from './compress';
export type { CompressInput, CompressOptions, Compressed } from './compress';
export { METHODS, MERGES, CORRECTIONS, featureTable } from './methods';
export type { MethodName, MergeName, CorrectionName } from './methods';
export { attentionError } from './eval/metrics';
export type { AttentionErrorArgs, AttentionErrors } from './eval/metrics';
export { runEval, EVAL_CONFIGS, EVAL_RATIOS } from './eval/run';
export type { EvalOptions, EvalReport, EvalRow, EvalConfig, EvalProtocol, EvalLayerInfo } from './eval/run';
export { runBench } from './bench';
export type { BenchOptions, BenchReport, BenchRow } from './bench';
export { runChecks } from './check';
export { generateTrace, applyRope, TRACE_DEFAULTS } from './trace';
export type { Trace, TraceLayer, TraceOptions } from './trace';
export { loadDump, saveTraceAsDump } from './io/dump';
export type { Dump, DumpLayer, LoadDumpOptions, QueryConvention } from './io/dump';
export { readNpy, writeNpy } from './io/npy';
export { readSafetensors, writeSafetensors } from './io/safetensors';

