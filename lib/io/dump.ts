/**
 * Loading users' own KV-cache dumps (for `kvtrim eval`), and saving a trace in the same format.
 *
 * Two containers are accepted:
 *
 *  1. a directory of `.npy` files, one set per layer, layers l = 0..L−1 contiguous:
 *       k_{l}.npy     keys       [Hkv, N, d]   (post-RoPE, as cached)
 *       v_{l}.npy     values     [Hkv, N, dv]
 *       q_{l}.npy     queries    [Hq, T, d]    optional, for all layers or none: post-RoPE queries
 *       qpos_{l}.npy  positions  [T] i32/i64   optional (with q, for all layers or none): the
 *                                              position of each query
 *  2. one `.safetensors` file with tensors `layers.{l}.k`, `layers.{l}.v` and optionally
 *     `layers.{l}.q` and `layers.{l}.qpos` (I32/I64), same shapes. Other tensors are ignored.
 *
 * Query positions. With qpos, query t of every head sits at position qpos[t]: integers, strictly
 * increasing, ≥ 0; positions ≥ N are a continuation (queries of tokens after the cached prompt,
 * whose keys are not in the dump) and must be N, N+1, … without gaps, so every position is
 * < N + (the number of continuation queries). Without qpos the positions follow a convention:
 * `{ queries: 'last' }` (the default) — q holds the last T prompt positions N−T..N−1; or
 * `{ queries: 'all-positions' }` — q holds every position 0..T−1 (T ≥ N; T > N adds a
 * continuation). A declared convention must agree with qpos when both are given.
 *
 * With `{ layout: 'nhd' }` the files hold `[N, Hkv, d]` / `[T, Hq, d]` instead (the layout of
 * caches that store heads innermost, e.g. vLLM/FlashAttention `[tokens, heads, dim]`); they are
 * transposed to `[Hkv, N, d]` / `[Hq, T, d]` on load.
 *
 * Element types: f32 as is; f64 rounded to f32; f16 and bf16 converted exactly (every f16 and
 * bf16 value is representable in f32). Raw 16-bit integer npy arrays need `{ u16: 'bf16' | 'f16' }`.
 * Every problem (missing or extra files, gaps in the layer numbering, shape mismatches between K, V
 * and Q, Hq not a multiple of Hkv, unsupported dtypes, NaN/Inf values, malformed files) raises an
 * `Error` whose message names the file (and tensor) and what was expected.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FormatError, NpyArray, NpyData, readNpy, writeNpy } from './npy';
import { openSafetensors, SafetensorsTensor, writeSafetensors, WriteTensor } from './safetensors';
import type { Trace } from '../trace';
import { f16ArrayToF32, bf16ArrayToF32, f32ToF16, f32ToBf16 } from '../half';
import { checkKeys, checkOptions, show } from '../validate';

export interface DumpLayer {
  /** [Hkv, N, d] */
  keys: Float32Array;
  /** [Hkv, N, dv] */
  values: Float32Array;
  /** [Hq, T, d] post-RoPE queries, when the dump has them */
  queries?: Float32Array;
  /** [T] the position of each query (from qpos, or the convention of `LoadDumpOptions.queries`) */
  positions?: Int32Array;
  Hkv: number;
  N: number;
  d: number;
  dv: number;
  Hq?: number;
  T?: number;
}

export interface Dump {
  layers: DumpLayer[];
  /** the path given to loadDump */
  source: string;
  format: 'npy' | 'safetensors';
  /** where the query positions came from: the dump's qpos, or a convention (absent without queries) */
  queries?: 'qpos' | QueryConvention;
}

/** How to place queries without qpos: the last T prompt positions, or every position 0..T−1. */
export type QueryConvention = 'last' | 'all-positions';

