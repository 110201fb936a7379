/**
 * Random batches of sequences in every runtime layout (docs/runtime-caches.md §1) for the batched-op tests: a table
 * (ragged, padded, NHD or HND pages with shuffled page ids), data tensors whose unused space is poisoned (NaN) and
 * whose pages / rows are separated by canary elements, and per sequence a contiguous [H, n_b, d] copy holding the
 * same stored values, which the per-sequence op runs on as the reference.
 */
import type { Test } from 'tap';
import { MomentState, Tensor, tensor, toDevice, toHost, f32ToBf16, f32ToF16, bf16ToF32, f16ToF32, selectTokensBatched } from '../lib/index';
import type { BatchCache, DType, Seqs } from '../lib/index';
import { BACKENDS } from './helpers';
import type { Backend } from './helpers';
import { Rng } from '../lib/rng';

export type BatchLayout = 'ragged' | 'padded' | 'NHD' | 'HND';
export const LAYOUTS: BatchLayout[] = ['ragged', 'padded', 'NHD', 'HND'];

/** Elements between two pages (or token rows of a ragged batch) and before the first: canaries. */
const GUARD = 5;
const CANARY_F32 = 1234.5;
const CANARY_16 = 0x3a3a;

/**
 * Lengths of B sequences: always at least one 0 and one 1 when B >= 3, the rest uniform in [0, maxN], one of them
 * exactly maxN.
 */
export function mixedLengths(rng: Rng, B: number, maxN: number): number[] {
  const n = Array.from({ length: B }, () => rng.int(maxN + 1));
  if (B >= 3) {
    n[rng.int(B)] = 0;
    let one = rng.int(B);
    while (n[one] === 0 && B > 1) one = (one + 1) % B;
    n[one] = 1;
    let big = rng.int(B);
    while ((n[big] === 0 || n[big] === 1) && B > 2) big = (big + 1) % B;
    n[big] = maxN;
  }
  return n;
}

/** A table of `lengths` in `layout`: pages (page ids shuffled over a pool with spare pages) or rows. */
export interface TestTable {
  layout: BatchLayout;
  lengths: number[];
  pageSize: number;
  seqs: Seqs;
  /** paged: the page ids of each sequence, in order */
  pages: number[][];
  /** paged: pages in the pool (more than used) */
  P: number;
  /** ragged: first row of each sequence, and the rows of the data */
  first: number[];
  T: number;
  /** padded: L of the data */
  L: number;
}

