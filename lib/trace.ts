/**
 * Built-in, deterministic, LLM-like KV-cache trace.
 *
 * `generateTrace()` returns, per layer, post-RoPE keys and values `[Hkv, N, d]`, the post-RoPE
 * queries of the SnapKV observation window `[Hq, W, d]`, held-out decode queries `[Hq, T, d]` at
 * position N (never shown to a compression method) with their kind and needle target, and the raw
 * queries at the GRKV stratified positions re-rotated to position N−1. The structure mirrors what is
 * observed in real caches (see docs/trace.md for every property, how it is built and why):
 *
 *  - keys share a per-head bias direction and carry 2–4 massive channels (low-frequency RoPE dims);
 *  - token 0 is an attention sink (distinct key in the lowest-frequency RoPE pairs, tiny value);
 *  - the context is cut into topic segments whose keys share a segment direction and whose values
 *    share mutually orthogonal segment value directions;
 *  - keys and values drift smoothly (AR(1)) and a constant high-frequency key component gives a
 *    RoPE recency kernel, so queries attend locally;
 *  - needles: distinctive keys with distinctive values, retrieved by needle queries;
 *  - heads and layers have different strengths (bias, sink share, sharpness, needle positions).
 *
 * Everything random comes from `Rng` (lib/rng.ts), in independent streams per (layer, head,
 * purpose), so the same options give the same bytes (V8's Math functions are its own fdlibm port,
 * independent of OS and CPU).
 *
 * Conventions: RoPE is the rotate-half (GPT-NeoX / Hugging Face Llama) convention, see `applyRope`.
 * Logits are `q·k / sqrt(d)`.
 */
import { Rng } from './rng';

export interface TraceOptions {
  seed?: number;
  /** number of layers, default 2 */
  layers?: number;
  /** KV heads per layer, default 8 */
  kvHeads?: number;
  /** query heads per KV head (GQA group size), default 4; Hq = kvHeads * groupSize */
  groupSize?: number;
  /** context length N, default 8192 */
  tokens?: number;
  /** head dimension d = dv, default 128 */
  headDim?: number;
  /** observation window W (queries at positions N−W..N−1), default 32 */
  window?: number;
  /** held-out decode queries per query head, default 48 */
  heldOut?: number;
  /** planted needles per KV head, default 8 */
  needles?: number;
  /** topic segments, default 16 */
  segments?: number;
  /** RoPE base, default 10000 */
  ropeBase?: number;
}

export type HeldOutKind = 'needle' | 'local' | 'topic';

export interface TraceLayer {
  /** [Hkv, N, d] post-RoPE keys */
  keys: Float32Array;
  /** [Hkv, N, dv] values */
  values: Float32Array;
  /** [Hq, W, d] post-RoPE queries at positions N−W..N−1 (SnapKV observation window) */
  windowQueries: Float32Array;
  /** [Hq, T, d] post-RoPE decode queries at position N, never seen by compression */
  heldOutQueries: Float32Array;
  /** kind of held-out query t (the same for every head and layer) */
  heldOutKind: HeldOutKind[];
  /** [T] segment targeted by held-out query t (topic queries), else −1 */
  heldOutSegment: Int32Array;
  /**
   * [T] 1 when held-out query t targets something (needle or segment) that no window query asks
   * about: a follow-up question that query-aware scorers such as SnapKV could not anticipate.
   */
  heldOutFollowUp: Uint8Array;
  /** [Hkv, needles] positions of the planted needles of each KV head */
  needles: Int32Array;
  /** [Hkv, needles] 1 when a window query asks about that needle */
  needleAsked: Uint8Array;
  /** [Hq, T] needle position retrieved by held-out query t of query head h, or −1 */
  needleTarget: Int32Array;
  /** [Hq, Qs, d] raw queries at the GRKV stratified positions, rotated by the RoPE of position N−1 */
  stratifiedQueries: Float32Array;
  /** [Qs] stratified positions (spec grkv §5.2), Qs = min(32, N) */
  stratifiedPositions: Int32Array;
}

export interface Trace {
  options: Required<TraceOptions>;
  Hkv: number;
  Hq: number;
  N: number;
  d: number;
  dv: number;
  W: number;
  T: number;
  /** [segments + 1] segment boundaries: segment s covers positions [bounds[s], bounds[s+1]) */
  segmentBounds: Int32Array;
  layers: TraceLayer[];
}

export const TRACE_DEFAULTS: Readonly<Required<TraceOptions>> = Object.freeze({
  seed: 1,
  layers: 2,
  kvHeads: 8,
  groupSize: 4,
  tokens: 8192,
  headDim: 128,
  window: 32,
  heldOut: 48,
  needles: 8,
  segments: 16,
  ropeBase: 10000,
});

// ---------------------------------------------------------------------------------------------
// RoPE
// ---------------------------------------------------------------------------------------------

/** Inverse frequencies θ_c = base^(−2c/d), c = 0..d/2−1 (float64). */
export function ropeInvFreq(d: number, base = 10000): Float64Array {
  const h = d >> 1;
  const f = new Float64Array(h);
  for (let c = 0; c < h; c++) f[c] = Math.pow(base, (-2 * c) / d);
  return f;
}

/**
 * Rotary position embedding, applied in place, rotate-half convention (GPT-NeoX, Hugging Face
 * `rotate_half`, Llama/Qwen/Mistral checkpoints): channel c < d/2 is paired with channel c + d/2,
 * and with θ_c = base^(−2c/d), angle a = pos·θ_c:
 *
 *     x'[c]       = x[c]·cos a − x[c+d/2]·sin a
 *     x'[c+d/2]   = x[c+d/2]·cos a + x[c]·sin a
 *
 * (The interleaved GPT-J/Meta convention pairs (2c, 2c+1) instead; it is a fixed permutation of
 * channels away from this one.) `x` holds `rows` contiguous rows of `d` values; row r uses
 * `positions[r % positions.length]`, so `positions` may hold one position per row, or the N
 * positions of one head repeated for every head of an `[H, N, d]` tensor (`rows` must be a
 * multiple of `positions.length`). Negative positions rotate backwards: `applyRope(x, …, −p)`
 * undoes `applyRope(x, …, p)`. Angles and trigonometry are computed in float64.
 */
