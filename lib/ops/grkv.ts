/**
 * GRKV (Peng et al., arXiv 2605.31105; docs/methods/grkv.md): after eviction, the retained rows of each KV head are
 * regressed so that attention over the compressed cache reproduces full-cache attention for a set of surrogate
 * queries — an exact dual-ridge value step and one Gauss–Newton ridge key step (CG), with relative caps, storage
 * rounding and a per-head choice among {unchanged, value-only, key+value}. The cache size is unchanged; fixed
 * (window + anchor) rows, evicted rows and padding are bit-identical to plain eviction (`gatherKV`).
 */
import { native, Native, NativeGrkvOpts } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, tensor, toDevice, toHost, hostContiguous } from '../tensor';
import { checkInt, checkNum, checkOneOf, checkOptions, checkKeys, rejectNulls, show } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';
import type { CompactKV } from './gather';
import { BatchCache, QueryBatch, checkCache, checkQueries } from './batch';

/** The largest finite f32 (weights are stored as f32). */
const F32_MAX = 3.4028234663852886e38;

/** Relative Frobenius caps per KV head: ‖ΔK‖ ≤ key·‖K0_M‖, ‖ΔV‖ ≤ value·‖V0_M‖ (Infinity = uncapped). */
export interface GrkvCaps {
  /** Default 0.025; 0 = value-only (the key step is skipped). */
  key?: number;
  /** Default 0.10. */
  value?: number;
}

export interface GrkvMergeArgs extends StreamOpt {
  /** Full-cache keys [H, N, d] of one layer (f32 | f16 | bf16, any strides), post-RoPE. */
  keys: Tensor | TensorLike;
  /** Values [H, N, dv], same dtype as keys. */
  values: Tensor | TensorLike;
  /** The eviction result: `selectTokens` output (indices i32 [H, cap] ascending, counts i32 [H]; ragged allowed). */
  selection: { indices: Tensor | TensorLike; counts: Tensor | TensorLike };
  /** Surrogate queries [Hq, Qs, d], post-RoPE (Hq a multiple of H; query head j belongs to KV head ⌊j/G⌋). */
  queries: Tensor | TensorLike;
  /** i32 [Qs]: logical position of each surrogate query; key position p is visible to query j iff p ≤ position j. */
  queryPositions: Tensor | TensorLike;
  /** Raw SnapKV scores f32 [H, N] (anchor ranking, docs/methods/grkv.md §3.1/§4). */
  scores: Tensor | TensorLike;
  /**
   * Per-query weights f32 [Qs] (≥ 0), or one number for all (a small [Qs] tensor is then allocated per call: pass a
   * tensor on a hot path). Default 1; `grkvSurrogates` gives 6/Qs for the stratified source.
   */
  weights?: Tensor | TensorLike | number;
  /** Observation window W: retained positions ≥ N − W are fixed. Default 32. */
  window?: number;
  /** Anchor fraction γ of the retained prefix (fixed). Default 0.1. */
  gamma?: number;
  /** Ridge λ > 0 (keys and values). Default 0.01. */
  lambda?: number;
  caps?: GrkvCaps;
  /** Maximum CG iterations of the key step (0 = value-only). Default 16. */
  cgIters?: number;
  /** Relative CG residual tolerance. Default 1e-6. */
  tol?: number;
  /** Logit scale. Default 1/√d. */
  scale?: number;
  /**
   * Per-head acceptance (docs/methods/grkv.md §7.3, §11.7): 'best' (default) keeps the candidate with the lowest objective among
   * {unchanged, value-only, key+value}; 'joint' always applies the key+value step when it is finite (GRKV-W
   * "earliest"; caps still apply).
   */
  acceptance?: 'best' | 'joint';
  /** Output capacity (default: the capacity of selection.indices). */
  cap?: number;
  keysOut?: Tensor | TensorLike;
  valuesOut?: Tensor | TensorLike;
  countsOut?: Tensor | TensorLike;
  /** Per-head diagnostics: `true` to allocate, or a preallocated f32 [H, 14] (see decodeGrkvDiagnostics). */
  diagnostics?: boolean | Tensor | TensorLike;
}

export interface GrkvResult extends CompactKV {
  /** f32 [H, 14] when requested; decode with {@link decodeGrkvDiagnostics}. */
  diagnostics?: Tensor;
}

