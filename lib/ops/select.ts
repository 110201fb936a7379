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
import { Tensor, TensorLike, asTensor, checkRank } from '../tensor';
import { checkInt, checkNum, checkOneOf } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';

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