export function makeTable(rng: Rng, layout: BatchLayout, lengths: number[], pageSize = 16): TestTable {
  const B = lengths.length;
  const maxN = Math.max(0, ...lengths);
  const tb: TestTable = { layout, lengths, pageSize, seqs: { layout: 'padded' }, pages: [], P: 0, first: [], T: 0, L: maxN + 3 };
  if (layout === 'ragged') {
    const indptr = new Int32Array(B + 1);
    indptr[0] = 2; // rows before the first sequence are not part of the batch
    for (let b = 0; b < B; b++) indptr[b + 1] = indptr[b] + lengths[b];
    tb.first = Array.from(indptr.subarray(0, B));
    tb.T = indptr[B] + 3;
    tb.seqs = { layout: 'ragged', indptr: tensor(indptr, [B + 1]) };
  } else if (layout === 'padded') {
    tb.seqs = { layout: 'padded', lengths: tensor(Int32Array.from(lengths), [B]) };
  } else {
    const need = lengths.map((n) => Math.ceil(n / pageSize));
    const used = need.reduce((a, b) => a + b, 0);
    tb.P = used + 3;
    const perm = Array.from({ length: tb.P }, (_, i) => i);
    for (let i = perm.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const indptr = new Int32Array(B + 1), last = new Int32Array(B);
    let k = 0;
    for (let b = 0; b < B; b++) {
      tb.pages.push(perm.slice(k, k + need[b]));
      k += need[b];
      indptr[b + 1] = k;
      last[b] = need[b] === 0 ? 0 : lengths[b] - (need[b] - 1) * pageSize;
    }
    tb.seqs = {
      layout,
      pageSize,
      indptr: tensor(indptr, [B + 1]),
      indices: tensor(Int32Array.from(perm.slice(0, used)), [used]),
      lastPageLen: tensor(last, [B]),
    };
  }
  return tb;
}

/** Data of a table: the batch tensor, per-sequence contiguous copies, and a check of every element outside the rows. */
export interface TestData {
  data: Tensor;
  perSeq: Tensor[];
  /** Element offset of row (b, h, i), column 0; column stride 1. */
  offset(b: number, h: number, i: number): number;
  /** Stored value (decoded) of element (b, h, i, c). */
  at(b: number, h: number, i: number, c: number): number;
  /** Snapshot of the raw storage. */
  snapshot(): Float32Array | Uint16Array;
  /** Indices of storage elements that are not rows of a sequence (canaries and poisoned free space). */
  outside: Int32Array;
}

/** Fills a table's data tensor [.., H, d] with random values (dtype storage), poison (NaN) and canaries. */
export function makeData(rng: Rng, tb: TestTable, H: number, d: number, dtype: DType = 'f32', scale = 1): TestData {
  const B = tb.lengths.length;
  let shape: number[], strides: number[], offset = GUARD, size: number;
  const S = tb.pageSize;
  if (tb.layout === 'ragged') {
    const row = H * d + GUARD;
    shape = [tb.T, H, d];
    strides = [row, d, 1];
    size = GUARD + tb.T * row;
  } else if (tb.layout === 'padded') {
    shape = [B, H, tb.L, d];
    strides = [H * tb.L * d + GUARD, tb.L * d, d, 1];
    size = GUARD + B * strides[0];
  } else {
    const page = S * H * d + GUARD;
    shape = tb.layout === 'NHD' ? [tb.P, S, H, d] : [tb.P, H, S, d];
    strides = tb.layout === 'NHD' ? [page, H * d, d, 1] : [page, S * d, d, 1];
    size = GUARD + tb.P * page;
  }
  const f32 = dtype === 'f32';
  const raw = f32 ? new Float32Array(size) : new Uint16Array(size);
  const isRow = new Uint8Array(size);
  const offsetOf = (b: number, h: number, i: number): number => {
    switch (tb.layout) {
      case 'ragged': return offset + (tb.first[b] + i) * strides[0] + h * strides[1];
      case 'padded': return offset + b * strides[0] + h * strides[1] + i * strides[2];
      case 'NHD': return offset + tb.pages[b][Math.floor(i / S)] * strides[0] + (i % S) * strides[1] + h * strides[2];
      default: return offset + tb.pages[b][Math.floor(i / S)] * strides[0] + h * strides[1] + (i % S) * strides[2];
    }
  };
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < tb.lengths[b]; i++) {
        const o = offsetOf(b, h, i);
        for (let c = 0; c < d; c++) isRow[o + c] = 1;
      }
  // every element that is not a row: NaN where a row could be read by mistake (inside a page / slab / row), a
  // canary in the guards
  raw.fill(f32 ? NaN : 0x7fff);
  const guardAt = (start: number) => {
    for (let g = 0; g < GUARD; g++) raw[start + g] = f32 ? CANARY_F32 : CANARY_16;
  };
  guardAt(0);
  const units = tb.layout === 'ragged' ? tb.T : tb.layout === 'padded' ? B : tb.P;
  for (let u = 0; u < units; u++) guardAt(offset + u * strides[0] + strides[0] - GUARD);
  const perSeq: Tensor[] = [];
  for (let b = 0; b < B; b++) {
    const n = tb.lengths[b];
    const copy = f32 ? new Float32Array(H * n * d) : new Uint16Array(H * n * d);
    for (let h = 0; h < H; h++)
      for (let i = 0; i < n; i++) {
        const o = offsetOf(b, h, i);
        for (let c = 0; c < d; c++) {
          const x = scale * rng.normal();
          const stored = dtype === 'f32' ? x : dtype === 'bf16' ? f32ToBf16(x) : f32ToF16(x);
          raw[o + c] = stored;
          copy[(h * n + i) * d + c] = raw[o + c];
        }
      }
    perSeq.push(tensor(copy, [H, n, d], { dtype }));
  }
  const outside = Int32Array.from({ length: size }, (_, i) => i).filter((i) => !isRow[i]);
  const dec = (x: number) => (dtype === 'f32' ? x : dtype === 'bf16' ? bf16ToF32(x) : f16ToF32(x));
  return {
    data: tensor(raw, shape, { dtype, strides, offset }),
    perSeq,
    offset: offsetOf,
    at: (b, h, i, c) => dec(raw[offsetOf(b, h, i) + c]),
    snapshot: () => raw.slice(),
    outside,
  };
}

/** A batch cache of keys and values sharing one table. */
export function makeCache(rng: Rng, layout: BatchLayout, lengths: number[], H: number, d: number, dv: number, dtype: DType = 'f32', pageSize = 16) {
  const tb = makeTable(rng, layout, lengths, pageSize);
  const keys = makeData(rng, tb, H, d, dtype);
  const values = makeData(rng, tb, H, dv, dtype);
  const cache = { ...tb.seqs, keys: keys.data, values: values.data } as BatchCache;
  return { tb, keys, values, cache };
}

