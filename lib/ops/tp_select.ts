/**
 * Tensor-parallel adaptive selection (docs/runtime-caches.md §5). With a layer's KV heads sharded over devices or
 * processes, every shard runs a TpSelection over its own heads' scores; each round it produces a histogram
 * (`histogram()`), the runtime sums the histograms of all shards with its own collective (NCCL all-reduce, MPI, or
 * any function), and every shard `advance`s with the sum. After `rounds` rounds all shards hold the same pivot and
 * `finish()` returns this shard's part of exactly the unsharded `selectTokens(…, { budget: 'adaptive' })` result.
 * kvtrim opens no connection. Cost per layer: `rounds` collectives of B·2^radixBits·4 bytes (8 × 1 KiB per sequence
 * at the default 8 bits).
 */
import { native, NativeTpProblem } from '../binding';
import { DEFAULTS } from '../defaults';
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, sameDevice } from '../tensor';
import { checkInt, checkNum, show } from '../validate';
import { Seqs, SeqTable, resolveBatchKeep } from './batch';
import { StreamOpt, opts, output, streamOf } from './common';
import type { Selection } from './select';
import { batchCapacity } from './select';

export interface TpSelectOptions extends StreamOpt {
  /** Tokens kept per head on average over the whole layer: a number, or per sequence an i32 [B] tensor. One of keep / ratio. */
  keep?: number | Tensor | TensorLike;
  ratio?: number;
  safeguard?: number;
  sinks?: number;
  recent?: number;
  /** Global index of this shard's first head. */
  headOffset: number;
  /** Heads of the whole layer, over all shards. */
  totalHeads: number;
  /** Digit width of the radix rounds: 4, 8 (default) or 16 bits → 16, 8 or 4 rounds of 2^bits bins. */
  radixBits?: number;
  /** A batch: scores are per token of this table ([Hs, T] ragged, [B, Hs, L] otherwise). Omitted: scores [Hs, N]. */
  seqs?: Seqs;
  /** indices capacity (default: enough for every sequence of a host table). */
  cap?: number;
}

/** One shard's side of the protocol; see the module comment. */
export class TpSelection {
  readonly rounds: number;
  readonly bins: number;
  /** Sequences (1 without `seqs`). */
  readonly B: number;
  /** This shard's heads. */
  readonly Hs: number;
  private round = 0;
  private readonly problem: NativeTpProblem;
  /**
   * The JS owners of the tensors `problem` points at (state, table, keep): held for the selection's lifetime, or a
   * device buffer could be collected and freed between rounds.
   */
  private readonly owners: unknown[];
  private readonly scores: Tensor;
  private readonly cap: number;
  private readonly batched: boolean;
  private readonly stream?: StreamOpt['stream'];

  constructor(scores: Tensor | TensorLike, options: TpSelectOptions) {
    const o = opts('options', options, ['keep', 'ratio', 'safeguard', 'sinks', 'recent', 'headOffset', 'totalHeads', 'radixBits', 'seqs', 'cap', 'stream']);
    const s = checkDtype('scores', asTensor('scores', scores), ['f32']);
    this.batched = o.seqs !== undefined;
    let table: SeqTable;
    if (this.batched) {
      table = new SeqTable('seqs', o.seqs, s);
      checkRank('scores', s, table.layout === 'ragged' ? 2 : 3, table.layout === 'ragged' ? '[Hs, T]' : '[B, Hs, L]');
      this.Hs = table.layout === 'ragged' ? s.shape[0] : s.shape[1];
    } else {
      checkRank('scores', s, 2, '[Hs, N] (a batch of sequences needs options.seqs)');
      this.Hs = s.shape[0];
      table = new SeqTable('seqs', { layout: 'padded' }, s.view([1, s.shape[0], s.shape[1]], [0, s.strides[0], s.strides[1]]));
    }
    this.B = table.B;
    const bits = checkInt('radixBits', o.radixBits ?? 8, 4, 16);
    this.rounds = native.tpSelectRounds(bits);
    if (this.rounds === 0) throw new RangeError(`radixBits: must be 4, 8 or 16, got ${bits}`);
    this.bins = 2 ** bits;
    const totalHeads = checkInt('totalHeads', o.totalHeads, Math.max(1, this.Hs), 2 ** 31 - 1);  // at least this shard's heads
    const headOffset = checkInt('headOffset', o.headOffset, 0, totalHeads - this.Hs);
    const keep = resolveBatchKeep(table, o);
    const D = DEFAULTS.select;
    const select = {
      keep: keep.scalar,
      budget: 1,
      safeguard: checkNum('safeguard', o.safeguard ?? D.safeguard, 0, 1),
      sinks: checkInt('sinks', o.sinks ?? D.sinks, 0, 2 ** 31 - 1),
      recent: checkInt('recent', o.recent ?? D.recent, 0, 2 ** 31 - 1),
    };
    this.cap = o.cap !== undefined ? checkInt('cap', o.cap, 1, 2 ** 31 - 1) : batchCapacity(table, totalHeads, select, keep);
    this.stream = streamOf(o, s.device);
    const state = output('state', undefined, [this.B, native.tpSelectStateWords(this.Hs)], 'i32', s.device, this.stream);
    this.scores = s;
    this.owners = [state, table, keep];
    this.problem = {
      ...(this.batched ? { seqs: table.toNative() } : {}),
      scores: s.toNative(),
      ...(keep.tensor ? { keep: keep.tensor.toNative() } : {}),
      select,
      headOffset,
      totalHeads,
      radixBits: bits,
      state: state.toNative(),
    };
    native.tpSelectBegin(this.problem, this.stream?.handle);
  }

