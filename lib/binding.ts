/**
 * Loads the native addon (one `.node` for CPU and CUDA) and initialises the backend. Follows sharp's pattern:
 * every way loading can fail is collected into one error that says what to do about it.
 *
 * Environment:
 * - `KVTRIM_BACKEND=auto|cpu|cuda` (default auto): `cpu` never touches the CUDA runtime; `cuda` makes loading
 *   fail (code ERR_KVTRIM_NO_CUDA) when no usable GPU is present instead of falling back to the CPU backend.
 * - `KVTRIM_ADDON=/path/to/kvtrim.node`: load this file instead of searching `build/` and `prebuilds/`.
 * - `KVTRIM_THREADS=n`: CPU backend threads (read by the addon).
 * - `KVTRIM_CPU_ISA=avx512|avx2|baseline`: caps the instruction-set level of the CPU backend (read by the addon).
 */
import path from 'node:path';
import type { Defaults } from './defaults';

/** A tensor argument as the addon parses it (`Tensor.toNative()`): host typed array or device buffer, in elements. */
export interface NativeTensor {
  data: ArrayBufferView | NativeBufferHandle;
  dtype: string;
  shape: readonly number[];
  strides: readonly number[];
  offset: number;
}

/** A moment-state argument (`kvt_moments`): n [H], muK [H, d], muV [H, dv], m [H, dv, d], all f32. */
export interface NativeMoments {
  n: NativeTensor;
  muK: NativeTensor;
  muV: NativeTensor;
  m: NativeTensor;
}

/** A CUDA stream handle (`cudaStream_t` as a bigint); undefined = the default stream (and the CPU backend). */
export type NativeStream = bigint | undefined;

/**
 * The abort cell of an async op: an Int32Array whose element 0 the caller sets (Atomics.store) to non-zero to abort
 * the call if its worker has not started yet (csrc/napi/glue.h run_async).
 */
export type AbortCell = Int32Array;

/**
 * The async twin `<op>Async` of an op export: the same arguments (pass the stream, or undefined, positionally) plus
 * an abort cell; resolves when the C call is done on a libuv worker thread, rejects with the error the op would
 * throw (or an AbortError). Calls on CUDA tensors enqueue at once and return a settled promise.
 */
export type AsyncOf<F extends (...args: never[]) => void> = (...args: [...Parameters<F>, abort?: AbortCell]) => Promise<void>;

/** The addon's device-memory object (csrc/napi/native_buffer.cc). */
export interface NativeBufferHandle {
  /** The device address, set by the constructor. */
  readonly ptr: bigint;
  free(): void;
}

export interface NativeBufferClass {
  /** `bytes` of device memory, stream-ordered on `stream` when given. */
  new (mode: 'alloc', bytes: number, device: number, stream?: NativeStream): NativeBufferHandle;
  /** Borrowed memory owned by another runtime (never freed by kvtrim). */
  new (mode: 'wrap', ptr: bigint, bytes: number, device: number): NativeBufferHandle;
}

export interface NativeDevice {
  id: number;
  name: string;
  sm: string;
  memory: number;
  multiprocessors: number;
  supported: boolean;
}

export interface NativeInfo {
  cuda: boolean;
  reason?: string;
  devices: NativeDevice[];
  threads: number;
  cpuIsa: string;
  cpuIsaLevels: string[];
  versions: Record<string, string | number | boolean>;
}

// Op options as the addon reads them (csrc/napi/*.cc → the C structs of csrc/include/kvtrim.h): enums as their C values.

/** `kvt_select_opts`; budget: KVT_BUDGET_UNIFORM 0 | KVT_BUDGET_ADAPTIVE 1. */
export interface NativeSelectOpts {
  keep: number;
  budget: number;
  safeguard: number;
  sinks: number;
  recent: number;
}

/** `kvt_nestedkv_opts`; block 0 = auto; scales: KVT_SCALES_ALL 0 | KVT_SCALES_GLOBAL 1. */
export interface NativeNestedkvOpts {
  window: number;
  block: number;
  prior: readonly number[];
  beta: number;
  tau: number;
  kappa: number;
  tail: number;
  sinks: number;
  scales: number;
}

