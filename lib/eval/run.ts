/**
 * `kvtrim eval`: fidelity of every method × compression ratio on the built-in LLM-like trace (lib/trace.ts) or
 * on a user's own KV dumps (lib/io/dump.ts). For each layer, configuration and ratio it compresses the cache
 * with `compress()`, runs held-out decode queries through `decodeAttention` on the compressed cache (with the
 * moment summary when there is one) and on the full cache, and reports the relative attention-output error
 * ‖o − o_full‖ / ‖o_full‖ (median and p90 over query heads × held-out queries × layers), needle recall (trace),
 * retained bytes and time.
 */
import { nativeInfo } from '../binding';
import { Stream } from '../device';
import { Tensor, tensor, toDevice, toHost, hostContiguous } from '../tensor';
import { attentionError, fullAttention, quantile } from './metrics';
import { compress, methodScores, Compressed } from '../compress';
import { METHODS, MethodName, MergeName, CorrectionName } from '../methods';
import { generateTrace, TraceOptions, TRACE_DEFAULTS } from '../trace';
import { loadDump, LoadDumpOptions } from '../io/dump';

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
  /** median error per held-out query kind (trace only) */
  errorByKind?: Record<string, number>;
  /** fraction of planted needles kept (trace only); split into needles the window asked about and follow-ups */
  needleRecall?: number;
  needleRecallAsked?: number;
  needleRecallFollowUp?: number;
  /** bytes of the compressed cache (retained K/V rows, plus the moment summary when present) */
  retainedBytes: number;
  /** retainedBytes / bytes of the full cache */
  retainedFraction: number;
  /** scoring + selection + compaction/merge, all layers, milliseconds */
  ms: number;
}

export interface EvalReport {
  source: { kind: 'trace'; options: Required<TraceOptions> } | { kind: 'dump'; path: string; format: string };
  backend: 'cpu' | 'cuda';
  device: string;
  shape: { layers: number; Hkv: number; Hq: number; N: number; d: number; dv: number; W: number; T: number };
  ratios: number[];
  rows: EvalRow[];
  totalMs: number;
}

interface Layer {
  keys: Float32Array;
  values: Float32Array;
  window: Float32Array; // [Hq, W, d]
  heldOut: Float32Array; // [Hq, T, d]
  kinds?: string[];
  needles?: Int32Array; // [Hkv, n]
  needleAsked?: Uint8Array;
}

function loadLayers(o: EvalOptions): { layers: Layer[]; shape: EvalReport['shape']; source: EvalReport['source'] } {
  if (o.dump) {
    const dump = loadDump(o.dump, o.dumpOptions);
    const l0 = dump.layers[0];
    if (!l0.queries || l0.T === undefined || l0.Hq === undefined) {
      throw new Error(`eval: ${o.dump} has no queries (q_{l}.npy / layers.{l}.q): attention error needs them`);
    }
    const T = l0.T, W = Math.min(32, Math.floor(T / 2));
    if (W < 1 || T - W < 1) throw new Error(`eval: ${o.dump}: need at least 2 query positions per layer, got ${T}`);
    // The last W queries are the observation window; the T − W earlier ones are held out (they attend the whole
    // cache here: the same metric for every method).
    const layers = dump.layers.map((l) => {
      const Hq = l.Hq as number, d = l.d, q = l.queries as Float32Array;
      const win = new Float32Array(Hq * W * d), held = new Float32Array(Hq * (T - W) * d);
      for (let h = 0; h < Hq; h++) {
        held.set(q.subarray(h * T * d, (h * T + T - W) * d), h * (T - W) * d);
        win.set(q.subarray((h * T + T - W) * d, (h + 1) * T * d), h * W * d);
      }
      return { keys: l.keys, values: l.values, window: win, heldOut: held };
    });
    return {
      layers,
      shape: { layers: layers.length, Hkv: l0.Hkv, Hq: l0.Hq, N: l0.N, d: l0.d, dv: l0.dv, W, T: T - W },
      source: { kind: 'dump', path: dump.source, format: dump.format },
    };
  }
  const tr = generateTrace(o.trace);
  const layers = tr.layers.map((l) => ({
    keys: l.keys,
    values: l.values,
    window: l.windowQueries,
    heldOut: l.heldOutQueries,
    kinds: l.heldOutKind,
    needles: l.needles,
    needleAsked: l.needleAsked,
  }));
  return {
    layers,
    shape: { layers: layers.length, Hkv: tr.Hkv, Hq: tr.Hq, N: tr.N, d: tr.d, dv: tr.dv, W: tr.W, T: tr.T },
    source: { kind: 'trace', options: tr.options },
  };
}

