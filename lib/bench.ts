/**
 * `kvtrim bench`: times each kernel at given shapes on the active backend (CUDA events on a GPU, wall clock on
 * the CPU backend), reports the median, the achieved bandwidth, the ratio to the speed-of-light bound of
 * docs/performance.md §5 (bytes the op must move ÷ copy bandwidth measured in the same run) and the speedup
 * over a straightforward baseline measured in the same run; with a peer (lib/peer.ts: the same math in PyTorch), the
 * peer's median on the same inputs, timed right after kvtrim's, and the ratio.
 */
import os from 'node:os';
import { native, nativeInfo } from './binding';
import { DeviceBuffer, Event, Stream } from './device';
import { Rng } from './rng';
import { opts } from './ops/common';
import { checkInt } from './validate';
import { matchesFilter } from './check';
import { Tensor, empty, toDevice, dtypeSize } from './tensor';
import type { FloatDType } from './tensor';
import type { BenchCase, BenchContext, BenchShape, Prepared } from './benches/types';
import type { BenchPeer } from './peer';
// ==== one bench list per op (one import each) ====
import { keydiffBenches } from './benches/keydiff';
import { selectBenches } from './benches/select';
import { gatherBenches } from './benches/gather';
import { nestedkvBenches } from './benches/nestedkv';
import { snapkvBenches } from './benches/snapkv';
import { momentsBenches } from './benches/moments';
import { decodeBenches } from './benches/decode';
import { momentkvSelectBenches } from './benches/momentkv_select';
import { spdBenches } from './benches/spd';
import { grkvBenches } from './benches/grkv';
import { batchedBenches } from './benches/batched';
import { pipelineBenches } from './benches/pipeline';
// ==== end of bench lists ====

/** Every bench case, one list per op (the order is the table's and fixes each case's seeded inputs). */
export function allBenches(): BenchCase[] {
  return [
    ...keydiffBenches,
    ...selectBenches,
    ...gatherBenches,
    ...nestedkvBenches,
    ...snapkvBenches,
    ...momentsBenches,
    ...decodeBenches,
    ...momentkvSelectBenches,
    ...spdBenches,
    ...grkvBenches,
    ...pipelineBenches,
    ...batchedBenches,
    // ==== add op lists here ====
  ];
}

