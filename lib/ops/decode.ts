/**
 * Decode attention over a compacted (ragged) KV cache, optionally corrected by the MomentKV summary of the evicted
 * tokens ("normalisation-corrected inference", docs/methods/momentkv.md §4.2-§4.4, §8).
 *
 * For query head j (KV head h = ⌊j / G⌋, G = Hq / Hkv) and a = scale·q:
 *   o_R, lse_R = exact softmax attention over rows 0..counts[h)−1 of keys/values[h] (padding is never read);
 *   ℓ_E = log n_h + a·mu_k[h];   λ = sigmoid(lse_R − ℓ_E)   (one normalisation over retained + evicted mass);
 *   o = λ·o_R + (1 − λ)·(mu_v[h] + c·C[h] a)          (order 0: without C a).
 * c = 1, or with `clip` the ball clip c = min(1, R / max(‖C a‖, 1e-12)) (docs/methods/momentkv.md §8; not in the paper). Without
 * moments, or for a head with n_h = 0, o = o_R (plain attention over the retained cache). counts[h] = 0 with
 * n_h > 0 gives the summary alone; with n_h = 0 it gives 0.
 *
 * CUDA: split-K flash decoding (partial LSE states per KV chunk, then one merge kernel that folds in the summary
 * as an extra LSE state and adds C a); d, dv ≤ 256 there.
 */
import { native, Native, NativeDecodeOpts } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, sameDevice } from '../tensor';
import { checkInt, checkNum, show } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, scaleOr, signalOf, streamOf } from './common';
import { MomentTensors, momentsNative } from './moments';
import { BatchCache, checkCache } from './batch';

export interface DecodeAttentionArgs extends StreamOpt {
  /** [Hq, d] (one token per head) or [Hq, T, d] (T tokens, each attending the whole retained cache); f32 | f16 | bf16. */
  queries: Tensor | TensorLike;
  /** Compacted keys [Hkv, cap, d], f32 | f16 | bf16 (same dtype as values), any strides. */
  keys: Tensor | TensorLike;
  /** Compacted values [Hkv, cap, dv]. */
  values: Tensor | TensorLike;
  /** Retained rows per KV head, i32 [Hkv], each in [0, cap]. */
  counts: Tensor | TensorLike;
  /** Summary of the evicted tokens (MomentState); omitted: plain attention over the retained rows. */
  moments?: MomentTensors;
  /** 1 (default): evicted output mu_v + C a; 0: mu_v (mass and mean only, the order ablation). */
  order?: 0 | 1;
  /** Logit scale (default 1/√d); a = scale·q in the logits, ℓ_E and C a. */
  scale?: number;
  /**
   * Optional norm clip of the first-order term: C a is scaled to norm ≤ R. A number (one radius for all heads,
   * ≥ 0, Infinity allowed) or an f32 [Hkv] tensor of per-KV-head radii (e.g. max ‖v_i − mu_v‖ over the evicted
   * rows, docs/methods/momentkv.md §8). Off by default.
   */
  clip?: number | Tensor | TensorLike;
  /** Preallocated f32 output [Hq, dv] / [Hq, T, dv]. */
  out?: Tensor | TensorLike;
}

/** Order, logit scale and clip (a scalar radius, or a per-head f32 tensor of `nclip` entries) of checked options. */
function decodeOptions(o: Record<string, unknown>, d: number, nclip: number, dims: string, k: Tensor): NativeDecodeOpts & { clipT?: Tensor } {
  const D = DEFAULTS.decode;
  const order = o.order === undefined ? D.order : o.order;
  if (order !== 0 && order !== 1) throw new RangeError(`order: expected 0 or 1, got ${show(order)}`);
  const scale = o.scale === undefined ? scaleOr(D.scale, d) : checkNum('scale', o.scale, 0, 1e30, { minOpen: true, maxOpen: true });
  const clip = o.clip === undefined ? D.clip ?? undefined : o.clip;
  let clipT: Tensor | undefined;
  let useClip = 0, clipR = 0;
  if (typeof clip === 'number') {
    if (Number.isNaN(clip)) throw new TypeError('clip: expected a number, got NaN');
    if (!(clip >= 0)) throw new RangeError(`clip: must be >= 0, got ${clip}`);
    useClip = 1;
    clipR = clip;
  } else if (clip !== undefined) {
    clipT = checkDtype('clip', checkRank('clip', asTensor('clip', clip), 1, dims), ['f32']);
    if (clipT.shape[0] !== nclip) throw new RangeError(`clip: expected shape [${nclip}] (${dims === '[Hkv]' ? 'Hkv of keys' : 'B·Hkv'}), got [${clipT.shape.join(', ')}]`);
    if (!sameDevice(clipT.device, k.device)) throw new TypeError('clip: must be on the same device as keys');
  }
  return { order, scale, useClip, clip: clipR, ...(clipT ? { clipT } : {}) };
}

