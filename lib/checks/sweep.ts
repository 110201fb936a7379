/**
 * Code-path sweep: small target-vs-CPU checks chosen so that every compiled variant of the CUDA kernels runs at least
 * once — each (dtype, vector width, register steps) of the row kernels (KeyDiff, NestedKV), the tensor-core SnapKV
 * tiles of every head dim and dtype with and without cp.async / paired query loads, the decode kernels' per-lane
 * widths with vector and scalar loads, the GRKV kernels of every (dtype, d, dv) class, multi-tile moment merges.
 * The shapes are small (cheap on a GPU and under the CUDA emulator); the big checks are in the per-op files.
 */
import { keydiffScores } from '../ops/keydiff';
import { nestedkvScores } from '../ops/nestedkv';
import { snapkvScores } from '../ops/snapkv';
import { decodeAttention } from '../ops/decode';
import { MomentState } from '../ops/moments';
import { momentkvSelect } from '../ops/momentkv_select';
import { tensor, Tensor, hostContiguous, f32ToBf16, f32ToF16 } from '../tensor';
import type { DType, FloatDType } from '../tensor';
import type { Rng } from '../rng';
import type { Check } from './types';
import { randomHost, numbers, maxRel, mismatches, relErrWithInf, rowRel } from './util';
import { grkvCheck } from './grkv';
import { stateOn } from './moments';

type Layout = 'contig' | 'off1' | 'off2' | 'off4' | 'pad3' | 'nhd';

/**
 * Random [A, B, C] data stored with `layout`: contiguous, shifted by 1/2/4 elements (misaligned vector loads),
 * rows padded by 3 elements, or stored [B, A, C]. Gaps hold NaN / 0x7fff. `view` maps the (placed) 1-D storage to
 * the [A, B, C] view.
 */
export function storedView(rng: Rng, A: number, B: number, C: number, dtype: FloatDType, layout: Layout, bias = 0.8) {
  const src = numbers(randomHost(rng, [A, B, C], dtype, bias));
  const off = layout === 'off1' ? 1 : layout === 'off2' ? 2 : layout === 'off4' ? 4 : 0;
  const row = layout === 'pad3' ? C + 3 : C;
  const strides = layout === 'nhd' ? [row, A * row, 1] : [B * row, row, 1];
  const total = off + A * B * row;
  const f32 = dtype === 'f32';
  const store = f32 ? new Float32Array(total).fill(NaN) : new Uint16Array(total).fill(0x7fff);
  const half = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let a = 0; a < A; a++)
    for (let b = 0; b < B; b++)
      for (let c = 0; c < C; c++) {
        const x = src[(a * B + b) * C + c];
        store[off + a * strides[0] + b * strides[1] + c] = f32 ? x : half(x);
      }
  const host = tensor(store, [total], { dtype });
  return { host, view: (t: Tensor) => t.view([A, B, C], strides, off), strides, off };
}

/** kvt::cuda::row_vec_width (cuda/common.cuh) of an [A, B, C] view with unit element stride. */
function rowVecWidth(dtype: DType, C: number, off: number, s0: number, s1: number): number {
  const es = dtype === 'f32' ? 4 : 2;
  for (let v = 16 / es; v > 1; v >>= 1) {
    const bytes = v * es;
    if (C % v || (off * es) % bytes || (s0 * es) % bytes || (s1 * es) % bytes) continue;
    return v;
  }
  return 1;
}

/** (V, STEPS) chosen by cuda/dispatch.cuh dispatch_vs (KeyDiff; STEPS 0 = looped) or nestedkv.cu dispatch_nkv. */
function rowVariant(dtype: DType, vec: number, d: number, big: number): string {
  if (dtype === 'f32') vec = Math.min(vec, 4);
  if (d > 256) return `1,${big}`;
  if (dtype !== 'f32' && vec >= 8 && d > 128) return '8,1';
  if (vec >= 4 && d > 64) return d <= 128 ? '4,1' : '4,2';
  if (vec >= 2 && d > 32) return d <= 64 ? '2,1' : d <= 128 ? '2,2' : '2,4';
  const steps = Math.ceil(d / 32);
  return steps === 1 ? '1,1' : steps === 2 ? '1,2' : steps <= 4 ? '1,4' : '1,8';
}

/** One (d, layout) per row-kernel variant of each dtype, from a candidate pool (first hit wins). */
function rowCases(big: number): { dtype: FloatDType; d: number; layout: Layout; variant: string }[] {
  const out: { dtype: FloatDType; d: number; layout: Layout; variant: string }[] = [];
  const N = 150;
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    const seen = new Set<string>();
    for (const d of [32, 64, 128, 256, 320, 48, 96, 160, 200, 100, 24, 72, 136])
      for (const layout of ['contig', 'off1', 'off2', 'off4'] as const) {
        const off = layout === 'off1' ? 1 : layout === 'off2' ? 2 : layout === 'off4' ? 4 : 0;
        const variant = rowVariant(dtype, rowVecWidth(dtype, d, off, N * d, d), d, big);
        if (seen.has(variant)) continue;
        seen.add(variant);
        out.push({ dtype, d, layout, variant });
      }
  }
  return out;
}