/** Columns of the diagnostics rows (kvtrim.h KVT_GRKV_DIAG_*). */
export const GRKV_DIAG_COLS = 14;

export type GrkvCandidate = 'unchanged' | 'value' | 'key+value';

export interface GrkvHeadDiagnostics {
  /** The candidate kept. */
  chosen: GrkvCandidate;
  /** Objective (weighted output loss + λ·ridge, docs/methods/grkv.md §6) of {unchanged, value-only, key+value}; NaN = not finite. */
  objectives: [number, number, number];
  /** Final step scales (cap factor × 0.9^shrinks; 0 when the rounded step broke the cap and was dropped). */
  valueScale: number;
  keyScale: number;
  valueShrinks: number;
  keyShrinks: number;
  cgIterations: number;
  /** ‖residual‖ / ‖b‖ at the end of CG. */
  cgResidual: number;
  cgStop: 'tol' | 'maxiter' | 'curvature' | 'not-run';
  /** Mutable (regressed) and fixed (window + anchors) rows. */
  mutable: number;
  fixed: number;
  /** No fit (no mutable row or no query row). */
  skipped: boolean;
  valueDropped: boolean;
  keyDropped: boolean;
  /** The value-only / key+value candidate had a non-finite entry and was skipped. */
  valueNonFinite: boolean;
  keyValueNonFinite: boolean;
  /** The value system was not SPD (cannot happen with λ > 0 and finite inputs). */
  notSpd: boolean;
}

const CANDIDATES: GrkvCandidate[] = ['unchanged', 'value', 'key+value'];
const STOPS = ['tol', 'maxiter', 'curvature', 'not-run'] as const;

/** Decodes a diagnostics tensor (host or device; waits for `stream` when on CUDA). */
export async function decodeGrkvDiagnostics(diagnostics: Tensor, opts: StreamOpt = {}): Promise<GrkvHeadDiagnostics[]> {
  const t = checkRank('diagnostics', checkDtype('diagnostics', asTensor('diagnostics', diagnostics), ['f32']), 2, '[H, 14]');
  if (t.shape[1] !== GRKV_DIAG_COLS) throw new RangeError(`diagnostics: expected ${GRKV_DIAG_COLS} columns, got ${t.shape[1]}`);
  const v = hostContiguous(await toHost(t, { stream: opts.stream })) as Float32Array;
  const out: GrkvHeadDiagnostics[] = [];
  for (let h = 0; h < t.shape[0]; h++) {
    const r = v.subarray(h * GRKV_DIAG_COLS, (h + 1) * GRKV_DIAG_COLS);
    const flags = r[13];
    out.push({
      chosen: CANDIDATES[r[0]] ?? 'unchanged',
      objectives: [r[1], r[2], r[3]],
      valueScale: r[4],
      keyScale: r[5],
      valueShrinks: r[6],
      keyShrinks: r[7],
      cgIterations: r[8],
      cgResidual: r[9],
      cgStop: STOPS[r[10]] ?? 'not-run',
      mutable: r[11],
      fixed: r[12],
      skipped: (flags & 1) !== 0,
      valueDropped: (flags & 2) !== 0,
      keyDropped: (flags & 4) !== 0,
      valueNonFinite: (flags & 8) !== 0,
      keyValueNonFinite: (flags & 16) !== 0,
      notSpd: (flags & 32) !== 0,
    });
  }
  return out;
}

/** The native options (`kvt_grkv_opts`) of checked option values, defaults from DEFAULTS. */
function nativeOptions(o: Record<string, unknown>): NativeGrkvOpts {
  const caps = checkOptions('caps', o.caps);
  checkKeys('caps', caps, ['key', 'value']);
  rejectNulls('caps.', caps);
  const D = DEFAULTS.grkv;
  const capKey = checkNum('caps.key', caps.key ?? D.caps.key, 0, Infinity);
  const capValue = checkNum('caps.value', caps.value ?? D.caps.value, 0, Infinity);
  return {
    window: checkInt('window', o.window ?? D.window, 0, 2 ** 31 - 1),
    gamma: checkNum('gamma', o.gamma ?? D.gamma, 0, 1),
    lambda: checkNum('lambda', o.lambda ?? D.lambda, 0, 1e30, { minOpen: true, maxOpen: true }),
    capKey,
    capValue,
    cgIters: checkInt('cgIters', o.cgIters ?? D.cgIters, 0, 100000),
    tol: checkNum('tol', o.tol ?? D.tol, 0, 1e30, { maxOpen: true }),
    scale: o.scale === undefined ? D.scale : checkNum('scale', o.scale, 0, 1e30, { minOpen: true, maxOpen: true }),
    accept: checkOneOf('acceptance', o.acceptance ?? D.acceptance, ['best', 'joint'] as const) === 'joint' ? 1 : 0,
  };
}

