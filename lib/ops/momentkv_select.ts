/**
 * MomentKV moment-informed eviction (docs/methods/momentkv.md §5.2-§5.3) and the one-call compression helper.
 *
 * Per KV head, the N − keep lowest-ranked unprotected tokens are evicted in `rounds` rounds (round r evicts
 * ⌈remaining / (rounds − r)⌉ tokens). A token's rank key is its base score (SnapKV, supplied by the caller) times
 * the moment-informed factor against the summary accumulated so far:
 *   key_i = score_i · (ρ_i + eps·mean ρ),   ρ_i = ‖v_i − P v_i‖,
 * P the orthogonal projector onto span{mu_v, top-r left singular vectors of C} (key = score while the summary is
 * empty, so the first round of a fresh state is plain score eviction). Tokens whose value the summary already
 * spans are evicted first, which keeps the evicted set geometrically regular — the regime where the first-order
 * correction of `decodeAttention` is accurate. After each round its evicted rows are merged into `moments`.
 * Scores of +Infinity mark protected tokens (observation window, sinks): never evicted. Ties: the higher position
 * is evicted first. mi = false gives plain score eviction in one round (the moments are still built).
 */
import { native, Native } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, sameDevice } from '../tensor';
import { checkBool, checkInt, checkNum } from '../validate';
import { AsyncOptions, StreamOpt, checkAborted, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';
import { CompactKV, gatherKV, gatherKVAsync } from './gather';
import { MomentState, MomentTensors, ensureMoments, momentsNative } from './moments';
import { resolveKeep } from './select';
import { BatchCache, checkCache, resolveBatchKeep, tokenOutput } from './batch';

export interface MomentkvSelectArgs extends StreamOpt {
  /** Base eviction scores f32 [H, N] (higher = keep; e.g. snapkvScores); +Infinity = protected. */
  scores: Tensor | TensorLike;
  /** Keys [H, N, d] (post-RoPE, as cached), f32 | f16 | bf16, any strides. */
  keys: Tensor | TensorLike;
  /** Values [H, N, dv], f32 | f16 | bf16, any strides. */
  values: Tensor | TensorLike;
  /** Tokens kept per head, protected ones included (1..N). Exactly one of keep / ratio. */
  keep?: number;
  /** Fraction of tokens evicted, in [0, 1): keep = max(1, ⌊N·(1 − ratio)⌋). */
  ratio?: number;
  /** Eviction rounds (default 4; forced to 1 when mi = false). */
  rounds?: number;
  /** Singular vectors of C in the summary subspace (default 1, at most 8). */
  r?: number;
  /** Weight of the mean residual floor (default 0.05). */
  eps?: number;
  /** Moment-informed factor on (default true). */
  mi?: boolean;
  /** State to merge the evicted rows into (default: a fresh one on the device of `scores`). */
  moments?: MomentTensors;
  /** Capacity of `indices` (default keep). */
  cap?: number;
  indices?: Tensor | TensorLike;
  counts?: Tensor | TensorLike;
  /** true, or a preallocated i32 [H, N]: also return the round (0-based) each token was evicted in, −1 if kept. */
  evictedRound?: boolean | Tensor | TensorLike;
}

export interface MomentkvSelection {
  /** Kept positions i32 [H, cap], ascending, −1 after counts[h]. */
  indices: Tensor;
  /** i32 [H]: keep for every head. */
  counts: Tensor;
  /** The state with every evicted row merged in. */
  moments: MomentState;
  /** i32 [H, N] (when requested). */
  evictedRound?: Tensor;
}

const SELECT_KEYS = ['scores', 'keys', 'values', 'keep', 'ratio', 'rounds', 'r', 'eps', 'mi', 'moments', 'cap', 'indices', 'counts', 'evictedRound', 'stream'];

/** Multi-round moment-informed eviction (docs/methods/momentkv.md §5.3). */
export function momentkvSelect(args: MomentkvSelectArgs): MomentkvSelection {
  const p = plan(opts('args', args, SELECT_KEYS));
  native.momentkvSelect(...p.args);
  return p.result;
}

/** {@link momentkvSelect} on a worker thread (see AsyncOptions). */
export async function momentkvSelectAsync(args: MomentkvSelectArgs & AsyncOptions): Promise<MomentkvSelection> {
  const o = opts('args', args, keysOf(SELECT_KEYS, true));
  const p = plan(o);
  await runAsync(native.momentkvSelectAsync, p.args, signalOf(o));
  return p.result;
}

/** Rounds, r, mi (native 0 | 1) and eps of checked options. */
function roundOptions(o: Record<string, unknown>): { rounds: number; r: number; mi: number; eps: number } {
  const D = DEFAULTS.momentkvSelect;
  const mi = o.mi === undefined ? D.mi : checkBool('mi', o.mi);
  const rounds = checkInt('rounds', o.rounds ?? D.rounds, 1, 1 << 20);
  const r = checkInt('r', o.r ?? D.r, 0, 8);
  const eps = checkNum('eps', o.eps ?? D.eps, 0, 1e30);
  return { rounds, r, mi: mi ? 1 : 0, eps };
}

function plan(o: Record<string, unknown>) {
  const s = checkDtype('scores', checkRank('scores', asTensor('scores', o.scores), 2, '[H, N]'), ['f32']);
  const k = checkDtype('keys', checkRank('keys', asTensor('keys', o.keys), 3, '[H, N, d]'), ['f32', 'f16', 'bf16']);
  const v = checkDtype('values', checkRank('values', asTensor('values', o.values), 3, '[H, N, dv]'), ['f32', 'f16', 'bf16']);
  const [H, N] = s.shape;
  if (H < 1 || N < 1) throw new RangeError(`scores: H and N must be >= 1, got [${s.shape.join(', ')}]`);
  if (k.shape[0] !== H || k.shape[1] !== N) throw new RangeError(`keys: expected shape [${H}, ${N}, d] (H, N of scores), got [${k.shape.join(', ')}]`);
  if (v.shape[0] !== H || v.shape[1] !== N) throw new RangeError(`values: expected shape [${H}, ${N}, dv] (H, N of scores), got [${v.shape.join(', ')}]`);
  for (const [name, t] of [['keys', k], ['values', v]] as const) {
    if (!sameDevice(t.device, s.device)) throw new TypeError(`${name}: must be on the same device as scores`);
  }
  const keep = resolveKeep(N, o);
  const { rounds, r, mi, eps } = roundOptions(o);
  const stream = streamOf(o, s.device);
  const moments = ensureMoments(o.moments, H, k.shape[2], v.shape[2], s.device, stream);
  const cap = o.cap === undefined ? (o.indices === undefined ? keep : asTensor('indices', o.indices).shape[1] ?? keep) : checkInt('cap', o.cap, keep, 2 ** 31 - 1);
  if (cap < keep) throw new RangeError(`indices: capacity (dimension 1) must be at least keep = ${keep}, got ${cap}`);
  const indices = output('indices', o.indices, [H, cap], 'i32', s.device, stream);
  const counts = output('counts', o.counts, [H], 'i32', s.device, stream);
  let er: Tensor | undefined;
  if (o.evictedRound === true) er = output('evictedRound', undefined, [H, N], 'i32', s.device, stream);
  else if (o.evictedRound !== undefined && o.evictedRound !== false) er = output('evictedRound', o.evictedRound, [H, N], 'i32', s.device, stream);
  const args: Parameters<Native['momentkvSelect']> = [
    s.toNative(), k.toNative(), v.toNative(), { keep, rounds, r, mi, eps },
    indices.toNative(), counts.toNative(), momentsNative('moments', moments), er?.toNative(), stream?.handle,
  ];
  const result: MomentkvSelection = { indices, counts, moments, ...(er ? { evictedRound: er } : {}) };
  return { args, result };
}

export interface MomentkvCompressArgs extends MomentkvSelectArgs {
  /** Preallocated compacted outputs [H, cap, d] / [H, cap, dv] / [H]. */
  keysOut?: Tensor | TensorLike;
  valuesOut?: Tensor | TensorLike;
  countsOut?: Tensor | TensorLike;
}

export interface MomentkvCache {
  /** Compacted retained keys [H, cap, d] (dtype of keys), padding rows zero. */
  keys: Tensor;
  /** Compacted retained values [H, cap, dv]. */
  values: Tensor;
  /** Retained rows per head, i32 [H]. */
  counts: Tensor;
  /** Summary of the evicted rows, ready for decodeAttention({ moments }). */
  moments: MomentState;
  /** Kept positions i32 [H, cap] (ascending). */
  indices: Tensor;
  evictedRound?: Tensor;
}

/**
 * One call from a full prefill cache to a compressed one with its moment state: momentkvSelect (which merges every
 * evicted row into the state) then a compaction of the kept rows. Pass the result's keys/values/counts/moments to
 * decodeAttention; append decoded tokens to the compacted cache (the statistics stay frozen, docs/methods/momentkv.md §5.3).
 */
export function momentkvCompress(args: MomentkvCompressArgs): MomentkvCache {
  const o = opts('args', args, COMPRESS_KEYS);
  const p = plan(o);
  native.momentkvSelect(...p.args);
  return cacheOf(p.result, gatherKV(compactArgs(o, p.result)));
}

/** {@link momentkvCompress} on a worker thread (see AsyncOptions; an abort between the two ops stops before the second). */
export async function momentkvCompressAsync(args: MomentkvCompressArgs & AsyncOptions): Promise<MomentkvCache> {
  const o = opts('args', args, keysOf(COMPRESS_KEYS, true));
  const signal = signalOf(o);
  const p = plan(o);
  await runAsync(native.momentkvSelectAsync, p.args, signal);
  checkAborted(signal);
  return cacheOf(p.result, await gatherKVAsync({ ...compactArgs(o, p.result), ...(signal ? { signal } : {}) }));
}

const COMPRESS_KEYS = [...SELECT_KEYS, 'keysOut', 'valuesOut', 'countsOut'];

/** The compaction of the kept rows after the selection. */
function compactArgs(o: Record<string, unknown>, sel: MomentkvSelection) {
  const stream = o.stream as StreamOpt['stream'];
  return {
    keys: o.keys as Tensor,
    values: o.values as Tensor,
    indices: sel.indices,
    counts: sel.counts,
    ...(o.keysOut !== undefined ? { keysOut: o.keysOut as Tensor } : {}),
    ...(o.valuesOut !== undefined ? { valuesOut: o.valuesOut as Tensor } : {}),
    ...(o.countsOut !== undefined ? { countsOut: o.countsOut as Tensor } : {}),
    ...(stream ? { stream } : {}),
  };
}

function cacheOf(sel: MomentkvSelection, compact: CompactKV): MomentkvCache {
  return { ...compact, moments: sel.moments, indices: sel.indices, ...(sel.evictedRound ? { evictedRound: sel.evictedRound } : {}) };
}

export interface MomentkvSelectBatchedArgs extends Omit<MomentkvSelectArgs, 'scores' | 'keys' | 'values' | 'keep' | 'evictedRound'> {
  /** Base scores per token ([H, T] ragged, [B, H, L] otherwise; +Infinity = protected). */
  scores: Tensor | TensorLike;
  /** The batch cache (keys and values); `moments` holds B·H virtual heads. */
  cache: BatchCache;
  /** Tokens kept per head: a number or an i32 [B] tensor (sequence b keeps min(keep_b, n_b)). One of keep / ratio. */
  keep?: number | Tensor | TensorLike;
  /** true, or a preallocated i32 per-token tensor (the layout of `scores`). */
  evictedRound?: boolean | Tensor | TensorLike;
}

function planMomentkvSelectBatched(async: boolean, a: MomentkvSelectBatchedArgs) {
  const o = opts('args', a, keysOf(['scores', 'cache', 'keep', 'ratio', 'rounds', 'r', 'eps', 'mi', 'moments', 'cap', 'indices', 'counts', 'evictedRound', 'stream'], async));
  const c = checkCache('cache', o.cache, true);
  const s = checkDtype('scores', asTensor('scores', o.scores), ['f32']);
  const table = c.table;
  const B = table.B;
  const keep = resolveBatchKeep(table, o);
  const { rounds, r, mi, eps } = roundOptions(o);
  const dev = c.keys.device;
  const stream = streamOf(o, dev);
  const moments = ensureMoments(o.moments, B * c.H, c.d, c.dv, dev, stream);
  const cap = o.cap !== undefined ? checkInt('cap', o.cap, 1, 2 ** 31 - 1) : o.indices !== undefined ? asTensor('indices', o.indices).shape[2] : Math.max(1, keep.max ?? 1);
  const indices = output('indices', o.indices, [B, c.H, cap], 'i32', dev, stream);
  const counts = output('counts', o.counts, [B, c.H], 'i32', dev, stream);
  let er: Tensor | undefined;
  if (o.evictedRound !== undefined && o.evictedRound !== false) {
    er = tokenOutput('evictedRound', o.evictedRound === true ? undefined : o.evictedRound, table, c.H, 'i32', dev, c.keys, table.layout === 'ragged' ? undefined : s.shape[2], stream);
  }
  const args: Parameters<Native['momentkvSelectBatched']> = [
    table.toNative(), s.toNative(), c.keys.toNative(), c.values!.toNative(), { keep: keep.scalar, rounds, r, mi, eps }, keep.tensor?.toNative(), indices.toNative(), counts.toNative(), momentsNative('moments', moments), er?.toNative(), stream?.handle,
  ];
  const finish = (): MomentkvSelection => {
    return { indices, counts, moments, ...(er ? { evictedRound: er } : {}) };
  };
  return { args, finish, signal: signalOf(o) };
}

/**
 * Moment-informed eviction of every sequence of a batch cache (docs/runtime-caches.md §3): indices i32 [B, H, cap],
 * counts [B, H]; equal to momentkvSelect per sequence with keep_b.
 */
export function momentkvSelectBatched(args: MomentkvSelectBatchedArgs): MomentkvSelection {
  const p = planMomentkvSelectBatched(false, args);
  native.momentkvSelectBatched(...p.args);
  return p.finish();
}

/** {@link momentkvSelectBatched} on a worker thread (see AsyncOptions). */
export async function momentkvSelectBatchedAsync(args: (MomentkvSelectBatchedArgs) & AsyncOptions): Promise<MomentkvSelection> {
  const p = planMomentkvSelectBatched(true, args);
  await runAsync(native.momentkvSelectBatchedAsync, p.args, p.signal);
  return p.finish();
}
