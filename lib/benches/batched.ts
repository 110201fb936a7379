/**
 * Bench cases of the runtime-shaped ops (docs/runtime-caches.md): batches of B ∈ {1, 16, 64} sequences of mixed
 * lengths (about N tokens in all) held ragged (token-major rows [T, H, d]) or in pages of 16 tokens with shuffled page
 * ids, token-major (NHD) or head-major (HND).
 * Each case times the batched call; its baseline, timed alternately with it in the same run, is B separate calls of
 * the per-sequence op (on zero-copy views of the ragged rows, or on contiguous per-sequence copies for the paged cache), so the
 * reported speedup is "batched vs B separate calls" and paged vs contiguous reads off two rows of the same run. For
 * KeyDiff and decode the paged cases also run against B × (gather the sequence's pages + the per-sequence call),
 * variant "vs gather+call": the path of a runtime whose per-sequence kernels cannot read pages.
 */
import { keydiffScores, keydiffScoresBatched } from '../ops/keydiff';
import { selectTokens, selectTokensBatched, keepFromRatio } from '../ops/select';
import { gatherKV, gatherKVBatched } from '../ops/gather';
import { decodeAttention, decodeAttentionBatched } from '../ops/decode';
import { compactInPlace } from '../ops/compact';
import { BatchCache, PagedSeqs, pagedSeqs, raggedSeqs } from '../ops/batch';
import { Tensor, tensor, dtypeSize } from '../tensor';
import type { Rng } from '../rng';
import { randomHost } from '../checks/util';
import type { BenchCase, BenchShape } from './types';
import { G, KEEP, scoringSolBytes } from './shared';

export const BATCH_SIZES = [1, 16, 64] as const;
const PAGE = 16;

/** B lengths of mixed sizes (ratio up to 7 between the shortest and the longest) summing to N. */
export function mixedBatchLengths(rng: Rng, B: number, N: number): number[] {
  const w = Array.from({ length: B }, () => 0.25 + 1.5 * rng.uniform());
  const total = w.reduce((a, b) => a + b, 0);
  const n = w.map((x) => Math.max(1, Math.floor((N * x) / total)));
  n[0] += Math.max(0, N - n.reduce((a, b) => a + b, 0));
  return n;
}

type Layout = 'ragged' | 'NHD' | 'HND';