/**
 * GRKV merge of one layer (docs/methods/grkv.md §4–§7; per-KV-head acceptance §11.7). Returns the compacted, merged cache
 * `{ keys [H, cap, d], values [H, cap, dv], counts [H] }` in the input dtype (padding rows zero, masked by counts)
 * and, when asked, per-head diagnostics. Inputs are never modified.
 */
export function grkvMerge(args: GrkvMergeArgs): GrkvResult {
  const p = plan(args, false);
  native.grkvMerge(...p.args);
  return p.result;
}

/** {@link grkvMerge} on a worker thread (see AsyncOptions). */
export async function grkvMergeAsync(args: GrkvMergeArgs & AsyncOptions): Promise<GrkvResult> {
  const p = plan(args, true);
  await runAsync(native.grkvMergeAsync, p.args, p.signal);
  return p.result;
}

const KEYS = [
  'keys', 'values', 'selection', 'queries', 'queryPositions', 'scores', 'weights', 'window', 'gamma', 'lambda', 'caps',
  'cgIters', 'tol', 'scale', 'acceptance', 'cap', 'keysOut', 'valuesOut', 'countsOut', 'diagnostics', 'stream',
];

function plan(args: unknown, async: boolean) {
  const o = opts('args', args, keysOf(KEYS, async));
  const k = checkRank('keys', asTensor('keys', o.keys), 3, '[H, N, d]');
  const v = checkRank('values', asTensor('values', o.values), 3, '[H, N, dv]');
  const sel = checkOptions('selection', o.selection);
  if (o.selection === undefined) throw new TypeError('selection: expected { indices, counts } (the selectTokens result), got undefined');
  checkKeys('selection', sel, ['indices', 'counts']);
  const idx = checkRank('selection.indices', asTensor('selection.indices', sel.indices), 2, '[H, cap]');
  const cnt = checkRank('selection.counts', asTensor('selection.counts', sel.counts), 1, '[H]');
  const q = checkRank('queries', asTensor('queries', o.queries), 3, '[Hq, Qs, d]');
  const qp = checkRank('queryPositions', asTensor('queryPositions', o.queryPositions), 1, '[Qs]');
  const sc = checkRank('scores', asTensor('scores', o.scores), 2, '[H, N]');
  const [H, , d] = k.shape;
  const dv = v.shape[2];
  const stream = streamOf(o, k.device);
  let w: Tensor | undefined;
  if (typeof o.weights === 'number') {
    const wv = checkNum('weights', o.weights, 0, F32_MAX);
    const host = tensor(new Float32Array(q.shape[1]).fill(wv), [q.shape[1]]);
    w = k.onCuda ? toDevice(host, { device: (k.device as { id: number }).id, stream }) : host;
  } else if (o.weights !== undefined) {
    w = checkRank('weights', asTensor('weights', o.weights), 1, '[Qs]');
  }
  const nopts = nativeOptions(o);
  const cap = o.cap === undefined ? Math.max(1, idx.shape[1]) : checkInt('cap', o.cap, 1, 2 ** 31 - 1);
  const ko = output('keysOut', o.keysOut, [H, cap, d], k.dtype, k.device, stream);
  const vo = output('valuesOut', o.valuesOut, [H, cap, dv], v.dtype, k.device, stream);
  const co = output('countsOut', o.countsOut, [H], 'i32', k.device, stream);
  let dg: Tensor | undefined;
  if (o.diagnostics === true) dg = output('diagnostics', undefined, [H, GRKV_DIAG_COLS], 'f32', k.device, stream);
  else if (o.diagnostics !== undefined && o.diagnostics !== false) {
    if (typeof o.diagnostics !== 'object') throw new TypeError(`diagnostics: expected a boolean or an f32 [H, ${GRKV_DIAG_COLS}] tensor, got ${show(o.diagnostics)}`);
    dg = output('diagnostics', o.diagnostics, [H, GRKV_DIAG_COLS], 'f32', k.device, stream);
  }
  const nargs: Parameters<Native['grkvMerge']> = [
    k.toNative(), v.toNative(), idx.toNative(), cnt.toNative(), q.toNative(), qp.toNative(), w?.toNative(), sc.toNative(),
    nopts, ko.toNative(), vo.toNative(), co.toNative(), dg?.toNative(), stream?.handle,
  ];
  const result: GrkvResult = dg ? { keys: ko, values: vo, counts: co, diagnostics: dg } : { keys: ko, values: vo, counts: co };
  return { args: nargs, result, signal: signalOf(o) };
}