export interface LoadDumpOptions {
  /** 'hnd' (default): [H, N, d]; 'nhd': [N, H, d], transposed on load */
  layout?: 'hnd' | 'nhd';
  /** how to read raw 16-bit integer .npy arrays ('<u2'/'<i2'): as bfloat16 or float16 bits */
  u16?: 'bf16' | 'f16';
  /** accept NaN/Inf values instead of rejecting the dump (default false) */
  allowNonFinite?: boolean;
  /** the positions of queries without qpos (default 'last'); checked against qpos when both are given */
  queries?: QueryConvention;
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

interface RawTensor {
  name: string; // file or tensor name, for messages
  dtype: string;
  shape: number[];
  data: NpyData;
}

type Kind = 'k' | 'v' | 'q' | 'qpos';
type LayerSet = { k: RawTensor; v: RawTensor; q?: RawTensor; qpos?: RawTensor };

function toF32(t: RawTensor): Float32Array {
  switch (t.dtype) {
    case 'f32':
    case 'F32':
      return t.data as Float32Array;
    case 'f64':
    case 'F64':
      return Float32Array.from(t.data as Float64Array);
    case 'f16':
    case 'F16':
      return f16ArrayToF32(t.data as Uint16Array);
    case 'bf16':
    case 'BF16':
      return bf16ArrayToF32(t.data as Uint16Array);
    default:
      throw new FormatError(`${t.name}: unsupported dtype ${t.dtype} (keys, values and queries are floating point)`);
  }
}

/** [A, B, C] → [B, A, C] */
function swap01(src: Float32Array, A: number, B: number, C: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let a = 0; a < A; a++) {
    for (let b = 0; b < B; b++) {
      const so = (a * B + b) * C, to = (b * A + a) * C;
      for (let c = 0; c < C; c++) out[to + c] = src[so + c];
    }
  }
  return out;
}

/** Load a dump directory or `.safetensors` file (see the module comment for the format). */
export function loadDump(p: string, opts: LoadDumpOptions = {}): Dump {
  if (typeof p !== 'string' || p === '') throw new TypeError(`loadDump: path must be a non-empty string, got ${show(p)}`);
  const given = checkOptions('loadDump: options', opts);
  checkKeys('loadDump: options', given, ['layout', 'u16', 'allowNonFinite', 'queries']);
  for (const [k, v] of Object.entries(given)) if (v === null) throw new TypeError(`loadDump: ${k} is null (omit the option for its default)`);
  const layout = opts.layout ?? 'hnd';
  if (layout !== 'hnd' && layout !== 'nhd') throw new TypeError(`loadDump: layout must be 'hnd' or 'nhd', got ${JSON.stringify(layout)}`);
  if (opts.queries !== undefined && opts.queries !== 'last' && opts.queries !== 'all-positions') {
    throw new TypeError(`loadDump: queries must be 'last' or 'all-positions', got ${JSON.stringify(opts.queries)}`);
  }
  if (opts.u16 !== undefined && opts.u16 !== 'bf16' && opts.u16 !== 'f16') {
    throw new TypeError(`loadDump: u16 must be 'bf16' or 'f16', got ${JSON.stringify(opts.u16)}`);
  }
  if (opts.allowNonFinite !== undefined && typeof opts.allowNonFinite !== 'boolean') {
    throw new TypeError(`loadDump: allowNonFinite must be a boolean, got ${show(opts.allowNonFinite)}`);
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `loadDump: ${p}: no such file or directory` : `loadDump: ${p}: ${(e as Error).message}`);
  }
  let sets: LayerSet[];
  let format: Dump['format'];
  if (st.isDirectory()) {
    sets = readNpyDir(p, opts);
    format = 'npy';
  } else {
    if (p.endsWith('.npy')) {
      throw new Error(`loadDump: ${p} is a single .npy file; pass the directory that holds k_{l}.npy, v_{l}.npy (and q_{l}.npy)`);
    }
    sets = readSafetensorsDump(p);
    format = 'safetensors';
  }
  const layers = sets.map((s, l) => buildLayer(s, l, layout, opts.allowNonFinite ?? false, opts.queries));
  const queries = !sets[0].q ? undefined : sets[0].qpos ? 'qpos' : opts.queries ?? 'last';
  return { layers, source: p, format, ...(queries ? { queries } : {}) };
}

