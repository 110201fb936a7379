/**
 * Fuzzer targets of the runtime-shaped caches (docs/runtime-caches.md): every `<op>Batched` / `<op>BatchedAsync`,
 * `MomentState.mergeBatched(Async)`, `compactInPlace(Async)` + `compactPageTable`, the table builders, the
 * tensor-parallel selection, and the addon's batched / compact / tpSelect exports with raw descriptors. A batch is
 * ragged, padded or paged (NHD / HND over a shuffled page pool with spare pages); its table tensors carry hostile
 * rewrites (mutator.ts `hostile`): indptr non-monotone, negative or past its rows / page list, page ids out of range
 * or shared between sequences, lastPageLen beyond pageSize, lengths beyond L.
 */
import * as kv from '../../lib/index';
import { native } from '../../lib/binding';
import type { DType } from '../../lib/tensor';
import type { Builder, Expect, TensorSpec } from './mutator';
import { int, num, opt, F32_MAX, I32, FLOATS } from './preds';
import type { Target } from './targets';

type Layout = 'ragged' | 'padded' | 'NHD' | 'HND';
const LAYOUTS: Layout[] = ['ragged', 'padded', 'NHD', 'HND'];
type Mk = (name: string, spec: TensorSpec) => unknown;
type Hostile = NonNullable<TensorSpec['hostile']>[number];

/** The shape of a random batch: sequences, lengths, and where their rows live. */
interface Shape {
  layout: Layout;
  paged: boolean;
  B: number;
  H: number;
  d: number;
  dv: number;
  lens: number[];
  maxN: number;
  /** pageSize, pages in the pool, page lists per sequence, entries of `indices` (used + spare). */
  S: number;
  P: number;
  pages: number[][];
  /** ragged: first row of each sequence and rows of the data; padded: L of the data. */
  first: number[];
  T: number;
  L: number;
}