/** The [H, n_b] block of sequence b of a per-token tensor ([H, T] ragged, [B, H, L] otherwise), contiguous. */
export function tokenBlock(out: Tensor, tb: TestTable, b: number): Float32Array | Int32Array {
  const n = tb.lengths[b];
  const H = tb.layout === 'ragged' ? out.shape[0] : out.shape[1];
  const res = out.dtype === 'i32' ? new Int32Array(H * n) : new Float32Array(H * n);
  for (let h = 0; h < H; h++)
    for (let i = 0; i < n; i++) res[h * n + i] = tb.layout === 'ragged' ? out.at(h, tb.first[b] + i) : out.at(b, h, i);
  return res;
}

/** A per-token tensor (f32 or i32) for a table, filled with `fill` (NaN / −7 poison by default). */
export function tokenTensor(tb: TestTable, H: number, dtype: 'f32' | 'i32' = 'f32', fill?: number): Tensor {
  const shape = tb.layout === 'ragged' ? [H, tb.T] : [tb.lengths.length, H, tb.L];
  const n = shape.reduce((a, b) => a * b, 1);
  const data = dtype === 'f32' ? new Float32Array(n).fill(fill ?? NaN) : new Int32Array(n).fill(fill ?? -7);
  return tensor(data, shape);
}

/** Writes per-sequence [H, n_b] blocks into a per-token tensor. */
export function fillTokens(out: Tensor, tb: TestTable, block: (b: number) => ArrayLike<number>): Tensor {
  const data = out.host;
  const H = tb.layout === 'ragged' ? out.shape[0] : out.shape[1];
  tb.lengths.forEach((n, b) => {
    const v = block(b);
    for (let h = 0; h < H; h++)
      for (let i = 0; i < n; i++) {
        const o = tb.layout === 'ragged' ? h * out.strides[0] + (tb.first[b] + i) * out.strides[1] : b * out.strides[0] + h * out.strides[1] + i * out.strides[2];
        data[out.offset + o] = v[h * n + i];
      }
  });
  return out;
}

/** The per-token elements that are not a token of any sequence (they must keep their poison). */
export function tokenPadding(out: Tensor, tb: TestTable): number[] {
  const inside = new Uint8Array(out.numel);
  const H = tb.layout === 'ragged' ? out.shape[0] : out.shape[1];
  tb.lengths.forEach((n, b) => {
    for (let h = 0; h < H; h++)
      for (let i = 0; i < n; i++) inside[tb.layout === 'ragged' ? h * out.strides[0] + (tb.first[b] + i) : b * out.strides[0] + h * out.strides[1] + i] = 1;
  });
  const vals: number[] = [];
  const host = out.host;
  for (let k = 0; k < inside.length; k++) if (!inside[k]) vals.push(host[k]);
  return vals;
}

/** Bitwise equality of two float/int arrays (NaN payloads compared as bits); the first difference, or undefined. */
export function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): string | undefined {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  const fa = new Float32Array(1), fb = new Float32Array(1);
  const ua = new Uint32Array(fa.buffer), ub = new Uint32Array(fb.buffer);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i] && (a[i] !== 0 || Object.is(a[i], b[i]))) continue;
    fa[0] = a[i];
    fb[0] = b[i];
    if (Number.isNaN(a[i]) && Number.isNaN(b[i]) && ua[0] === ub[0]) continue;
    return `at ${i}: ${a[i]} vs ${b[i]}`;
  }
  return undefined;
}

/** Asserts bitwise equality with a message naming what is compared. */
export function sameBits(t: Test, got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  const diff = firstDiff(got, want);
  t.ok(diff === undefined, diff === undefined ? `${what}: identical (${want.length} values)` : `${what}: differs ${diff}`);
}

