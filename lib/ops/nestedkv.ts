/**
 * NestedKV (Chen et al., arXiv 2605.26678; docs/methods/nestedkv.md §3 S1–S7 with the §9 choices): a training-free,
 * key-only, prefill-time eviction score. Per KV head the L2-normalised keys are compared with three anchors —
 * the global mean (stable), the mean of the token's block (episodic) and the mean of its causal trailing window
 * (current) — as −cos anomalies, min-max normalised per head; a head-adaptive softmax blend (prior + β·Δ of the
 * 10 % tails) and a surprise gate (the spread across the three scales) combine them into a* in [0, 1]. The first
 * `sinks` positions get +Infinity. Higher = keep.
 *
 * Pair it with `selectTokens(scores, { ratio, budget: 'adaptive', safeguard: 0.2 })` for the paper's head-wise
 * budget (docs/methods/nestedkv.md §4). `scales: 'global'` is the single-anchor ablation (a* = min-max of KeyDiff's score, docs/methods/nestedkv.md §3.8, §7).
 */
import { native, Native, NativeNestedkvOpts } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkRank } from '../tensor';
import { checkInt, checkNum, checkOneOf, show } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, signalOf, streamOf } from './common';
import { BatchCache, checkCache, tokenOutput, userMaxLength } from './batch';

export type NestedkvScales = 'all' | 'global';

export interface NestedkvOptions extends StreamOpt {
  /** Current-memory window W (causal, inclusive of the token). Default 64. */
  window?: number;
  /** Episodic block size b (contiguous blocks from position 0). Default clip(⌊N/32⌋, 128, 256). */
  block?: number;
  /** Log-prior weights of the blend (stable, episodic, current): 3 finite numbers ≥ 0, not all 0. Default [0.4, 0.4, 0.2]. */
  prior?: readonly number[];
  /** Blend temperature β. Default 3. */
  beta?: number;
  /** Gate threshold τ (on the min-max-normalised, mean-centred surprise). Default 0.6. */
  tau?: number;
  /** Gate sharpness κ. Default 10. */
  kappa?: number;
  /** Tail fraction for Δ (top-minus-bottom tail means), m = max(1, ⌊tail·N⌋). Default 0.1. */
  tail?: number;
  /** Leading positions pinned to +Infinity (they take part in every statistic). Default 4. */
  sinks?: number;
  /** 'all' = full NestedKV; 'global' = single global anchor ablation. Default 'all'. */
  scales?: NestedkvScales;
  /** Preallocated f32 [H, N] output. */
  out?: Tensor | TensorLike;
}

/** Default episodic block size for N tokens: clip(⌊N/32⌋, 128, 256) (docs/methods/nestedkv.md §3 S2). */
export function nestedkvBlockSize(N: number): number {
  checkInt('N', N, 0, 2 ** 31 - 1);
  return Math.min(256, Math.max(128, Math.floor(N / 32)));
}

const I32_MAX = 2 ** 31 - 1;