function readNpyDir(dir: string, opts: LoadDumpOptions): LayerSet[] {
  const names = fs.readdirSync(dir);
  const found: Record<Kind, Map<number, string>> = { k: new Map(), v: new Map(), q: new Map(), qpos: new Map() };
  for (const n of names) {
    const m = /^(k|v|q|qpos)_(\d+)\.npy$/.exec(n);
    if (m) found[m[1] as Kind].set(Number(m[2]), n);
  }
  if (found.k.size === 0) {
    const npys = names.filter((n) => n.endsWith('.npy')).slice(0, 8);
    throw new Error(
      `loadDump: ${dir}: no k_0.npy; a dump directory holds k_{l}.npy and v_{l}.npy (and optionally q_{l}.npy) ` +
        `for layers l = 0..L-1` + (npys.length ? ` (found: ${npys.join(', ')})` : ' (no .npy files found)'),
    );
  }
  const L = checkLayers(found, (kind, l) => `${kind}_${l}.npy`, dir);
  const read = (file: string, integers = false): RawTensor => {
    const full = path.join(dir, file);
    const a: NpyArray = readNpy(fs.readFileSync(full), { source: full, u16: opts.u16, integers });
    return { name: full, dtype: a.dtype, shape: a.shape, data: a.data };
  };
  const out: LayerSet[] = [];
  for (let l = 0; l < L; l++) {
    out.push({
      k: read(`k_${l}.npy`),
      v: read(`v_${l}.npy`),
      q: found.q.size ? read(`q_${l}.npy`) : undefined,
      qpos: found.qpos.size ? read(`qpos_${l}.npy`, true) : undefined,
    });
  }
  return out;
}

function readSafetensorsDump(file: string): LayerSet[] {
  // read the header, then only the tensors the dump uses, one at a time (files may exceed 2 GiB)
  const st = openSafetensors(file);
  try {
    return readSafetensorsLayers(file, st);
  } finally {
    st.close();
  }
}

function readSafetensorsLayers(file: string, st: ReturnType<typeof openSafetensors>): LayerSet[] {
  const names = st.header.entries.map((e) => e.name);
  const found: Record<Kind, Map<number, string>> = { k: new Map(), v: new Map(), q: new Map(), qpos: new Map() };
  for (const n of names) {
    const m = /^layers\.(\d+)\.(k|v|q|qpos)$/.exec(n);
    if (m) found[m[2] as Kind].set(Number(m[1]), n);
  }
  if (found.k.size === 0) {
    const some = names.slice(0, 8);
    throw new Error(
      `loadDump: ${file}: no tensor 'layers.0.k'; a safetensors dump holds 'layers.{l}.k', 'layers.{l}.v' ` +
        `(and optionally 'layers.{l}.q') for layers l = 0..L-1` + (some.length ? ` (found: ${some.join(', ')})` : ' (the file has no tensors)'),
    );
  }
  const L = checkLayers(found, (kind, l) => `layers.${l}.${kind}`, file);
  const get = (name: string): RawTensor => {
    const t: SafetensorsTensor = st.read(name);
    return { name: `${file}: tensor '${name}'`, dtype: t.dtype, shape: t.shape, data: t.data };
  };
  const out: LayerSet[] = [];
  for (let l = 0; l < L; l++) {
    out.push({
      k: get(`layers.${l}.k`),
      v: get(`layers.${l}.v`),
      q: found.q.size ? get(`layers.${l}.q`) : undefined,
      qpos: found.qpos.size ? get(`layers.${l}.qpos`) : undefined,
    });
  }
  return out;
}

