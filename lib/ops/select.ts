/**
 * Token selection (docs/methods/selection.md §4). Ranking: higher score first; NaN lowest; ties go to the lower position,
 * then the lower head. `sinks` leading and `recent` trailing positions are forced (always ranked first).
 * - `budget: 'uniform'`: each head keeps its own top `keep`.
 * - `budget: 'adaptive'` (NestedKV's head-wise competition = kvpress AdaKVPress): each head keeps its own top
 *   ⌊keep·safeguard⌋, then the layer keeps its global top H·keep; per-head counts are ragged.
 * `keep` = ⌊N·(1 − ratio)⌋ (at least 1) when a compression `ratio` (fraction evicted) is given.
 * Output: `indices` i32 [H, cap] ascending per head with −1 padding after `counts[h]`, `counts` i32 [H].
 */
import { native, Native } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkRank, hostContiguous } from '../tensor';
import { checkInt, checkNum, checkOneOf } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';
import { Seqs, SeqTable, resolveBatchKeep } from './batch';

export type Budget = 'uniform' | 'adaptive';

export interface SelectOptions extends StreamOpt {
  /** Compression ratio: fraction of tokens evicted, in [0, 1). Exactly one of ratio / keep. */
  ratio?: number;
  /** Tokens kept per head (average for the adaptive budget), 1..N. */
  keep?: number;
  budget?: Budget;
  /** Adaptive budget: fraction of each head's average budget it is guaranteed (default 0.2). */
  safeguard?: number;
  sinks?: number;
  recent?: number;
  /** Capacity of `indices` (default: the smallest always-sufficient value, see selectCapacity). */
  cap?: number;
  indices?: Tensor | TensorLike;
  counts?: Tensor | TensorLike;
}

export interface Selection {
  indices: Tensor;
  counts: Tensor;
}

/** Tokens kept per head for compression ratio r: max(1, ⌊N·(1−r)⌋), robust to float round-off. */
export function keepFromRatio(N: number, ratio: number): number {
  checkInt('N', N, 0, 2 ** 31 - 1);
  checkNum('ratio', ratio, 0, 1, { maxOpen: true });
  return Math.max(1, Math.min(N, Math.floor(N * (1 - ratio) + 1e-9)));
}

/** Resolves ratio/keep to a keep count (exactly one must be given). */
export function resolveKeep(N: number, o: { ratio?: unknown; keep?: unknown }): number {
  if ((o.ratio === undefined) === (o.keep === undefined)) throw new TypeError('options: give exactly one of `ratio` or `keep`');
  return o.ratio !== undefined ? keepFromRatio(N, o.ratio as number) : checkInt('keep', o.keep, 1, N);
}

interface NativeSelectOpts {
  keep: number;
  budget: number;
  safeguard: number;
  sinks: number;
  recent: number;
}

/** Smallest indices capacity that always suffices for these options. */
export function selectCapacity(H: number, N: number, o: { keep: number; budget?: Budget; safeguard?: number }): number {
  checkInt('H', H, 0, 2 ** 31 - 1);
  checkInt('N', N, 0, 2 ** 31 - 1);
  const c = opts('options', o, ['keep', 'budget', 'safeguard', 'sinks', 'recent']);
  const D = DEFAULTS.select;
  const n = {
    keep: checkInt('keep', c.keep, 1, Math.max(1, N)),
    budget: checkOneOf('budget', c.budget ?? D.budget, ['uniform', 'adaptive'] as const) === 'adaptive' ? 1 : 0,
    safeguard: checkNum('safeguard', c.safeguard ?? D.safeguard, 0, 1),
    sinks: 0,
    recent: 0,
  };
  return native.selectCapacity(H, N, n);
}

export function selectTokens(scores: Tensor | TensorLike, options: SelectOptions): Selection {
  const p = plan(scores, options, false);
  native.selectTokens(...p.args);
  return p.result;
}

/** {@link selectTokens} on a worker thread (see AsyncOptions). */
export async function selectTokensAsync(scores: Tensor | TensorLike, options: SelectOptions & AsyncOptions): Promise<Selection> {
  const p = plan(scores, options, true);
  await runAsync(native.selectTokensAsync, p.args, p.signal);
  return p.result;
}

const KEYS = ['ratio', 'keep', 'budget', 'safeguard', 'sinks', 'recent', 'cap', 'indices', 'counts', 'stream'];