/** A batch of random K and V (H heads, d) in `layout`, with each sequence also as a [H, n_b, d] tensor. */
function batchOf(rng: Rng, s: BenchShape, B: number, layout: Layout) {
  const n = mixedBatchLengths(rng, B, s.N);
  const T = n.reduce((a, b) => a + b, 0);
  const P = Math.ceil(T / PAGE) + B;
  const make = () => randomHost(rng, layout === 'ragged' ? [T, s.H, s.d] : layout === 'NHD' ? [P, PAGE, s.H, s.d] : [P, s.H, PAGE, s.d], s.dtype);
  const keys = make(), values = make();
  let cache: BatchCache, perSeq: (x: Tensor, b: number) => Tensor;
  let gathered: (x: Tensor, b: number) => { copy(): void; view: Tensor } = () => {
    throw new Error('gathered: paged layouts only');
  };
  if (layout === 'ragged') {
    const seqs = raggedSeqs(n);
    const ip = seqs.indptr.data as Int32Array;
    cache = { ...seqs, keys, values };
    // zero-copy per-sequence views [H, n_b, d] of the ragged rows
    perSeq = (x, b) => x.view([s.H, n[b], s.d], [s.d, s.H * s.d, 1], ip[b] * s.H * s.d);
  } else {
    const pages = Array.from({ length: keys.shape[0] }, (_, i) => i);
    for (let i = pages.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [pages[i], pages[j]] = [pages[j], pages[i]];
    }
    const seqs = pagedSeqs(n, { pageSize: PAGE, layout, pages });
    cache = { ...seqs, keys, values };
    // each sequence's pages, in order
    const own: number[][] = [];
    let first = 0;
    for (const len of n) {
      own.push(pages.slice(first, first + Math.ceil(len / PAGE)));
      first += Math.ceil(len / PAGE);
    }
    // Per sequence and tensor: the contiguous [H, n_b, d] copy the per-sequence op reads in the 'copies' baseline
    // (made here, row by row), and the gather a runtime whose per-sequence kernels cannot read pages runs before each
    // call (whole-block copies into its own buffer: NHD [n_b, H, d], one page at a time, read zero-copy as
    // [H, n_b, d]; HND [H, n_b, d], one head's block of a page at a time).
    const perTensor = new Map<Tensor, { copy: Tensor; gather: { copy(): void; view: Tensor } }[]>();
    const pageElems = PAGE * s.H * s.d;
    for (const x of [keys, values]) {
      const data = x.host as Float32Array | Uint16Array;
      const ctor = data.constructor as Float32ArrayConstructor | Uint16ArrayConstructor;
      perTensor.set(
        x,
        n.map((len, b) => {
          const c = new ctor(s.H * len * s.d);
          for (let h = 0; h < s.H; h++)
            for (let i = 0; i < len; i++) {
              const p = own[b][Math.floor(i / PAGE)], slot = i % PAGE;
              const o = (layout === 'NHD' ? (p * PAGE + slot) * s.H + h : (p * s.H + h) * PAGE + slot) * s.d;
              c.set(data.subarray(o, o + s.d), (h * len + i) * s.d);
            }
          const buf = new ctor(s.H * len * s.d);
          const rowsIn = (j: number) => Math.min(PAGE, len - j * PAGE);
          const gather =
            layout === 'NHD'
              ? {
                  copy: () => own[b].forEach((pg, j) => buf.set(data.subarray(pg * pageElems, pg * pageElems + rowsIn(j) * s.H * s.d), j * PAGE * s.H * s.d)),
                  view: tensor(buf, [s.H, len, s.d], { dtype: x.dtype, strides: [s.d, s.H * s.d, 1] }),
                }
              : {
                  copy: () =>
                    own[b].forEach((pg, j) => {
                      for (let h = 0; h < s.H; h++) {
                        const o = (pg * s.H + h) * PAGE * s.d;
                        buf.set(data.subarray(o, o + rowsIn(j) * s.d), (h * len + j * PAGE) * s.d);
                      }
                    }),
                  view: tensor(buf, [s.H, len, s.d], { dtype: x.dtype }),
                };
          return { copy: tensor(c, [s.H, len, s.d], { dtype: x.dtype }), gather };
        }),
      );
    }
    perSeq = (x, b) => perTensor.get(x)![b].copy;
    gathered = (x, b) => perTensor.get(x)![b].gather;
  }
  return { n, T, cache, keys, values, perSeq, gathered };
}

/**
 * How the B separate calls of a paged case get contiguous input: copies made once before the timing ('copies': the
 * cost of reading through pages), or a gather of the pages timed with each call ('gather': what a runtime whose
 * per-sequence kernels cannot read pages pays).
 */
type Baseline = 'copies' | 'gather';

function variant(layout: Layout, B: number, base: Baseline = 'copies'): string {
  return `${layout === 'ragged' ? 'ragged' : `${layout} pages of ${PAGE}`}, B=${B} mixed${base === 'gather' ? ', vs gather+call' : ''}`;
}

/** The per-sequence counterpart as a baseline named after it. */
const separate = (op: string, B: number, run: () => void, base: Baseline = 'copies') => ({
  name: base === 'gather' ? `${B} × (gather pages + ${op})` : `${B} separate ${op} calls`,
  run,
  interleave: true,
});

function caseKeydiff(layout: Layout, B: number, base: Baseline = 'copies'): BenchCase {
  return {
    op: 'keydiffScoresBatched',
    variant: variant(layout, B, base),
    backends: ['cpu'],
    solBytes: scoringSolBytes,
    prepare(s, ctx) {
      const { n, cache, keys, perSeq, gathered } = batchOf(ctx.rng, s, B, layout);
      const out = keydiffScoresBatched(cache);
      const outs = n.map((len, b) => tokenView(out, cache, len, b));
      const one =
        base === 'gather'
          ? (b: number) => {
              const g = gathered(keys, b);
              g.copy();
              keydiffScores(g.view, { out: outs[b] });
            }
          : (b: number) => void keydiffScores(perSeq(keys, b), { out: outs[b] });
      return {
        run: () => void keydiffScoresBatched(cache, { out }),
        baseline: separate('keydiffScores', B, () => n.forEach((_, b) => one(b)), base),
      };
    },
  };
}

