/**
 * kvtrim: KV-cache compression kernels for long-context LLMs (KeyDiff, NestedKV, SnapKV, GRKV, MomentKV) on a
 * CUDA and a threaded CPU backend. See README.md for the API guide.
 */
import fs from 'node:fs';
import path from 'node:path';
import { addonPath, backend, nativeInfo, packageRoot, NativeDevice, BackendChoice } from './binding';

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
  /**
   * Instruction-set level of the CPU backend's dispatched kernels ('avx512' | 'avx2' | 'baseline'): the best this CPU
   * runs, or the lower level named by KVTRIM_CPU_ISA (read when the addon loads).
   */
  cpuIsa: string;
  /** The levels this CPU runs, best first (the values KVTRIM_CPU_ISA accepts here). */
  cpuIsaLevels: string[];
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
    cpuIsa: nativeInfo.cpuIsa,
    cpuIsaLevels: [...nativeInfo.cpuIsaLevels],
    versions: { ...nativeInfo.versions, node: process.versions.node },
  };
}

export interface NativeLibrary {
  /**
   * Absolute path of libkvtrim.so: the C ABI of kvtrim.h with the CPU backend (and the CUDA kernels in a CUDA build,
   * CUDA runtime linked statically), exporting only the kvt_* functions. It sits in lib/ beside the loaded addon:
   * prebuilds/<platform>-<arch>/lib/ of an installed package, build/Release/lib/ of a clone.
   */
  library: string;
  /** The folder of kvtrim.h (a compiler's -I). */
  include: string;
  /** KVT_ABI_VERSION (kvt_abi_version()) of the core this package was built from. */
  abiVersion: number;
}

/**
 * Where native consumers find kvtrim's C library and header (README "From PyTorch and C"). Throws
 * ERR_KVTRIM_NO_LIBRARY when the library is missing beside the addon (e.g. KVTRIM_ADDON names a lone .node).
 */
export function nativeLibrary(): NativeLibrary {
  const library = path.join(path.dirname(addonPath), 'lib', 'libkvtrim.so');
  if (!fs.existsSync(library)) {
    const err = new Error(
      `kvtrim: libkvtrim.so is not beside the loaded addon (${library}); rebuild the native code (npm run build:native) ` +
        'or reinstall kvtrim',
    );
    (err as Error & { code: string }).code = 'ERR_KVTRIM_NO_LIBRARY';
    throw err;
  }
  return { library, include: path.join(packageRoot, 'csrc', 'include'), abiVersion: Number(nativeInfo.versions.abi) };
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
export type { AsyncOptions } from './ops/common';
export { keydiffScores, keydiffScoresAsync } from './ops/keydiff';
export type { KeydiffOptions } from './ops/keydiff';
export { selectTokens, selectTokensAsync, selectCapacity, keepFromRatio } from './ops/select';
export type { SelectOptions, Selection, Budget } from './ops/select';
export { gatherKV, gatherKVAsync } from './ops/gather';
export type { GatherArgs, CompactKV } from './ops/gather';

// ==== NestedKV and SnapKV scoring ====
export { nestedkvScores, nestedkvScoresAsync, nestedkvBlockSize } from './ops/nestedkv';
export type { NestedkvOptions, NestedkvScales } from './ops/nestedkv';
export { snapkvScores, snapkvScoresAsync } from './ops/snapkv';
export type { SnapkvOptions, SnapkvPool } from './ops/snapkv';


// ==== MomentKV ====
export { MomentState } from './ops/moments';
export type { MomentTensors, MomentStateCreateOptions } from './ops/moments';
export { decodeAttention, decodeAttentionAsync } from './ops/decode';
export type { DecodeAttentionArgs } from './ops/decode';
export { momentkvSelect, momentkvSelectAsync, momentkvCompress, momentkvCompressAsync } from './ops/momentkv_select';
export type { MomentkvSelectArgs, MomentkvSelection, MomentkvCompressArgs, MomentkvCache } from './ops/momentkv_select';


// ==== GRKV ====
export { spdSolve, spdSolveAsync, SpdError } from './ops/spd';
export type { SpdSolveArgs, SpdSolution } from './ops/spd';
export { grkvMerge, grkvMergeAsync, grkvSurrogates, decodeGrkvDiagnostics, GRKV_DIAG_COLS } from './ops/grkv';
export type { GrkvMergeArgs, GrkvResult, GrkvCaps, GrkvHeadDiagnostics, GrkvCandidate, GrkvSource, GrkvSurrogates } from './ops/grkv';


// ==== Runtime-shaped caches (docs/runtime-caches.md) ====
export { raggedSeqs, pagedSeqs, seqLengths } from './ops/batch';
export type { Seqs, RaggedSeqs, PaddedSeqs, PagedSeqs, PageLayout, BatchCache, QueryBatch } from './ops/batch';
export { keydiffScoresBatched, keydiffScoresBatchedAsync } from './ops/keydiff';
export type { BatchedScoreOptions } from './ops/keydiff';
export { nestedkvScoresBatched, nestedkvScoresBatchedAsync } from './ops/nestedkv';
export { snapkvScoresBatched, snapkvScoresBatchedAsync } from './ops/snapkv';
export { selectTokensBatched, selectTokensBatchedAsync } from './ops/select';
export type { BatchedSelectOptions } from './ops/select';
export { gatherKVBatched, gatherKVBatchedAsync } from './ops/gather';
export type { GatherBatchedArgs } from './ops/gather';
export { decodeAttentionBatched, decodeAttentionBatchedAsync } from './ops/decode';
export type { DecodeAttentionBatchedArgs } from './ops/decode';
export { momentkvSelectBatched, momentkvSelectBatchedAsync } from './ops/momentkv_select';
export type { MomentkvSelectBatchedArgs } from './ops/momentkv_select';
export { grkvMergeBatched, grkvMergeBatchedAsync } from './ops/grkv';
export type { GrkvMergeBatchedArgs } from './ops/grkv';
export { compactInPlace, compactInPlaceAsync, compactPageTable } from './ops/compact';
export type { CompactInPlaceArgs, CompactInPlaceResult } from './ops/compact';
export { TpSelection, tpSelectTokens } from './ops/tp_select';
export type { TpSelectOptions } from './ops/tp_select';


// ==== compress() pipeline, traces, metrics ====
export { compress, compressAsync, compressCache, compressCacheAsync, methodScores, methodScoresAsync } from './compress';
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

