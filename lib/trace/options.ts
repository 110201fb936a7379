/** Options of the built-in trace, the shape of what it returns, and option validation. */
import { NEEDLE_GAP } from './plan';

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
  /** [Qs] stratified positions (docs/methods/grkv.md §5.2), Qs = min(32, N) */
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

export function resolveOptions(opts: TraceOptions | undefined): Required<TraceOptions> {
  const o: Required<TraceOptions> = { ...TRACE_DEFAULTS };
  if (opts !== undefined && (opts === null || typeof opts !== 'object' || Array.isArray(opts))) {
    throw new TypeError(`generateTrace: options must be an object, got ${opts === null ? 'null' : Array.isArray(opts) ? 'an array' : typeof opts}`);
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