function caseSelect(B: number): BenchCase {
  return {
    op: 'selectTokensBatched',
    variant: `${variant('ragged', B)}, keep ${KEEP * 100}% adaptive`,
    backends: ['cpu'],
    solBytes: ({ H, N }) => H * N * 4 + H * keepFromRatio(N, 1 - KEEP) * 4,
    prepare(s, ctx) {
      const n = mixedBatchLengths(ctx.rng, B, s.N);
      const seqs = raggedSeqs(n);
      const T = n.reduce((a, b) => a + b, 0);
      const scores = randomHost(ctx.rng, [s.H, T], 'f32', 0);
      const ip = seqs.indptr.data as Int32Array;
      const opts = { ratio: 1 - KEEP, budget: 'adaptive' as const };
      const { indices, counts } = selectTokensBatched(scores, seqs, opts);
      const at = (x: Tensor, b: number) => x.view(x.shape.slice(1), x.strides.slice(1), b * x.strides[0]);
      return {
        run: () => void selectTokensBatched(scores, seqs, { ...opts, indices, counts }),
        baseline: separate('selectTokens', B, () =>
          n.forEach((len, b) => selectTokens(scores.view([s.H, len], [T, 1], ip[b]), { ...opts, indices: at(indices, b), counts: at(counts, b) })),
        ),
      };
    },
  };
}

function caseGather(layout: Layout, B: number): BenchCase {
  return {
    op: 'gatherKVBatched',
    variant: `${variant(layout, B)}, keep ${KEEP * 100}%`,
    backends: ['cpu'],
    solBytes: ({ H, N, d, dtype }) => 2 * 2 * H * keepFromRatio(N, 1 - KEEP) * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const { n, T, cache, keys, values, perSeq } = batchOf(ctx.rng, s, B, layout);
      const seqs = raggedSeqs(n);
      const sel = selectTokensBatched(randomHost(ctx.rng, [s.H, T], 'f32', 0), seqs, { ratio: 1 - KEEP });
      const out = gatherKVBatched({ cache, ...sel });
      const at = (x: Tensor, b: number) => x.view(x.shape.slice(1), x.strides.slice(1), b * x.strides[0]);
      return {
        run: () => void gatherKVBatched({ cache, ...sel, keysOut: out.keys, valuesOut: out.values, countsOut: out.counts }),
        baseline: separate('gatherKV', B, () =>
          n.forEach((_, b) =>
            gatherKV({
              keys: perSeq(keys, b), values: perSeq(values, b), indices: at(sel.indices, b), counts: at(sel.counts, b),
              keysOut: at(out.keys, b), valuesOut: at(out.values, b), countsOut: at(out.counts, b),
            }),
          ),
        ),
      };
    },
  };
}

function caseDecode(layout: Layout, B: number, base: Baseline = 'copies'): BenchCase {
  return {
    op: 'decodeAttentionBatched',
    variant: `${variant(layout, B, base)}, G=${G}, one token`,
    backends: ['cpu'],
    solBytes: ({ H, N, d, dtype }) => 2 * H * N * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const { n, cache, keys, values, perSeq, gathered } = batchOf(ctx.rng, s, B, layout);
      const counts = tensor(Int32Array.from({ length: B * s.H }, (_, i) => n[Math.floor(i / s.H)]), [B, s.H]);
      const queries = randomHost(ctx.rng, [B, s.H * G, s.d], s.dtype, 0.3);
      const out = decodeAttentionBatched({ queries, cache, counts });
      const at = (x: Tensor, b: number) => x.view(x.shape.slice(1), x.strides.slice(1), b * x.strides[0]);
      const call = (b: number, k: Tensor, v: Tensor) =>
        void decodeAttention({ queries: at(queries, b), keys: k, values: v, counts: at(counts, b), out: at(out, b) });
      const one =
        base === 'gather'
          ? (b: number) => {
              const gk = gathered(keys, b), gv = gathered(values, b);
              gk.copy();
              gv.copy();
              call(b, gk.view, gv.view);
            }
          : (b: number) => call(b, perSeq(keys, b), perSeq(values, b));
      return {
        run: () => void decodeAttentionBatched({ queries, cache, counts, out }),
        baseline: separate('decodeAttention', B, () => n.forEach((_, b) => one(b)), base),
      };
    },
  };
}

