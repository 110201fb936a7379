/**
 * Runtime-shaped caches (docs/runtime-caches.md §1-§2): a batch of sequences held ragged (`[T, H, d]` + `indptr`),
 * padded (`[B, H, L, d]` + `lengths`) or in pages (FlashInfer's `indptr` / `indices` / `lastPageLen` over page pools
 * `[P, pageSize, H, d]` (NHD) or `[P, H, pageSize, d]` (HND)). The `*Batched` ops of each op module take these;
 * this module checks the tables, builds them, and sizes the batched outputs.
 */
import type { NativeSeqs } from '../binding';
import { Device, Tensor, TensorLike, asTensor, checkDtype, checkRank, hostContiguous, sameDevice, tensor } from '../tensor';
import { checkInt, checkOneOf, show } from '../validate';
import type { Stream } from '../device';
import { opts, output } from './common';
import { keepFromRatio } from './select';

export type PageLayout = 'NHD' | 'HND';

/** Rows of sequence b are rows indptr[b] … indptr[b+1]−1 of a `[T, H, d]` tensor. */
export interface RaggedSeqs {
  layout: 'ragged';
  /** i32 [B + 1], non-decreasing token offsets. */
  indptr: Tensor | TensorLike;
}

/** Sequence b is `data[b, :, 0:lengths[b]]` of a `[B, H, L, d]` tensor. */
export interface PaddedSeqs {
  layout: 'padded';
  /** i32 [B], each in [0, L]; omitted: every sequence has length L. */
  lengths?: Tensor | TensorLike;
}

/** FlashInfer's paged layout: sequence b owns pages indices[indptr[b]] … indices[indptr[b+1]−1], in order. */
export interface PagedSeqs {
  layout: PageLayout;
  /** Tokens per page. */
  pageSize: number;
  /** i32 [B + 1] offsets into `indices`. */
  indptr: Tensor | TensorLike;
  /** i32 page ids in [0, P). */
  indices: Tensor | TensorLike;
  /** i32 [B]: entries of each sequence's last page, in [0, pageSize] (ignored for a sequence without pages). */
  lastPageLen: Tensor | TensorLike;
}

export type Seqs = RaggedSeqs | PaddedSeqs | PagedSeqs;

/** A batch of KV caches: the table and the data (for paged layouts `keys` / `values` are the page pools). */
export type BatchCache = Seqs & { keys: Tensor | TensorLike; values?: Tensor | TensorLike };

/** A batch of queries (SnapKV's window queries, GRKV's surrogate queries): ragged `[Tq, Hq, d]` or padded `[B, Hq, Wq, d]`. */
export type QueryBatch = (RaggedSeqs | PaddedSeqs) & { queries: Tensor | TensorLike };

const LAYOUTS = ['ragged', 'padded', 'NHD', 'HND'] as const;

/** A checked sequence table (with the data tensor it describes, when there is one). */
export class SeqTable {
  readonly layout: Seqs['layout'];
  readonly pageSize: number;
  readonly indptr?: Tensor;
  readonly lengthsTensor?: Tensor;
  readonly indices?: Tensor;
  readonly lastPageLen?: Tensor;
  /** Sequences (for a padded table without lengths: from the data's dimension 0, −1 when unknown). */
  readonly B: number;
  /** Padded table without lengths: every sequence's length (the data's dimension 2). */
  readonly L?: number;
  private hostLengths?: Int32Array;
  private readonly dataDevice?: Device;
  /** The table's argument name in messages. */
  private readonly name: string;