/** `kvt_snapkv_opts`; pool: KVT_POOL_AVG 0 | KVT_POOL_MAX 1. */
export interface NativeSnapkvOpts {
  window: number;
  kernel: number;
  pool: number;
  scale: number;
}

/** `kvt_decode_opts`. */
export interface NativeDecodeOpts {
  order: number;
  scale: number;
  useClip: number;
  clip: number;
}

/** `kvt_momentkv_select_opts`; mi 0 | 1. */
export interface NativeMomentkvSelectOpts {
  keep: number;
  rounds: number;
  r: number;
  mi: number;
  eps: number;
}

/** `kvt_spd_opts`; check 0 | 1. */
export interface NativeSpdOpts {
  lambda: number;
  check: number;
}

/** `kvt_grkv_opts`; accept: KVT_GRKV_ACCEPT_BEST 0 | KVT_GRKV_ACCEPT_JOINT 1. */
export interface NativeGrkvOpts {
  window: number;
  gamma: number;
  lambda: number;
  capKey: number;
  capValue: number;
  cgIters: number;
  tol: number;
  scale: number;
  accept: number;
}

/** A sequence table (`kvt_seqs`, docs/runtime-caches.md §1): layout 0 ragged | 1 padded | 2 NHD | 3 HND. */
export interface NativeSeqs {
  layout: number;
  pageSize: number;
  indptr?: NativeTensor;
  lengths?: NativeTensor;
  indices?: NativeTensor;
  lastPageLen?: NativeTensor;
}

/** A shard's tensor-parallel selection problem (`kvt_tp_select`, docs/runtime-caches.md §5). */
export interface NativeTpProblem {
  seqs?: NativeSeqs;
  scores: NativeTensor;
  keep?: NativeTensor;
  select: NativeSelectOpts;
  headOffset: number;
  totalHeads: number;
  radixBits: number;
  state: NativeTensor;
}

/**
 * The raw addon surface (internal; the typed API in index.ts wraps it): every export of csrc/napi/*.cc, with its
 * argument order. Outputs are written in place; ops enqueue on `stream` (CUDA) and return nothing.
 */