function caseCompact(B: number): BenchCase {
  return {
    op: 'compactInPlace',
    variant: `${variant('HND', B)}, keep ${KEEP * 100}%`,
    backends: ['cpu'],
    // the kept rows are read and written once (K and V)
    solBytes: ({ H, N, d, dtype }) => 2 * 2 * H * keepFromRatio(N, 1 - KEEP) * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const { n, T, cache, keys, values } = batchOf(ctx.rng, s, B, 'HND');
      const sel = selectTokensBatched(randomHost(ctx.rng, [s.H, T], 'f32', 0), raggedSeqs(n), { ratio: 1 - KEEP });
      const at = (x: Tensor, b: number) => x.view(x.shape.slice(1), x.strides.slice(1), b * x.strides[0]);
      // one-sequence tables over the same pages: what B separate calls see
      const paged = cache as PagedSeqs;
      const ip = paged.indptr as Tensor, ids = paged.indices as Tensor, last = paged.lastPageLen as Tensor;
      const one = n.map((_, b) => {
        const p0 = (ip.data as Int32Array)[b], p1 = (ip.data as Int32Array)[b + 1];
        const seqs = { layout: 'HND' as const, pageSize: PAGE, indptr: tensor(Int32Array.from([0, p1 - p0]), [2]), indices: ids.view([p1 - p0], [1], p0), lastPageLen: last.view([1], [1], b) };
        const at = (x: Tensor) => x.view([1, ...x.shape.slice(1)], x.strides, b * x.strides[0]);
        return { cache: { ...seqs, keys, values }, indices: at(sel.indices), counts: at(sel.counts) };
      });
      // repeated runs move the same rows again (the indices stay valid), so every run does the same work
      return {
        run: () => void compactInPlace({ cache, ...sel }),
        baseline: separate('compactInPlace', B, () => one.forEach((x) => compactInPlace(x))),
      };
    },
  };
}

/** Sequence b's [H, n_b] block of a per-token output ([H, T] ragged, [B, H, L] paged). */
function tokenView(out: Tensor, cache: BatchCache, len: number, b: number): Tensor {
  if (cache.layout === 'ragged') {
    const ip = (cache.indptr as Tensor).data as Int32Array;
    return out.view([out.shape[0], len], out.strides, ip[b]);
  }
  return out.view([out.shape[1], len], [out.strides[1], out.strides[2]], b * out.strides[0]);
}

export const batchedBenches: BenchCase[] = [
  ...(['ragged', 'NHD', 'HND'] as const).flatMap((l) => BATCH_SIZES.map((B) => caseKeydiff(l, B))),
  ...(['NHD', 'HND'] as const).flatMap((l) => BATCH_SIZES.map((B) => caseKeydiff(l, B, 'gather'))),
  ...BATCH_SIZES.map((B) => caseSelect(B)),
  ...(['ragged', 'HND'] as const).flatMap((l) => BATCH_SIZES.map((B) => caseGather(l, B))),
  ...(['ragged', 'NHD', 'HND'] as const).flatMap((l) => BATCH_SIZES.map((B) => caseDecode(l, B))),
  ...(['NHD', 'HND'] as const).flatMap((l) => BATCH_SIZES.map((B) => caseDecode(l, B, 'gather'))),
  ...BATCH_SIZES.map((B) => caseCompact(B)),
];