export type GrkvSource = 'window' | 'stratified';

export interface GrkvSurrogates {
  /** Context positions whose hidden states give the surrogate queries (q_proj there). */
  capturePositions: Int32Array;
  /** i32 [Qs]: the positions to pass as `queryPositions` — and to rotate the queries with (RoPE). */
  queryPositions: Tensor;
  /** f32 [Qs]: the per-query weights to pass as `weights`. */
  weights: Tensor;
}

/**
 * Surrogate-query plan of docs/methods/grkv.md §5 for a context of N tokens:
 * - `window` (GRKV-W, the paper's): the last `count` positions (default 32) at their true positions (causal),
 *   weights 1;
 * - `stratified` (the authors' release, "GRKV Default"): `count` stratum midpoints ⌊(e_j + e_{j+1} − 1)/2⌋ with
 *   e_j = ⌊j·N/count⌋ (all N positions when N < count), every query rotated to the virtual position N − 1 (so all
 *   retained keys are visible), weights 6/Qs.
 * Tensors are on the host unless `device` is given (then copied to that CUDA device).
 */
export function grkvSurrogates(N: number, options: { source: GrkvSource; count?: number; device?: number }): GrkvSurrogates {
  const o = opts('options', options, ['source', 'count', 'device']);
  checkInt('N', N, 1, 2 ** 31 - 2);
  const count = checkInt('count', o.count ?? 32, 1, 2 ** 31 - 1);
  let capture: number[];
  let qpos: number[];
  let w: number;
  if (o.source === 'window') {
    capture = [];
    for (let s = Math.max(0, N - count); s < N; s++) capture.push(s);
    qpos = capture.slice();
    w = 1;
  } else if (o.source === 'stratified') {
    if (N < count) capture = Array.from({ length: N }, (_, i) => i);
    else {
      const e = (j: number) => Math.floor((j * N) / count);
      capture = Array.from({ length: count }, (_, j) => Math.floor((e(j) + e(j + 1) - 1) / 2));
    }
    qpos = capture.map(() => N - 1);
    w = 6 / capture.length;
  } else {
    throw new (typeof o.source === 'string' ? RangeError : TypeError)(`source: expected one of 'window', 'stratified', got ${show(o.source)}`);
  }
  let queryPositions = tensor(Int32Array.from(qpos), [qpos.length]);
  let weights = tensor(new Float32Array(qpos.length).fill(w), [qpos.length]);
  if (o.device !== undefined) {
    const device = checkInt('device', o.device, 0, 1024);
    queryPositions = toDevice(queryPositions, { device });
    weights = toDevice(weights, { device });
  }
  return { capturePositions: Int32Array.from(capture), queryPositions, weights };
}

export interface GrkvMergeBatchedArgs
  extends Omit<GrkvMergeArgs, 'keys' | 'values' | 'selection' | 'queries' | 'queryPositions' | 'weights' | 'scores' | 'diagnostics'> {
  /** The full batch cache (keys and values of one dtype), read in place. */
  cache: BatchCache;
  /** The eviction result per sequence: indices i32 [B, H, cap_in], counts i32 [B, H] (selectTokensBatched). */
  selection: { indices: Tensor | TensorLike; counts: Tensor | TensorLike };
  /** Surrogate queries per sequence: ragged [Tq, Hq, d] + indptr, or padded [B, Hq, Qs, d] + lengths. */
  queries: QueryBatch;
  /** i32 per query, relative to its sequence: [Tq] (ragged queries) or [B, Qs] (padded). */
  queryPositions: Tensor | TensorLike;
  /** f32 per query, the shape of queryPositions (default 1). */
  weights?: Tensor | TensorLike;
  /** Raw SnapKV scores per token ([H, T] ragged, [B, H, L] otherwise). */
  scores: Tensor | TensorLike;
  /** `true` or a preallocated f32 [B, H, 14]. */
  diagnostics?: boolean | Tensor | TensorLike;
}