/** Check that layers 0..L−1 each have k and v (and q, and qpos, for all or none; qpos only with q); returns L. */
function checkLayers(found: Record<Kind, Map<number, string>>, name: (kind: string, l: number) => string, where: string): number {
  const { k, v, q, qpos } = found;
  const L = Math.max(...k.keys()) + 1;
  const missing = (m: Map<number, string>): number[] => Array.from({ length: L }, (_, l) => l).filter((l) => !m.has(l));
  const mk = missing(k);
  if (mk.length) {
    throw new Error(
      `loadDump: ${where}: layers are not contiguous: found ${[...k.keys()].sort((a, b) => a - b).map((l) => name('k', l)).join(', ')} ` +
        `but not ${mk.map((l) => name('k', l)).join(', ')} (layers must be numbered 0..L-1)`,
    );
  }
  const mv = missing(v);
  if (mv.length) throw new Error(`loadDump: ${where}: missing ${mv.map((l) => name('v', l)).join(', ')} (every ${name('k', 0).replace('0', '{l}')} needs its values)`);
  const extra = (m: Map<number, string>, kind: string): void => {
    const ex = [...m.keys()].filter((l) => l >= L).sort((a, b) => a - b);
    if (ex.length) throw new Error(`loadDump: ${where}: ${ex.map((l) => name(kind, l)).join(', ')} without ${ex.map((l) => name('k', l)).join(', ')}`);
  };
  extra(v, 'v');
  if (q.size) {
    extra(q, 'q');
    const mq = missing(q);
    if (mq.length) {
      throw new Error(`loadDump: ${where}: queries are given for some layers but ${mq.map((l) => name('q', l)).join(', ')} is missing (give q for every layer or none)`);
    }
  }
  if (qpos.size) {
    if (!q.size) throw new Error(`loadDump: ${where}: ${name('qpos', [...qpos.keys()][0])} gives query positions but the dump has no queries (${name('q', 0)})`);
    extra(qpos, 'qpos');
    const mp = missing(qpos);
    if (mp.length) {
      throw new Error(`loadDump: ${where}: query positions are given for some layers but ${mp.map((l) => name('qpos', l)).join(', ')} is missing (give qpos for every layer or none)`);
    }
  }
  return L;
}

function buildLayer(s: LayerSet, l: number, layout: 'hnd' | 'nhd', allowNonFinite: boolean, convention: QueryConvention | undefined): DumpLayer {
  const dims = layout === 'hnd' ? '[Hkv, N, d]' : '[N, Hkv, d]';
  const rank3 = (t: RawTensor, what: string): number[] => {
    if (t.shape.length !== 3) {
      throw new FormatError(`${t.name}: ${what} must have 3 dimensions ${what === 'queries' ? dims.replace('Hkv', 'Hq').replace('N', 'T') : dims}, got [${t.shape.join(', ')}]`);
    }
    if (t.shape.some((x) => x === 0)) throw new FormatError(`${t.name}: ${what} are empty (shape [${t.shape.join(', ')}])`);
    return layout === 'hnd' ? t.shape : [t.shape[1], t.shape[0], t.shape[2]];
  };
  const [Hkv, N, d] = rank3(s.k, 'keys');
  const [Hv, Nv, dv] = rank3(s.v, 'values');
  if (Hv !== Hkv || Nv !== N) {
    throw new FormatError(
      `layer ${l}: keys ${s.k.name} are [${s.k.shape.join(', ')}] but values ${s.v.name} are [${s.v.shape.join(', ')}]: ` +
        `the head count and token count must match (layout '${layout}', ${dims})`,
    );
  }
  const fix = (t: RawTensor, A: number, B: number, C: number): Float32Array => {
    const f = toF32(t);
    const out = layout === 'nhd' ? swap01(f, B, A, C) : f;
    if (!allowNonFinite) {
      for (let i = 0; i < out.length; i++) {
        if (!Number.isFinite(out[i])) {
          const c = i % C, r = (i - c) / C, b = r % B, a = (r - b) / B;
          throw new FormatError(`${t.name}: non-finite value ${out[i]} at [head ${a}, position ${b}, channel ${c}] (pass allowNonFinite to accept)`);
        }
      }
    }
    return out;
  };
  const layer: DumpLayer = { keys: fix(s.k, Hkv, N, d), values: fix(s.v, Hkv, N, dv), Hkv, N, d, dv };
  if (s.q) {
    const [Hq, T, dq] = rank3(s.q, 'queries');
    if (dq !== d) throw new FormatError(`layer ${l}: queries ${s.q.name} have head dimension ${dq} but keys have ${d}`);
    if (Hq % Hkv !== 0) {
      throw new FormatError(`layer ${l}: ${Hq} query heads in ${s.q.name} is not a multiple of the ${Hkv} KV heads (GQA needs Hq % Hkv == 0)`);
    }
    layer.positions = queryPositions(s, l, T, N, convention);
    layer.queries = fix(s.q, Hq, T, d);
    layer.Hq = Hq;
    layer.T = T;
  }
  return layer;
}