export interface Native {
  // backend (addon.cc)
  init(opts: { cuda: boolean }): NativeInfo;
  // device memory, streams, events, copies (native_buffer.cc)
  NativeBuffer: NativeBufferClass;
  streamCreate(device: number): bigint;
  streamDestroy(stream: bigint): void;
  streamSynchronize(stream: bigint, device: number): Promise<void>;
  eventCreate(device: number): bigint;
  eventRecord(event: bigint, stream?: NativeStream): void;
  eventElapsed(start: bigint, end: bigint): number;
  eventDestroy(event: bigint): void;
  copyToDevice(dst: NativeBufferHandle, dstOffset: number, src: ArrayBufferView, srcOffset: number, bytes: number, stream?: NativeStream): void;
  copyToHost(dst: ArrayBufferView, dstOffset: number, src: NativeBufferHandle, srcOffset: number, bytes: number, stream?: NativeStream): Promise<void>;
  copyDevice(dst: NativeBufferHandle, dstOffset: number, src: NativeBufferHandle, srcOffset: number, bytes: number, stream?: NativeStream): void;
  fillBytes(dst: NativeBufferHandle, offset: number, byte: number, bytes: number, stream?: NativeStream): void;
  deviceSynchronize(device: number): void;
  // keydiff, select, gather
  keydiffScores(keys: NativeTensor, out: NativeTensor, stream?: NativeStream): void;
  selectTokens(scores: NativeTensor, opts: NativeSelectOpts, indices: NativeTensor, counts: NativeTensor, stream?: NativeStream): void;
  selectCapacity(H: number, N: number, opts: NativeSelectOpts): number;
  gatherKV(
    keys: NativeTensor, values: NativeTensor, indices: NativeTensor, counts: NativeTensor,
    keysOut: NativeTensor, valuesOut: NativeTensor, countsOut: NativeTensor, moments: NativeMoments | undefined, stream?: NativeStream,
  ): void;
  // nestedkv, snapkv
  nestedkvScores(keys: NativeTensor, opts: NativeNestedkvOpts, out: NativeTensor, stream?: NativeStream): void;
  nestedkvBlockSize(N: number): number;
  snapkvScores(queries: NativeTensor, keys: NativeTensor, opts: NativeSnapkvOpts, out: NativeTensor, stream?: NativeStream): void;
  // moments, decode, momentkv_select
  momentsMerge(keys: NativeTensor, values: NativeTensor, indices: NativeTensor, counts: NativeTensor, moments: NativeMoments, stream?: NativeStream): void;
  decodeAttention(
    queries: NativeTensor, keys: NativeTensor, values: NativeTensor, counts: NativeTensor, moments: NativeMoments | undefined,
    clip: NativeTensor | undefined, opts: NativeDecodeOpts, out: NativeTensor, stream?: NativeStream,
  ): void;
  momentkvSelect(
    scores: NativeTensor, keys: NativeTensor, values: NativeTensor, opts: NativeMomentkvSelectOpts, indices: NativeTensor,
    counts: NativeTensor, moments: NativeMoments, evictedRound: NativeTensor | undefined, stream?: NativeStream,
  ): void;
  // spd, grkv
  spdSolve(a: NativeTensor, b: NativeTensor, x: NativeTensor, info: NativeTensor | undefined, opts: NativeSpdOpts, stream?: NativeStream): void;
  grkvMerge(
    keys: NativeTensor, values: NativeTensor, indices: NativeTensor, counts: NativeTensor, queries: NativeTensor,
    queryPositions: NativeTensor, weights: NativeTensor | undefined, scores: NativeTensor, opts: NativeGrkvOpts,
    keysOut: NativeTensor, valuesOut: NativeTensor, countsOut: NativeTensor, diagnostics: NativeTensor | undefined, stream?: NativeStream,
  ): void;
  // the async twins of the ops (a Promise; the C call on a libuv worker thread)
  keydiffScoresAsync: AsyncOf<Native['keydiffScores']>;
  selectTokensAsync: AsyncOf<Native['selectTokens']>;
  gatherKVAsync: AsyncOf<Native['gatherKV']>;
  nestedkvScoresAsync: AsyncOf<Native['nestedkvScores']>;
  snapkvScoresAsync: AsyncOf<Native['snapkvScores']>;
  momentsMergeAsync: AsyncOf<Native['momentsMerge']>;
  decodeAttentionAsync: AsyncOf<Native['decodeAttention']>;
  momentkvSelectAsync: AsyncOf<Native['momentkvSelect']>;
  spdSolveAsync: AsyncOf<Native['spdSolve']>;
  grkvMergeAsync: AsyncOf<Native['grkvMerge']>;
  // runtime-shaped caches (docs/runtime-caches.md): batched forms in each op's binding file, compact.cc, tp_select.cc
  keydiffScoresBatched(seqs: NativeSeqs, keys: NativeTensor, out: NativeTensor, stream?: NativeStream): void;
  nestedkvScoresBatched(seqs: NativeSeqs, keys: NativeTensor, opts: NativeNestedkvOpts, out: NativeTensor, stream?: NativeStream): void;
  snapkvScoresBatched(
    seqs: NativeSeqs, keys: NativeTensor, qseqs: NativeSeqs, queries: NativeTensor, opts: NativeSnapkvOpts, out: NativeTensor, stream?: NativeStream,
  ): void;
  selectTokensBatched(
    seqs: NativeSeqs, scores: NativeTensor, opts: NativeSelectOpts, keep: NativeTensor | undefined, indices: NativeTensor, counts: NativeTensor,
    stream?: NativeStream,
  ): void;
  gatherKVBatched(
    seqs: NativeSeqs, keys: NativeTensor, values: NativeTensor, indices: NativeTensor, counts: NativeTensor, keysOut: NativeTensor,
    valuesOut: NativeTensor, countsOut: NativeTensor, moments: NativeMoments | undefined, stream?: NativeStream,
  ): void;
  momentsMergeBatched(
    seqs: NativeSeqs, keys: NativeTensor, values: NativeTensor, indices: NativeTensor, counts: NativeTensor, moments: NativeMoments, stream?: NativeStream,
  ): void;
  decodeAttentionBatched(
    seqs: NativeSeqs, queries: NativeTensor, keys: NativeTensor, values: NativeTensor, counts: NativeTensor, moments: NativeMoments | undefined,
    clip: NativeTensor | undefined, opts: NativeDecodeOpts, out: NativeTensor, stream?: NativeStream,
  ): void;
  momentkvSelectBatched(
    seqs: NativeSeqs, scores: NativeTensor, keys: NativeTensor, values: NativeTensor, opts: NativeMomentkvSelectOpts, keep: NativeTensor | undefined,
    indices: NativeTensor, counts: NativeTensor, moments: NativeMoments, evictedRound: NativeTensor | undefined, stream?: NativeStream,
  ): void;
  grkvMergeBatched(
    seqs: NativeSeqs, keys: NativeTensor, values: NativeTensor, indices: NativeTensor, counts: NativeTensor, qseqs: NativeSeqs, queries: NativeTensor,
    queryPositions: NativeTensor, weights: NativeTensor | undefined, scores: NativeTensor, opts: NativeGrkvOpts, keysOut: NativeTensor,
    valuesOut: NativeTensor, countsOut: NativeTensor, diagnostics: NativeTensor | undefined, stream?: NativeStream,
  ): void;
  compactInPlace(
    seqs: NativeSeqs, keys: NativeTensor, values: NativeTensor, indices: NativeTensor, counts: NativeTensor, moments: NativeMoments | undefined,
    outputs: { lengths?: NativeTensor; pageCounts?: NativeTensor; lastPageLen?: NativeTensor; freed?: NativeTensor; freedCount?: NativeTensor },
    stream?: NativeStream,
  ): void;
  // async twins of the runtime-shaped ops
  keydiffScoresBatchedAsync: AsyncOf<Native['keydiffScoresBatched']>;
  nestedkvScoresBatchedAsync: AsyncOf<Native['nestedkvScoresBatched']>;
  snapkvScoresBatchedAsync: AsyncOf<Native['snapkvScoresBatched']>;
  selectTokensBatchedAsync: AsyncOf<Native['selectTokensBatched']>;
  gatherKVBatchedAsync: AsyncOf<Native['gatherKVBatched']>;
  momentsMergeBatchedAsync: AsyncOf<Native['momentsMergeBatched']>;
  decodeAttentionBatchedAsync: AsyncOf<Native['decodeAttentionBatched']>;
  momentkvSelectBatchedAsync: AsyncOf<Native['momentkvSelectBatched']>;
  grkvMergeBatchedAsync: AsyncOf<Native['grkvMergeBatched']>;
  compactInPlaceAsync: AsyncOf<Native['compactInPlace']>;
  tpSelectRounds(radixBits: number): number;
  tpSelectStateWords(shardHeads: number): number;
  tpSelectBegin(problem: NativeTpProblem, stream?: NativeStream): void;
  tpSelectHistogram(problem: NativeTpProblem, round: number, hist: NativeTensor, stream?: NativeStream): void;
  tpSelectAdvance(problem: NativeTpProblem, round: number, histSum: NativeTensor, stream?: NativeStream): void;
  tpSelectFinish(problem: NativeTpProblem, indices: NativeTensor, counts: NativeTensor, stream?: NativeStream): void;
  /** The defaults of every op's options (csrc/napi/defaults.cc, from the C `kvt_<op>_default_opts`). */
  defaultOptions(): Defaults;
  // bench support (bench.cc): the CPU backend's threaded memcpy, the yardstick of `kvtrim bench` on the CPU
  hostCopy(dst: ArrayBufferView, src: ArrayBufferView): void;
  /** GFLOP/s of independent f32 multiply-add chains on every CPU thread at the dispatched instruction-set level. */
  fmaPeak(): number;
  // bench baselines, CUDA builds only (csrc/napi/bench.cc → kvt_bench_* → cuda/bench_baselines.cu, the SIMT SnapKV tiles)
  baselineKeydiff(keys: NativeTensor, out: NativeTensor, stream?: NativeStream): void;
  baselineSelect(scores: NativeTensor, keep: number, indices: NativeTensor, counts: NativeTensor, stream?: NativeStream): void;
  baselineGather(
    keys: NativeTensor, values: NativeTensor, indices: NativeTensor, counts: NativeTensor, keysOut: NativeTensor,
    valuesOut: NativeTensor, stream?: NativeStream,
  ): void;
  baselineSnapkv(queries: NativeTensor, keys: NativeTensor, out: NativeTensor, stream?: NativeStream): void;
}

