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
import { native, Native } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, sameDevice } from '../tensor';
import { checkInt, checkNum, show } from '../validate';
import { AsyncOptions, StreamOpt, keysOf, opts, output, runAsync, scaleOr, signalOf, streamOf } from './common';
import { MomentTensors, momentsNative } from './moments';

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
    clipT = checkDtype('clip', checkRank('clip', asTensor('clip', clip), 1, '[Hkv]'), ['f32']);
    if (clipT.shape[0] !== Hkv) throw new RangeError(`clip: expected shape [${Hkv}] (Hkv of keys), got [${clipT.shape.join(', ')}]`);
    if (!sameDevice(clipT.device, k.device)) throw new TypeError('clip: must be on the same device as keys');
  }
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