export async function runEval(o: EvalOptions = {}): Promise<EvalReport> {
  const t0 = performance.now();
  const backend = o.backend ?? (nativeInfo.cuda ? 'cuda' : 'cpu');
  if (backend === 'cuda' && !nativeInfo.cuda) throw new Error(`eval: CUDA is not available (${nativeInfo.reason})`);
  const deviceId = o.device ?? 0;
  const stream = backend === 'cuda' ? Stream.create({ device: deviceId }) : undefined;
  const ratios = [...(o.ratios ?? EVAL_RATIOS)];
  for (const r of ratios) if (!(r >= 0 && r < 1)) throw new RangeError(`ratios: each must be in [0, 1), got ${r}`);
  const names = o.configs ?? EVAL_CONFIGS.map((c) => c.name);
  const configs = names.map((n) => {
    const c = EVAL_CONFIGS.find((x) => x.name === n);
    if (!c) throw new RangeError(`configs: unknown '${n}' (known: ${EVAL_CONFIGS.map((x) => x.name).join(', ')})`);
    return c;
  });
  const { layers, shape, source } = loadLayers(o);
  const { Hkv, Hq, N, d, dv, W, T } = shape;
  const place = (a: Float32Array, dims: number[]): Tensor => {
    const t = tensor(a, dims);
    return backend === 'cuda' ? toDevice(t, { device: deviceId, stream }) : t;
  };
  const sync = async () => {
    if (stream) await stream.synchronize();
  };
  const now = () => performance.now();

  // Per layer: tensors on the backend and the full-cache attention of the held-out queries.
  const placed = [];
  for (const l of layers) {
    const keys = place(l.keys, [Hkv, N, d]), values = place(l.values, [Hkv, N, dv]);
    const window = place(l.window, [Hq, W, d]), heldOut = place(l.heldOut, [Hq, T, d]);
    placed.push({ keys, values, window, heldOut, ref: fullAttention(heldOut, keys, values, undefined, stream) });
  }

  const rows: EvalRow[] = [];
  const total = configs.length * ratios.length;
  let done = 0;
  const bytesPer = 4; // the trace and dumps are evaluated in f32
  const fullBytes = layers.length * Hkv * N * (d + dv) * bytesPer;
  for (const c of configs) {
    if (METHODS[c.method].needsQueries && W < 1) throw new Error(`eval: '${c.name}' needs queries`);
    // Score once per layer; every ratio reuses the scores.
    let scoreMs = 0;
    const scores: Tensor[] = [];
    for (const p of placed) {
      const s0 = now();
      scores.push(methodScores({ keys: p.keys, values: p.values, queries: p.window }, { method: c.method, stream }));
      await sync();
      scoreMs += now() - s0;
    }
    for (const ratio of ratios) {
      o.onProgress?.(done, total, `${c.name} r=${ratio}`);
      const errs: number[] = [];
      const byKind: Record<string, number[]> = {};
      let kept = 0, keptAsked = 0, keptFollow = 0, nNeedles = 0, nAsked = 0, nFollow = 0;
      let retained = 0, ms = scoreMs;
      for (let li = 0; li < placed.length; li++) {
        const p = placed[li], L = layers[li];
        const s0 = now();
        const out: Compressed = compress(
          { keys: p.keys, values: p.values, queries: p.window },
          { method: c.method, ratio, merge: c.merge, correction: c.correction, scores: scores[li], stream },
        );
        await sync();
        ms += now() - s0;
        const ae = await attentionError({ queries: p.heldOut, keys: p.keys, values: p.values, compressed: out, reference: p.ref, stream });
        ae.errors.forEach((e, r) => {
          errs.push(e);
          const kind = L.kinds?.[r % T];
          if (kind) (byKind[kind] ??= []).push(e);
        });
        const counts = hostContiguous(await toHost(out.counts, { stream })) as Int32Array;
        for (let h = 0; h < Hkv; h++) retained += counts[h] * (d + dv) * bytesPer;
        if (out.moments) retained += Hkv * (1 + d + dv + d * dv) * 4;
        if (L.needles) {
          const idx = hostContiguous(await toHost(out.indices, { stream })) as Int32Array;
          const cap = out.indices.shape[1], per = L.needles.length / Hkv;
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
        for (const t of [out.keys, out.values, out.counts, out.indices]) dispose(t);
        if (out.moments) for (const t of [out.moments.n, out.moments.muK, out.moments.muV, out.moments.m]) dispose(t);
      }
      const sorted = Float64Array.from(errs).sort();
      rows.push({
        config: c.name,
        method: c.method,
        ...(c.merge ? { merge: c.merge } : {}),
        ...(c.correction ? { correction: c.correction } : {}),
        ratio,
        medianError: quantile(sorted, 0.5),
        p90Error: quantile(sorted, 0.9),
        meanError: errs.reduce((a, b) => a + b, 0) / errs.length,
        ...(Object.keys(byKind).length
          ? { errorByKind: Object.fromEntries(Object.entries(byKind).map(([k, v]) => [k, quantile(Float64Array.from(v).sort(), 0.5)])) }
          : {}),
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
  for (const p of placed) for (const t of [p.keys, p.values, p.window, p.heldOut, p.ref]) dispose(t);
  stream?.dispose();
  const device = backend === 'cuda' ? nativeInfo.devices.find((x) => x.id === deviceId)?.name ?? `cuda:${deviceId}` : `CPU (${nativeInfo.threads} threads)`;
  return { source, backend, device, shape, ratios, rows, totalMs: performance.now() - t0 };
}

function dispose(t: Tensor): void {
  const d = t.data as { dispose?: () => void };
  if (typeof d.dispose === 'function') d.dispose();
}

export { TRACE_DEFAULTS };