/** Corrected decode attention; returns f32 [Hq, dv] (2-D queries) or [Hq, T, dv] (3-D queries). */
export function decodeAttention(args: DecodeAttentionArgs): Tensor {
  const p = plan(args, false);
  native.decodeAttention(...p.args);
  return p.out;
}

/** {@link decodeAttention} on a worker thread (see AsyncOptions). */
export async function decodeAttentionAsync(args: DecodeAttentionArgs & AsyncOptions): Promise<Tensor> {
  const p = plan(args, true);
  await runAsync(native.decodeAttentionAsync, p.args, p.signal);
  return p.out;
}

const KEYS = ['queries', 'keys', 'values', 'counts', 'moments', 'order', 'scale', 'clip', 'out', 'stream'];

function plan(args: unknown, async: boolean) {
  const o = opts('args', args, keysOf(KEYS, async));
  const q = asTensor('queries', o.queries);
  if (q.ndim !== 2 && q.ndim !== 3) throw new TypeError(`queries: expected a 2-D [Hq, d] or 3-D [Hq, T, d] tensor, got ${q.ndim}-D [${q.shape.join(', ')}]`);
  checkDtype('queries', q, ['f32', 'f16', 'bf16']);
  const k = checkDtype('keys', checkRank('keys', asTensor('keys', o.keys), 3, '[Hkv, cap, d]'), ['f32', 'f16', 'bf16']);
  const v = checkDtype('values', checkRank('values', asTensor('values', o.values), 3, '[Hkv, cap, dv]'), [k.dtype]);
  const cnt = checkDtype('counts', checkRank('counts', asTensor('counts', o.counts), 1, '[Hkv]'), ['i32']);
  const Hq = q.shape[0], d = q.shape[q.ndim - 1], T = q.ndim === 3 ? q.shape[1] : 1;
  const [Hkv, cap, dk] = k.shape;
  const dv = v.shape[2];
  if (Hkv < 1) throw new RangeError('keys: Hkv (dimension 0) must be >= 1');
  if (Hq % Hkv !== 0) throw new RangeError(`queries: Hq (${Hq}) must be a multiple of Hkv (${Hkv}, dimension 0 of keys) for grouped-query attention`);
  if (dk !== d) throw new RangeError(`keys: d (${dk}) must equal the head dim of queries (${d})`);
  if (v.shape[0] !== Hkv || v.shape[1] !== cap) throw new RangeError(`values: expected shape [${Hkv}, ${cap}, dv] (Hkv and cap of keys), got [${v.shape.join(', ')}]`);
  if (cnt.shape[0] !== Hkv) throw new RangeError(`counts: expected shape [${Hkv}] (Hkv of keys), got [${cnt.shape.join(', ')}]`);
  for (const [name, t] of [['queries', q], ['values', v], ['counts', cnt]] as const) {
    if (!sameDevice(t.device, k.device)) throw new TypeError(`${name}: must be on the same device as keys`);
  }
  const { order, scale, useClip, clip: clipR, clipT } = decodeOptions(o, d, Hkv, '[Hkv]', k);
  const mom = o.moments === undefined ? undefined : momentsNative('moments', o.moments);
  const stream = streamOf(o, k.device);
  checkInt('T', T, 0, 2 ** 31 - 1);
  const outShape = q.ndim === 3 ? [Hq, T, dv] : [Hq, dv];
  const out = output('out', o.out, outShape, 'f32', k.device, stream);
  const nargs: Parameters<Native['decodeAttention']> = [
    q.toNative(), k.toNative(), v.toNative(), cnt.toNative(), mom, clipT?.toNative(),
    { order, scale, useClip, clip: clipR }, out.toNative(), stream?.handle,
  ];
  return { args: nargs, out, signal: signalOf(o) };
}