  constructor(name: string, v: unknown, data?: Tensor) {
    this.name = name;
    if (v === null || typeof v !== 'object') throw new TypeError(`${name}: expected a sequence table ({ layout, ... }), got ${show(v)}`);
    const o = v as Record<string, unknown>;
    this.layout = checkOneOf(`${name}.layout`, o.layout, LAYOUTS);
    const i32 = (k: string, dims: string) => checkDtype(`${name}.${k}`, checkRank(`${name}.${k}`, asTensor(`${name}.${k}`, o[k]), 1, dims), ['i32']);
    this.pageSize = 0;
    if (this.layout === 'ragged') {
      this.indptr = i32('indptr', '[B + 1]');
      this.B = this.indptr.shape[0] - 1;
    } else if (this.layout === 'padded') {
      if (o.lengths !== undefined) {
        this.lengthsTensor = i32('lengths', '[B]');
        this.B = this.lengthsTensor.shape[0];
      } else {
        this.B = data ? data.shape[0] : -1;
        this.L = data ? data.shape[2] : undefined;
        this.dataDevice = data?.device;  // a table without tensors lives where its data does
      }
    } else {
      this.pageSize = checkInt(`${name}.pageSize`, o.pageSize, 1, 2 ** 31 - 1);
      this.indptr = i32('indptr', '[B + 1]');
      this.indices = i32('indices', '[pages]');
      this.lastPageLen = i32('lastPageLen', '[B]');
      this.B = this.indptr.shape[0] - 1;
    }
    if (this.B < -1) throw new RangeError(`${name}.indptr: needs B + 1 >= 1 entries, got 0`);
    for (const t of [this.indptr, this.lengthsTensor, this.indices, this.lastPageLen, data]) {
      if (t && !sameDevice(t.device, this.device)) throw new TypeError(`${name}: every table tensor and the data must be on one device`);
    }
  }

  get paged(): boolean {
    return this.layout === 'NHD' || this.layout === 'HND';
  }

  get device(): Device {
    return (this.indptr ?? this.lengthsTensor)?.device ?? this.dataDevice ?? { kind: 'cpu' };
  }

  /** n_b of every sequence (host tables only; undefined for device tables). Not validated here: the addon checks. */
  lengths(): Int32Array | undefined {
    if (this.hostLengths) return this.hostLengths;
    if (this.layout === 'padded' && !this.lengthsTensor) {
      if (this.B < 0 || this.L === undefined) return undefined;
      return (this.hostLengths = new Int32Array(this.B).fill(this.L));
    }
    const t = this.indptr ?? this.lengthsTensor!;
    if (t.onCuda) return undefined;
    const out = new Int32Array(this.B);
    if (this.layout === 'padded') {
      out.set(hostContiguous(this.lengthsTensor!) as Int32Array);
      // what a length feeds (capacities, ratios) needs it valid: named here rather than by a later computation
      const bad = out.findIndex((x) => x < 0);
      if (bad >= 0) throw new RangeError(`${this.name}.lengths: lengths[${bad}] = ${out[bad]} must be >= 0`);
    } else {
      const ip = hostContiguous(this.indptr!) as Int32Array;
      const last = this.paged ? (hostContiguous(this.lastPageLen!) as Int32Array) : undefined;
      for (let b = 0; b < this.B; b++) {
        const n = ip[b + 1] - ip[b];
        if (n < 0) throw new RangeError(`${this.name}.indptr: must be non-decreasing, indptr[${b + 1}] = ${ip[b + 1]} < indptr[${b}] = ${ip[b]}`);
        const len = !last ? n : n <= 0 ? 0 : (n - 1) * this.pageSize + last[b];
        if (len > 2 ** 31 - 2) throw new RangeError(`seqs: sequence ${b} has ${len} tokens, more than 2^31 - 2`);
        out[b] = len;
      }
    }
    return (this.hostLengths = out);
  }

  /** max_b n_b (host tables), else undefined. */
  maxLength(): number | undefined {
    const n = this.lengths();
    return n ? n.reduce((a, b) => Math.max(a, b), 0) : undefined;
  }

  toNative(): NativeSeqs {
    return {
      layout: LAYOUTS.indexOf(this.layout),
      pageSize: this.pageSize,
      ...(this.indptr ? { indptr: this.indptr.toNative() } : {}),
      ...(this.lengthsTensor ? { lengths: this.lengthsTensor.toNative() } : {}),
      ...(this.indices ? { indices: this.indices.toNative() } : {}),
      ...(this.lastPageLen ? { lastPageLen: this.lastPageLen.toNative() } : {}),
    };
  }
}

