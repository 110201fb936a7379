/**
 * `kvtrim eval`: fidelity of every method × compression ratio on the built-in LLM-like trace (lib/trace/) or
 * on a user's own KV dumps (lib/io/dump.ts), under the causal split protocol of lib/eval/protocol.ts: for each
 * layer, configuration and ratio it compresses the prefix [0, S) with `compress()` (observation window: the
 * queries at S−W..S−1), runs the held-out queries at positions p ≥ S through `decodeAttention` on the compressed
 * prefix plus the uncompressed keys S..p (with the moment summary when there is one) and on the full causal
 * cache 0..p, and reports the relative attention-output error ‖o − o_full‖ / ‖o_full‖ (median and p90 over query
 * heads × held-out queries × layers; by distance from the split; by layer), needle recall (trace), retained bytes
 * and time, plus a description of each layer's attention (sink mass, mass on the 64 most recent keys). The
 * trace's held-out queries are decode queries at position N with S = N.
 */
import { nativeInfo } from '../binding';
import { Stream } from '../device';
import { Tensor, tensor, toDevice, toHost, hostContiguous } from '../tensor';
import { quantile, rowErrors } from './metrics';
import { causalDecode, groupCounts, packCache, attentionProfile } from './causal';
import { DISTANCE_BUCKETS, PositionGroup, SplitLayer, defaultSplit, distanceBucket, groupByPosition, sliceRows, splitQueries } from './protocol';
import { checkInt } from '../validate';
import { compressAsync, methodScoresAsync, Compressed } from '../compress';
import { MethodName, MergeName, CorrectionName } from '../methods';
import { generateTrace, TraceOptions, TRACE_DEFAULTS } from '../trace';
import { loadDump, LoadDumpOptions, QueryConvention } from '../io/dump';

export interface EvalConfig {
  name: string;
  method: MethodName;
  merge?: MergeName;
  correction?: CorrectionName;
}

/** The configurations `kvtrim eval` runs by default: every method, the GRKV merge and the moment correction. */
export const EVAL_CONFIGS: readonly EvalConfig[] = Object.freeze([
  { name: 'keydiff', method: 'keydiff' },
  { name: 'nestedkv', method: 'nestedkv' },
  { name: 'snapkv', method: 'snapkv' },
  { name: 'snapkv+grkv', method: 'snapkv', merge: 'grkv' },
  { name: 'snapkv+moment', method: 'snapkv', correction: 'moment' },
  { name: 'momentkv', method: 'momentkv' },
]);

export const EVAL_RATIOS: readonly number[] = Object.freeze([0.5, 0.75, 0.9, 0.95]);