/** Host elements of a tensor in row-major order (any strides). */
export function flat(t: Tensor): number[] {
  const out: number[] = [];
  const idx = new Array<number>(t.ndim).fill(0);
  for (let k = 0; k < t.numel; k++) {
    let o = t.offset;
    for (let i = 0; i < t.ndim; i++) o += idx[i] * t.strides[i];
    out.push(t.host[o]);
    for (let i = t.ndim - 1; i >= 0; i--) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/** The sub-tensor `t[b]` of a [B, ...] tensor (a view). */
export function at0(t: Tensor, b: number): Tensor {
  return t.view(t.shape.slice(1), t.strides.slice(1), t.offset + b * t.strides[0]);
}

/**
 * KVTRIM_TEST_BATCH_SUBSET=1 (set by test/cuda-emu.test.ts for its sub-run on the emulated GPU, where every kernel is
 * slow): the batched tests run their CUDA cases only, and every other case of their lists (ragged, NHD pages of 1 and
 * 64 tokens, HND pages of 16 from layoutCases). The full lists run whenever the tests run directly.
 */
const SUBSET = process.env.KVTRIM_TEST_BATCH_SUBSET === '1';
/** The backends a batched test runs. */
export function batchBackends(): Backend[] {
  return SUBSET ? BACKENDS.filter((b) => b !== 'cpu') : BACKENDS;
}
/**
 * The numbered cases a batched test runs (numbers are the list's: seeds stay the same in the subset): all of them, or
 * in the subset every `every`-th.
 */
export function cases<T>(list: T[], every = 2): [number, T][] {
  return [...list.entries()].filter(([k]) => !SUBSET || k % every === 0);
}

/** The cases every batched test runs: each layout, page sizes 1, 16 and 64 for the paged ones. */
export function layoutCases(): { layout: BatchLayout; pageSize: number }[] {
  return [
    { layout: 'ragged', pageSize: 0 },
    { layout: 'padded', pageSize: 0 },
    { layout: 'NHD', pageSize: 1 },
    { layout: 'NHD', pageSize: 16 },
    { layout: 'HND', pageSize: 16 },
    { layout: 'HND', pageSize: 64 },
    { layout: 'NHD', pageSize: 64 },
  ];
}

/** A random selection per sequence (uniform budget) as [B, H, cap] / [B, H]. */
export function randomSelection(rng: Rng, tb: TestTable, H: number, ratio = 0.6) {
  const scores = fillTokens(tokenTensor(tb, H), tb, (b) => Float32Array.from({ length: H * tb.lengths[b] }, () => rng.normal()));
  return selectTokensBatched(scores, tb.seqs, { ratio });
}

/** Rows [b·H, b·H + H) of the four moment tensors as flat arrays. */
export function momentRows(m: MomentState, b: number, H: number): number[][] {
  return [m.n, m.muK, m.muV, m.m].map((x) => {
    const per = x.numel / m.H;
    return flat(x).slice(b * H * per, (b + 1) * H * per);
  });
}

// ---- the same batches on a CUDA device (the 'cuda' cases of the batched tests)

/**
 * A host tensor's whole storage (every element of its data: rows, poisoned free space and canaries) copied to the
 * device and viewed with the same shape, strides and offset; the host tensor itself on the CPU backend.
 */
export function onBackend(t: Tensor, be: Backend): Tensor {
  if (be === 'cpu') return t;
  const n = t.host.length;
  return toDevice(tensor(t.host, [n], { dtype: t.dtype })).view(t.shape, t.strides, t.offset);
}

/** The whole storage of a tensor (device tensors: fetched) as a host array, for canary and poison checks. */
export async function storage(t: Tensor): Promise<ArrayLike<number>> {
  if (!t.onCuda) return t.host;
  const es = t.dtype === 'f32' || t.dtype === 'i32' ? 4 : 2;
  const buf = t.data as unknown as { byteLength: number };
  return (await toHost(tensor(t.data, [buf.byteLength / es], { dtype: t.dtype }))).host;
}

/** A host tensor with the storage of `dev` (fetched), viewed like it: elements read with Tensor.at / tokenBlock. */
export async function fetchView(dev: Tensor): Promise<Tensor> {
  if (!dev.onCuda) return dev;
  const all = await storage(dev);
  return tensor(all as Float32Array, dev.shape, { dtype: dev.dtype, strides: dev.strides, offset: dev.offset });
}

/** A table with its tensors on the backend. */
export function seqsOn<S extends Seqs>(s: S, be: Backend): S {
  if (be === 'cpu') return s;
  const o: Record<string, unknown> = { ...s };
  for (const k of ['indptr', 'lengths', 'indices', 'lastPageLen']) if (o[k] !== undefined) o[k] = toDevice(o[k] as Tensor);
  return o as S;
}

/** A batch cache (table, keys, values) on the backend, keeping the data's strides, poison and canaries. */
export function cacheOn(c: BatchCache, be: Backend): BatchCache {
  if (be === 'cpu') return c;
  return { ...seqsOn(c, be), keys: onBackend(c.keys as Tensor, be), ...(c.values ? { values: onBackend(c.values as Tensor, be) } : {}) } as BatchCache;
}

/** A moment state with its four tensors on the backend (copies on CUDA). */
export function momentsOn(m: MomentState, be: Backend): MomentState {
  if (be === 'cpu') return m;
  return MomentState.from({ n: toDevice(m.n), muK: toDevice(m.muK), muV: toDevice(m.muV), m: toDevice(m.m) });
}

/** A moment state with host copies of its tensors (for momentRows). */
export async function momentsHost(m: MomentState): Promise<MomentState> {
  if (!m.n.onCuda) return m;
  const [n, muK, muV, mm] = await Promise.all([m.n, m.muK, m.muV, m.m].map((x) => toHost(x)));
  return MomentState.from({ n, muK, muV, m: mm });
}

/** A host copy of a tensor (fetched when on the device). */
export async function hostOf(x: Tensor): Promise<Tensor> {
  return x.onCuda ? toHost(x) : x;
}