export function applyRope(
  x: Float32Array | Float64Array,
  rows: number,
  d: number,
  positions: ArrayLike<number>,
  base = 10000,
): void {
  if (!Number.isInteger(d) || d <= 0 || d % 2 !== 0) throw new RangeError(`applyRope: d must be a positive even integer, got ${d}`);
  if (!Number.isInteger(rows) || rows < 0) throw new RangeError(`applyRope: rows must be a non-negative integer, got ${rows}`);
  if (x.length < rows * d) throw new RangeError(`applyRope: x holds ${x.length} values, expected at least rows*d = ${rows * d}`);
  const P = positions.length;
  if (rows === 0) return;
  if (P === 0 || rows % P !== 0) throw new RangeError(`applyRope: rows (${rows}) must be a multiple of positions.length (${P})`);
  if (!(base > 1)) throw new RangeError(`applyRope: base must be > 1, got ${base}`);
  const h = d >> 1;
  const inv = ropeInvFreq(d, base);
  if (rows >= 2 * P) {
    const { cos, sin } = ropeTable(positions, inv);
    for (let r = 0; r < rows; r++) rotateRow(x, r * d, h, cos, sin, (r % P) * h);
  } else {
    const cos = new Float64Array(h);
    const sin = new Float64Array(h);
    for (let r = 0; r < rows; r++) {
      const p = positions[r];
      for (let c = 0; c < h; c++) {
        const a = p * inv[c];
        cos[c] = Math.cos(a);
        sin[c] = Math.sin(a);
      }
      rotateRow(x, r * d, h, cos, sin, 0);
    }
  }
}

function ropeTable(positions: ArrayLike<number>, inv: Float64Array): { cos: Float64Array; sin: Float64Array } {
  const P = positions.length;
  const h = inv.length;
  const cos = new Float64Array(P * h);
  const sin = new Float64Array(P * h);
  for (let i = 0; i < P; i++) {
    const p = positions[i];
    const o = i * h;
    for (let c = 0; c < h; c++) {
      const a = p * inv[c];
      cos[o + c] = Math.cos(a);
      sin[o + c] = Math.sin(a);
    }
  }
  return { cos, sin };
}

function rotateRow(
  x: Float32Array | Float64Array,
  o: number,
  h: number,
  cos: Float64Array,
  sin: Float64Array,
  t: number,
): void {
  for (let c = 0; c < h; c++) {
    const a = x[o + c];
    const b = x[o + c + h];
    const cs = cos[t + c];
    const sn = sin[t + c];
    x[o + c] = a * cs - b * sn;
    x[o + c + h] = b * cs + a * sn;
  }
}

/** Rotate a float64 vector by one position (fresh trig), writing into `out` (may alias `x`). */
function rotateVec(x: Float64Array, out: Float64Array, inv: Float64Array, pos: number): void {
  const h = inv.length;
  for (let c = 0; c < h; c++) {
    const a = pos * inv[c];
    const cs = Math.cos(a);
    const sn = Math.sin(a);
    const u = x[c];
    const v = x[c + h];
    out[c] = u * cs - v * sn;
    out[c + h] = v * cs + u * sn;
  }
}

// ---------------------------------------------------------------------------------------------
// Fast Gaussian noise from Rng: one u32 → two samples from a 2^16-entry table of exact normal
// quantiles Φ⁻¹((i + ½)/2^16). The table is a deterministic constant; all randomness is Rng's.
// ---------------------------------------------------------------------------------------------

let NORMAL_TABLE: Float64Array | undefined;

function normalTable(): Float64Array {
  if (NORMAL_TABLE) return NORMAL_TABLE;
  const n = 65536;
  const t = new Float64Array(n);
  for (let i = 0; i < n; i++) t[i] = normalQuantile((i + 0.5) / n);
  // symmetrise exactly so the table has mean exactly 0
  for (let i = 0; i < n / 2; i++) {
    const m = 0.5 * (t[n - 1 - i] - t[i]);
    t[n - 1 - i] = m;
    t[i] = -m;
  }
  NORMAL_TABLE = t;
  return t;
}

/** Inverse standard-normal CDF, Wichura's AS241 (PPND16), relative accuracy ~1e-16. */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) {
    if (p === 0) return -Infinity;
    if (p === 1) return Infinity;
    return NaN;
  }
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    const r = 0.180625 - q * q;
    return (
      (q *
        (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r +
          45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r +
          133.14166789178437745) * r + 3.387132872796366608)) /
      (((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) * r +
        21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r +
        42.313330701600911252) * r + 1)
    );
  }
  let r = q < 0 ? p : 1 - p;
  r = Math.sqrt(-Math.log(r));
  let val: number;
  if (r <= 5) {
    r -= 1.6;
    val =
      (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r + 0.24178072517745061177) * r +
        1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r +
        4.6303378461565452959) * r + 1.42343711074968357734) /
      (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r +
        0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r +
        2.05319162663775882187) * r + 1);
  } else {
    r -= 5;
    val =
      (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r +
        0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r +
        5.4637849111641143699) * r + 6.6579046435011037772) /
      (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r +
        7.868691311456132591e-4) * r + 0.0148753612908506148525) * r + 0.13692988092273580531) * r +
        0.59983220655588793769) * r + 1);
  }
  return q < 0 ? -val : val;
}

/** Fill out[o..o+n) with N(0,1) samples (table-based, two per u32). */
function fillNormals(rng: Rng, T: Float64Array, out: Float64Array, o: number, n: number): void {
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const u = rng.u32();
    out[o + i] = T[u & 0xffff];
    out[o + i + 1] = T[u >>> 16];
  }
  if (i < n) out[o + i] = T[rng.u32() & 0xffff];
}