function planGrkvMergeBatched(async: boolean, a: GrkvMergeBatchedArgs) {
  const o = opts('args', a, keysOf([
    'cache', 'selection', 'queries', 'queryPositions', 'weights', 'scores', 'window', 'gamma', 'lambda', 'caps', 'cgIters', 'tol', 'scale',
    'acceptance', 'cap', 'keysOut', 'valuesOut', 'countsOut', 'diagnostics', 'stream',
  ], async));
  const c = checkCache('cache', o.cache, true);
  const sel = checkOptions('selection', o.selection);
  if (o.selection === undefined) throw new TypeError('selection: expected { indices, counts } (the selectTokensBatched result), got undefined');
  checkKeys('selection', sel, ['indices', 'counts']);
  const idx = checkRank('selection.indices', asTensor('selection.indices', sel.indices), 3, '[B, H, cap]');
  const cnt = checkRank('selection.counts', asTensor('selection.counts', sel.counts), 2, '[B, H]');
  const q = checkQueries('queries', o.queries);
  const qp = asTensor('queryPositions', o.queryPositions);
  const w = o.weights === undefined ? undefined : asTensor('weights', o.weights);
  const sc = asTensor('scores', o.scores);
  const nopts = nativeOptions(o);
  const B = idx.shape[0], H = c.H, dev = c.keys.device;
  const stream = streamOf(o, dev);
  const cap = o.cap === undefined ? Math.max(1, idx.shape[2]) : checkInt('cap', o.cap, 1, 2 ** 31 - 1);
  const ko = output('keysOut', o.keysOut, [B, H, cap, c.d], c.keys.dtype, dev, stream);
  const vo = output('valuesOut', o.valuesOut, [B, H, cap, c.dv], c.values!.dtype, dev, stream);
  const co = output('countsOut', o.countsOut, [B, H], 'i32', dev, stream);
  let dg: Tensor | undefined;
  if (o.diagnostics === true) dg = output('diagnostics', undefined, [B, H, GRKV_DIAG_COLS], 'f32', dev, stream);
  else if (o.diagnostics !== undefined && o.diagnostics !== false) dg = output('diagnostics', o.diagnostics, [B, H, GRKV_DIAG_COLS], 'f32', dev, stream);
  const args: Parameters<Native['grkvMergeBatched']> = [
    c.table.toNative(), c.keys.toNative(), c.values!.toNative(), idx.toNative(), cnt.toNative(), q.table.toNative(), q.queries.toNative(), qp.toNative(), w?.toNative(), sc.toNative(), nopts, ko.toNative(), vo.toNative(), co.toNative(), dg?.toNative(), stream?.handle,
  ];
  const finish = (): GrkvResult => {
    return dg ? { keys: ko, values: vo, counts: co, diagnostics: dg } : { keys: ko, values: vo, counts: co };
  };
  return { args, finish, signal: signalOf(o) };
}

/**
 * GRKV merge of every sequence of a batch cache (docs/runtime-caches.md §3): outputs [B, H, cap, d|dv], counts [B, H]
 * (and diagnostics [B, H, 14]); equal to grkvMerge per sequence. An empty sequence gets zero rows and counts 0.
 */
export function grkvMergeBatched(args: GrkvMergeBatchedArgs): GrkvResult {
  const p = planGrkvMergeBatched(false, args);
  native.grkvMergeBatched(...p.args);
  return p.finish();
}

/** {@link grkvMergeBatched} on a worker thread (see AsyncOptions). */
export async function grkvMergeBatchedAsync(args: (GrkvMergeBatchedArgs) & AsyncOptions): Promise<GrkvResult> {
  const p = planGrkvMergeBatched(true, args);
  await runAsync(native.grkvMergeBatchedAsync, p.args, p.signal);
  return p.finish();
}