/**
 * The one list of the addon's exports: each name with the builds that export it ('all', or 'cuda' = only when
 * compiled with CUDA, `versions.compiledWithCuda`). `satisfies` (no key missing, none extra) keeps it equal to the
 * keys of {@link Native} at compile time; test/backend.test.ts checks it against the loaded addon. Bench-only
 * exports: hostCopy, fmaPeak and the baseline* functions.
 */
export const NATIVE_EXPORTS = {
  init: 'all',
  defaultOptions: 'all',
  NativeBuffer: 'all',
  streamCreate: 'all',
  streamDestroy: 'all',
  streamSynchronize: 'all',
  eventCreate: 'all',
  eventRecord: 'all',
  eventElapsed: 'all',
  eventDestroy: 'all',
  copyToDevice: 'all',
  copyToHost: 'all',
  copyDevice: 'all',
  fillBytes: 'all',
  deviceSynchronize: 'all',
  keydiffScores: 'all',
  selectTokens: 'all',
  selectCapacity: 'all',
  gatherKV: 'all',
  nestedkvScores: 'all',
  nestedkvBlockSize: 'all',
  snapkvScores: 'all',
  momentsMerge: 'all',
  decodeAttention: 'all',
  momentkvSelect: 'all',
  spdSolve: 'all',
  grkvMerge: 'all',
  keydiffScoresAsync: 'all',
  selectTokensAsync: 'all',
  gatherKVAsync: 'all',
  nestedkvScoresAsync: 'all',
  snapkvScoresAsync: 'all',
  momentsMergeAsync: 'all',
  decodeAttentionAsync: 'all',
  momentkvSelectAsync: 'all',
  spdSolveAsync: 'all',
  grkvMergeAsync: 'all',
  keydiffScoresBatched: 'all',
  nestedkvScoresBatched: 'all',
  snapkvScoresBatched: 'all',
  selectTokensBatched: 'all',
  gatherKVBatched: 'all',
  momentsMergeBatched: 'all',
  decodeAttentionBatched: 'all',
  momentkvSelectBatched: 'all',
  grkvMergeBatched: 'all',
  compactInPlace: 'all',
  keydiffScoresBatchedAsync: 'all',
  nestedkvScoresBatchedAsync: 'all',
  snapkvScoresBatchedAsync: 'all',
  selectTokensBatchedAsync: 'all',
  gatherKVBatchedAsync: 'all',
  momentsMergeBatchedAsync: 'all',
  decodeAttentionBatchedAsync: 'all',
  momentkvSelectBatchedAsync: 'all',
  grkvMergeBatchedAsync: 'all',
  compactInPlaceAsync: 'all',
  tpSelectRounds: 'all',
  tpSelectStateWords: 'all',
  tpSelectBegin: 'all',
  tpSelectHistogram: 'all',
  tpSelectAdvance: 'all',
  tpSelectFinish: 'all',
  hostCopy: 'all',
  fmaPeak: 'all',
  baselineKeydiff: 'cuda',
  baselineSelect: 'cuda',
  baselineGather: 'cuda',
  baselineSnapkv: 'cuda',
} as const satisfies Record<keyof Native, 'all' | 'cuda'>;