const keydiffSweep: Check[] = rowCases(0).map(({ dtype, d, layout, variant }) => ({
  op: 'keydiffScores',
  config: `sweep H=2 N=150 d=${d} ${dtype} ${layout} (V,STEPS = ${variant})`,
  async run(rng, target) {
    const s = storedView(rng, 2, 150, d, dtype, layout);
    const cpu = keydiffScores(s.view(s.host));
    const dev = keydiffScores(s.view(target.place(s.host)), { out: target.poisoned([2, 150], 'f32') });
    const err = maxRel(numbers(await target.fetch(dev)), numbers(cpu), 1e-2);
    return { pass: err <= 1e-4, error: err, tolerance: 1e-4 };
  },
}));

const nestedkvSweep: Check[] = rowCases(32).map(({ dtype, d, layout, variant }) => ({
  op: 'nestedkvScores',
  config: `sweep H=2 N=333 d=${d} ${dtype} ${layout} window 16 block 40 (V,STEPS = ${variant})`,
  async run(rng, target) {
    const s = storedView(rng, 2, 333, d, dtype, layout);
    const o = { window: 16, block: 40 };
    const cpu = nestedkvScores(s.view(s.host), o);
    const dev = nestedkvScores(s.view(target.place(s.host)), { ...o, out: target.poisoned([2, 333], 'f32') });
    const err = relErrWithInf(numbers(await target.fetch(dev)), numbers(cpu), 1e-2);
    return { pass: err <= 1e-4, error: err, tolerance: 1e-4 };
  },
}));

// SnapKV: the tensor-core tiles of every head dim and 16-bit dtype; misaligned keys (no cp.async: scalar staging) and
// queries (no paired loads); the SIMT tiles with 16-bit inputs (d outside the mma set).
const snapCases: { qd: FloatDType; kd: FloatDType; d: number; kl: Layout; ql: Layout; W: number; G: number }[] = [
  ...(['bf16', 'f16'] as const).flatMap((dt) => [64, 96, 128, 256].map((d) => ({ qd: dt, kd: dt, d, kl: 'contig' as Layout, ql: 'contig' as Layout, W: 24, G: 2 }))),
  { qd: 'bf16', kd: 'bf16', d: 128, kl: 'off1', ql: 'off1', W: 40, G: 3 },
  { qd: 'f16', kd: 'f16', d: 64, kl: 'pad3', ql: 'nhd', W: 17, G: 2 },
  { qd: 'bf16', kd: 'bf16', d: 80, kl: 'contig', ql: 'contig', W: 20, G: 2 },
];
const snapkvSweep: Check[] = snapCases.map(({ qd, kd, d, kl, ql, W, G }) => ({
  op: 'snapkvScores',
  config: `sweep Hkv=2 G=${G} W=${W} N=300 d=${d} q ${qd} ${ql} k ${kd} ${kl}`,
  async run(rng, target) {
    const Hkv = 2, N = 300;
    const q = storedView(rng, Hkv * G, W, d, qd, ql, 0.5), k = storedView(rng, Hkv, N, d, kd, kl, 0.5);
    const cpu = snapkvScores(q.view(q.host), k.view(k.host), {});
    const dev = snapkvScores(q.view(target.place(q.host)), k.view(target.place(k.host)), { out: target.poisoned([Hkv, N], 'f32') });
    const err = relErrWithInf(numbers(await target.fetch(dev)), numbers(cpu), 1e-9);
    return { pass: err <= 1e-4, error: err, tolerance: 1e-4 };
  },
}));

// Decode: per-lane widths 4 (d, dv <= 128) and 8, vector loads (aligned contiguous) and scalar loads (misaligned).
const decodeSweep: Check[] = (['f32', 'f16', 'bf16'] as const).flatMap((dtype) =>
  ([[64, 64], [192, 96]] as const).flatMap(([d, dv]) =>
    (['contig', 'off1'] as const).map((layout): Check => ({
      op: 'decodeAttention',
      config: `sweep Hkv=2 G=2 T=3 cap=137 d=${d} dv=${dv} ${dtype} ${layout} order 1`,
      async run(rng, target) {
        const H = 2, cap = 137, T = 3;
        const k = storedView(rng, H, cap, d, dtype, layout), v = storedView(rng, H, cap, dv, dtype, layout);
        const q = randomHost(rng, [2 * H, T, d], dtype, 0.3);
        const counts = tensor(Int32Array.from([cap - 5, 61]), [H]);
        const ek = randomHost(rng, [H, 50, d], dtype), ev = randomHost(rng, [H, 50, dv], dtype);
        const all = tensor(Int32Array.from({ length: H * 50 }, (_, i) => i % 50), [H, 50]);
        const allC = tensor(new Int32Array(H).fill(50), [H]);
        const cpuSt = MomentState.create(H, d, dv).merge(ek, ev, all, allC);
        const devSt = stateOn(target, H, d, dv).merge(target.place(ek), target.place(ev), target.place(all), target.place(allC));
        const cpu = decodeAttention({ queries: q, keys: k.view(k.host), values: v.view(v.host), counts, moments: cpuSt });
        const dev = decodeAttention({
          queries: target.place(q), keys: k.view(target.place(k.host)), values: v.view(target.place(v.host)), counts: target.place(counts),
          moments: devSt, out: target.poisoned([...cpu.shape], 'f32'),
        });
        const err = rowRel(numbers(await target.fetch(dev)), numbers(cpu), dv);
        return { pass: err <= 2e-5, error: err, tolerance: 2e-5, detail: 'max over rows of ‖Δo‖/‖o‖' };
      },
    })),
  ),
);