function shapeOf(b: Builder, minB = 0): Shape {
  const layout = LAYOUTS[b.int(0, 3)];
  const B = b.int(minB, 3), H = b.int(1, 2), d = b.int(1, 6), dv = b.int(1, 6);
  const lens = Array.from({ length: B }, () => (b.int(0, 4) === 0 ? 0 : b.int(1, 12)));
  const maxN = Math.max(0, ...lens);
  const S = b.int(1, 5);
  const sh: Shape = { layout, paged: layout === 'NHD' || layout === 'HND', B, H, d, dv, lens, maxN, S, P: 0, pages: [], first: [], T: 0, L: 0 };
  if (layout === 'ragged') {
    let r = b.int(0, 2);
    for (const n of lens) {
      sh.first.push(r);
      r += n;
    }
    sh.first.push(r);
    sh.T = r + b.int(0, 2);
  } else if (layout === 'padded') {
    sh.L = maxN + b.int(0, 2);
  } else {
    const need = lens.map((n) => Math.ceil(n / S));
    const used = need.reduce((a, c) => a + c, 0);
    sh.P = used + b.int(0, 2);
    const perm = Array.from({ length: sh.P }, (_, i) => i);
    for (let i = perm.length - 1; i > 0; i--) {
      const j = b.int(0, i);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    let k = 0;
    for (const np of need) {
      sh.pages.push(perm.slice(k, k + np));
      k += np;
    }
  }
  return sh;
}

/** The tensors whose reading a sequence table's layout decides (an error of another layout may name them). */
// A table entry that disagrees with a tensor of the batch (or with maxLength) may be reported through either of them.
const DATA_NAMES = ['keys', 'values', 'queries', 'scores', 'out', 'indices', 'counts', 'keep', 'evictedRound', 'cache.keys', 'cache.values', 'data', 'clip', 'moments',
  'evictedIndices', 'keysOut', 'valuesOut', 'countsOut', 'pageCounts', 'lastPageLen', 'freed', 'freedCount', 'state', 'maxLength'];

const err = (detail: string) => ({ expect: 'error' as Expect, detail });
const any = (detail: string) => ({ expect: 'any' as Expect, detail });

/** Hostile rewrites of an indptr of `B + 1` entries over `limit` rows / page-list entries. */
function indptrHostile(B: number, limit: number, checked = true): Hostile[] {
  return [
    (v, pick) => {
      if (B < 1) return null;
      const s = 1 + pick(Array.from({ length: B }, (_, i) => i));
      v[s] = v[s - 1] - 1;
      return err(`indptr[${s}] < indptr[${s - 1}]`);
    },
    (v) => {
      v[0] = -1;
      return err('indptr[0] = -1');
    },
    (v, pick) => {
      v[B] = pick([limit + 1, I32, 2 ** 31 - 2]);
      return checked || v[B] === I32 ? err(`indptr[B] = ${v[B]} past ${limit}`) : any(`indptr[B] = ${v[B]} (rows unknown)`);
    },
    (v) => {
      if (B < 1) return null;
      v.fill(v[B]);
      return any('every sequence empty');
    },
  ];
}

/**
 * The table fields of a batch (for the public API: layout names; `native`: layout numbers), its tensors made by `mk`.
 * `compact`: page lists are written (a page shared between sequences is an error).
 */
function table(b: Builder, sh: Shape, mk: Mk, o: { prefix?: string; native?: boolean; compact?: boolean; lax?: boolean; noData?: boolean } = {}): Record<string, unknown> {
  const p = o.prefix ?? 'seqs';
  const { layout, B, S } = sh;
  const swap = sh.paged && sh.H === S;  // NHD and HND pools of equal dims 1 and 2 read alike
  const li = LAYOUTS.indexOf(layout);
  const out: Record<string, unknown> = {
    // another layout reinterprets the data: the error may name a tensor of the batch instead
    layout: o.native
      // with no sequence (B = 0) the table of another layout can describe the same empty batch
      // a paged pool read as a padded batch without lengths (B, L from its dimensions) can be a consistent batch too
      ? b.num(`${p}.layout`, li, (v) => v === li || (swap && (v === 2 || v === 3)) || (B === 0 && [0, 1, 2, 3].includes(v as number)) || (sh.paged && v === 1) ||
        (o.noData === true && sh.paged && (v === 2 || v === 3)), DATA_NAMES)  // pages not read: NHD and HND alike
      : b.choice(`${p}.layout`, layout, swap ? ['NHD', 'HND'] : [layout], false, DATA_NAMES),
  };
  if (layout === 'ragged') {
    out.indptr = mk(`${p}.indptr`, { dtype: 'i32', shape: [B + 1], fill: sh.first, hostile: indptrHostile(B, sh.T, !o.lax), names: DATA_NAMES });
  } else if (layout === 'padded') {
    const lengthsHostile: Hostile[] = [
      (v, pick) => {
        if (!B) return null;
        const s = pick(Array.from({ length: B }, (_, i) => i));
        v[s] = pick([sh.L + 1, -1, I32]);
        return o.lax && v[s] > 0 ? any(`lengths[${s}] = ${v[s]} (L unknown)`) : err(`lengths[${s}] = ${v[s]} (L = ${sh.L})`);
      },
      (v, pick) => {
        if (!B) return null;
        v[pick(Array.from({ length: B }, (_, i) => i))] = 0;
        return any('a sequence emptied');
      },
    ];
    out.lengths = mk(`${p}.lengths`, { dtype: 'i32', shape: [B], fill: sh.lens, optional: true, hostile: lengthsHostile, names: DATA_NAMES });
  } else {
    out.pageSize = b.num(`${p}.pageSize`, S, o.lax || o.noData ? int(1, I32) : (v) => v === S);
    const ids = sh.pages.flat();
    const F = ids.length + b.int(0, 2);  // spare entries after indptr[B]
    const indptr = [0];
    for (const pg of sh.pages) indptr.push(indptr[indptr.length - 1] + pg.length);
    const last = sh.lens.map((n, s) => (sh.pages[s].length ? n - (sh.pages[s].length - 1) * S : b.int(0, 1) ? 0 : 7));
    const used = ids.length;
    const spare = Array.from({ length: sh.P }, (_, i) => i).filter((i) => !ids.includes(i));
    const entries = Array.from({ length: used }, (_, i) => i);
    const pageHostile: Hostile[] = [
      (v, pick) => {
        if (!used) return null;
        const j = pick(entries);
        v[j] = pick([sh.P, -1, I32, -(2 ** 31)]);
        return (o.lax || o.noData ? any : err)(`page id ${v[j]} at entry ${j} (pool of ${sh.P})`);
      },
      (v, pick) => {
        if (used < 2) return null;
        const j = pick(entries);
        const j2 = pick(entries.filter((x) => x !== j));
        v[j] = v[j2];
        return o.compact ? err(`page ${v[j]} listed twice`) : any(`page ${v[j]} listed twice (read only)`);
      },
      (v, pick) => {
        if (!used || !spare.length) return null;
        v[pick(entries)] = pick(spare);
        return any('a spare page');
      },
    ];
    const withPages = sh.pages.map((pg, s) => (pg.length ? s : -1)).filter((s) => s >= 0);
    const lastHostile: Hostile[] = [
      (v, pick) => {
        if (!withPages.length) return null;
        const s = pick(withPages);
        v[s] = pick([S + 1, -1, I32, -(2 ** 31)]);
        return err(`lastPageLen[${s}] = ${v[s]} (pageSize ${S})`);
      },
      (v, pick) => {
        if (!withPages.length) return null;
        v[pick(withPages)] = 0;
        return any('an empty last page');
      },
    ];
    out.indptr = mk(`${p}.indptr`, { dtype: 'i32', shape: [B + 1], fill: indptr, hostile: indptrHostile(B, F) });
    out.indices = mk(`${p}.indices`, { dtype: 'i32', shape: [F], fill: [...ids, ...Array.from({ length: F - used }, () => b.int(-3, 3))], hostile: pageHostile });
    out.lastPageLen = mk(`${p}.lastPageLen`, { dtype: 'i32', shape: [B], fill: last, hostile: lastHostile });
  }
  return out;
}

/** The shape of a data tensor of the batch with `H` heads of width `w`. */
function dataShape(sh: Shape, H: number, w: number): number[] {
  switch (sh.layout) {
    case 'ragged': return [sh.T, H, w];
    case 'padded': return [sh.B, H, sh.L, w];
    case 'NHD': return [sh.P, sh.S, H, w];
    default: return [sh.P, H, sh.S, w];
  }
}

/** The shape of a per-token tensor: [H, T] ragged, [B, H, L] otherwise (L of the data, or max n_b). */
function tokenShape(sh: Shape): number[] {
  return sh.layout === 'ragged' ? [sh.H, sh.T] : [sh.B, sh.H, sh.layout === 'padded' ? sh.L : sh.maxN];
}

/** Per-sequence ascending index lists [B, H, cap] and counts [B, H] (hostile rewrites of both). */
function lists(b: Builder, sh: Shape, mk: Mk, names: { indices: string; counts: string }, cap = Math.max(1, b.int(1, Math.max(1, sh.maxN)))) {
  const { B, H } = sh;
  const counts: number[] = [];
  const idx = new Array<number>(B * H * cap).fill(-1);
  for (let s = 0; s < B; s++)
    for (let h = 0; h < H; h++) {
      const n = sh.lens[s], c = b.int(0, Math.min(cap, n));
      counts.push(c);
      const pos = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = b.int(0, i);
        [pos[i], pos[j]] = [pos[j], pos[i]];
      }
      pos.slice(0, c).sort((x, y) => x - y).forEach((x, j) => (idx[(s * H + h) * cap + j] = x));
    }
  const rows = Array.from({ length: B * H }, (_, r) => r);
  const withCount = rows.filter((r) => counts[r] > 0);
  const idxHostile: Hostile[] = [
    (v, pick) => {
      if (!withCount.length) return null;
      const r = pick(withCount), j = pick(Array.from({ length: counts[r] }, (_, i) => i));
      v[r * cap + j] = pick([-1, sh.lens[Math.floor(r / H)], I32]);
      return err(`row ${r} entry ${j} = ${v[r * cap + j]}`);
    },
    (v, pick) => {
      const two = withCount.filter((r) => counts[r] >= 2);
      if (!two.length) return null;
      const r = pick(two);
      v[r * cap + 1] = v[r * cap];
      return err(`row ${r}: a repeated position`);
    },
  ];
  const cntHostile: Hostile[] = [
    (v, pick) => {
      if (!rows.length) return null;
      const r = pick(rows), n = sh.lens[Math.floor(r / H)];
      v[r] = pick([-1, Math.min(cap, n) + 1, I32, -(2 ** 31)]);
      return err(`counts entry ${r} = ${v[r]} (n = ${n}, cap = ${cap})`);
    },
  ];
  return {
    cap,
    counts,
    indices: mk(names.indices, { dtype: 'i32', shape: [B, H, cap], fill: idx, hostile: idxHostile }),
    countsT: mk(names.counts, { dtype: 'i32', shape: [B, H], fill: counts, hostile: cntHostile }),
  };
}