/** The positions of the T queries of layer l: qpos validated, or the convention's. */
function queryPositions(s: LayerSet, l: number, T: number, N: number, convention: QueryConvention | undefined): Int32Array {
  const q = s.q as RawTensor;
  const byConvention = (c: QueryConvention): Int32Array => Int32Array.from({ length: T }, (_, t) => (c === 'last' ? N - T + t : t));
  if (!s.qpos) {
    const c = convention ?? 'last';
    if (c === 'last' && T > N) {
      throw new FormatError(
        `layer ${l}: ${T} queries in ${q.name} but only ${N} cached tokens: without positions, q holds the last T prompt positions ` +
          `N−T..N−1; give qpos (${qposName(q.name)}), or declare queries 'all-positions' (q holds every position 0..T−1, T ≥ N)`,
      );
    }
    if (c === 'all-positions' && T < N) {
      throw new FormatError(`layer ${l}: queries 'all-positions' needs q to hold every position 0..N−1 = 0..${N - 1}, but ${q.name} holds ${T} queries`);
    }
    return byConvention(c);
  }
  const p = s.qpos;
  if (p.dtype !== 'i32' && p.dtype !== 'i64' && p.dtype !== 'I32' && p.dtype !== 'I64') {
    throw new FormatError(`${p.name}: query positions must be integers (i32 or i64), got dtype ${p.dtype}`);
  }
  if (p.shape.length !== 1 || p.shape[0] !== T) {
    throw new FormatError(`${p.name}: query positions must have shape [T] = [${T}] (one per query of ${q.name}), got [${p.shape.join(', ')}]`);
  }
  let cont = 0;
  for (let t = 0; t < T; t++) if (p.data[t] >= N) cont++;
  const limit = N + cont;
  const out = new Int32Array(T);
  for (let t = 0; t < T; t++) {
    const x = Number(p.data[t]);
    if (!(x >= 0 && x < limit)) {
      throw new FormatError(
        `${p.name}: position ${x} of query ${t} is outside [0, ${limit}): positions are < N = ${N} (the cached prompt) or continue it ` +
          `without gaps (${cont} continuation ${cont === 1 ? 'query' : 'queries'} at positions ≥ N)`,
      );
    }
    if (t > 0 && !(x > out[t - 1])) {
      throw new FormatError(`${p.name}: query positions must be strictly increasing, but query ${t} is at ${x} after ${out[t - 1]}`);
    }
    out[t] = x;
  }
  if (convention !== undefined) {
    const want = byConvention(convention);
    const t = want.findIndex((x, i) => x !== out[i]);
    if (t >= 0) {
      throw new FormatError(`${p.name}: query ${t} is at position ${out[t]}, but queries '${convention}' puts it at ${want[t]} (drop the declaration or fix qpos)`);
    }
  }
  return out;
}