/** Derive an independent 32-bit seed from a seed and a path of small integers. */
function subSeed(seed: number, ...path: number[]): number {
  let x = (seed >>> 0) ^ 0x6a09e667;
  for (const p of path) {
    x = Math.imul(x ^ (p + 0x9e3779b9), 0x85ebca6b) >>> 0;
    x = (x ^ (x >>> 13)) >>> 0;
    x = Math.imul(x, 0xc2b2ae35) >>> 0;
    x = (x ^ (x >>> 16)) >>> 0;
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// Small vector helpers (float64, length d)
// ---------------------------------------------------------------------------------------------

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function norm(a: Float64Array): number {
  return Math.sqrt(dot(a, a));
}

function scaleTo(a: Float64Array, len: number): Float64Array {
  const n = norm(a);
  const f = n > 0 ? len / n : 0;
  for (let i = 0; i < a.length; i++) a[i] *= f;
  return a;
}

/** Remove from `a` its components along the (unit) vectors in `basis`. */
function orthogonalize(a: Float64Array, basis: Float64Array[]): void {
  for (const b of basis) {
    const p = dot(a, b);
    for (let i = 0; i < a.length; i++) a[i] -= p * b[i];
  }
}

function gaussianVec(rng: Rng, T: Float64Array, d: number, profile?: Float64Array): Float64Array {
  const v = new Float64Array(d);
  fillNormals(rng, T, v, 0, d);
  if (profile) for (let i = 0; i < d; i++) v[i] *= profile[i];
  return v;
}

function uniform(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.uniform();
}

// ---------------------------------------------------------------------------------------------
// Options and document-level structure
// ---------------------------------------------------------------------------------------------

function resolveOptions(opts: TraceOptions | undefined): Required<TraceOptions> {
  const o: Required<TraceOptions> = { ...TRACE_DEFAULTS };
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) {
    throw new TypeError(`generateTrace: options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  }
  for (const [k, v] of Object.entries(opts ?? {})) {
    if (v === undefined) continue;
    if (!(k in TRACE_DEFAULTS)) throw new TypeError(`generateTrace: unknown option '${k}'`);
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new TypeError(`generateTrace: option '${k}' must be a finite number, got ${String(v)}`);
    }
    (o as Record<string, number>)[k] = v;
  }
  const int = (k: keyof TraceOptions, lo: number, hi = Number.MAX_SAFE_INTEGER): void => {
    const v = o[k];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new RangeError(`generateTrace: option '${k}' must be an integer in [${lo}, ${hi}], got ${v}`);
    }
  };
  int('seed', 0, 0xffffffff);
  int('layers', 1, 1024);
  int('kvHeads', 1, 4096);
  int('groupSize', 1, 1024);
  int('headDim', 16, 4096);
  if (o.headDim % 2 !== 0) throw new RangeError(`generateTrace: option 'headDim' must be even, got ${o.headDim}`);
  int('window', 1, 4096);
  int('tokens', o.window + 64, 1 << 22);
  int('heldOut', 0, 1 << 16);
  int('segments', 1, Math.max(1, Math.floor(o.tokens / 16)));
  const maxNeedles = Math.floor((o.tokens - o.window - 24) / NEEDLE_GAP);
  int('needles', 0, maxNeedles);
  if (!(o.ropeBase > 1)) throw new RangeError(`generateTrace: option 'ropeBase' must be > 1, got ${o.ropeBase}`);
  return o;
}

const NEEDLE_SPAN = 4; // a needle "sentence": the needle key of each head is one token of it
const NEEDLE_GAP = 12; // minimum distance between needle spans

function segmentBoundsFor(rng: Rng, N: number, S: number): Int32Array {
  const w = new Float64Array(S);
  let tot = 0;
  for (let s = 0; s < S; s++) {
    w[s] = 0.4 - Math.log(1 - rng.uniform());
    tot += w[s];
  }
  const minLen = Math.max(1, Math.min(32, Math.floor(N / (2 * S))));
  const b = new Int32Array(S + 1);
  let cum = 0;
  for (let s = 1; s < S; s++) {
    cum += w[s - 1];
    b[s] = Math.round((N * cum) / tot);
  }
  b[S] = N;
  // enforce the minimum length, forwards then backwards
  for (let s = 1; s < S; s++) if (b[s] < b[s - 1] + minLen) b[s] = b[s - 1] + minLen;
  for (let s = S - 1; s >= 1; s--) if (b[s] > b[s + 1] - minLen) b[s] = b[s + 1] - minLen;
  return b;
}

function needleSpansFor(rng: Rng, N: number, W: number, K: number): Int32Array {
  const lo = 8;
  const hi = N - W - 16 - NEEDLE_SPAN; // spans end well before the observation window
  const out = new Int32Array(K);
  if (K === 0) return out;
  for (let attempt = 0; attempt < 200; attempt++) {
    for (let k = 0; k < K; k++) out[k] = lo + rng.int(hi - lo);
    const sorted = Array.from(out).sort((a, b) => a - b);
    let ok = true;
    for (let k = 1; k < K; k++) if (sorted[k] - sorted[k - 1] < NEEDLE_GAP) ok = false;
    if (ok) return out;
  }
  // crowded: evenly spaced with a random order
  const step = (hi - lo) / K;
  const idx = Array.from({ length: K }, (_, k) => k);
  for (let k = K - 1; k > 0; k--) {
    const j = rng.int(k + 1);
    [idx[k], idx[j]] = [idx[j], idx[k]];
  }
  for (let k = 0; k < K; k++) out[k] = lo + Math.floor(idx[k] * step);
  return out;
}

/** GRKV Default stratified positions (spec grkv §5.2). */
export function stratifiedPositions(N: number, Qs = 32): Int32Array {
  if (N < Qs) return Int32Array.from({ length: N }, (_, i) => i);
  const e = (j: number): number => Math.floor((j * N) / Qs);
  const out = new Int32Array(Qs);
  for (let j = 0; j < Qs; j++) out[j] = Math.floor((e(j) + e(j + 1) - 1) / 2);
  return out;
}

interface QueryPlan {
  kinds: HeldOutKind[];
  needleIdx: Int32Array; // per held-out query: needle index or -1
  segment: Int32Array; // per held-out query: segment or -1
  followUp: Uint8Array;
  asked: number; // needles 0..asked-1 are asked in the window
  relevant: number[]; // segments the window asks about
  windowRole: Int32Array; // per window position: 0 plain, 1 needle question, 2 topic question
  windowTarget: Int32Array; // needle index or segment
}

function planQueries(rng: Rng, o: Required<TraceOptions>): QueryPlan {
  const T = o.heldOut, K = o.needles, S = o.segments, W = o.window;
  const asked = Math.ceil(K / 2);
  // relevant segments (what the prompt's question is about): a random quarter, never the last
  const pool = Array.from({ length: Math.max(1, S - 1) }, (_, s) => s);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  const relevant = pool.slice(0, Math.max(1, Math.round(S / 4)));
  const others: number[] = [];
  for (let s = 0; s < S; s++) if (!relevant.includes(s)) others.push(s);
  const cycle: HeldOutKind[] = K > 0 ? ['needle', 'local', 'topic'] : ['local', 'topic'];
  const kinds: HeldOutKind[] = [];
  const needleIdx = new Int32Array(T).fill(-1);
  const segment = new Int32Array(T).fill(-1);
  const followUp = new Uint8Array(T);
  let nq = 0, tq = 0;
  for (let t = 0; t < T; t++) {
    const kind = cycle[t % cycle.length];
    kinds.push(kind);
    if (kind === 'needle') {
      const k = nq++ % K;
      needleIdx[t] = k;
      followUp[t] = k >= asked ? 1 : 0;
    } else if (kind === 'topic') {
      const j = tq++;
      if (j % 4 === 3 && others.length > 0) {
        segment[t] = others[rng.int(others.length)];
        followUp[t] = 1;
      } else {
        segment[t] = relevant[j % relevant.length];
      }
    }
  }
  const windowRole = new Int32Array(W);
  const windowTarget = new Int32Array(W).fill(-1);
  let wn = 0, wt = 0;
  const half = Math.floor(W / 2);
  for (let w = half; w < W; w++) {
    const r = (w - half) % 4;
    if (r === 0 && K > 0) {
      windowRole[w] = 1;
      windowTarget[w] = wn++ % asked;
    } else if (r === 2) {
      windowRole[w] = 2;
      windowTarget[w] = relevant[wt++ % relevant.length];
    }
  }
  return { kinds, needleIdx, segment, followUp, asked, relevant, windowRole, windowTarget };
}

// ---------------------------------------------------------------------------------------------
// Per-head generative model
// ---------------------------------------------------------------------------------------------

interface HeadModel {
  // key structure (pre-RoPE, length d)
  bias: Float64Array;
  massive: Float64Array; // zero except on the massive channels
  massiveChannels: number[];
  posVec: Float64Array; // constant high-frequency component → RoPE recency kernel
  sinkDir: Float64Array; // unit, lowest-frequency pairs
  sinkScale: number; // per-dim scale S: k0 = S·sqrt(d)·sinkDir + …
  segDir: Float64Array[]; // per segment, pre-RoPE, rms aSeg per dim over its profile
  needleDir: Float64Array[]; // unit
  needleKappa: Float64Array; // needle key strength (per-dim units)
  noiseStd: Float64Array;
  queryNoiseProfile: Float64Array; // per-channel multiplier of the query noise
  driftProfile: Float64Array;
  driftRho: number;
  // values
  vbias: Float64Array;
  vsegDir: Float64Array[];
  vneedleDir: Float64Array[];
  vnoiseStd: Float64Array;
  vdriftRho: number;
  vdriftAmp: number;
  // query-side head parameters (logit units)
  sinkOffset: number;
  localGain: number;
  topicGain: number;
  needleGain: number;
  queryNoise: number;
}

const POOL_SIZE = 1 << 17;

function buildHead(rng: Rng, T: Float64Array, o: Required<TraceOptions>, layerFrac: number): HeadModel {
  const d = o.headDim, h = d >> 1, S = o.segments, K = o.needles;
  // Roles of the RoPE pairs (pair c = channels c and c+h; low c = high frequency):
  //  - sink pairs: the nSink lowest-frequency pairs, used only by the sink key (k_0);
  //  - bias pairs: nBias low-frequency pairs carrying the shared bias and the massive channels;
  //  - content pairs: all others; segment directions, drift and needles live here (segments and
  //    drift mostly in the lower-frequency half, "semantic" channels), so queries that look for
  //    content never pick up the rotating bias (which would create spurious positional trends);
  //  - the positional recency vector lives in the high-frequency half.
  const nSink = Math.max(1, Math.round(h / 16));
  const nBias = Math.max(2, Math.round(h / 8));
  const lowLo = Math.round(h / 2);
  // bias pairs: drawn from the lowest-frequency quarter (which RoPE barely rotates over the context)
  const lowStart = Math.max(lowLo, Math.min(Math.round((3 * h) / 4), h - nSink - nBias - 1));
  const lowPairs: number[] = [];
  for (let c = lowStart; c < h - nSink; c++) lowPairs.push(c);
  for (let i = lowPairs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [lowPairs[i], lowPairs[j]] = [lowPairs[j], lowPairs[i]];
  }
  const biasPairs = lowPairs.slice(0, Math.min(nBias, lowPairs.length - 1)).sort((a, b) => a - b);
  const role = new Uint8Array(h); // 0 content, 1 bias, 2 sink
  for (const c of biasPairs) role[c] = 1;
  for (let c = h - nSink; c < h; c++) role[c] = 2;
  const pairOf = (x: number): number => (x < h ? x : x - h);
  const sem = new Float64Array(d); // semantic profile on content pairs, low-frequency heavy
  const pos = new Float64Array(d); // positional profile: high-frequency pairs
  const driftProfile = new Float64Array(d);
  const driftAmp = uniform(rng, 0.7, 1.0);
  for (let x = 0; x < d; x++) {
    const c = pairOf(x);
    if (role[c] !== 0) continue;
    sem[x] = 0.15 + 0.85 / (1 + Math.exp(-(c / h - 0.55) * 14));
    if (c < lowLo) pos[x] = 1;
    else driftProfile[x] = driftAmp;
  }
  // bias: on the bias pairs; per-head strength B (per-dim rms relative to sqrt(d))
  const B = uniform(rng, 0.2, 0.7);
  const bias = new Float64Array(d);
  for (const c of biasPairs) {
    bias[c] = rng.normal();
    bias[c + h] = rng.normal();
  }
  // massive channels: 2–4 channels of the lower-frequency half of the bias pairs
  const nMass = 2 + rng.int(3);
  const cand: number[] = [];
  for (const c of biasPairs.slice(Math.floor(biasPairs.length / 2))) cand.push(c, c + h);
  const massiveChannels: number[] = [];
  while (massiveChannels.length < Math.min(nMass, cand.length)) {
    const x = cand[rng.int(cand.length)];
    if (!massiveChannels.includes(x)) massiveChannels.push(x);
  }
  massiveChannels.sort((a, b) => a - b);
  const massive = new Float64Array(d);
  const M = uniform(rng, 7, 14);
  for (const x of massiveChannels) {
    massive[x] = (rng.uniform() < 0.5 ? -1 : 1) * M * uniform(rng, 0.85, 1.2);
    bias[x] = 0;
  }
  scaleTo(bias, B * Math.sqrt(d));
  let semDims = 0;
  for (let x = 0; x < d; x++) semDims += sem[x] * sem[x];
  // positional (recency) vector: constant, high-frequency content pairs
  const posVec = gaussianVec(rng, T, d, pos);
  scaleTo(posVec, uniform(rng, 0.6, 1.0) * Math.sqrt(d / 2));
  // sink direction: sink pairs only, energy increasing towards the lowest frequency
  const sinkDir = new Float64Array(d);
  for (let c = h - nSink; c < h; c++) {
    const w = 1 + (c - (h - nSink));
    sinkDir[c] = rng.normal() * w;
    sinkDir[c + h] = rng.normal() * w;
  }
  scaleTo(sinkDir, 1);
  // segment key directions (semantic profile), Gram–Schmidt while the subspace allows
  const aSeg = uniform(rng, 1.0, 1.5);
  const segDir: Float64Array[] = [];
  const segBasis: Float64Array[] = [];
  for (let s = 0; s < S; s++) {
    const v = gaussianVec(rng, T, d, sem);
    if (segBasis.length < semDims / 2) {
      orthogonalize(v, segBasis);
      segBasis.push(scaleTo(Float64Array.from(v), 1));
    }
    segDir.push(scaleTo(v, aSeg * Math.sqrt(semDims)));
  }
  // needle key directions: content pairs, lighter on the drift (semantic) pairs so that ordinary
  // queries do not pick needles up by chance
  const needleDir: Float64Array[] = [];
  const needleKappa = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    const v = gaussianVec(rng, T, d);
    for (let x = 0; x < d; x++) v[x] *= role[pairOf(x)] !== 0 ? 0 : pos[x] > 0 ? 1 : 0.5;
    needleDir.push(scaleTo(v, 1));
    needleKappa[k] = uniform(rng, 0.9, 1.5);
  }
  // anisotropic channel noise (log-normal channel scales), quiet sink pairs
  const noiseStd = new Float64Array(d);
  for (let x = 0; x < d; x++) noiseStd[x] = role[pairOf(x)] === 2 ? 0.25 : Math.exp(0.25 * rng.normal());
  // query noise profile: none on sink pairs and massive channels, damped on the bias pairs
  const queryNoiseProfile = new Float64Array(d);
  for (let x = 0; x < d; x++) {
    const r = role[pairOf(x)];
    queryNoiseProfile[x] = r === 2 ? 0 : r === 1 ? 0.3 : 1;
  }
  for (const x of massiveChannels) queryNoiseProfile[x] = 0;
  // smooth drift (AR(1)) correlation time
  const tau = uniform(rng, 12, 48);
  const driftRho = Math.exp(-1 / tau);
  // values
  const vbias = scaleTo(gaussianVec(rng, T, d), uniform(rng, 0.2, 0.5) * Math.sqrt(d));
  const vsegDir: Float64Array[] = [];
  const vBasis: Float64Array[] = [];
  const aV = uniform(rng, 0.8, 1.2);
  for (let s = 0; s < S; s++) {
    const v = gaussianVec(rng, T, d);
    if (vBasis.length < d) {
      orthogonalize(v, vBasis);
      vBasis.push(scaleTo(Float64Array.from(v), 1));
    }
    vsegDir.push(scaleTo(v, aV * Math.sqrt(d)));
  }
  const vneedleDir: Float64Array[] = [];
  for (let k = 0; k < K; k++) vneedleDir.push(scaleTo(gaussianVec(rng, T, d), uniform(rng, 2.5, 3.5) * Math.sqrt(d)));
  const vnoiseStd = new Float64Array(d);
  for (let x = 0; x < d; x++) vnoiseStd[x] = 0.7 * Math.exp(0.2 * rng.normal());
  const vdriftRho = Math.exp(-1 / uniform(rng, 16, 64));
  const vdriftAmp = uniform(rng, 0.4, 0.6);
  // query-side strengths: deeper layers have stronger sinks and sharper retrieval
  const share = Math.min(0.85, uniform(rng, 0.15, 0.6) + 0.15 * layerFrac);
  const sinkOffset = Math.log(share / (1 - share)); // log-odds of sink mass vs all other keys
  const localGain = uniform(rng, 0.2, 1.5);
  const topicGain = uniform(rng, 1.0, 2.5);
  const needleGain = uniform(rng, 3.5, 5.5) + 0.5 * layerFrac;
  const queryNoise = uniform(rng, 0.4, 0.9) * (1.1 - 0.2 * layerFrac);
  return {
    bias, massive, massiveChannels, posVec, sinkDir, sinkScale: uniform(rng, 1.5, 2.5), segDir, needleDir, needleKappa,
    noiseStd, queryNoiseProfile, driftProfile, driftRho, vbias, vsegDir, vneedleDir, vnoiseStd, vdriftRho, vdriftAmp,
    sinkOffset, localGain, topicGain, needleGain, queryNoise,
  };
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

/** Generate the built-in trace. Deterministic in `opts` (including `seed`). */
export function generateTrace(opts?: TraceOptions): Trace {
  const o = resolveOptions(opts);
  const T = normalTable();
  const { kvHeads: Hkv, groupSize: G, tokens: N, headDim: d, window: W, heldOut: Tq, needles: K, segments: S } = o;
  const Hq = Hkv * G;
  const inv = ropeInvFreq(d, o.ropeBase);
  // document: segments, needle spans and the query plan are shared by every layer and head
  const docRng = new Rng(subSeed(o.seed, 0xd0c));
  const bounds = segmentBoundsFor(docRng, N, S);
  const spans = needleSpansFor(docRng, N, W, K);
  const plan = planQueries(docRng, o);
  const segOf = new Int32Array(N);
  for (let s = 0; s < S; s++) segOf.fill(s, bounds[s], bounds[s + 1]);
  const strat = stratifiedPositions(N);
  const Qs = strat.length;
  // RoPE table for positions 0..N-1, shared by all heads and layers (computed per row instead
  // when it would exceed 2^23 entries)
  let table: { cos: Float64Array; sin: Float64Array } | null = null;
  if (N * (d >> 1) <= 1 << 23) {
    const pos = new Int32Array(N);
    for (let i = 0; i < N; i++) pos[i] = i;
    table = ropeTable(pos, inv);
  }

  const layers: TraceLayer[] = [];
  for (let l = 0; l < o.layers; l++) {
    const layerFrac = o.layers > 1 ? l / (o.layers - 1) : 0.5;
    const keys = new Float32Array(Hkv * N * d);
    const values = new Float32Array(Hkv * N * d);
    const windowQueries = new Float32Array(Hq * W * d);
    const heldOutQueries = new Float32Array(Hq * Tq * d);
    const stratifiedQueries = new Float32Array(Hq * Qs * d);
    const needles = new Int32Array(Hkv * K);
    const needleAsked = new Uint8Array(Hkv * K);
    const needleTarget = new Int32Array(Hq * Tq).fill(-1);
    for (let kh = 0; kh < Hkv; kh++) {
      const prng = new Rng(subSeed(o.seed, l, kh, 1));
      const m = buildHead(prng, T, o, layerFrac);
      const npos = new Int32Array(K);
      for (let k = 0; k < K; k++) {
        npos[k] = spans[k] + prng.int(NEEDLE_SPAN);
        needles[kh * K + k] = npos[k];
        needleAsked[kh * K + k] = k < plan.asked ? 1 : 0;
      }
      const drift = fillHeadKV(new Rng(subSeed(o.seed, l, kh, 2)), T, m, o, segOf, npos, table, inv, keys, values, kh, strat);
      const k0 = Float64Array.from(keys.subarray(kh * N * d, kh * N * d + d));
      buildHeadQueries(
        new Rng(subSeed(o.seed, l, kh, 3)), T, m, o, inv, bounds, segOf, npos, plan, drift, k0, strat, keys,
        kh, windowQueries, heldOutQueries, stratifiedQueries, needleTarget,
      );
    }
    layers.push({
      keys, values, windowQueries, heldOutQueries,
      heldOutKind: plan.kinds.slice(),
      heldOutSegment: plan.segment.slice(),
      heldOutFollowUp: plan.followUp.slice(),
      needles, needleAsked, needleTarget, stratifiedQueries,
      stratifiedPositions: strat.slice(),
    });
  }
  return { options: o, Hkv, Hq, N, d, dv: d, W, T: Tq, segmentBounds: bounds, layers };
}

/**
 * Keys (pre-RoPE structure, then rotated) and values of one head, one pass over the tokens.
 * Returns the pre-RoPE drift state z_{p} at the positions the queries need (p = q − 1).
 */
function fillHeadKV(
  rng: Rng, T: Float64Array, m: HeadModel, o: Required<TraceOptions>, segOf: Int32Array, npos: Int32Array,
  table: { cos: Float64Array; sin: Float64Array } | null, inv: Float64Array, keys: Float32Array,
  values: Float32Array, kh: number, strat: Int32Array,
): Map<number, Float64Array> {
  const N = o.tokens, d = o.headDim, h = d >> 1, W = o.window;
  const needleAt = new Int32Array(N).fill(-1);
  for (let k = 0; k < npos.length; k++) needleAt[npos[k]] = k;
  const snap = new Set<number>();
  for (let p = N - W - 1; p < N; p++) snap.add(p);
  for (const p of strat) if (p >= 1) snap.add(p - 1);
  const drift = new Map<number, Float64Array>();
  // Noise rows are read from a per-head pool of 2^17 Rng normals at a random offset with a random
  // odd stride (one u32 per row instead of d/2): rows are pairwise uncorrelated and each element is
  // an exact N(0,1) sample, at a small fraction of the cost of fresh draws.
  const pool = new Float64Array(POOL_SIZE);
  fillNormals(rng, T, pool, 0, POOL_SIZE);
  const PM = POOL_SIZE - 1;
  const z = new Float64Array(d); // key drift (pre-RoPE), on the drift channels only
  const vz = new Float64Array(d); // value drift
  const row = new Float64Array(d);
  const { bias, massive, posVec, noiseStd, driftProfile, vbias, vnoiseStd } = m;
  const driftDims: number[] = [];
  for (let x = 0; x < d; x++) if (driftProfile[x] !== 0) driftDims.push(x);
  const nDrift = driftDims.length;
  const massDims = m.massiveChannels;
  const rho = m.driftRho, innov = Math.sqrt(1 - rho * rho);
  const vrho = m.vdriftRho, vinnov = Math.sqrt(1 - vrho * vrho), vamp = m.vdriftAmp;
  const sqd = Math.sqrt(d);
  // stationary start for the drifts
  for (const x of driftDims) z[x] = driftProfile[x] * rng.normal();
  for (let x = 0; x < d; x++) vz[x] = vamp * rng.normal();
  const kbase = kh * N * d;
  const cos = table ? table.cos : new Float64Array(h);
  const sin = table ? table.sin : new Float64Array(h);
  // per-segment constant parts of keys (bias + positional vector + segment direction) and values
  const kconst = m.segDir.map((sd) => Float64Array.from(sd, (v, x) => v + bias[x] + posVec[x]));
  const vconst = m.vsegDir.map((sd) => Float64Array.from(sd, (v, x) => v + vbias[x]));
  for (let i = 0; i < N; i++) {
    const s = segOf[i];
    const kc = kconst[s];
    const vc = vconst[s];
    // four pool rows: key noise, value noise, key-drift innovations, value-drift innovations
    let u = rng.u32();
    const ok = u & PM, sk = ((u >>> 17) << 1) | 1;
    u = rng.u32();
    const ov = u & PM, sv = ((u >>> 17) << 1) | 1;
    u = rng.u32();
    const oz = u & PM, sz = ((u >>> 17) << 1) | 1;
    u = rng.u32();
    const ow = u & PM, sw = ((u >>> 17) << 1) | 1;
    u = rng.u32();
    const g = Math.exp(0.15 * T[u & 0xffff]); // per-token noise scale
    const mj = T[u >>> 16]; // massive-channel jitter
    for (let r = 0; r < nDrift; r++) {
      const x = driftDims[r];
      z[x] = rho * z[x] + innov * driftProfile[x] * pool[(oz + r * sz) & PM];
    }
    for (let x = 0; x < d; x++) vz[x] = vrho * vz[x] + vinnov * vamp * pool[(ow + x * sw) & PM];
    if (snap.has(i)) drift.set(i, Float64Array.from(z));
    const ko = kbase + i * d;
    if (i === 0) {
      // attention sink: a distinct key in the lowest-frequency pairs, tiny value
      const a = m.sinkScale * sqd;
      for (let x = 0; x < d; x++) {
        row[x] = a * m.sinkDir[x] + 0.3 * bias[x] + 0.3 * noiseStd[x] * pool[(ok + x * sk) & PM];
        values[ko + x] = 0.08 * vnoiseStd[x] * pool[(ov + x * sv) & PM];
      }
    } else {
      for (let x = 0; x < d; x++) {
        row[x] = kc[x] + z[x] + g * noiseStd[x] * pool[(ok + x * sk) & PM];
      }
      for (const x of massDims) row[x] += massive[x] * (1 + 0.04 * mj);
      const k = needleAt[i];
      if (k >= 0) {
        const nd = m.needleDir[k];
        const a = m.needleKappa[k] * sqd;
        for (let x = 0; x < d; x++) row[x] += a * nd[x];
        const vd = m.vneedleDir[k];
        for (let x = 0; x < d; x++) values[ko + x] = vd[x] + 0.3 * (vbias[x] + vnoiseStd[x] * pool[(ov + x * sv) & PM]);
      } else {
        for (let x = 0; x < d; x++) values[ko + x] = vc[x] + vz[x] + vnoiseStd[x] * pool[(ov + x * sv) & PM];
      }
    }
    // RoPE at position i, written straight into the output
    let t = i * h;
    if (!table) {
      t = 0;
      for (let c = 0; c < h; c++) {
        cos[c] = Math.cos(i * inv[c]);
        sin[c] = Math.sin(i * inv[c]);
      }
    }
    for (let c = 0; c < h; c++) {
      const a = row[c], b = row[c + h];
      const cs = cos[t + c], sn = sin[t + c];
      keys[ko + c] = a * cs - b * sn;
      keys[ko + c + h] = b * cs + a * sn;
    }
  }
  return drift;
}

function buildHeadQueries(
  rng: Rng, T: Float64Array, m: HeadModel, o: Required<TraceOptions>, inv: Float64Array, bounds: Int32Array,
  segOf: Int32Array, npos: Int32Array, plan: QueryPlan, drift: Map<number, Float64Array>,
  k0: Float64Array, strat: Int32Array, keys: Float32Array,
  kh: number, windowQueries: Float32Array, heldOutQueries: Float32Array,
  stratifiedQueries: Float32Array, needleTarget: Int32Array,
): void {
  const N = o.tokens, d = o.headDim, h = d >> 1, W = o.window, Tq = o.heldOut, G = o.groupSize, S = o.segments;
  const sqd = Math.sqrt(d);
  const logN = Math.log(N);
  // raw (position-independent) directions
  const sinkRaw = new Float64Array(d);
  rotateVec(m.sinkDir, sinkRaw, inv, -N); // aligned with k_0 when rotated to ~N
  const posNorm = norm(m.posVec);
  const posUnit = Float64Array.from(m.posVec, (v) => v / posNorm);
  // post-RoPE topic directions: u_s ∝ Σ_{j∈s} R_j segDir_s (computed per pair)
  const topicPost: Float64Array[] = [];
  const topicGainPerUnit = new Float64Array(S); // mean (u_s · R_j seg_s) over the segment
  for (let s = 0; s < S; s++) {
    const a = bounds[s], b = bounds[s + 1];
    const sd = m.segDir[s];
    const u = new Float64Array(d);
    for (let c = 0; c < h; c++) {
      let sc = 0, ss = 0;
      const th = inv[c];
      // Σ_j (cos jθ, sin jθ) in closed form (Lagrange's identity); the limit n when sin(θ/2) ≈ 0
      const half = th / 2;
      const sh = Math.sin(half);
      const n = b - a;
      if (Math.abs(sh) > 1e-9) {
        const f = Math.sin(n * half) / sh;
        const mid = (a + (n - 1) / 2) * th;
        sc = f * Math.cos(mid);
        ss = f * Math.sin(mid);
      } else {
        sc = n;
        ss = 0;
      }
      const x = sd[c], yv = sd[c + h];
      u[c] = x * sc - yv * ss;
      u[c + h] = yv * sc + x * ss;
    }
    const len = norm(u);
    topicGainPerUnit[s] = len / (b - a);
    topicPost.push(scaleTo(u, 1));
  }
  const needlePost: Float64Array[] = [];
  for (let k = 0; k < npos.length; k++) {
    const u = new Float64Array(d);
    rotateVec(m.needleDir[k], u, inv, npos[k]);
    needlePost.push(u);
  }
  const qNoiseProf = Float64Array.from(m.queryNoiseProfile, (v) => v * m.queryNoise);

  const q = new Float64Array(d);
  const tmp = new Float64Array(d);
  const tmp2 = new Float64Array(d);
  const noise = new Float64Array(d);

  const kOff = kh * N * d;
  const nSample = Math.min(128, N - 1);
  const sample = new Int32Array(nSample);
  for (let i = 0; i < nSample; i++) sample[i] = 1 + rng.int(N - 1);
  const keyLogit = (qv: Float64Array, j: number): number => {
    let acc = 0;
    const ko = kOff + j * d;
    let a1 = 0, a2 = 0, a3 = 0, x = 0;
    for (; x + 3 < d; x += 4) {
      acc += qv[x] * keys[ko + x];
      a1 += qv[x + 1] * keys[ko + x + 1];
      a2 += qv[x + 2] * keys[ko + x + 2];
      a3 += qv[x + 3] * keys[ko + x + 3];
    }
    for (; x < d; x++) acc += qv[x] * keys[ko + x];
    return (acc + a1 + a2 + a3) / sqd;
  };
  const RECENT = 128, SEG_SAMPLES = 48;
  const lg = new Float64Array(RECENT + SEG_SAMPLES + 1 + nSample);
  const wt = new Float64Array(lg.length);
  /**
   * log Σ_{0<j<visible} exp(q·k_j/√d), estimated as a stratified sum: the RECENT last keys and
   * the needle exactly, the target segment from SEG_SAMPLES evenly spaced keys, everything else
   * from a fixed random sample of the head's keys (each stratum weighted by its size).
   */
  const otherLogPartition = (qv: Float64Array, visible: number, c: Comp): number => {
    let n = 0;
    const r0 = Math.max(1, visible - RECENT);
    for (let j = r0; j < visible; j++) {
      lg[n] = keyLogit(qv, j);
      wt[n++] = 1;
    }
    let covered = visible - r0;
    let sa = 0, sb = 0; // target segment range, clipped to [1, r0)
    if (c.topicSeg >= 0 && c.topic !== 0) {
      sa = Math.max(1, bounds[c.topicSeg]);
      sb = Math.min(r0, bounds[c.topicSeg + 1]);
      const len = sb - sa;
      if (len > 0) {
        const ns = Math.min(len, SEG_SAMPLES);
        for (let i = 0; i < ns; i++) {
          lg[n] = keyLogit(qv, sa + Math.floor(((i + 0.5) * len) / ns));
          wt[n++] = len / ns;
        }
        covered += len;
      } else sb = sa;
    }
    const nj = c.needleK >= 0 ? npos[c.needleK] : -1;
    const needleOut = nj >= 1 && nj < r0 && !(nj >= sa && nj < sb);
    if (needleOut) {
      lg[n] = keyLogit(qv, nj);
      wt[n++] = 1;
      covered++;
    }
    const rest = visible - 1 - covered;
    const n0 = n;
    if (rest > 0) {
      for (let i = 0; i < nSample; i++) {
        const j = sample[i];
        if (j >= r0 || (j >= sa && j < sb) || j === nj) continue;
        lg[n] = keyLogit(qv, j);
        wt[n++] = 0;
      }
      const got = n - n0;
      for (let i = n0; i < n; i++) wt[i] = rest / got;
    }
    let mx = -Infinity;
    for (let i = 0; i < n; i++) if (lg[i] > mx) mx = lg[i];
    let se = 0;
    for (let i = 0; i < n; i++) se += wt[i] * Math.exp(lg[i] - mx);
    return mx + Math.log(se);
  };

  interface Comp { sink: number; pos: number; drift: number; topic: number; topicSeg: number; needle: number; needleK: number }
  /**
   * Build the raw query of a token at position p (target-aware parts are aligned at p, then
   * un-rotated), and write R_{pOut}(raw) into out[oOff..].
   */
  const emit = (p: number, pOut: number, visible: number, c: Comp, out: Float32Array, oOff: number): void => {
    q.fill(0);
    // positional recency (raw, constant)
    const aP = (c.pos * sqd) / posNorm;
    for (let x = 0; x < d; x++) q[x] += aP * posUnit[x];
    // drift: raw = R_{-1} z_{p-1}
    const zp = drift.get(p - 1);
    if (zp && c.drift !== 0) {
      const zn = norm(zp);
      if (zn > 0) {
        rotateVec(zp, tmp, inv, -1);
        const aD = (c.drift * sqd) / zn;
        for (let x = 0; x < d; x++) q[x] += (aD / zn) * tmp[x];
      }
    }
    // target-aware parts, built in post-RoPE space at position p
    tmp.fill(0);
    if (c.topicSeg >= 0 && c.topic !== 0) {
      const s = c.topicSeg;
      const aT = (c.topic * sqd) / Math.max(1e-6, topicGainPerUnit[s]);
      const u = topicPost[s];
      for (let x = 0; x < d; x++) tmp[x] += aT * u[x];
    }
    if (c.needleK >= 0 && c.needle !== 0) {
      const aN = c.needle / m.needleKappa[c.needleK];
      const u = needlePost[c.needleK];
      for (let x = 0; x < d; x++) tmp[x] += aN * u[x];
    }
    rotateVec(tmp, tmp, inv, -p);
    fillNormals(rng, T, noise, 0, d);
    for (let x = 0; x < d; x++) noise[x] *= qNoiseProf[x];
    if (c.needleK >= 0 && c.needle !== 0) {
      // the query's noise carries nothing along its needle: the retrieval logit is as designed
      rotateVec(needlePost[c.needleK], tmp2, inv, -p);
      const pr = dot(noise, tmp2);
      for (let x = 0; x < d; x++) noise[x] -= pr * tmp2[x];
    }
    for (let x = 0; x < d; x++) q[x] += tmp[x] + noise[x];
    rotateVec(q, q, inv, pOut);
    // Sink: add a·s, s = R_pOut sinkRaw (aligned with k_0 near the end of the context), with a
    // chosen so that log(mass on k_0 / mass on all other visible keys) = c.sink, the other keys'
    // log-partition being estimated by otherLogPartition.
    const lse = otherLogPartition(q, visible, c);
    rotateVec(sinkRaw, tmp, inv, pOut);
    let q0 = 0, s0 = 0;
    for (let x = 0; x < d; x++) {
      q0 += q[x] * k0[x];
      s0 += tmp[x] * k0[x];
    }
    const aS = s0 > 1e-6 ? Math.max(0, ((lse + c.sink) * sqd - q0) / s0) : 0;
    for (let x = 0; x < d; x++) out[oOff + x] = q[x] + aS * tmp[x];
  };

  const jit = (s: number): number => Math.exp(s * rng.normal());
  const segLen = (s: number): number => bounds[s + 1] - bounds[s];
  for (let g = 0; g < G; g++) {
    const qh = kh * G + g;
    // per-query-head variation inside the group
    const sinkH = m.sinkOffset + 0.4 * rng.normal();
    const locH = m.localGain + 0.3 * rng.normal();
    const topH = m.topicGain + 0.3 * rng.normal();
    const neeH = m.needleGain + 0.3 * rng.normal();
    const lsink = (): number => sinkH + 0.5 * rng.normal();
    // peak logit of the recency components (positional + drift), relative to log N so that the
    // local share of mass does not depend on the context length
    const localPeak = Math.max(2, logN + 0.9 + 1.6 * locH);
    // observation window
    for (let w = 0; w < W; w++) {
      const p = N - W + w;
      const role = plan.windowRole[w];
      const cur = segOf[p];
      const c: Comp = {
        sink: lsink(), pos: 0.35 * localPeak * jit(0.15), drift: 0.4 * localPeak * jit(0.15),
        topic: 0.5 * (Math.log(N / segLen(cur)) + topH) * jit(0.2), topicSeg: cur, needle: 0, needleK: -1,
      };
      if (role === 1) {
        c.needle = (logN + neeH - 1.0) * jit(0.1);
        c.needleK = plan.windowTarget[w];
        c.pos *= 0.5; c.drift *= 0.5; c.topic = 0;
      } else if (role === 2) {
        const s = plan.windowTarget[w];
        c.topicSeg = s;
        c.topic = (Math.log(N / segLen(s)) + topH - 0.5) * jit(0.15);
        c.pos *= 0.5; c.drift *= 0.5;
      }
      emit(p, p, p + 1, c, windowQueries, (qh * W + w) * d);
    }
    // held-out decode queries at position N
    for (let t = 0; t < Tq; t++) {
      const kind = plan.kinds[t];
      const c: Comp = { sink: lsink(), pos: 0, drift: 0, topic: 0, topicSeg: -1, needle: 0, needleK: -1 };
      if (kind === 'local') {
        c.sink -= 1.2;
        c.pos = 0.45 * localPeak * jit(0.15);
        c.drift = 0.55 * localPeak * jit(0.15);
        c.topicSeg = segOf[N - 1];
        c.topic = 0.4 * (Math.log(N / segLen(c.topicSeg)) + topH);
      } else if (kind === 'topic') {
        c.sink -= 0.7;
        c.pos = 1.2 * jit(0.2);
        c.drift = 1.5 * jit(0.2);
        c.topicSeg = plan.segment[t];
        c.topic = (Math.log(N / segLen(c.topicSeg)) + topH) * jit(0.1);
      } else {
        c.sink -= 1.5;
        c.pos = 1.2 * jit(0.2);
        c.drift = 1.5 * jit(0.2);
        c.needleK = plan.needleIdx[t];
        c.needle = (logN + neeH) * jit(0.08);
        needleTarget[qh * Tq + t] = npos[c.needleK];
      }
      emit(N, N, N, c, heldOutQueries, (qh * Tq + t) * d);
    }
    // GRKV stratified queries: raw queries at p_j, rotated by the RoPE of N−1
    for (let j = 0; j < strat.length; j++) {
      const p = strat[j];
      const cur = segOf[p];
      const c: Comp = {
        sink: lsink(), pos: 0.35 * localPeak * jit(0.15), drift: 0.4 * localPeak * jit(0.15),
        topic: 0.8 * (Math.log(N / segLen(cur)) + topH) * jit(0.2), topicSeg: cur, needle: 0, needleK: -1,
      };
      emit(p, N - 1, N, c, stratifiedQueries, (qh * strat.length + j) * d);
    }
  }
}