/** A finite number within the f32 range (tau and kappa are used as f32; the C ABI checks the same). */
function finite(name: string, v: unknown): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${name}: expected a number, got ${show(v)}`);
  if (!(Math.abs(v) <= 3.4028234663852886e38)) throw new RangeError(`${name}: must be finite (within the f32 range), got ${v}`);
  return v;
}

function checkPrior(v: unknown): number[] {
  if (!Array.isArray(v) && !ArrayBuffer.isView(v)) throw new TypeError(`prior: expected an array of 3 numbers, got ${show(v)}`);
  const a = Array.from(v as ArrayLike<unknown>);
  if (a.length !== 3) throw new RangeError(`prior: expected 3 weights (stable, episodic, current), got ${a.length}`);
  const p = a.map((x, i) => {
    if (typeof x !== 'number' || Number.isNaN(x)) throw new TypeError(`prior[${i}]: expected a number, got ${show(x)}`);
    if (!Number.isFinite(x)) throw new RangeError(`prior[${i}]: must be finite, got ${x}`);
    if (x < 0) throw new RangeError(`prior[${i}]: must be >= 0, got ${x}`);
    const n = x;
    return n;
  });
  if (!p.some((x) => x > 0)) throw new RangeError('prior: at least one weight must be positive');
  return p;
}

const KEYS = ['window', 'block', 'prior', 'beta', 'tau', 'kappa', 'tail', 'sinks', 'scales', 'out', 'stream'];

/** The native options (`kvt_nestedkv_opts`) of checked option values, defaults from DEFAULTS. */
function nativeOptions(o: Record<string, unknown>): NativeNestedkvOpts {
  const D = DEFAULTS.nestedkv;
  return {
    window: checkInt('window', o.window ?? D.window, 1, I32_MAX),
    block: o.block === undefined ? D.block : checkInt('block', o.block, 1, I32_MAX),
    prior: o.prior === undefined ? [...D.prior] : checkPrior(o.prior),
    beta: finite('beta', o.beta ?? D.beta),
    tau: finite('tau', o.tau ?? D.tau),
    kappa: finite('kappa', o.kappa ?? D.kappa),
    tail: checkNum('tail', o.tail ?? D.tail, 0, 1),
    sinks: checkInt('sinks', o.sinks ?? D.sinks, 0, I32_MAX),
    scales: checkOneOf('scales', o.scales ?? D.scales, ['all', 'global'] as const) === 'global' ? 1 : 0,
  };
}

function plan(keys: Tensor | TensorLike, options: unknown, async: boolean) {
  const o = opts('options', options, keysOf(KEYS, async));
  const k = checkRank('keys', asTensor('keys', keys), 3, '[H, N, d]');
  const [H, N] = k.shape;
  const n = nativeOptions(o);
  const stream = streamOf(o, k.device);
  const out = output('out', o.out, [H, N], 'f32', k.device, stream);
  const args: Parameters<Native['nestedkvScores']> = [k.toNative(), n, out.toNative(), stream?.handle];
  return { args, out, signal: signalOf(o) };
}

/** NestedKV scores f32 [H, N] of keys [H, N, d] (f32 | f16 | bf16, any strides). */
export function nestedkvScores(keys: Tensor | TensorLike, options?: NestedkvOptions): Tensor {
  const p = plan(keys, options, false);
  native.nestedkvScores(...p.args);
  return p.out;
}

/** {@link nestedkvScores} on a worker thread (see AsyncOptions). */
export async function nestedkvScoresAsync(keys: Tensor | TensorLike, options?: NestedkvOptions & AsyncOptions): Promise<Tensor> {
  const p = plan(keys, options, true);
  await runAsync(native.nestedkvScoresAsync, p.args, p.signal);
  return p.out;
}

function planNestedkvScoresBatched(async: boolean, cache: BatchCache, options?: Omit<NestedkvOptions, 'out'> & { out?: Tensor | TensorLike; maxLength?: number }) {
  const o = opts('options', options, keysOf(['window', 'block', 'prior', 'beta', 'tau', 'kappa', 'tail', 'sinks', 'scales', 'out', 'maxLength', 'stream'], async));
  const c = checkCache('cache', cache, false);
  const n = nativeOptions(o);
  const stream = streamOf(o, c.keys.device);
  const out = tokenOutput('out', o.out, c.table, c.H, 'f32', c.keys.device, c.keys, userMaxLength(c.table, o.maxLength), stream);
  const args: Parameters<Native['nestedkvScoresBatched']> = [c.table.toNative(), c.keys.toNative(), n, out.toNative(), stream?.handle];
  const finish = (): Tensor => {
    return out;
  };
  return { args, finish, signal: signalOf(o) };
}

/**
 * NestedKV scores of every sequence of a batch cache (docs/runtime-caches.md §3): each sequence with its own default
 * block size clip(⌊n_b/32⌋, 128, 256) and tail count; equal to nestedkvScores per sequence. Output as
 * keydiffScoresBatched ([H, T] ragged, [B, H, L] otherwise).
 */
export function nestedkvScoresBatched(cache: BatchCache, options?: Omit<NestedkvOptions, 'out'> & { out?: Tensor | TensorLike; maxLength?: number }): Tensor {
  const p = planNestedkvScoresBatched(false, cache, options);
  native.nestedkvScoresBatched(...p.args);
  return p.finish();
}

/** {@link nestedkvScoresBatched} on a worker thread (see AsyncOptions). */
export async function nestedkvScoresBatchedAsync(cache: BatchCache, options?: (Omit<NestedkvOptions, 'out'> & { out?: Tensor | TensorLike; maxLength?: number }) & AsyncOptions): Promise<Tensor> {
  const p = planNestedkvScoresBatched(true, cache, options);
  await runAsync(native.nestedkvScoresBatchedAsync, p.args, p.signal);
  return p.finish();
}