export interface EvalOptions {
  /** A dump directory / .safetensors file; default: the built-in trace. */
  dump?: string;
  dumpOptions?: LoadDumpOptions;
  trace?: TraceOptions;
  /** Dumps: the split S (the prefix [0, S) is compressed); default N − min(512, ⌊N/8⌋). */
  split?: number;
  /** Dumps: the most queries in the observation window (default 32). */
  window?: number;
  ratios?: readonly number[];
  /** Names from EVAL_CONFIGS (default: all). */
  configs?: readonly string[];
  backend?: 'cpu' | 'cuda';
  device?: number;
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface EvalRow {
  config: string;
  method: MethodName;
  merge?: MergeName;
  correction?: CorrectionName;
  ratio: number;
  /** median / p90 / mean relative attention-output error over query heads × held-out queries × layers */
  medianError: number;
  p90Error: number;
  meanError: number;
  /** median error by distance p − S of the held-out query from the split (DISTANCE_BUCKETS; non-empty buckets only) */
  errorByDistance: Record<string, number>;
  /** median error per layer */
  errorByLayer: number[];
  /** median error per held-out query kind (trace only) */
  errorByKind?: Record<string, number>;
  /** fraction of planted needles kept (trace only); split into needles the window asked about and follow-ups */
  needleRecall?: number;
  needleRecallAsked?: number;
  needleRecallFollowUp?: number;
  /** bytes of the compressed prefix (retained K/V rows, plus the moment summary when present) */
  retainedBytes: number;
  /** retainedBytes / bytes of the full prefix [0, S) */
  retainedFraction: number;
  /** scoring + selection + compaction/merge, all layers, milliseconds */
  ms: number;
  /** why this configuration could not compress at this ratio (e.g. a budget below the tokens it protects); errors are NaN then */
  skipped?: string;
}

/** The split of one evaluation (held-out positions of layer 0; every layer is split at the same S). */
export interface EvalProtocol {
  /** the prefix [0, split) is compressed */
  split: number;
  /** observation window positions [from, to) = [S − W, S) */
  window: { from: number; to: number };
  /** the `count` held-out queries per head sit at positions first..last (≥ S); `continuation` of them are at p ≥ N and see all N keys */
  heldOut: { first: number; last: number; count: number; continuation: number };
  /** where the query positions came from */
  queries: 'trace' | 'qpos' | QueryConvention;
}

/** A one-line description of a layer: its full causal attention over the held-out queries. */
export interface EvalLayerInfo {
  /** mean attention probability on position 0 */
  sinkMass: number;
  /** mean attention probability on the 64 most recent visible keys */
  localMass: number;
  /** held-out queries per query head, and the window size */
  T: number;
  W: number;
}

export interface EvalReport {
  source: { kind: 'trace'; options: Required<TraceOptions> } | { kind: 'dump'; path: string; format: string };
  backend: 'cpu' | 'cuda';
  device: string;
  shape: { layers: number; Hkv: number; Hq: number; N: number; d: number; dv: number; W: number; T: number };
  protocol: EvalProtocol;
  layers: EvalLayerInfo[];
  ratios: number[];
  rows: EvalRow[];
  totalMs: number;
}

/** One layer split for evaluation: full cache, window, held-out queries with positions. */
interface Layer extends SplitLayer {
  keys: Float32Array;
  values: Float32Array;
  groups: PositionGroup[];
  kinds?: string[];
  needles?: Int32Array; // [Hkv, n]
  needleAsked?: Uint8Array;
}

interface Loaded {
  layers: Layer[];
  S: number;
  shape: EvalReport['shape'];
  source: EvalReport['source'];
  queries: EvalProtocol['queries'];
}

function loadLayers(o: EvalOptions): Loaded {
  const maxWindow = o.window === undefined ? 32 : checkInt('window', o.window, 1, 1 << 20);
  if (o.dump) {
    const dump = loadDump(o.dump, o.dumpOptions);
    const l0 = dump.layers[0];
    if (!l0.queries || l0.Hq === undefined || !dump.queries) {
      throw new Error(`eval: ${o.dump} has no queries (q_{l}.npy / layers.{l}.q): attention error needs them`);
    }
    const N = l0.N;
    const S = o.split === undefined ? defaultSplit(N) : checkInt('split', o.split, 2, N);
    const layers = dump.layers.map((l, i) => {
      if (l.N !== N) throw new RangeError(`eval: layer ${i} caches ${l.N} tokens but layer 0 caches ${N}; every layer is split at the same S`);
      const sp = splitQueries(l.queries as Float32Array, l.positions as Int32Array, l.Hq as number, l.d, N, S, maxWindow, `eval: ${o.dump}: layer ${i}`);
      return { ...sp, keys: l.keys, values: l.values, groups: groupByPosition(sp.positions) };
    });
    return {
      layers,
      S,
      shape: { layers: layers.length, Hkv: l0.Hkv, Hq: l0.Hq, N, d: l0.d, dv: l0.dv, W: layers[0].W, T: layers[0].T },
      source: { kind: 'dump', path: dump.source, format: dump.format },
      queries: dump.queries,
    };
  }
  if (o.split !== undefined || o.window !== undefined) {
    throw new RangeError('split, window: apply to dumps; the built-in trace has its window at N−W..N−1 and its decode queries at position N (S = N)');
  }
  const tr = generateTrace(o.trace);
  const layers = tr.layers.map((l) => {
    const positions = new Int32Array(tr.T).fill(tr.N); // alternative decode queries, all at position N
    return {
      keys: l.keys,
      values: l.values,
      window: l.windowQueries,
      W: tr.W,
      heldOut: l.heldOutQueries,
      T: tr.T,
      positions,
      groups: groupByPosition(positions),
      kinds: l.heldOutKind,
      needles: l.needles,
      needleAsked: l.needleAsked,
    };
  });
  return {
    layers,
    S: tr.N,
    shape: { layers: layers.length, Hkv: tr.Hkv, Hq: tr.Hq, N: tr.N, d: tr.d, dv: tr.dv, W: tr.W, T: tr.T },
    source: { kind: 'trace', options: tr.options },
    queries: 'trace',
  };
}

export async function runEval(o: EvalOptions = {}): Promise<EvalReport> {
  const t0 = performance.now();
  const backend = o.backend ?? (nativeInfo.cuda ? 'cuda' : 'cpu');
  if (backend === 'cuda' && !nativeInfo.cuda) throw new Error(`eval: CUDA is not available (${nativeInfo.reason})`);
  const deviceId = o.device ?? 0;
  const ratios = [...(o.ratios ?? EVAL_RATIOS)];
  for (const r of ratios) if (!(r >= 0 && r < 1)) throw new RangeError(`ratios: each must be in [0, 1), got ${r}`);
  const names = o.configs ?? EVAL_CONFIGS.map((c) => c.name);
  const configs = names.map((n) => {
    const c = EVAL_CONFIGS.find((x) => x.name === n);
    if (!c) throw new RangeError(`configs: unknown '${n}' (known: ${EVAL_CONFIGS.map((x) => x.name).join(', ')})`);
    return c;
  });
  const { layers, S, shape, source, queries } = loadLayers(o);
  const { Hkv, Hq, N, d, dv } = shape;
  const F = N - S; // uncompressed suffix rows S..N−1
  const stream = backend === 'cuda' ? Stream.create({ device: deviceId }) : undefined;
  const place = (a: Float32Array | Int32Array, dims: number[]): Tensor => {
    const t = tensor(a, dims);
    return backend === 'cuda' ? toDevice(t, { device: deviceId, stream }) : t;
  };
  const host = async (t: Tensor): Promise<Float32Array> => hostContiguous(await toHost(t, { stream })) as Float32Array;
  const sync = async () => {
    if (stream) await stream.synchronize();
  };
  const now = () => performance.now();

  // Per layer: the prefix, window and held-out queries on the backend, the suffix rows on the host, and the
  // causal full-cache reference of the held-out queries.
  const placed = [];
  const info: EvalLayerInfo[] = [];
  for (const l of layers) {
    const keys = place(sliceRows(l.keys, Hkv, N, d, 0, S), [Hkv, S, d]), values = place(sliceRows(l.values, Hkv, N, dv, 0, S), [Hkv, S, dv]);
    const fullK = F ? place(l.keys, [Hkv, N, d]) : keys, fullV = F ? place(l.values, [Hkv, N, dv]) : values;
    const window = place(l.window, [Hq, l.W, d]), heldOut = place(l.heldOut, [Hq, l.T, d]);
    const refCounts = place(groupCounts(new Int32Array(Hkv), Hkv, l.groups, 0, N), [l.groups.length, Hkv]);
    const ref = causalDecode({ queries: heldOut, keys: fullK, values: fullV, counts: refCounts, groups: l.groups, stream });
    const refHost = await host(ref);
    for (const t of F ? [fullK, fullV, refCounts, ref] : [refCounts, ref]) dispose(t);
    placed.push({
      keys, values, window, heldOut, ref: refHost,
      suffixK: sliceRows(l.keys, Hkv, N, d, S, N), suffixV: sliceRows(l.values, Hkv, N, dv, S, N),
    });
    info.push({ ...attentionProfile(l.keys, Hkv, N, d, l.heldOut, Hq, l.T, l.groups), T: l.T, W: l.W });
  }

  const rows: EvalRow[] = [];
  const total = configs.length * ratios.length;
  let done = 0;
  const bytesPer = 4; // the trace and dumps are evaluated in f32
  const fullBytes = layers.length * Hkv * S * (d + dv) * bytesPer;
  for (const c of configs) {
    // Score once per layer; every ratio reuses the scores.
    let scoreMs = 0;
    const scores: Tensor[] = [];
    for (const p of placed) {
      const s0 = now();
      scores.push(await methodScoresAsync({ keys: p.keys, values: p.values, queries: p.window }, { method: c.method, stream }));
      await sync();
      scoreMs += now() - s0;
    }
    for (const ratio of ratios) {
      o.onProgress?.(done, total, `${c.name} r=${ratio}`);
      const errs: number[] = [];
      const byKind: Record<string, number[]> = {};
      const byDistance: number[][] = DISTANCE_BUCKETS.map(() => []);
      const byLayer: number[] = [];
      let kept = 0, keptAsked = 0, keptFollow = 0, nNeedles = 0, nAsked = 0, nFollow = 0;
      let retained = 0, ms = scoreMs;
      let skipped: string | undefined;
      for (let li = 0; li < placed.length && !skipped; li++) {
        const p = placed[li], L = layers[li];
        const s0 = now();
        let out: Compressed;
        try {
          out = await compressAsync(
            { keys: p.keys, values: p.values, queries: p.window },
            { method: c.method, ratio, merge: c.merge, correction: c.correction, scores: scores[li], stream },
          );
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
          skipped = `layer ${li}: ${e.message}`;
          break;
        }
        await sync();
        ms += now() - s0;
        const counts = hostContiguous(await toHost(out.counts, { stream })) as Int32Array;
        // the compressed prefix, then the uncompressed suffix rows S..N−1 of every head
        const cap = out.keys.shape[1];
        const [K, V] = F
          ? [place(packCache(await host(out.keys), counts, cap, p.suffixK, F, Hkv, d), [Hkv, cap + F, d]), place(packCache(await host(out.values), counts, cap, p.suffixV, F, Hkv, dv), [Hkv, cap + F, dv])]
          : [out.keys, out.values];
        const cnt = place(groupCounts(counts, Hkv, L.groups, S, N), [L.groups.length, Hkv]);
        const got = causalDecode({ queries: p.heldOut, keys: K, values: V, counts: cnt, groups: L.groups, moments: out.moments, stream });
        const e = rowErrors(await host(got), p.ref, Hq * L.T, dv);
        e.forEach((x, r) => {
          const t = r % L.T;
          errs.push(x);
          byDistance[distanceBucket(L.positions[t] - S)].push(x);
          const kind = L.kinds?.[t];
          if (kind) (byKind[kind] ??= []).push(x);
        });
        byLayer.push(quantile(Float64Array.from(e).sort(), 0.5));
        for (let h = 0; h < Hkv; h++) retained += counts[h] * (d + dv) * bytesPer;
        if (out.moments) retained += Hkv * (1 + d + dv + d * dv) * 4;
        if (L.needles) {
          const idx = hostContiguous(await toHost(out.indices, { stream })) as Int32Array;
          const per = L.needles.length / Hkv;
          for (let h = 0; h < Hkv; h++) {
            const keptSet = new Set(idx.subarray(h * cap, h * cap + counts[h]));
            for (let j = 0; j < per; j++) {
              const hit = keptSet.has(L.needles[h * per + j]) ? 1 : 0;
              const asked = L.needleAsked?.[h * per + j] === 1;
              kept += hit;
              nNeedles++;
              if (asked) {
                keptAsked += hit;
                nAsked++;
              } else {
                keptFollow += hit;
                nFollow++;
              }
            }
          }
        }
        for (const t of [got, cnt, ...(F ? [K, V] : []), out.keys, out.values, out.counts, out.indices]) dispose(t);
        if (out.moments) for (const t of [out.moments.n, out.moments.muK, out.moments.muV, out.moments.m]) dispose(t);
      }
      if (skipped) {
        rows.push({
          config: c.name, method: c.method, ...(c.merge ? { merge: c.merge } : {}), ...(c.correction ? { correction: c.correction } : {}), ratio,
          medianError: NaN, p90Error: NaN, meanError: NaN, errorByDistance: {}, errorByLayer: [], retainedBytes: NaN, retainedFraction: NaN, ms, skipped,
        });
        done++;
        continue;
      }
      const sorted = Float64Array.from(errs).sort();
      const median = (v: number[]) => quantile(Float64Array.from(v).sort(), 0.5);
      rows.push({
        config: c.name,
        method: c.method,
        ...(c.merge ? { merge: c.merge } : {}),
        ...(c.correction ? { correction: c.correction } : {}),
        ratio,
        medianError: quantile(sorted, 0.5),
        p90Error: quantile(sorted, 0.9),
        meanError: errs.reduce((a, b) => a + b, 0) / errs.length,
        errorByDistance: Object.fromEntries(DISTANCE_BUCKETS.flatMap((b, i) => (byDistance[i].length ? [[b.label, median(byDistance[i])]] : []))),
        errorByLayer: byLayer,
        ...(Object.keys(byKind).length ? { errorByKind: Object.fromEntries(Object.entries(byKind).map(([k, v]) => [k, median(v)])) } : {}),
        ...(nNeedles
          ? {
              needleRecall: kept / nNeedles,
              ...(nAsked ? { needleRecallAsked: keptAsked / nAsked } : {}),
              ...(nFollow ? { needleRecallFollowUp: keptFollow / nFollow } : {}),
            }
          : {}),
        retainedBytes: retained,
        retainedFraction: retained / fullBytes,
        ms,
      });
      done++;
    }
    for (const s of scores) dispose(s);
  }
  o.onProgress?.(done, total, 'done');
  for (const p of placed) for (const t of [p.keys, p.values, p.window, p.heldOut]) dispose(t);
  stream?.dispose();
  const device = backend === 'cuda' ? nativeInfo.devices.find((x) => x.id === deviceId)?.name ?? `cuda:${deviceId}` : `CPU (${nativeInfo.threads} threads)`;
  const pos0 = layers[0].positions;
  const protocol: EvalProtocol = {
    split: S,
    window: { from: S - layers[0].W, to: S },
    heldOut: { first: pos0[0], last: pos0[pos0.length - 1], count: pos0.length, continuation: pos0.filter((x) => x >= N).length },
    queries,
  };
  return { source, backend, device, shape, protocol, layers: info, ratios, rows, totalMs: performance.now() - t0 };
}

function dispose(t: Tensor): void {
  const d = t.data as { dispose?: () => void };
  if (typeof d.dispose === 'function') d.dispose();
}

export { TRACE_DEFAULTS };