export interface BenchOptions {
  backend?: 'cpu' | 'cuda';
  device?: number;
  H?: number;
  d?: number;
  N?: number[];
  dtype?: FloatDType;
  repeats?: number;
  warmup?: number;
  /** case-insensitive substring of the op name, or several (a case matches any) */
  filter?: string | string[];
  seed?: number;
  /** Times each case with a peer too (CPU backend only): lib/peer.ts torchPeer. */
  peer?: BenchPeer;
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface BenchRow {
  op: string;
  variant: string;
  H: number;
  N: number;
  d: number;
  dtype: FloatDType;
  /** median over repeats, milliseconds */
  medianMs: number;
  minMs: number;
  /** bytes the op must move at least */
  solBytes: number;
  /** achieved GB/s = solBytes / median */
  gbps: number;
  /** speed-of-light time = solBytes / measured copy bandwidth */
  solMs: number;
  /** fraction of the speed of light reached: solMs / medianMs */
  solFraction: number;
  /** compute-bound cases (BenchCase.flops), CPU backend: achieved GFLOP/s and its fraction of the measured FMA peak */
  gflops?: number;
  peakFraction?: number;
  baseline?: { name: string; medianMs: number; speedup: number };
  /** the peer's median on the same inputs and kvtrim's speedup over it (peer ms / kvtrim ms) */
  peer?: { name: string; medianMs: number; speedup: number };
}

export interface BenchReport {
  backend: 'cpu' | 'cuda';
  device: string;
  /** copy bandwidth measured in this run, GB/s (read + write bytes per second) */
  bandwidthGBs: number;
  /** CPU backend: f32 multiply-add peak measured in this run (GFLOP/s, all threads) and the instruction-set level */
  fmaPeakGFs?: number;
  cpuIsa?: string;
  threads: number;
  repeats: number;
  /** the peer's name when one ran */
  peer?: string;
  /** where and when: CPU model, ISO date, 1/5/15-minute load averages at the end of the run (a shared machine's noise) */
  host: { cpu: string; date: string; loadavg: number[] };
  rows: BenchRow[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Times `fn` `repeats` times after `warmup` runs; CUDA: events around each run on `stream`. */
function timeIt(fn: () => void, repeats: number, warmup: number, stream?: Stream, device = 0): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  if (stream) {
    const a = Event.create({ device }), b = Event.create({ device });
    for (let i = 0; i < repeats; i++) {
      a.record(stream);
      fn();
      b.record(stream);
      times.push(a.elapsedMs(b));
    }
    a.dispose();
    b.dispose();
  } else {
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      fn();
      times.push(performance.now() - t0);
    }
  }
  return times;
}

/** Times of `a` and of `b` run alternately (a, b, a, b, …), `repeats` each, after `warmup` rounds of both. */
function timePaired(a: () => void, b: () => void, repeats: number, warmup: number, stream?: Stream, device = 0): [number[], number[]] {
  for (let i = 0; i < warmup; i++) {
    a();
    b();
  }
  const ta: number[] = [], tb: number[] = [];
  for (let i = 0; i < repeats; i++) {
    ta.push(timeIt(a, 1, 0, stream, device)[0]);
    tb.push(timeIt(b, 1, 0, stream, device)[0]);
  }
  return [ta, tb];
}

/** Copy bandwidth of the backend (GB/s counting read + write): device-to-device copy, or threaded memcpy. */
export function measureBandwidth(backend: 'cpu' | 'cuda', device = 0, stream?: Stream, bytes = 256 * 2 ** 20): number {
  if (backend === 'cuda') {
    const a = empty([bytes / 4], 'f32', { kind: 'cuda', id: device }, stream), b = empty([bytes / 4], 'f32', { kind: 'cuda', id: device }, stream);
    const pa = (a.data as DeviceBuffer).native, pb = (b.data as DeviceBuffer).native;
    const t = median(timeIt(() => native.copyDevice(pa, 0, pb, 0, bytes, stream?.handle), 10, 2, stream, device));
    (a.data as DeviceBuffer).dispose(); // stream-ordered frees, before the caller disposes the stream
    (b.data as DeviceBuffer).dispose();
    return (2 * bytes) / (t * 1e6);
  }
  const src = new Uint8Array(bytes).fill(1), dst = new Uint8Array(bytes);
  const t = median(timeIt(() => native.hostCopy(dst, src), 7, 2));
  return (2 * bytes) / (t * 1e6);
}

export function runBench(o: BenchOptions = {}): BenchReport {
  opts('options', o, ['backend', 'device', 'H', 'd', 'N', 'dtype', 'repeats', 'warmup', 'filter', 'seed', 'peer', 'onProgress']);
  const backend = o.backend ?? (o.peer || !nativeInfo.cuda ? 'cpu' : 'cuda');
  if (o.peer && backend !== 'cpu') throw new RangeError('bench: a peer runs on the CPU and is compared with the CPU backend only (the CUDA peer is tools/gpu/verify.js)');
  if (backend === 'cuda' && !nativeInfo.cuda) throw new Error(`bench: CUDA is not available (${nativeInfo.reason})`);
  const device = o.device ?? 0;
  const stream = backend === 'cuda' ? Stream.create({ device }) : undefined;
  // counts of timed runs: checked (a non-integer or Infinity would loop forever)
  const repeats = checkInt('repeats', o.repeats ?? (backend === 'cuda' ? 50 : 5), 1, 1e6);
  const warmup = checkInt('warmup', o.warmup ?? (backend === 'cuda' ? 5 : 1), 0, 1e6);
  const dtype = o.dtype ?? (backend === 'cuda' ? 'bf16' : 'f32');
  const Ns = o.N ?? [4096, 32768, 131072];
  const H = o.H ?? 8, d = o.d ?? 128;
  const rng = new Rng(o.seed ?? 1);
  // Device tensors of the current case, freed (on the stream) when the case is done: before the stream is disposed,
  // and without holding every case's inputs until a garbage collection.
  const owned: Tensor[] = [];
  const own = (t: Tensor) => (t.data instanceof DeviceBuffer && owned.push(t), t);
  const ctx: BenchContext = {
    backend,
    device,
    stream,
    rng,
    place: (t: Tensor) => (backend === 'cuda' ? own(toDevice(t, { device, stream })) : t),
    alloc: (shape, dt) => own(empty(shape, dt, backend === 'cuda' ? { kind: 'cuda', id: device } : { kind: 'cpu' }, stream)),
  };
  const bw = measureBandwidth(backend, device, stream);
  const peak = backend === 'cpu' ? native.fmaPeak() : undefined;
  const cases = allBenches().filter((c) => matchesFilter(c.op, o.filter) && (!c.backends || c.backends.includes(backend)));
  const rows: BenchRow[] = [];
  const total = cases.length * Ns.length;
  let done = 0;
  for (const N of Ns) {
    const shape: BenchShape = { H, N, d, dtype };
    for (const c of cases) {
      o.onProgress?.(done, total, `${c.op} N=${N}`);
      const p: Prepared = c.prepare(shape, ctx);
      const paired = p.baseline?.interleave ? timePaired(p.run, p.baseline.run, repeats, warmup, stream, device) : undefined;
      const times = paired ? paired[0] : timeIt(p.run, repeats, warmup, stream, device);
      const med = median(times);
      const solBytes = c.solBytes(shape);
      const solMs = solBytes / (bw * 1e6);
      const row: BenchRow = {
        op: c.op,
        variant: c.variant,
        H,
        N,
        d,
        dtype,
        medianMs: med,
        minMs: Math.min(...times),
        solBytes,
        gbps: solBytes / (med * 1e6),
        solMs,
        solFraction: solMs / med,
      };
      if (peak !== undefined && c.flops) {
        row.gflops = c.flops(shape) / (med * 1e6);
        row.peakFraction = row.gflops / peak;
      }
      if (p.baseline) {
        const bm = median(paired ? paired[1] : timeIt(p.baseline.run, Math.max(1, Math.min(repeats, 3)), 0, stream, device));
        row.baseline = { name: p.baseline.name, medianMs: bm, speedup: bm / med };
      }
      if (o.peer && p.peer) {
        const pm = o.peer.time(c.op, c.variant, p.peer.inputs, p.peer.params ?? {}, repeats, warmup);
        if (pm !== undefined) row.peer = { name: o.peer.name, medianMs: pm.medianMs, speedup: pm.medianMs / med };
      }
      p.dispose?.();
      for (const t of owned.splice(0)) (t.data as DeviceBuffer).dispose();
      rows.push(row);
      done++;
    }
  }
  o.onProgress?.(done, total, 'done');
  stream?.dispose();
  const dev = backend === 'cuda' ? nativeInfo.devices.find((x) => x.id === device)?.name ?? `cuda:${device}` : `CPU (${nativeInfo.threads} threads)`;
  const host = { cpu: os.cpus()[0]?.model ?? 'unknown', date: new Date().toISOString(), loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) };
  return { backend, device: dev, host, bandwidthGBs: bw, ...(peak !== undefined ? { fmaPeakGFs: peak, cpuIsa: nativeInfo.cpuIsa } : {}), threads: nativeInfo.threads, repeats, ...(o.peer ? { peer: o.peer.name } : {}), rows };
}

export { dtypeSize };