/** A moment state of `V` virtual heads as four tensors (public: a MomentTensors object; native: descriptors). */
function momentParts(mk: Mk, V: number, d: number, dv: number, role: 'in' | 'out' = 'out') {
  return {
    n: mk('moments.n', { dtype: 'f32', shape: [V], role, fill: () => 1 }),
    muK: mk('moments.muK', { dtype: 'f32', shape: [V, d], role }),
    muV: mk('moments.muV', { dtype: 'f32', shape: [V, dv], role }),
    m: mk('moments.m', { dtype: 'f32', shape: [V, dv, d], role }),
  };
}

/** A public batch cache object with keys (and values). */
function cache(b: Builder, sh: Shape, o: { values?: boolean; written?: boolean; dtype?: DType } = {}) {
  const dtype = o.dtype ?? FLOATS[b.int(0, 2)];
  const mk: Mk = (n, s) => b.tensor(n, s);
  const role = o.written ? 'out' : 'in';
  const fields: Record<string, unknown> = {
    ...table(b, sh, mk, { compact: o.written }),
    keys: b.tensor('cache.keys', { dtype, shape: dataShape(sh, sh.H, sh.d), dtypes: FLOATS, role, names: ['keys'], flexible: o.written }),
  };
  if (o.values !== false) fields.values = b.tensor('cache.values', { dtype, shape: dataShape(sh, sh.H, sh.dv), dtypes: FLOATS, role, names: ['values'], flexible: o.written });
  return b.options('cache', fields, false, false);
}

/** The async options: an optional signal (sometimes already aborted: the promise rejects with an AbortError). */
function asyncOpts(b: Builder): Record<string, unknown> {
  const k = b.int(0, 5);
  if (k === 0) return { signal: b.num('signal', new AbortController().signal, (v) => v === undefined || v instanceof AbortSignal) };
  if (k === 1) return { signal: AbortSignal.abort() };
  return {};
}

/** Runs the sync or the async form. */
function either<A extends unknown[]>(asy: boolean, f: (...a: A) => unknown, fa: (...a: A) => Promise<unknown>, ...a: A): () => unknown {
  return asy ? async () => fa(...a) : () => f(...a);
}

const tok = (b: Builder, sh: Shape, name: string, o: Partial<TensorSpec> = {}) =>
  b.tensor(name, { dtype: 'f32', shape: tokenShape(sh), ...o });