/** The export names of a build with or without CUDA, sorted. */
export function nativeExportNames(compiledWithCuda: boolean): string[] {
  return Object.entries(NATIVE_EXPORTS)
    .filter(([, builds]) => builds === 'all' || compiledWithCuda)
    .map(([name]) => name)
    .sort();
}

export type BackendChoice = 'auto' | 'cpu' | 'cuda';

export const packageRoot = path.join(__dirname, '..');

function describe(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}

/** Builds the single explanatory error for a failed load (exported for tests). */
export function loadError(errors: unknown[], where: string): Error {
  const msgs = errors.map(describe);
  const all = msgs.join('\n');
  const help: string[] = [];
  if (/No native build was found/.test(all)) {
    help.push(
      `- No prebuilt binary matches this platform (${process.platform}-${process.arch}); kvtrim ships linux-x64 prebuilds.`,
      '  Build from source: install CMake >= 3.18 and a C++17 compiler (and the CUDA toolkit for GPU kernels), then run',
      '  `npm rebuild kvtrim --build-from-source` (or `npx cmake-js compile` in a clone).',
    );
  }
  if (/GLIBC|GLIBCXX|CXXABI/.test(all)) {
    help.push('- The binary needs a newer C/C++ runtime (glibc/libstdc++) than this system has: build from source as above.');
  }
  if (/invalid ELF header|wrong ELF class|cannot open shared object/.test(all)) {
    help.push('- The binary does not match this machine or is damaged: reinstall, or build from source as above.');
  }
  if (/ENOENT|Cannot find module/.test(all)) {
    help.push('- The addon file is missing: run `npm install` (a clone needs `npm install` to build it).');
  }
  if (help.length === 0) help.push('- Reinstall kvtrim; if that does not help, build from source (see the README, "Building").');
  const err = new Error(
    `Could not load the kvtrim native addon (${where}) on ${process.platform}-${process.arch}, Node ${process.version}.\n` +
      `Errors:\n${msgs.map((m) => `  ${m}`).join('\n')}\nPossible solutions:\n${help.join('\n')}`,
  );
  (err as Error & { code: string }).code = 'ERR_KVTRIM_LOAD';
  return err;
}