export interface DecodeAttentionBatchedArgs extends Omit<DecodeAttentionArgs, 'queries' | 'keys' | 'values' | 'counts' | 'clip' | 'out'> {
  /** [B, Hq, d] (one token per sequence and head) or [B, Hq, T, d]; f32 | f16 | bf16. */
  queries: Tensor | TensorLike;
  /** The batch cache (keys and values of one dtype), read in place; `moments` holds B·Hkv virtual heads. */
  cache: BatchCache;
  /** i32 [B, Hkv]: rows read per sequence and KV head (rows j < counts[b, h] ≤ n_b), e.g. after compactInPlace. */
  counts: Tensor | TensorLike;
  /** A radius for all heads, or f32 [B·Hkv] per virtual head. */
  clip?: number | Tensor | TensorLike;
  /** Preallocated f32 [B, Hq, dv] / [B, Hq, T, dv]. */
  out?: Tensor | TensorLike;
}

function planDecodeAttentionBatched(async: boolean, a: DecodeAttentionBatchedArgs) {
  const o = opts('args', a, keysOf(['queries', 'cache', 'counts', 'moments', 'order', 'scale', 'clip', 'out', 'stream'], async));
  const q = asTensor('queries', o.queries);
  if (q.ndim !== 3 && q.ndim !== 4) throw new TypeError(`queries: expected a 3-D [B, Hq, d] or 4-D [B, Hq, T, d] tensor, got ${q.ndim}-D [${q.shape.join(', ')}]`);
  checkDtype('queries', q, ['f32', 'f16', 'bf16']);
  const c = checkCache('cache', o.cache, true);
  const cnt = checkDtype('counts', checkRank('counts', asTensor('counts', o.counts), 2, '[B, Hkv]'), ['i32']);
  const [B, Hq] = q.shape;
  const T = q.ndim === 4 ? q.shape[2] : 1;
  if (c.H < 1 || Hq % c.H !== 0) throw new RangeError(`queries: Hq (${Hq}) must be a multiple of Hkv (${c.H}) for grouped-query attention`);
  if (q.shape[q.ndim - 1] !== c.d) throw new RangeError(`queries: head dim ${q.shape[q.ndim - 1]} must equal keys' d (${c.d})`);
  const { order, scale, useClip, clip, clipT } = decodeOptions(o, c.d, B * c.H, '[B * Hkv]', c.keys);
  const mom = o.moments === undefined ? undefined : momentsNative('moments', o.moments);
  const stream = streamOf(o, c.keys.device);
  const out = output('out', o.out, q.ndim === 4 ? [B, Hq, T, c.dv] : [B, Hq, c.dv], 'f32', c.keys.device, stream);
  const args: Parameters<Native['decodeAttentionBatched']> = [
    c.table.toNative(), q.toNative(), c.keys.toNative(), c.values!.toNative(), cnt.toNative(), mom, clipT?.toNative(), { order, scale, useClip, clip }, out.toNative(), stream?.handle,
  ];
  const finish = (): Tensor => {
    return out;
  };
  return { args, finish, signal: signalOf(o) };
}

/**
 * Decode attention for every sequence of a batch cache (docs/runtime-caches.md §3) with ragged per-head counts,
 * optionally moment-corrected; equal to decodeAttention per sequence. Returns f32 [B, Hq, dv] or [B, Hq, T, dv].
 */
export function decodeAttentionBatched(args: DecodeAttentionBatchedArgs): Tensor {
  const p = planDecodeAttentionBatched(false, args);
  native.decodeAttentionBatched(...p.args);
  return p.finish();
}

/** {@link decodeAttentionBatched} on a worker thread (see AsyncOptions). */
export async function decodeAttentionBatchedAsync(args: (DecodeAttentionBatchedArgs) & AsyncOptions): Promise<Tensor> {
  const p = planDecodeAttentionBatched(true, args);
  await runAsync(native.decodeAttentionBatchedAsync, p.args, p.signal);
  return p.finish();
}