export const batchTargets: Target[] = [
  {
    name: 'raggedSeqs / pagedSeqs / seqLengths',
    build(b) {
      const which = b.int(0, 2);
      const n = Array.from({ length: b.int(0, 4) }, () => b.int(0, 20));
      const lengths = b.num('lengths', n, (v) => Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0 && x <= I32));
      if (which === 0) return () => kv.seqLengths(kv.raggedSeqs(lengths as number[]));
      const o = b.options('options', {
        pageSize: b.num('pageSize', b.int(1, 8), int(1, I32)),
        layout: b.choice('layout', ['NHD', 'HND'][b.int(0, 1)], ['NHD', 'HND']),
      }, false);
      return () => kv.seqLengths(kv.pagedSeqs(lengths as number[], o as never));
    },
  },
  {
    name: 'seqLengths (hostile tables)',
    covers: ['seqLengths'],
    build(b) {
      const sh = shapeOf(b);
      const seqs = table(b, sh, (n, s) => b.tensor(n, s), { lax: true });
      const data = sh.layout === 'padded' && b.int(0, 1) ? b.tensor('data', { dtype: 'f32', dtypes: ['f32', 'f16', 'bf16', 'i32'], shape: dataShape(sh, sh.H, sh.d), optional: true, names: ['seqs'] }) : undefined;
      return () => kv.seqLengths(seqs as never, data as never);
    },
  },
  {
    name: 'keydiffScoresBatched / keydiffScoresBatchedAsync',
    weight: 1.5,
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const c = cache(b, sh, { values: false });
      const o = b.options('options', {
        ...(b.int(0, 1) ? { out: tok(b, sh, 'out', { role: 'out', optional: true, flexible: true }) } : {}),
        ...(b.int(0, 3) === 0 && sh.layout !== 'ragged' ? { maxLength: b.num('maxLength', sh.layout === 'padded' ? sh.L : sh.maxN, opt(int(sh.maxN, I32))) } : {}),
        ...(asy ? asyncOpts(b) : {}),
      });
      return either(asy, kv.keydiffScoresBatched, kv.keydiffScoresBatchedAsync, c as never, o as never);
    },
  },
  {
    name: 'nestedkvScoresBatched / nestedkvScoresBatchedAsync',
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const c = cache(b, sh, { values: false });
      const o = b.options('options', {
        window: b.num('window', b.int(1, 20), opt(int(1, I32))),
        block: b.num('block', b.int(1, 8), opt(int(1, I32))),
        sinks: b.num('sinks', b.int(0, 3), opt(int(0, I32))),
        tail: b.num('tail', 0.1, opt(num(0, 1))),
        ...(b.int(0, 1) ? { out: tok(b, sh, 'out', { role: 'out', optional: true, flexible: true }) } : {}),
        ...(asy ? asyncOpts(b) : {}),
      });
      return either(asy, kv.nestedkvScoresBatched, kv.nestedkvScoresBatchedAsync, c as never, o as never);
    },
  },
  {
    name: 'snapkvScoresBatched / snapkvScoresBatchedAsync',
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const G = b.int(1, 2), Wq = b.int(1, 4);
      const c = cache(b, sh, { values: false });
      const qlens = sh.lens.map(() => b.int(1, Wq));
      // the window is checked against the queries of the non-empty sequences only (an empty one has nothing to score)
      const minQ = Math.min(Wq, ...qlens.filter((_, s) => sh.lens[s] > 0));
      const q = b.options('queries', {
        layout: b.choice('queries.layout', 'padded', ['padded'], false),
        lengths: b.tensor('queries.lengths', { dtype: 'i32', shape: [sh.B], fill: qlens, optional: true, hostile: [(v, pick) => {
          if (!sh.B) return null;
          const s = pick(Array.from({ length: sh.B }, (_, i) => i));
          v[s] = pick([Wq + 1, -1]);
          return err(`queries.lengths[${s}] = ${v[s]} (Wq = ${Wq})`);
        }] }),
        queries: b.tensor('queries.queries', { dtype: FLOATS[b.int(0, 2)], shape: [sh.B, sh.H * G, Wq, sh.d], dtypes: FLOATS }),
      }, false, false);
      const o = b.options('options', {
        window: b.num('window', b.int(1, minQ), opt(int(1, sh.lens.some((n) => n > 0) ? minQ : I32))),
        kernel: b.num('kernel', 2 * b.int(0, 2) + 1, opt((v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) % 2 === 1)),
        pool: b.choice('pool', ['avg', 'max'][b.int(0, 1)], ['avg', 'max']),
        ...(b.int(0, 1) ? { out: tok(b, sh, 'out', { role: 'out', optional: true, flexible: true }) } : {}),
        ...(asy ? asyncOpts(b) : {}),
      });
      return either(asy, kv.snapkvScoresBatched, kv.snapkvScoresBatchedAsync, q as never, c as never, o as never);
    },
  },
  {
    name: 'selectTokensBatched / selectTokensBatchedAsync',
    weight: 1.5,
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const mk: Mk = (n, s) => b.tensor(n, s);
      const seqs = table(b, sh, mk, { noData: true });  // no data tensor: page ids are not read
      const scores = tok(b, sh, 'scores');
      const k = b.int(0, 2);
      const fields: Record<string, unknown> = {
        budget: b.choice('budget', ['uniform', 'adaptive'][b.int(0, 1)], ['uniform', 'adaptive']),
        safeguard: b.num('safeguard', 0.2, opt(num(0, 1))),
        sinks: b.num('sinks', b.int(0, 3), opt(int(0, I32))),
        recent: b.num('recent', b.int(0, 3), opt(int(0, I32))),
        ...(asy ? asyncOpts(b) : {}),
      };
      if (k === 0) fields.keep = b.num('keep', b.int(1, 6), int(1, I32));
      else if (k === 1) fields.ratio = b.num('ratio', b.uniform() * 0.99, num(0, 1, { hi: true }));
      else fields.keep = b.tensor('keep', { dtype: 'i32', shape: [sh.B], fill: sh.lens.map((n) => (n ? b.int(1, n + 2) : b.int(0, 2))), hostile: [(v, pick) => {
        const ne = sh.lens.map((n, s) => (n ? s : -1)).filter((s) => s >= 0);
        if (!ne.length) return null;
        const s = pick(ne);
        v[s] = pick([0, -1, -(2 ** 31)]);
        return err(`keep[${s}] = ${v[s]} for a non-empty sequence`);
      }] });
      const o = b.options('options', fields, false);
      return either(asy, kv.selectTokensBatched, kv.selectTokensBatchedAsync, scores as never, seqs as never, o as never);
    },
  },
  {
    name: 'gatherKVBatched / gatherKVBatchedAsync',
    weight: 1.5,
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const c = cache(b, sh);
      const mk: Mk = (n, s) => b.tensor(n, s);
      const l = lists(b, sh, mk, { indices: 'indices', counts: 'counts' });
      const args: Record<string, unknown> = { cache: c, indices: l.indices, counts: l.countsT, ...(asy ? asyncOpts(b) : {}) };
      if (b.int(0, 2) === 0) args.cap = b.num('cap', l.cap, opt(int(1, I32)));
      if (b.int(0, 2) === 0 && sh.B) args.moments = momentParts(mk, sh.B * sh.H, sh.d, sh.dv);
      const a = b.options('args', args, false);
      return either(asy, kv.gatherKVBatched, kv.gatherKVBatchedAsync, a as never);
    },
  },
  {
    name: 'MomentState.mergeBatched / mergeBatchedAsync',
    covers: ['MomentState'],
    build(b) {
      const sh = shapeOf(b, 1), asy = b.int(0, 1) === 1;
      const c = cache(b, sh);
      const l = lists(b, sh, (n, s) => b.tensor(n, s), { indices: 'evictedIndices', counts: 'counts' });
      const st = kv.MomentState.create(sh.B * sh.H, sh.d, sh.dv);
      const o = b.options('options', asy ? asyncOpts(b) : {});
      return asy ? async () => st.mergeBatchedAsync(c as never, l.indices as never, l.countsT as never, o as never)
        : () => st.mergeBatched(c as never, l.indices as never, l.countsT as never, o as never);
    },
  },
  {
    name: 'decodeAttentionBatched / decodeAttentionBatchedAsync',
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const G = b.int(1, 2), T = b.int(0, 2);
      const mk: Mk = (n, s) => b.tensor(n, s);
      const c = cache(b, sh);
      const cnt = sh.lens.flatMap((n) => Array.from({ length: sh.H }, () => b.int(0, n)));
      const args: Record<string, unknown> = {
        queries: b.tensor('queries', { dtype: FLOATS[b.int(0, 2)], shape: T ? [sh.B, sh.H * G, T, sh.d] : [sh.B, sh.H * G, sh.d], dtypes: FLOATS, ranks: [3, 4] }),
        cache: c,
        counts: b.tensor('counts', { dtype: 'i32', shape: [sh.B, sh.H], fill: cnt, hostile: [(v, pick) => {
          if (!v.length) return null;
          const r = pick(v.map((_, i) => i));
          v[r] = pick([-1, sh.lens[Math.floor(r / sh.H)] + 1, I32]);
          return err(`counts entry ${r} = ${v[r]}`);
        }] }),
        order: b.num('order', b.int(0, 1), opt((v) => v === 0 || v === 1)),
        ...(asy ? asyncOpts(b) : {}),
      };
      if (b.int(0, 1) && sh.B) args.moments = momentParts(mk, sh.B * sh.H, sh.d, sh.dv, 'in');
      if (b.int(0, 2) === 0) args.clip = b.num('clip', 0.5, opt(num(0, Infinity)));
      const a = b.options('args', args, false);
      return either(asy, kv.decodeAttentionBatched, kv.decodeAttentionBatchedAsync, a as never);
    },
  },
  {
    name: 'momentkvSelectBatched / momentkvSelectBatchedAsync',
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const c = cache(b, sh);
      const args: Record<string, unknown> = {
        scores: tok(b, sh, 'scores', { fill: 'positive' }),
        cache: c,
        keep: b.num('keep', b.int(1, 6), int(1, I32)),
        rounds: b.num('rounds', b.int(1, 3), opt(int(1, 1 << 20))),
        r: b.num('r', b.int(0, 2), opt(int(0, 8))),
        ...(asy ? asyncOpts(b) : {}),
      };
      if (b.int(0, 2) === 0) args.evictedRound = true;
      const a = b.options('args', args, false);
      return either(asy, kv.momentkvSelectBatched, kv.momentkvSelectBatchedAsync, a as never);
    },
  },
  {
    name: 'grkvMergeBatched / grkvMergeBatchedAsync',
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const G = b.int(1, 2), Qs = b.int(1, 3);
      const c = cache(b, sh, { dtype: 'f32' });
      const l = lists(b, sh, (n, s) => b.tensor(n, s), { indices: 'selection.indices', counts: 'selection.counts' });
      const qlens = sh.lens.map((n) => (n ? b.int(1, Qs) : 0));
      const pos = new Array<number>(sh.B * Qs).fill(-5);
      sh.lens.forEach((n, s) => {
        for (let j = 0; j < qlens[s]; j++) pos[s * Qs + j] = b.int(0, n - 1);
      });
      const args: Record<string, unknown> = {
        cache: c,
        selection: b.options('selection', { indices: l.indices, counts: l.countsT }, false),
        queries: b.options('queries', {
          layout: 'padded',
          lengths: b.tensor('queries.lengths', { dtype: 'i32', shape: [sh.B], fill: qlens, optional: true }),
          queries: b.tensor('queries.queries', { dtype: 'f32', shape: [sh.B, sh.H * G, Qs, sh.d], dtypes: FLOATS }),
        }, false, false),
        queryPositions: b.tensor('queryPositions', { dtype: 'i32', shape: [sh.B, Qs], fill: pos, hostile: [(v, pick) => {
          const live = qlens.flatMap((m, s) => Array.from({ length: m }, (_, j) => s * Qs + j));
          if (!live.length) return null;
          const i = pick(live);
          v[i] = pick([-1, sh.lens[Math.floor(i / Qs)], I32]);
          return err(`queryPositions entry ${i} = ${v[i]}`);
        }] }),
        scores: tok(b, sh, 'scores', { fill: 'positive' }),
        window: b.num('window', b.int(0, 4), opt(int(0, I32))),
        cgIters: b.num('cgIters', b.int(0, 3), opt(int(0, 100000))),
        lambda: b.num('lambda', 0.01, opt(num(0, 1e30, { lo: true, hi: true }))),
        ...(asy ? asyncOpts(b) : {}),
      };
      if (b.int(0, 1)) args.diagnostics = true;
      const a = b.options('args', args, false);
      return either(asy, kv.grkvMergeBatched, kv.grkvMergeBatchedAsync, a as never);
    },
  },
  {
    name: 'compactInPlace / compactInPlaceAsync / compactPageTable',
    weight: 2,
    build(b) {
      const sh = shapeOf(b), asy = b.int(0, 1) === 1;
      const mk: Mk = (n, s) => b.tensor(n, s);
      const c = cache(b, sh, { written: true });
      const l = lists(b, sh, mk, { indices: 'indices', counts: 'counts' });
      const args: Record<string, unknown> = { cache: c, indices: l.indices, counts: l.countsT, ...(asy ? asyncOpts(b) : {}) };
      if (b.int(0, 2) === 0 && sh.B) args.moments = momentParts(mk, sh.B * sh.H, sh.d, sh.dv);
      const a = b.options('args', args, false);
      const table2 = sh.paged && b.int(0, 1) === 1;
      return async () => {
        const r = asy ? await kv.compactInPlaceAsync(a as never) : kv.compactInPlace(a as never);
        return table2 ? kv.compactPageTable(c as never, r) : r;
      };
    },
  },
  {
    name: 'compactPageTable (hostile result)',
    covers: ['compactPageTable'],
    build(b) {
      const sh = shapeOf(b);
      while (!sh.paged) sh.layout = LAYOUTS[b.int(2, 3)], sh.paged = true;
      const seqs = table(b, sh, (n, s) => b.tensor(n, s), { lax: true });
      const B = sh.B;
      const res = b.options('result', {
        counts: kv.tensor(new Int32Array(B * sh.H), [B, sh.H]), lengths: kv.tensor(new Int32Array(B), [B]),
        pageCounts: b.tensor('result.pageCounts', { dtype: 'i32', shape: [B], fill: sh.lens.map(() => 0), hostile: [(v) => {
          if (!B) return null;
          v[0] = 1 << 30;
          return err('pageCounts[0] = 2^30');
        }] }),
        lastPageLen: b.tensor('result.lastPageLen', { dtype: 'i32', shape: [B], fill: sh.lens.map(() => 0) }),
      }, false, false);
      return () => kv.compactPageTable(seqs as never, res as never);
    },
  },
  {
    name: 'TpSelection / tpSelectTokens',
    weight: 1.5,
    build(b) {
      const batched = b.int(0, 1) === 1;
      const sh = batched ? shapeOf(b) : undefined;
      const Hs = sh?.H ?? b.int(1, 3), N = b.int(0, 20);
      const shards = b.int(1, 2);
      const totalHeads = Hs * shards;
      const scores = sh ? tok(b, sh, 'scores') : b.tensor('scores', { dtype: 'f32', shape: [Hs, N] });
      const fields: Record<string, unknown> = {
        keep: b.num('keep', b.int(1, 8), int(1, I32)),
        safeguard: b.num('safeguard', 0.2, opt(num(0, 1))),
        sinks: b.num('sinks', b.int(0, 2), opt(int(0, I32))),
        recent: b.num('recent', b.int(0, 2), opt(int(0, I32))),
        headOffset: b.num('headOffset', Hs * b.int(0, shards - 1), int(0, totalHeads - Hs)),
        totalHeads: b.num('totalHeads', totalHeads, int(Hs, I32)),
        radixBits: b.num('radixBits', [4, 8, 16][b.int(0, 2)], opt((v) => v === 4 || v === 8 || v === 16)),
      };
      if (sh) fields.seqs = table(b, sh, (n, s) => b.tensor(n, s), { noData: true });
      if (b.int(0, 3) === 0) fields.cap = b.num('cap', 64, opt(int(1, I32)));
      const o = b.options('options', fields, false);
      // the other shard: a histogram of its own (every key below ours) or none; `sum` may be replaced by a wrong one
      const wrong = b.num('histSum', 'sum', (v) => v === 'sum', ['sum', 'allReduce']);
      const manual = b.int(0, 1) === 1;
      const reduce = (local: kv.Tensor) => {
        if (wrong !== 'sum') return wrong as never;
        return local;
      };
      if (!manual) return () => kv.tpSelectTokens(scores as never, o as never, reduce);
      return () => {
        const sel = new kv.TpSelection(scores as never, o as never);
        while (!sel.done) sel.advance(reduce(sel.histogram()));
        return sel.finish();
      };
    },
  },
  { name: 'nativeLibrary', weight: 0.2, build: () => () => kv.nativeLibrary() },
];