/** The qpos file or tensor that would go with a q file or tensor name (for messages). */
function qposName(qName: string): string {
  return qName.replace(/q_(\d+)\.npy$/, 'qpos_$1.npy').replace(/'layers\.(\d+)\.q'$/, "'layers.$1.qpos'");
}

// ---------------------------------------------------------------------------------------------
// Saving
// ---------------------------------------------------------------------------------------------

export interface SaveDumpOptions {
  /** element type of the written tensors (default 'f32'; f16/bf16 round to nearest even) */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** 'hnd' (default) or 'nhd' */
  layout?: 'hnd' | 'nhd';
}

/**
 * Write a trace as a dump that `loadDump` (and NumPy / safetensors users) can read: a directory of
 * `k_{l}.npy`, `v_{l}.npy`, `q_{l}.npy` (the observation-window queries) and `qpos_{l}.npy` (their
 * positions N−W..N−1), or, when `target` ends in `.safetensors`, one file with
 * `layers.{l}.k|v|q|qpos` (and the trace options in `__metadata__`). The trace's held-out decode
 * queries (W alternatives all at position N) are not part of the dump. Returns the written paths.
 */
export function saveTraceAsDump(trace: Trace, target: string, opts: SaveDumpOptions = {}): string[] {
  const dtype = opts.dtype ?? 'f32';
  const layout = opts.layout ?? 'hnd';
  const { Hkv, Hq, N, d, dv, W } = trace;
  const conv = (a: Float32Array, A: number, B: number, C: number): Float32Array | Uint16Array => {
    const src = layout === 'nhd' ? swap01(a, A, B, C) : a;
    if (dtype === 'f32') return src;
    const f = dtype === 'f16' ? f32ToF16 : f32ToBf16;
    const out = new Uint16Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = f(src[i]);
    return out;
  };
  const shape = (A: number, B: number, C: number): number[] => (layout === 'nhd' ? [B, A, C] : [A, B, C]);
  const layerTensors = trace.layers.map((L) => ({
    k: { data: conv(L.keys, Hkv, N, d), shape: shape(Hkv, N, d) },
    v: { data: conv(L.values, Hkv, N, dv), shape: shape(Hkv, N, dv) },
    q: { data: conv(L.windowQueries, Hq, W, d), shape: shape(Hq, W, d) },
  }));
  const qpos = Int32Array.from({ length: W }, (_, t) => N - W + t);
  if (target.endsWith('.safetensors')) {
    const st = dtype === 'f16' ? 'F16' : dtype === 'bf16' ? 'BF16' : 'F32';
    const m = new Map<string, WriteTensor>();
    layerTensors.forEach((t, l) => {
      for (const kind of ['k', 'v', 'q'] as const) m.set(`layers.${l}.${kind}`, { dtype: st, shape: t[kind].shape, data: t[kind].data });
      m.set(`layers.${l}.qpos`, { shape: [W], data: qpos });
    });
    fs.mkdirSync(path.dirname(path.resolve(target)), { recursive: true });
    fs.writeFileSync(target, writeSafetensors(m, { generator: 'kvtrim trace', layout, options: JSON.stringify(trace.options) }));
    return [target];
  }
  fs.mkdirSync(target, { recursive: true });
  const written: string[] = [];
  layerTensors.forEach((t, l) => {
    for (const kind of ['k', 'v', 'q'] as const) {
      const file = path.join(target, `${kind}_${l}.npy`);
      const data = t[kind].data;
      fs.writeFileSync(file, writeNpy(data, t[kind].shape, data instanceof Uint16Array ? { dtype: dtype as 'f16' | 'bf16' } : {}));
      written.push(file);
    }
    const file = path.join(target, `qpos_${l}.npy`);
    fs.writeFileSync(file, writeNpy(qpos, [W]));
    written.push(file);
  });
  return written;
}