/** The rank of a data tensor in a layout and the positions of H and d in its shape. */
function dataDims(layout: Seqs['layout']): { rank: number; dims: string; h: number; d: number } {
  switch (layout) {
    case 'ragged': return { rank: 3, dims: '[T, H, d]', h: 1, d: 2 };
    case 'padded': return { rank: 4, dims: '[B, H, L, d]', h: 1, d: 3 };
    case 'NHD': return { rank: 4, dims: '[pages, pageSize, H, d]', h: 2, d: 3 };
    default: return { rank: 4, dims: '[pages, H, pageSize, d]', h: 1, d: 3 };
  }
}

/** A checked data tensor of a batch with its head count and row width. */
export function seqData(layout: Seqs['layout'], name: string, v: unknown, dtypes: readonly ('f32' | 'f16' | 'bf16')[] = ['f32', 'f16', 'bf16']): { t: Tensor; H: number; d: number } {
  const dd = dataDims(layout);
  const t = checkDtype(name, checkRank(name, asTensor(name, v), dd.rank, dd.dims), dtypes);
  return { t, H: t.shape[dd.h], d: t.shape[dd.d] };
}

/** A checked batch cache: table, keys (and values when `needValues`). */
export interface CheckedCache {
  table: SeqTable;
  keys: Tensor;
  values?: Tensor;
  H: number;
  d: number;
  dv: number;
}

export function checkCache(name: string, v: unknown, needValues: boolean): CheckedCache {
  if (v === null || typeof v !== 'object') throw new TypeError(`${name}: expected a batch cache ({ layout, keys, values?, ... }), got ${show(v)}`);
  const o = v as Record<string, unknown>;
  const layout = checkOneOf(`${name}.layout`, o.layout, LAYOUTS);
  const k = seqData(layout, `${name}.keys`, o.keys);
  const table = new SeqTable(name, o, k.t);
  if (needValues && o.values === undefined) throw new TypeError(`${name}.values: this op needs the values too`);
  const vv = o.values === undefined ? undefined : seqData(layout, `${name}.values`, o.values);
  if (vv && vv.H !== k.H) throw new RangeError(`${name}.values: expected ${k.H} heads like the keys, got ${vv.H}`);
  return { table, keys: k.t, values: vv?.t, H: k.H, d: k.d, dv: vv?.d ?? k.d };
}

/** A checked query batch (ragged or padded). */
export function checkQueries(name: string, v: unknown): { table: SeqTable; queries: Tensor; Hq: number; d: number } {
  if (v === null || typeof v !== 'object') throw new TypeError(`${name}: expected a query batch ({ layout, queries, indptr | lengths }), got ${show(v)}`);
  const o = v as Record<string, unknown>;
  const layout = checkOneOf(`${name}.layout`, o.layout, ['ragged', 'padded'] as const);
  const q = seqData(layout, `${name}.queries`, o.queries);
  return { table: new SeqTable(name, o, q.t), queries: q.t, Hq: q.H, d: q.d };
}

/**
 * The shape of a per-token tensor of a batch with H heads: `[H, T]` (ragged: T rows of the data, the token's own row
 * index) or `[B, H, L]` (padded: L of the data unless `maxLength` is given; paged: `maxLength`, else max n_b of the
 * host table).
 */
export function tokenShape(table: SeqTable, H: number, data?: Tensor, maxLength?: number): number[] {
  if (table.layout === 'ragged') {
    const T = data ? data.shape[0] : (hostContiguous(table.indptr!) as Int32Array)[table.B];
    if (T === undefined) throw new TypeError('out: give `out` for a ragged table on the device');
    return [H, T];
  }
  const L = maxLength ?? (table.layout === 'padded' && data ? data.shape[2] : table.maxLength());
  if (L === undefined) throw new TypeError('maxLength: needed to size the output of a batch whose table is on the device (or pass `out`)');
  return [table.B, H, checkInt('maxLength', L, 0, 2 ** 31 - 1)];
}

/**
 * The caller's `maxLength` option, checked whether or not it sizes the output (a wrong one is an error, not ignored):
 * an integer no shorter than the longest sequence of a host table.
 */
export function userMaxLength(table: SeqTable, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const m = checkInt('maxLength', v, 0, 2 ** 31 - 1);
  const longest = table.maxLength();
  if (longest !== undefined && m < longest) throw new RangeError(`maxLength: ${m} is shorter than the longest sequence (${longest} tokens)`);
  return m;
}