// ---------------- the addon's batched exports with raw descriptors ----------------
/** The abort argument of an `<op>Async` export: none, or an Int32Array cell (possibly set: the call is skipped). */
function abortCell(b: Builder): unknown {
  const c = new Int32Array(1);
  if (b.int(0, 4) === 0) c[0] = 1;
  return b.num('abort', b.int(0, 1) ? c : undefined, (v) => v === undefined || v === null || (v instanceof Int32Array && v.length >= 1));
}

/** Calls native[name] or, when `asy`, native[name + 'Async'] with an abort cell, awaited. */
export function nativeCall(b: Builder, name: string, asy: boolean, args: unknown[]): () => unknown {
  const n = native as unknown as Record<string, (...a: unknown[]) => unknown>;
  if (!asy) return () => n[name](...args);
  const abort = abortCell(b);
  return async () => n[`${name}Async`](...args, undefined, abort);  // the stream (default), then the abort cell
}

function rawBatch(b: Builder, o: { minB?: number; compact?: boolean; optional?: boolean; noData?: boolean; names?: string[] } = {}) {
  const sh = shapeOf(b, o.minB);
  const mk: Mk = (n, s) => b.raw(n, s);
  const seqs = b.options('seqs', table(b, sh, mk, { native: true, compact: o.compact, noData: o.noData }), o.optional ?? false, false, o.names);
  return { sh, mk, seqs };
}

