// Tensor-parallel adaptive selection (docs/runtime-caches.md §5): heads sharded over 2, 3, 4 and 8 simulated shards in
// one process, their histograms summed by a JS all-reduce (a barrier over the shards' promises) or by hand through
// the raw partials API, give exactly the unsharded adaptive selection (selectTokens / selectTokensBatched): ties,
// NaN, sinks and recent windows, 4-, 8- and 16-bit digits, batches with empty sequences. Misuse of the protocol is
// a RangeError (CPU: the state is read on the host; CUDA flags it in the state instead). On CUDA the shards' scores,
// table, keep and state live on the device and the all-reduce sums fetched histograms into a device tensor.
import t from 'tap';
import { selectTokens, selectTokensBatched, tensor, toDevice, TpSelection, tpSelectTokens } from '../lib/index';
import type { Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { place, on } from './helpers';
import type { Backend } from './helpers';
import { at0, fillTokens, flat, hostOf, makeTable, mixedLengths, seqsOn, tokenTensor, batchBackends } from './batch-helpers';

/**
 * An all-reduce over S shards: each shard's call resolves, once all S have called for the round, to the sum (on CUDA
 * a device tensor of the summed fetched histograms).
 */
function allReduce(S: number, be: Backend = 'cpu') {
  const pending = new Map<number, { parts: Int32Array[]; resolve: ((x: Int32Array | Tensor) => void)[] }>();
  return async (local: Tensor, round: number): Promise<Int32Array | Tensor> => {
    const mine = Int32Array.from(flat(await hostOf(local)));
    return new Promise((resolve) => {
      const e = pending.get(round) ?? { parts: [], resolve: [] };
      pending.set(round, e);
      e.parts.push(mine);
      e.resolve.push(resolve);
      if (e.parts.length === S) {
        const sum = new Int32Array(e.parts[0].length);
        for (const p of e.parts) p.forEach((x, i) => (sum[i] += x));
        e.resolve.forEach((r) => r(be === 'cpu' ? sum : toDevice(tensor(sum, [...local.shape]))));
        pending.delete(round);
      }
    });
  };
}

/** Head ranges of S shards over H heads (as even as possible). */
function shards(H: number, S: number): [number, number][] {
  const out: [number, number][] = [];
  for (let s = 0, h0 = 0; s < S; s++) {
    const n = Math.floor(H / S) + (s < H % S ? 1 : 0);
    out.push([h0, n]);
    h0 += n;
  }
  return out;
}

/** Rows [h0, h0 + n) of a [H, N] tensor (a view: shards read the scores in place). */
const rowsOf = (s: Tensor, h0: number, n: number) => s.view([n, s.shape[1]], s.strides, s.offset + h0 * s.strides[0]);

for (const be of batchBackends())
for (const S of [2, 3, 4, 8]) {
  for (const bits of [4, 8, 16]) {
    t.test(`${be}: ${S} shards, ${bits}-bit digits = unsharded adaptive selection`, on(be), async (t) => {
      const rng = new Rng(S * 100 + bits);
      const H = 8, N = 700;
      // ties (rounded values), NaN and negative zero
      const scores = tensor(Float32Array.from({ length: H * N }, () => (rng.uniform() < 0.03 ? NaN : rng.uniform() < 0.02 ? -0 : Math.round(rng.normal() * 8) / 8)), [H, N]);
      const opts = { keep: 37, safeguard: 0.3, sinks: 3, recent: 5 };
      const ref = selectTokens(scores, { ...opts, budget: 'adaptive' });
      const reduce = allReduce(S, be);
      const dscores = place(scores, be);
      const dparts = await Promise.all(shards(H, S).map(([h0, n]) => tpSelectTokens(rowsOf(dscores, h0, n), { ...opts, headOffset: h0, totalHeads: H, radixBits: bits }, reduce)));
      const parts = await Promise.all(dparts.map(async (p) => ({ counts: await hostOf(p.counts), indices: await hostOf(p.indices) })));
      t.same(parts.flatMap((p) => flat(p.counts)), flat(ref.counts), `counts ${flat(ref.counts)}`);
      const cap = ref.indices.shape[1], refIdx = flat(ref.indices);
      let h = 0;
      for (const p of parts)
        for (let i = 0; i < p.counts.shape[0]; i++, h++) {
          const c = p.counts.at(i);
          t.same(flat(p.indices).slice(i * p.indices.shape[1], i * p.indices.shape[1] + c), refIdx.slice(h * cap, h * cap + c), `head ${h}: indices`);
        }
      t.ok(new Set(flat(ref.counts)).size > 1, 'the budget is ragged across heads');
    });
  }
}

for (const be of batchBackends())
t.test(`${be} batched: 4 shards over a ragged batch with empty and one-token sequences = selectTokensBatched`, on(be), async (t) => {
  const rng = new Rng(77);
  const H = 8, lengths = mixedLengths(rng, 9, 200);
  const tb = makeTable(rng, 'ragged', lengths);
  const scores = fillTokens(tokenTensor(tb, H), tb, (b) => Float32Array.from({ length: H * lengths[b] }, () => Math.round(rng.normal() * 4) / 4));
  const keep = tensor(Int32Array.from(lengths, () => 1 + rng.int(30)), [lengths.length]);
  const ref = selectTokensBatched(scores, tb.seqs, { keep, budget: 'adaptive', safeguard: 0.2, sinks: 1 });
  const reduce = allReduce(4, be);
  const [dscores, dkeep, dseqs] = [place(scores, be), place(keep, be), seqsOn(tb.seqs, be)];
  const dparts = await Promise.all(
    shards(H, 4).map(([h0, n]) => tpSelectTokens(rowsOf(dscores, h0, n), { keep: dkeep, safeguard: 0.2, sinks: 1, headOffset: h0, totalHeads: H, seqs: dseqs, cap: ref.indices.shape[2] }, reduce)),
  );
  const parts = await Promise.all(dparts.map(async (p) => ({ counts: await hostOf(p.counts), indices: await hostOf(p.indices) })));
  lengths.forEach((len, b) => {
    const want = flat(at0(ref.counts, b));
    t.same(parts.flatMap((p) => flat(at0(p.counts, b))), want, `sequence ${b} (n = ${len}): counts`);
    const refI = flat(at0(ref.indices, b)), rc = ref.indices.shape[2];
    let h = 0;
    for (const p of parts) {
      const pi = flat(at0(p.indices, b)), pc = p.indices.shape[2];
      for (let i = 0; i < p.counts.shape[1]; i++, h++) t.same(pi.slice(i * pc, i * pc + want[h]), refI.slice(h * rc, h * rc + want[h]), `sequence ${b} head ${h}`);
    }
  });
});

t.test('raw partials: histograms summed by hand; protocol misuse is a RangeError', async (t) => {
  const rng = new Rng(3);
  const H = 4, N = 300;
  const scores = tensor(Float32Array.from({ length: H * N }, () => rng.normal()), [H, N]);
  const mk = () => [0, 2].map((h0) => new TpSelection(rowsOf(scores, h0, 2), { keep: 20, headOffset: h0, totalHeads: H }));
  const sel = mk();
  t.equal(sel[0].rounds, 8, '8 rounds at 8 bits');
  t.throws(() => sel[0].finish(), { name: 'RangeError', message: /8 of 8 rounds are still to be advanced/ });
  // a "sum" that lacks the shards' keys (here: none at all) cannot hold the rank sought
  sel[0].histogram();
  t.throws(() => sel[0].advance(new Int32Array(256)), { name: 'RangeError', message: /holds fewer keys than the rank sought/ });
  const ok = mk();
  for (let r = 0; r < ok[0].rounds; r++) {
    const hs = ok.map((s) => Int32Array.from(flat(s.histogram())));
    t.equal(hs[0].length + hs[1].length, 2 * 256, `round ${r}: [1, 256] per shard`);
    const sum = hs[0].map((x, i) => x + hs[1][i]);
    if (r === 0) t.equal(sum.reduce((a, b) => a + b, 0), H * N, 'round 0 counts every key of the layer');
    ok.forEach((s) => s.advance(sum));
  }
  const got = ok.flatMap((s) => flat(s.finish().counts));
  t.same(got, flat(selectTokens(scores, { keep: 20, budget: 'adaptive' }).counts), 'equals the unsharded counts');
  t.throws(() => ok[0].histogram(), { name: 'RangeError', message: /every round has been advanced/ });
  t.throws(() => new TpSelection(scores, { keep: 20, headOffset: 2, totalHeads: 4 }), { name: 'RangeError', message: /headOffset/ });
  t.throws(() => new TpSelection(scores, { keep: 20, headOffset: 0, totalHeads: 4, radixBits: 5 }), { name: 'RangeError', message: /radixBits: must be 4, 8 or 16/ });
});