// MomentKV: a merge over several 128×128 tiles of M (d = 256, dv = 160) into a non-empty state, and the multi-round
// selection with dv ≠ d, rank 3.
const momentSweep: Check[] = [
  {
    op: 'MomentState.merge',
    config: 'sweep H=2 N=700 d=256 dv=160 bf16 [N,H,d] strided, two merges (2×2 tiles of M)',
    async run(rng, target) {
      const H = 2, N = 700, d = 256, dv = 160;
      const k = storedView(rng, H, N, d, 'bf16', 'nhd', 2), v = storedView(rng, H, N, dv, 'bf16', 'nhd');
      const lists = [0.3, 0.5].map((frac, r) => {
        const l = Array.from({ length: H }, () => Array.from({ length: N }, (_, i) => i).filter((i) => (i % 2 === r) && rng.uniform() < frac));
        const idx = new Int32Array(H * N).fill(-1);
        l.forEach((x, h) => x.forEach((s, j) => (idx[h * N + j] = s)));
        return { indices: tensor(idx, [H, N]), counts: tensor(Int32Array.from(l.map((x) => x.length)), [H]) };
      });
      const cpu = MomentState.create(H, d, dv);
      for (const l of lists) cpu.merge(k.view(k.host), v.view(v.host), l.indices, l.counts);
      const dev = stateOn(target, H, d, dv);
      const kt = k.view(target.place(k.host)), vt = v.view(target.place(v.host));
      for (const l of lists) dev.merge(kt, vt, target.place(l.indices), target.place(l.counts));
      let err = 0;
      for (const [a, b] of [[dev.n, cpu.n], [dev.muK, cpu.muK], [dev.muV, cpu.muV], [dev.m, cpu.m]] as const) {
        const x = numbers(await target.fetch(a)), y = numbers(b);
        const mx = y.reduce((m, z) => Math.max(m, Math.abs(z)), 1e-30);
        for (let i = 0; i < x.length; i++) {
          const e = Math.abs(x[i] - y[i]) / mx;
          err = Number.isNaN(e) ? Infinity : Math.max(err, e);
        }
      }
      return { pass: err <= 1e-5, error: err, tolerance: 1e-5, detail: 'max rel. error of n, mu, M' };
    },
  },
  {
    op: 'momentkvSelect',
    config: 'sweep H=2 N=600 d=64 dv=96 f16 keep 30 % rounds 3 r 3',
    async run(rng, target) {
      const H = 2, N = 600, d = 64, dv = 96;
      const k = randomHost(rng, [H, N, d], 'f16'), v = randomHost(rng, [H, N, dv], 'f16');
      const scores = tensor(Float32Array.from({ length: H * N }, (_, i) => (i % N >= N - 8 ? Infinity : Math.exp(rng.normal()))), [H, N]);
      const o = { ratio: 0.7, rounds: 3, r: 3 };
      const cpu = momentkvSelect({ scores, keys: k, values: v, ...o, evictedRound: true });
      const keep = cpu.indices.shape[1];
      const devSt = stateOn(target, H, d, dv);
      const dev = momentkvSelect({
        scores: target.place(scores), keys: target.place(k), values: target.place(v), ...o, moments: devSt,
        indices: target.poisoned([H, keep], 'i32'), counts: target.poisoned([H], 'i32'), evictedRound: target.poisoned([H, N], 'i32'),
      });
      const bad = mismatches(hostContiguous(await target.fetch(dev.indices)), hostContiguous(cpu.indices)) +
        mismatches(hostContiguous(await target.fetch(dev.counts)), hostContiguous(cpu.counts));
      const tol = 2;
      return { pass: bad <= tol, error: bad, tolerance: tol, detail: 'kept-index mismatches (near-ties may swap)' };
    },
  },
];

// GRKV: every (dtype, head-dim class) of the tile kernels (64 / 128 / 256 for d and dv).
const grkvSweep: Check[] = (['f32', 'f16', 'bf16'] as const).flatMap((dtype) =>
  ([[64, 64], [128, 256], [256, 128]] as const).map(([d, dv]) =>
    grkvCheck({ dtype, source: dtype === 'f16' ? 'stratified' : 'window', budget: dtype === 'bf16' ? 'adaptive' : 'uniform', d, dv, cgIters: 2, H: 2, N: 640, label: 'sweep ' }),
  ),
);

export const sweepChecks: Check[] = [...keydiffSweep, ...nestedkvSweep, ...snapkvSweep, ...decodeSweep, ...momentSweep, ...grkvSweep];