function rawToken(b: Builder, sh: Shape, name: string, o: Partial<TensorSpec> = {}): unknown {
  return b.raw(name, { dtype: 'f32', shape: tokenShape(sh), ...o });
}

const nativeOpts = {
  nestedkv: (b: Builder) => b.options('opts', { window: b.num('window', 8, opt(int(1, I32))), block: b.num('block', 0, opt(int(0, I32))), prior: [0.4, 0.4, 0.2], beta: 3, tau: 0.6, kappa: 10, tail: 0.1, sinks: b.num('sinks', 2, opt(int(0, I32))), scales: 0 }, false, false),
  // with a keep tensor the scalar keep is not read
  select: (b: Builder, keep: number, tensor = false) => b.options('opts', { keep: b.num('keep', keep, tensor ? () => true : opt(int(1, I32))), budget: b.num('budget', b.int(0, 1), opt(int(0, 1))), safeguard: 0.2, sinks: b.num('sinks', 1, opt(int(0, I32))), recent: 1 }, false, false),
};

export const nativeBatchTargets: Target[] = [
  {
    name: 'native.keydiffScoresBatched / keydiffScoresBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b), asy = b.int(0, 1) === 1;
      const keys = mk('keys', { dtype: FLOATS[b.int(0, 2)], shape: dataShape(sh, sh.H, sh.d), dtypes: FLOATS });
      return nativeCall(b, 'keydiffScoresBatched', asy, [seqs, keys, rawToken(b, sh, 'out', { role: 'out', flexible: true })]);
    },
  },
  {
    name: 'native.nestedkvScoresBatched / nestedkvScoresBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b), asy = b.int(0, 1) === 1;
      const keys = mk('keys', { dtype: 'f32', shape: dataShape(sh, sh.H, sh.d), dtypes: FLOATS });
      return nativeCall(b, 'nestedkvScoresBatched', asy, [seqs, keys, nativeOpts.nestedkv(b), rawToken(b, sh, 'out', { role: 'out', flexible: true })]);
    },
  },
  {
    name: 'native.snapkvScoresBatched / snapkvScoresBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b), asy = b.int(0, 1) === 1;
      const Wq = b.int(1, 3);
      const keys = mk('keys', { dtype: 'bf16', shape: dataShape(sh, sh.H, sh.d), dtypes: FLOATS });
      const qseqs = b.options('qseqs', { layout: 1, pageSize: 0, lengths: mk('qseqs.lengths', { dtype: 'i32', shape: [sh.B], fill: sh.lens.map(() => Wq), optional: true }) }, false, false);
      const q = mk('queries', { dtype: 'f32', shape: [sh.B, sh.H, Wq, sh.d], dtypes: FLOATS });
      const o = b.options('opts', { window: b.num('window', 0, opt(int(0, Wq))), kernel: 1, pool: b.num('pool', 0, opt(int(0, 1))), scale: 0 }, false, false);
      return nativeCall(b, 'snapkvScoresBatched', asy, [seqs, keys, qseqs, q, o, rawToken(b, sh, 'out', { role: 'out', flexible: true })]);
    },
  },
  {
    name: 'native.selectTokensBatched / selectTokensBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b, { noData: true }), asy = b.int(0, 1) === 1;
      const keep = b.int(1, 6);
      const scores = rawToken(b, sh, 'scores');
      const keepT = b.int(0, 1) ? mk('keep', { dtype: 'i32', shape: [sh.B], fill: sh.lens.map(() => keep), optional: true }) : undefined;
      const cap = sh.H * Math.max(1, sh.maxN);  // >= any capacity of this batch
      const idx = mk('indices', { dtype: 'i32', shape: [sh.B, sh.H, cap], role: 'out', flexible: true });
      const cnt = mk('counts', { dtype: 'i32', shape: [sh.B, sh.H], role: 'out' });
      // the scalar keep is unread with a keep tensor or when every sequence is empty
      return nativeCall(b, 'selectTokensBatched', asy, [seqs, scores, nativeOpts.select(b, keep, keepT !== undefined || sh.maxN === 0), keepT, idx, cnt]);
    },
  },
  {
    name: 'native.gatherKVBatched / gatherKVBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b), asy = b.int(0, 1) === 1;
      const dtype = FLOATS[b.int(0, 2)];
      // a dtype of keys / values unlike their outputs' is reported on the output
      const keys = mk('keys', { dtype, shape: dataShape(sh, sh.H, sh.d), names: ['keysOut'] }), values = mk('values', { dtype, shape: dataShape(sh, sh.H, sh.dv), names: ['valuesOut'] });
      const l = lists(b, sh, mk, { indices: 'indices', counts: 'counts' });
      const ko = mk('keysOut', { dtype, shape: [sh.B, sh.H, l.cap, sh.d], role: 'out' }), vo = mk('valuesOut', { dtype, shape: [sh.B, sh.H, l.cap, sh.dv], role: 'out' });
      const co = mk('countsOut', { dtype: 'i32', shape: [sh.B, sh.H], role: 'out' });
      const m = b.int(0, 1) && sh.B ? momentParts(mk, sh.B * sh.H, sh.d, sh.dv) : undefined;
      return nativeCall(b, 'gatherKVBatched', asy, [seqs, keys, values, l.indices, l.countsT, ko, vo, co, m]);
    },
  },
  {
    name: 'native.momentsMergeBatched / momentsMergeBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b, { minB: 1 }), asy = b.int(0, 1) === 1;
      const keys = mk('keys', { dtype: 'f32', shape: dataShape(sh, sh.H, sh.d), dtypes: FLOATS }), values = mk('values', { dtype: 'f16', shape: dataShape(sh, sh.H, sh.dv), dtypes: FLOATS });
      const l = lists(b, sh, mk, { indices: 'evictedIndices', counts: 'counts' });
      return nativeCall(b, 'momentsMergeBatched', asy, [seqs, keys, values, l.indices, l.countsT, momentParts(mk, sh.B * sh.H, sh.d, sh.dv)]);
    },
  },
  {
    name: 'native.decodeAttentionBatched / decodeAttentionBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b), asy = b.int(0, 1) === 1;
      // the values must have the keys' dtype: a keys dtype change may be reported on the values
      const keys = mk('keys', { dtype: 'f32', shape: dataShape(sh, sh.H, sh.d), names: ['values'] }), values = mk('values', { dtype: 'f32', shape: dataShape(sh, sh.H, sh.dv) });
      const q = mk('queries', { dtype: 'f32', shape: [sh.B, sh.H, sh.d], ranks: [3, 4], dtypes: FLOATS });
      const cnt = mk('counts', { dtype: 'i32', shape: [sh.B, sh.H], fill: sh.lens.flatMap((n) => Array.from({ length: sh.H }, () => n)), hostile: [(v, pick) => {
        // a count outside [0, n_b] of its sequence
        if (!v.length) return null;
        const r = pick(v.map((_, i) => i));
        v[r] = pick([-1, sh.lens[Math.floor(r / sh.H)] + 1, I32]);
        return err(`counts entry ${r} = ${v[r]}`);
      }] });
      const clip = b.int(0, 2) === 0 ? mk('clip', { dtype: 'f32', shape: [sh.B * sh.H], fill: 'positive', optional: true }) : undefined;
      const o = b.options('opts', { order: b.num('order', 1, opt(int(0, 1))), scale: 0, useClip: clip ? 1 : 0, clip: 1 }, false, false);
      const out = mk('out', { dtype: 'f32', shape: [sh.B, sh.H, sh.dv], role: 'out' });
      return nativeCall(b, 'decodeAttentionBatched', asy, [seqs, q, keys, values, cnt, undefined, clip, o, out]);
    },
  },
  {
    name: 'native.momentkvSelectBatched / momentkvSelectBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b, { minB: 1 }), asy = b.int(0, 1) === 1;
      const keep = b.int(1, 6);
      const scores = rawToken(b, sh, 'scores', { fill: 'positive' });
      const keys = mk('keys', { dtype: 'f32', shape: dataShape(sh, sh.H, sh.d), dtypes: FLOATS }), values = mk('values', { dtype: 'f32', shape: dataShape(sh, sh.H, sh.dv), dtypes: FLOATS });
      // keep is read only for non-empty sequences
      const o = b.options('opts', { keep: b.num('keep', keep, sh.maxN === 0 ? () => true : opt(int(1, I32))), rounds: b.num('rounds', 2, opt(int(1, 1 << 20))), r: 1, mi: 0, eps: 0.05 }, false, false);
      // capacity min(keep, longest sequence): keep is clamped to each sequence's length
      const idx = mk('indices', { dtype: 'i32', shape: [sh.B, sh.H, Math.min(keep, sh.maxN)], role: 'out' }), cnt = mk('counts', { dtype: 'i32', shape: [sh.B, sh.H], role: 'out' });
      const m = momentParts(mk, sh.B * sh.H, sh.d, sh.dv);
      const er = b.int(0, 1) ? rawToken(b, sh, 'evictedRound', { dtype: 'i32', role: 'out', optional: true }) : undefined;
      return nativeCall(b, 'momentkvSelectBatched', asy, [seqs, scores, keys, values, o, undefined, idx, cnt, m, er]);
    },
  },
  {
    name: 'native.grkvMergeBatched / grkvMergeBatchedAsync',
    build(b) {
      const { sh, mk, seqs } = rawBatch(b), asy = b.int(0, 1) === 1;
      const Qs = b.int(1, 2);
      const keys = mk('keys', { dtype: 'f32', shape: dataShape(sh, sh.H, sh.d), names: ['values'] }), values = mk('values', { dtype: 'f32', shape: dataShape(sh, sh.H, sh.d) });
      const l = lists(b, sh, mk, { indices: 'indices', counts: 'counts' });
      const qlens = sh.lens.map((n) => (n ? Qs : 0));
      const qseqs = b.options('qseqs', { layout: 1, pageSize: 0, lengths: mk('qseqs.lengths', { dtype: 'i32', shape: [sh.B], fill: qlens, optional: true }) }, false, false);
      const q = mk('queries', { dtype: 'f32', shape: [sh.B, sh.H, Qs, sh.d], dtypes: FLOATS });
      const qp = mk('queryPositions', { dtype: 'i32', shape: [sh.B, Qs], fill: sh.lens.flatMap((n) => Array.from({ length: Qs }, () => Math.max(0, n - 1))) });
      const sc = rawToken(b, sh, 'scores', { fill: 'positive' });
      const o = b.options('opts', { window: 2, gamma: 0.1, lambda: b.num('lambda', 0.01, opt(num(0, 1e30, { lo: true, hi: true }))), capKey: 0.025, capValue: 0.1, cgIters: b.num('cgIters', 2, opt(int(0, 100000))), tol: 1e-6, scale: 0, accept: 0 }, false, false);
      const ko = mk('keysOut', { dtype: 'f32', shape: [sh.B, sh.H, l.cap, sh.d], role: 'out' }), vo = mk('valuesOut', { dtype: 'f32', shape: [sh.B, sh.H, l.cap, sh.d], role: 'out' });
      const co = mk('countsOut', { dtype: 'i32', shape: [sh.B, sh.H], role: 'out' });
      return nativeCall(b, 'grkvMergeBatched', asy, [seqs, keys, values, l.indices, l.countsT, qseqs, q, qp, undefined, sc, o, ko, vo, co, undefined]);
    },
  },
  {
    name: 'native.compactInPlace / compactInPlaceAsync',
    weight: 2,
    build(b) {
      const { sh, mk, seqs } = rawBatch(b, { compact: true }), asy = b.int(0, 1) === 1;
      const dtype = FLOATS[b.int(0, 2)];
      const keys = mk('keys', { dtype, shape: dataShape(sh, sh.H, sh.d), role: 'out', dtypes: FLOATS, flexible: true }), values = mk('values', { dtype, shape: dataShape(sh, sh.H, sh.dv), role: 'out', dtypes: FLOATS, flexible: true });
      const l = lists(b, sh, mk, { indices: 'indices', counts: 'counts' });
      const m = b.int(0, 2) === 0 && sh.B ? momentParts(mk, sh.B * sh.H, sh.d, sh.dv) : undefined;
      const F = sh.paged ? sh.pages.flat().length + 2 : 0;
      const outs = b.options('outputs', {
        lengths: mk('lengths', { dtype: 'i32', shape: [sh.B], role: 'out', optional: true }),
        ...(sh.paged ? {
          pageCounts: mk('pageCounts', { dtype: 'i32', shape: [sh.B], role: 'out', optional: true }),
          lastPageLen: mk('lastPageLen', { dtype: 'i32', shape: [sh.B], role: 'out', optional: true }),
          freed: mk('freed', { dtype: 'i32', shape: [F], role: 'out', optional: true, flexible: true }),
          freedCount: mk('freedCount', { dtype: 'i32', shape: [1], role: 'out', optional: true }),
        } : {}),
      }, false, false);
      return nativeCall(b, 'compactInPlace', asy, [seqs, keys, values, l.indices, l.countsT, m, outs]);
    },
  },
  {
    name: 'native.tpSelectBegin / tpSelectHistogram / tpSelectAdvance / tpSelectFinish / tpSelectRounds / tpSelectStateWords',
    weight: 1.5,
    build(b) {
      const batched = b.int(0, 1) === 1;
      // without a table the problem is one sequence (B = 1): the state or the scores then disagree with it
      const r = batched ? rawBatch(b, { optional: true, noData: true, names: ['state', 'scores'] }) : undefined;
      const sh = r?.sh;
      const mk: Mk = (n, s) => b.raw(n, s);
      const Hs = sh?.H ?? b.int(1, 2), N = b.int(0, 12), B = sh?.B ?? 1;
      // an omitted radixBits is the addon's default (8): valid or not depending on the histogram given
      const bits = b.num('radixBits', [4, 8, 16][b.int(0, 2)], (v) => v === undefined || v === 4 || v === 8 || v === 16) as number;
      const words = 8 + 2 * Hs;
      // a state as begin leaves it (round 0), or as a hostile caller hands it over
      const stateFill = Array.from({ length: B * words }, () => 0);
      const problem = b.options('problem', {
        ...(r ? { seqs: r.seqs } : {}),
        scores: sh ? rawToken(b, sh, 'scores') : mk('scores', { dtype: 'f32', shape: [Hs, N] }),
        // keep is read only for non-empty sequences
        select: b.options('select', { keep: b.num('keep', b.int(1, 5), (sh ? sh.maxN : N) === 0 ? () => true : opt(int(1, I32))), safeguard: 0.2, sinks: 1, recent: 1 }, false, false),
        headOffset: b.num('headOffset', 0, opt(int(0, 0))),
        totalHeads: b.num('totalHeads', Hs, opt(int(Hs, I32))),
        radixBits: bits,
        state: mk('state', { dtype: 'i32', shape: [B, words], role: 'out', fill: stateFill, hostile: [(v, pick) => {
          // a state out of protocol order or with a forged pivot / remaining count
          const w = pick([0, 1, 2, 3, 4, 8, 9]);
          for (let s = 0; s < B; s++) v[s * words + w] = pick([-1, 1, I32, -(2 ** 31), 3]);
          return any(`state word ${w} forged`);
        }] }),
      }, false, false);
      const step = b.int(0, 3);
      const valid = bits === 4 || bits === 8 || bits === 16;
      const rounds = valid ? 64 / bits : 8;
      const hist = step > 0 ? mk('hist', { dtype: 'i32', shape: [B, 2 ** (valid ? bits : 8)], role: 'out' }) : undefined;
      const idx = step === 3 ? mk('indices', { dtype: 'i32', shape: [B, Hs, Math.max(1, Hs * Math.max(N, sh?.maxN ?? 0))].slice(batched ? 0 : 1), role: 'out', flexible: true }) : undefined;
      const cnt = step === 3 ? mk('counts', { dtype: 'i32', shape: [B, Hs].slice(batched ? 0 : 1), role: 'out' }) : undefined;
      const round = step === 1 || step === 2 ? b.num('round', 0, (v) => v === 0) : 0;
      const sw = b.num('shardHeads', Hs, () => true);
      return () => {
        native.tpSelectStateWords(sw as never);
        native.tpSelectBegin(problem as never);
        if (step === 0) return;
        if (step === 1) return native.tpSelectHistogram(problem as never, round as never, hist as never);
        if (step === 2) {
          native.tpSelectHistogram(problem as never, round as never, hist as never);
          return native.tpSelectAdvance(problem as never, round as never, hist as never);
        }
        for (let k = 0; k < rounds; k++) {
          native.tpSelectHistogram(problem as never, k, hist as never);
          native.tpSelectAdvance(problem as never, k, hist as never);
        }
        return native.tpSelectFinish(problem as never, idx as never, cnt as never);
      };
    },
  },
];

void F32_MAX;