/**
 * The addon file to load: `KVTRIM_ADDON`, else node-gyp-build's choice (build/Release in a clone, then
 * prebuilds/<platform>-<arch>/). The C library is built and shipped beside it, as lib/libkvtrim.so.
 */
export function addonFile(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.KVTRIM_ADDON;
  if (explicit) return path.resolve(explicit);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('node-gyp-build').resolve(packageRoot) as string;
}

/** Loads the addon from `KVTRIM_ADDON` or through node-gyp-build (build/ first, then prebuilds/). */
export function loadAddon(env: NodeJS.ProcessEnv = process.env): Native {
  const explicit = env.KVTRIM_ADDON;
  try {
    return require(addonFile(env)) as Native;
  } catch (e) {
    throw loadError([e], explicit ? `KVTRIM_ADDON=${explicit}` : packageRoot);
  }
}

/** Parses KVTRIM_BACKEND. */
export function backendChoice(env: NodeJS.ProcessEnv = process.env): BackendChoice {
  const v = (env.KVTRIM_BACKEND ?? 'auto').trim().toLowerCase() || 'auto';
  if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') {
    const err = new Error(`KVTRIM_BACKEND must be 'auto', 'cpu' or 'cuda', got '${env.KVTRIM_BACKEND}'`);
    (err as Error & { code: string }).code = 'ERR_KVTRIM_BACKEND';
    throw err;
  }
  return v;
}

/** Initialises the backend per the choice; `cuda` without a usable GPU is an error. */
export function initBackend(native: Native, choice: BackendChoice): NativeInfo {
  const info = native.init({ cuda: choice !== 'cpu' });
  if (choice === 'cuda' && !info.cuda) {
    const err = new Error(`KVTRIM_BACKEND=cuda but CUDA cannot be used: ${info.reason}`);
    (err as Error & { code: string }).code = 'ERR_KVTRIM_NO_CUDA';
    throw err;
  }
  return info;
}

const choice = backendChoice();
export const native: Native = loadAddon();
/** The addon file that was loaded. */
export const addonPath: string = addonFile();
export const nativeInfo: NativeInfo = initBackend(native, choice);
export const backend: BackendChoice = choice;