/**
 * A per-token output: the caller's tensor (rank, dtype and device checked here, the extent by the addon) or a fresh
 * one of {@link tokenShape}.
 */
export function tokenOutput(name: string, given: unknown, table: SeqTable, H: number, dtype: 'f32' | 'i32', device: Device, data?: Tensor, maxLength?: number, stream?: Stream): Tensor {
  if (given === undefined) return output(name, undefined, tokenShape(table, H, data, maxLength), dtype, device, stream);
  const rank = table.layout === 'ragged' ? 2 : 3;
  const t = checkDtype(name, checkRank(name, asTensor(name, given), rank, rank === 2 ? '[H, T]' : '[B, H, L]'), [dtype]);
  if (!sameDevice(t.device, device)) throw new TypeError(`${name}: must be on the same device as the inputs`);
  return t;
}

/**
 * Per-sequence budgets: `keep` (one number, or an i32 [B] tensor) or `ratio` (host tables: keep_b = keepFromRatio(n_b),
 * 0 for an empty sequence). Returns the scalar for the options and the tensor (when per sequence), and the largest keep.
 */
export function resolveBatchKeep(table: SeqTable, o: { ratio?: unknown; keep?: unknown }): { scalar: number; tensor?: Tensor; max?: number } {
  if ((o.ratio === undefined) === (o.keep === undefined)) throw new TypeError('options: give exactly one of `ratio` or `keep`');
  if (typeof o.keep === 'number') {
    const k = checkInt('keep', o.keep, 1, 2 ** 31 - 1);
    return { scalar: k, max: k };
  }
  if (o.keep !== undefined) {
    const t = checkDtype('keep', checkRank('keep', asTensor('keep', o.keep), 1, '[B]'), ['i32']);
    if (t.shape[0] !== table.B) throw new RangeError(`keep: expected ${table.B} entries (one per sequence), got ${t.shape[0]}`);
    const max = t.onCuda ? undefined : (hostContiguous(t) as Int32Array).reduce((a, b) => Math.max(a, b), 0);
    return { scalar: 1, tensor: t, ...(max !== undefined ? { max } : {}) };
  }
  keepFromRatio(1, o.ratio as number);  // checks the ratio also when every sequence is empty
  const n = table.lengths();
  if (!n) throw new TypeError('ratio: needs the sequence lengths on the host; give `keep` (a number or an i32 [B] tensor) for a device table');
  const keep = Int32Array.from(n, (x) => (x === 0 ? 0 : keepFromRatio(x, o.ratio as number)));
  return { scalar: 1, tensor: tensor(keep, [table.B]), max: keep.reduce((a, b) => Math.max(a, b), 0) };
}

/** Builds a ragged table from sequence lengths (host). */
/** A list argument (sequence lengths, page ids): an array or typed array. */
function lengthList(v: unknown, name = 'lengths'): ArrayLike<number> {
  if (!Array.isArray(v) && !(ArrayBuffer.isView(v) && !(v instanceof DataView)))
    throw new TypeError(`${name}: expected an array of numbers, got ${show(v)}`);
  return v as ArrayLike<number>;
}

export function raggedSeqs(lengths: ArrayLike<number>): RaggedSeqs {
  lengths = lengthList(lengths);
  const indptr = new Int32Array(lengths.length + 1);
  for (let b = 0; b < lengths.length; b++) indptr[b + 1] = indptr[b] + checkInt(`lengths[${b}]`, lengths[b], 0, 2 ** 31 - 1);
  return { layout: 'ragged', indptr: tensor(indptr, [lengths.length + 1]) };
}

/**
 * Builds a paged table from sequence lengths (host): ⌈n_b / pageSize⌉ pages per sequence, taken in order from `pages`
 * (default 0, 1, 2, …).
 */