  /** Whether every round has been advanced (finish() may be called). */
  get done(): boolean {
    return this.round === this.rounds;
  }

  /** This shard's i32 [B, 2^radixBits] histogram of the current round (to be summed over all shards). */
  histogram(out?: Tensor | TensorLike): Tensor {
    if (this.done) throw new RangeError('histogram: every round has been advanced; call finish()');
    const h = output('out', out, [this.B, this.bins], 'i32', this.scores.device, this.stream);
    native.tpSelectHistogram(this.problem, this.round, h.toNative(), this.stream?.handle);
    return h;
  }

  /** Advances with the element-wise sum of every shard's histogram of the current round (i32 [B, 2^radixBits]). */
  advance(sum: Tensor | TensorLike | Int32Array): void {
    if (this.done) throw new RangeError('advance: every round has been advanced; call finish()');
    const t = sum instanceof Int32Array ? asTensor('sum', { data: sum, shape: [this.B, this.bins] }) : asTensor('sum', sum);
    if (!sameDevice(t.device, this.scores.device)) throw new TypeError('sum: must be on the device of the scores');
    native.tpSelectAdvance(this.problem, this.round, t.toNative(), this.stream?.handle);
    this.round++;
  }

  /** This shard's selection: indices i32 [Hs, cap] / [B, Hs, cap] (positions ascending, −1 after counts), counts. */
  finish(): Selection {
    if (!this.done) throw new RangeError(`finish: ${this.rounds - this.round} of ${this.rounds} rounds are still to be advanced`);
    const dev = this.scores.device;
    const indices = output('indices', undefined, this.batched ? [this.B, this.Hs, this.cap] : [this.Hs, this.cap], 'i32', dev, this.stream);
    const counts = output('counts', undefined, this.batched ? [this.B, this.Hs] : [this.Hs], 'i32', dev, this.stream);
    native.tpSelectFinish(this.problem, indices.toNative(), counts.toNative(), this.stream?.handle);
    return { indices, counts };
  }
}

/**
 * Drives a TpSelection through its rounds with `allReduce`, the runtime's combiner: it receives this shard's
 * histogram and the round and returns (or resolves to) the element-wise sum over all shards.
 */
export async function tpSelectTokens(
  scores: Tensor | TensorLike,
  options: TpSelectOptions,
  allReduce: (local: Tensor, round: number) => Tensor | TensorLike | Int32Array | Promise<Tensor | TensorLike | Int32Array>,
): Promise<Selection> {
  if (typeof allReduce !== 'function') throw new TypeError(`allReduce: expected a function, got ${show(allReduce)}`);
  const sel = new TpSelection(scores, options);
  for (let r = 0; r < sel.rounds; r++) sel.advance(await allReduce(sel.histogram(), r));
  return sel.finish();
}