function plan(scores: Tensor | TensorLike, options: unknown, async: boolean) {
  const o = opts('options', options, keysOf(KEYS, async));
  const s = checkRank('scores', asTensor('scores', scores), 2, '[H, N]');
  const [H, N] = s.shape;
  const keep = resolveKeep(N, o);
  const D = DEFAULTS.select;
  const budget = checkOneOf('budget', o.budget ?? D.budget, ['uniform', 'adaptive'] as const);
  const n: NativeSelectOpts = {
    keep,
    budget: budget === 'adaptive' ? 1 : 0,
    safeguard: checkNum('safeguard', o.safeguard ?? D.safeguard, 0, 1),
    sinks: checkInt('sinks', o.sinks ?? D.sinks, 0, 2 ** 31 - 1),
    recent: checkInt('recent', o.recent ?? D.recent, 0, 2 ** 31 - 1),
  };
  const need = native.selectCapacity(H, N, n) as number;
  const cap = o.cap === undefined ? (o.indices === undefined ? need : asTensor('indices', o.indices).shape[1] ?? need) : checkInt('cap', o.cap, need, 2 ** 31 - 1);
  const stream = streamOf(o, s.device);
  const indices = output('indices', o.indices, [H, cap], 'i32', s.device, stream);
  const counts = output('counts', o.counts, [H], 'i32', s.device, stream);
  const args: Parameters<Native['selectTokens']> = [s.toNative(), n, indices.toNative(), counts.toNative(), stream?.handle];
  const result: Selection = { indices, counts };
  return { args, result, signal: signalOf(o) };
}

export interface BatchedSelectOptions extends Omit<SelectOptions, 'keep'> {
  /** Tokens kept per head: one number, or an i32 [B] tensor (per sequence); sequence b keeps min(keep_b, n_b). */
  keep?: number | Tensor | TensorLike;
}

function planSelectTokensBatched(async: boolean, scores: Tensor | TensorLike, seqs: Seqs, options: BatchedSelectOptions) {
  const o = opts('options', options, keysOf(['ratio', 'keep', 'budget', 'safeguard', 'sinks', 'recent', 'cap', 'indices', 'counts', 'stream'], async));
  const s = asTensor('scores', scores);
  const table = new SeqTable('seqs', seqs, s);
  checkRank('scores', s, table.layout === 'ragged' ? 2 : 3, table.layout === 'ragged' ? '[H, T]' : '[B, H, L]');
  const H = table.layout === 'ragged' ? s.shape[0] : s.shape[1];
  const keep = resolveBatchKeep(table, o);
  const D = DEFAULTS.select;
  const budget = checkOneOf('budget', o.budget ?? D.budget, ['uniform', 'adaptive'] as const);
  const n: NativeSelectOpts = {
    keep: keep.scalar,
    budget: budget === 'adaptive' ? 1 : 0,
    safeguard: checkNum('safeguard', o.safeguard ?? D.safeguard, 0, 1),
    sinks: checkInt('sinks', o.sinks ?? D.sinks, 0, 2 ** 31 - 1),
    recent: checkInt('recent', o.recent ?? D.recent, 0, 2 ** 31 - 1),
  };
  const cap = o.cap !== undefined ? checkInt('cap', o.cap, 1, 2 ** 31 - 1) : o.indices !== undefined ? asTensor('indices', o.indices).shape[2] : batchCapacity(table, H, n, keep);
  const stream = streamOf(o, s.device);
  const indices = output('indices', o.indices, [table.B, H, cap], 'i32', s.device, stream);
  const counts = output('counts', o.counts, [table.B, H], 'i32', s.device, stream);
  const args: Parameters<Native['selectTokensBatched']> = [table.toNative(), s.toNative(), n, keep.tensor?.toNative(), indices.toNative(), counts.toNative(), stream?.handle];
  const finish = (): Selection => {
    return { indices, counts };
  };
  return { args, finish, signal: signalOf(o) };
}

/**
 * Selection for every sequence of a batch (docs/runtime-caches.md §3): `scores` per token ([H, T] for a ragged table,
 * [B, H, L] otherwise); `indices` i32 [B, H, cap], `counts` i32 [B, H]. Equal to selectTokens per sequence with
 * keep_b (the adaptive budget is one layer-wide top-k per sequence); an empty sequence gets counts 0.
 */
export function selectTokensBatched(scores: Tensor | TensorLike, seqs: Seqs, options: BatchedSelectOptions): Selection {
  const p = planSelectTokensBatched(false, scores, seqs, options);
  native.selectTokensBatched(...p.args);
  return p.finish();
}

/** {@link selectTokensBatched} on a worker thread (see AsyncOptions). */
export async function selectTokensBatchedAsync(scores: Tensor | TensorLike, seqs: Seqs, options: (BatchedSelectOptions) & AsyncOptions): Promise<Selection> {
  const p = planSelectTokensBatched(true, scores, seqs, options);
  await runAsync(native.selectTokensBatchedAsync, p.args, p.signal);
  return p.finish();
}

/** The smallest capacity that holds every sequence's selection (host tables), at least 1. */
export function batchCapacity(table: SeqTable, H: number, n: NativeSelectOpts, keep: { scalar: number; tensor?: Tensor }): number {
  const lens = table.lengths();
  if (!lens) throw new TypeError('cap: needed for a table on the device (e.g. selectCapacity(H, maxLength, { keep }))');
  const per = keep.tensor && !keep.tensor.onCuda ? hostContiguous(keep.tensor) : undefined;
  let cap = 1;
  lens.forEach((len, b) => {
    if (len === 0) return;
    const k = Math.min(per ? per[b] : keep.scalar, len);
    if (k >= 1) cap = Math.max(cap, native.selectCapacity(H, len, { ...n, keep: k }));
  });
  return cap;
}