export function pagedSeqs(lengths: ArrayLike<number>, options: { pageSize: number; layout?: PageLayout; pages?: ArrayLike<number> }): PagedSeqs {
  lengths = lengthList(lengths);
  const o = opts('options', options, ['pageSize', 'layout', 'pages']);
  const P = checkInt('pageSize', o.pageSize, 1, 2 ** 31 - 1);
  const layout = o.layout === undefined ? 'NHD' : checkOneOf('layout', o.layout, ['NHD', 'HND'] as const);
  const B = lengths.length;
  const indptr = new Int32Array(B + 1), last = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const n = checkInt(`lengths[${b}]`, lengths[b], 0, 2 ** 31 - 1);
    const np = Math.ceil(n / P);
    indptr[b + 1] = indptr[b] + np;
    last[b] = np === 0 ? 0 : n - (np - 1) * P;
  }
  const total = indptr[B];
  const ids = new Int32Array(total);
  const pages = o.pages === undefined ? undefined : lengthList(o.pages, 'pages');
  if (pages && pages.length < total) throw new RangeError(`pages: ${total} pages needed, ${pages.length} given`);
  for (let j = 0; j < total; j++) ids[j] = pages ? checkInt(`pages[${j}]`, pages[j], 0, 2 ** 31 - 1) : j;
  return {
    layout,
    pageSize: P,
    indptr: tensor(indptr, [B + 1]),
    indices: tensor(ids, [total]),
    lastPageLen: tensor(last, [B]),
  };
}

/** n_b of every sequence of a host table (a padded table without lengths needs its data). */
export function seqLengths(seqs: Seqs, data?: Tensor | TensorLike): Int32Array {
  const d = data === undefined ? undefined : asTensor('data', data);
  const table = new SeqTable('seqs', seqs, d);
  if (d) {
    const dims = table.layout === 'ragged' ? '[T, H, d]' : table.layout === 'padded' ? '[B, H, L, d]' : table.layout === 'NHD' ? '[pages, pageSize, H, d]' : '[pages, H, pageSize, d]';
    checkRank('data', d, table.layout === 'ragged' ? 3 : 4, dims);
  }
  const n = table.lengths();
  if (!n) throw new TypeError('seqs: the table is on a CUDA device (or a padded table without lengths has no data)');
  checkHostTable(table, n, d);
  return n;
}

/**
 * The entry checks of the addon's check_seqs / check_seq_data for a host table (what seqLengths reads, and with the
 * data its rows, lengths or pages): RangeError naming the table field.
 */
function checkHostTable(t: SeqTable, n: Int32Array, data?: Tensor): void {
  const ip = t.indptr ? (hostContiguous(t.indptr) as Int32Array) : undefined;
  // a decreasing indptr was rejected by t.lengths() (which the caller ran to get n)
  if (ip && ip[0] < 0) throw new RangeError(`seqs.indptr: indptr[0] = ${ip[0]} must be >= 0`);
  if (t.layout === 'ragged' && data && ip![t.B] > data.shape[0])
    throw new RangeError(`seqs.indptr: indptr[B] = ${ip![t.B]} exceeds the ${data.shape[0]} rows of data`);
  if (t.paged) {
    const ix = hostContiguous(t.indices!) as Int32Array, last = hostContiguous(t.lastPageLen!) as Int32Array;
    if (ip![t.B] > ix.length) throw new RangeError(`seqs.indptr: indptr[B] = ${ip![t.B]} exceeds the ${ix.length} entries of indices`);
    const P = data ? data.shape[0] : undefined;
    for (let b = 0; b < t.B; b++) {
      if (ip![b + 1] > ip![b] && (last[b] < 0 || last[b] > t.pageSize))
        throw new RangeError(`seqs.lastPageLen: lastPageLen[${b}] = ${last[b]} must be in [0, ${t.pageSize}] (sequence ${b} has pages)`);
      for (let j = ip![b]; P !== undefined && j < ip![b + 1]; j++)
        if (ix[j] < 0 || ix[j] >= P) throw new RangeError(`seqs.indices: page id ${ix[j]} of sequence ${b} is outside [0, ${P}), the pages of data`);
    }
  }
  const L = t.layout === 'padded' && data ? data.shape[2] : undefined;
  n.forEach((x, b) => {
    if (x < 0 || (L !== undefined && x > L)) throw new RangeError(`seqs.lengths: lengths[${b}] = ${x} must be in [0, ${L ?? '2^31 - 2'}]`);
  });
}
