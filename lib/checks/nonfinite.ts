/**
 * Target-vs-CPU checks of the non-finite rules (README "Errors"; docs/methods/*): NaN and ±Infinity planted in keys,
 * values, queries, moment states and systems. The target must put NaN / ±Infinity at exactly the positions the CPU
 * backend does (a rule both backends implement without a host synchronisation) and agree on the finite entries.
 */
import { keydiffScores } from '../ops/keydiff';
import { nestedkvScores } from '../ops/nestedkv';
import { snapkvScores } from '../ops/snapkv';
import { decodeAttention } from '../ops/decode';
import { MomentState } from '../ops/moments';
import { gatherKV } from '../ops/gather';
import { momentkvSelect } from '../ops/momentkv_select';
import { spdSolve } from '../ops/spd';
import { grkvMerge, grkvSurrogates } from '../ops/grkv';
import { selectTokens } from '../ops/select';
import { Tensor, tensor, hostContiguous, f32ToBf16 } from '../tensor';
import type { Rng } from '../rng';
import type { Check, CheckResult, Target } from './types';
import { randomHost, numbers } from './util';
import { stateOn, stateNumbers } from './moments';

const H = 2, N = 515, d = 64;

/** 0 NaN, 1 +Infinity, 2 −Infinity, 3 finite. */
const kind = (x: number) => (Number.isNaN(x) ? 0 : x === Infinity ? 1 : x === -Infinity ? 2 : 3);

/**
 * Compares target numbers `a` with the CPU's `b`: entries whose kind (NaN / ±Infinity / finite) differs, and the
 * largest relative error |a − b| / (|b| + floor) over the entries finite in both ('max': floor = the largest finite
 * |b|, an error relative to the tensor's scale).
 */
export function compareNonFinite(a: ArrayLike<number>, b: ArrayLike<number>, floor: number | 'max'): { kinds: number; rel: number; nonfinite: number } {
  if (a.length !== b.length) return { kinds: Math.max(a.length, b.length), rel: Infinity, nonfinite: 0 };
  if (floor === 'max') {
    floor = 1e-30;
    for (let i = 0; i < b.length; i++) if (Number.isFinite(b[i])) floor = Math.max(floor, Math.abs(b[i]));
  }
  let kinds = 0, rel = 0, nonfinite = 0;
  for (let i = 0; i < b.length; i++) {
    if (kind(a[i]) !== kind(b[i])) kinds++;
    else if (kind(b[i]) === 3) {
      const diff = Math.abs(a[i] - b[i]);
      if (diff > 0) rel = Math.max(rel, diff / (Math.abs(b[i]) + floor));
    }
    else nonfinite++;
  }
  return { kinds, rel, nonfinite };
}

/** Pass when every kind matches, the finite entries agree within `tol`, and the inputs did make something non-finite. */
function verdict(parts: { name: string; c: ReturnType<typeof compareNonFinite> }[], tol: number): CheckResult {
  const kinds = parts.reduce((s, p) => s + p.c.kinds, 0);
  const rel = Math.max(...parts.map((p) => p.c.rel));
  const nonfinite = parts.reduce((s, p) => s + p.c.nonfinite, 0);
  const pass = kinds === 0 && rel <= tol && nonfinite > 0;
  return {
    pass,
    error: kinds > 0 ? Infinity : rel,
    tolerance: tol,
    detail: kinds > 0 ? `NaN/±Infinity at different positions: ${parts.map((p) => `${p.name} ${p.c.kinds}`).join(', ')}` :
      nonfinite === 0 ? 'the planted values produced nothing non-finite' : `${nonfinite} non-finite entries agree`,
  };
}

/** A host f32 tensor with `bad` values planted at flat element positions. */
function planted(rng: Rng, shape: number[], bad: [number, number][], bias = 0.8): Tensor {
  const t = randomHost(rng, shape, 'f32', bias);
  const a = t.host as Float32Array;
  for (const [i, v] of bad) a[i] = v;
  return t;
}

/** The bf16 copy of an f32 host tensor (non-finite values stay non-finite). */
function bf16(t: Tensor): Tensor {
  const a = t.host as Float32Array;
  return tensor(Uint16Array.from(a, (x) => f32ToBf16(x)), [...t.shape], { dtype: 'bf16' });
}

/** Flat index of element (a, b, 0) of a 3-D shape. */
const at = (s: number[], a: number, b: number) => (a * s[1] + b) * s[2];

async function fetchNumbers(target: Target, t: Tensor): Promise<Float64Array> {
  return numbers(await target.fetch(t));
}

export const nonfiniteChecks: Check[] = [
  {
    op: 'keydiffScores',
    config: `H=${H} N=${N} d=${d} bf16, NaN in a key of head 1 (head 1: NaN)`,
    async run(rng, target) {
      const k = bf16(planted(rng, [H, N, d], [[at([H, N, d], 1, 17) + 3, NaN]]));
      const cpu = keydiffScores(k);
      const dev = keydiffScores(target.place(k), { out: target.poisoned([H, N], 'f32') });
      return verdict([{ name: 'scores', c: compareNonFinite(await fetchNumbers(target, dev), numbers(cpu), 1e-2) }], 1e-4);
    },
  },
  {
    op: 'nestedkvScores',
    config: `H=${H} N=${N} d=${d} f32, -Infinity in a key of head 0 (head 0: NaN, sinks too)`,
    async run(rng, target) {
      const k = planted(rng, [H, N, d], [[at([H, N, d], 0, 300) + 5, -Infinity]]);
      const cpu = nestedkvScores(k);
      const dev = nestedkvScores(target.place(k), { out: target.poisoned([H, N], 'f32') });
      return verdict([{ name: 'scores', c: compareNonFinite(await fetchNumbers(target, dev), numbers(cpu), 1e-2) }], 1e-4);
    },
  },
  ...([
    ['bf16', 'avg', 'NaN in a window query of KV head 0'],
    ['f32', 'max', '+Infinity in a window key of KV head 1'],
  ] as const).map(([dtype, pool, what]): Check => ({
    op: 'snapkvScores',
    config: `Hkv=${H} G=2 W=16 N=${N} d=${d} ${dtype} pool ${pool}, ${what} (prefix: NaN)`,
    async run(rng, target) {
      const W = 16, Hq = 2 * H;
      const qf = planted(rng, [Hq, W, d], dtype === 'bf16' ? [[at([Hq, W, d], 1, 7) + 2, NaN]] : [], 0.3);
      const kf = planted(rng, [H, N, d], dtype === 'f32' ? [[at([H, N, d], 1, N - 3) + 9, Infinity]] : []);
      const q = dtype === 'bf16' ? bf16(qf) : qf, k = dtype === 'bf16' ? bf16(kf) : kf;
      const cpu = snapkvScores(q, k, { pool });
      const dev = snapkvScores(target.place(q), target.place(k), { pool, out: target.poisoned([H, N], 'f32') });
      return verdict([{ name: 'scores', c: compareNonFinite(await fetchNumbers(target, dev), numbers(cpu), 1e-2) }], 1e-4);
    },
  })),
  {
    op: 'decodeAttention',
    config: `Hkv=${H} G=2 T=3 cap=300 d=${d} f32 with moments: NaN key (read), Infinity value (padding, unread), NaN query, a state with NaN means`,
    async run(rng, target) {
      const cap = 300, T = 3, Hq = 2 * H;
      const k = planted(rng, [H, cap, d], [[at([H, cap, d], 0, 10) + 1, NaN]]);
      const v = planted(rng, [H, cap, d], [[at([H, cap, d], 1, 280) + 4, Infinity]]);
      const q = planted(rng, [Hq, T, d], [[at([Hq, T, d], 3, 1) + 7, NaN]], 0.3);
      const counts = tensor(new Int32Array([cap, 250]), [H]);
      // the state: 40 evicted rows per head, one of head 1 with a NaN key (its means become NaN)
      const ek = planted(rng, [H, 40, d], [[at([H, 40, d], 1, 5) + 2, NaN]]), ev = randomHost(rng, [H, 40, d], 'f32');
      const all = tensor(Int32Array.from({ length: H * 40 }, (_, i) => i % 40), [H, 40]), allC = tensor(new Int32Array(H).fill(40), [H]);
      const cpuSt = MomentState.create(H, d, d).merge(ek, ev, all, allC);
      const devSt = stateOn(target, H, d, d).merge(target.place(ek), target.place(ev), target.place(all), target.place(allC));
      const cpu = decodeAttention({ queries: q, keys: k, values: v, counts, moments: cpuSt });
      const plain = decodeAttention({ queries: q, keys: k, values: v, counts });
      const dev = decodeAttention({
        queries: target.place(q), keys: target.place(k), values: target.place(v), counts: target.place(counts), moments: devSt,
        out: target.poisoned([Hq, T, d], 'f32'),
      });
      const devPlain = decodeAttention({
        queries: target.place(q), keys: target.place(k), values: target.place(v), counts: target.place(counts),
        out: target.poisoned([Hq, T, d], 'f32'),
      });
      const sc = await stateNumbers(cpuSt, async (t) => t), sd = await stateNumbers(devSt, (t) => target.fetch(t));
      const res = verdict([
        { name: 'corrected', c: compareNonFinite(await fetchNumbers(target, dev), numbers(cpu), 1e-2) },
        { name: 'plain', c: compareNonFinite(await fetchNumbers(target, devPlain), numbers(plain), 1e-2) },
        ...sc.map((x, i) => ({ name: `state ${i}`, c: compareNonFinite(sd[i], x, 'max') })),
      ], 1e-4);
      // each plant has its effect on the reference itself: the NaN key, read by head 0, makes every output of head 0's
      // query heads NaN (plain and corrected), so the comparison above covers that rule
      const head0 = (x: ArrayLike<number>) => Array.from(x).slice(0, (Hq / H) * T * d).every(Number.isNaN);
      if (!head0(numbers(cpu)) || !head0(numbers(plain)))
        return { ...res, pass: false, detail: "the CPU reference: head 0's NaN key did not make its outputs NaN" };
      return res;
    },
  },
  {
    op: 'gatherKV',
    config: `H=${H} N=${N} d=${d} f32 with moments: -Infinity in an evicted value of head 0 (head 0 statistics: NaN)`,
    async run(rng, target) {
      const k = randomHost(rng, [H, N, d], 'f32'), v = planted(rng, [H, N, d], [[at([H, N, d], 0, 1) + 3, -Infinity]]);
      const keep = 120;
      const idx = tensor(Int32Array.from({ length: H * keep }, (_, i) => 4 * (i % keep) + 2), [H, keep]);
      const cnt = tensor(new Int32Array(H).fill(keep), [H]);
      const cpuSt = MomentState.create(H, d, d);
      const cpu = gatherKV({ keys: k, values: v, indices: idx, counts: cnt, moments: cpuSt });
      const devSt = stateOn(target, H, d, d);
      const dev = gatherKV({
        keys: target.place(k), values: target.place(v), indices: target.place(idx), counts: target.place(cnt), moments: devSt,
        keysOut: target.poisoned([H, keep, d], 'f32'), valuesOut: target.poisoned([H, keep, d], 'f32'), countsOut: target.poisoned([H], 'i32'),
      });
      const sc = await stateNumbers(cpuSt, async (t) => t), sd = await stateNumbers(devSt, (t) => target.fetch(t));
      return verdict([
        { name: 'values', c: compareNonFinite(await fetchNumbers(target, dev.values), numbers(cpu.values), 0) },
        ...sc.map((x, i) => ({ name: `state ${i}`, c: compareNonFinite(sd[i], x, 'max') })),
      ], 1e-5);
    },
  },
  {
    op: 'momentkvSelect',
    config: `H=${H} N=${N} d=${d} f32 keep 64 rounds 4, NaN in a value of head 1`,
    async run(rng, target) {
      const k = randomHost(rng, [H, N, d], 'f32'), v = planted(rng, [H, N, d], [[at([H, N, d], 1, 200) + 6, NaN]]);
      const sc = new Float32Array(H * N);
      for (let i = 0; i < sc.length; i++) sc[i] = i % N >= N - 16 ? Infinity : Math.exp(2 * rng.normal());
      const scores = tensor(sc, [H, N]);
      const cpu = momentkvSelect({ scores, keys: k, values: v, keep: 64 });
      const devSt = stateOn(target, H, d, d);
      const dev = momentkvSelect({
        scores: target.place(scores), keys: target.place(k), values: target.place(v), keep: 64, moments: devSt,
        indices: target.poisoned([H, 64], 'i32'), counts: target.poisoned([H], 'i32'),
      });
      const s1 = await stateNumbers(cpu.moments, async (t) => t), s2 = await stateNumbers(devSt, (t) => target.fetch(t));
      return verdict([
        { name: 'indices', c: compareNonFinite(hostContiguous(await target.fetch(dev.indices)), hostContiguous(cpu.indices), 0) },
        ...s1.map((x, i) => ({ name: `state ${i}`, c: compareNonFinite(s2[i], x, 'max') })),
      ], 1e-5);
    },
  },
  {
    op: 'spdSolve',
    config: 'B=3 n=32 r=4: NaN in a right-hand side of system 0 (its column: NaN), +Infinity in the lower triangle of system 1 (info > 0)',
    async run(rng, target) {
      const B = 3, n = 32, r = 4;
      const A = new Float32Array(B * n * n);
      for (let b = 0; b < B; b++)
        for (let i = 0; i < n; i++)
          for (let j = 0; j <= i; j++) A[(b * n + i) * n + j] = A[(b * n + j) * n + i] = (i === j ? n : 0) + 0.1 * rng.normal();
      A[(1 * n + 9) * n + 3] = Infinity;
      const b = planted(rng, [B, n, r], [[(0 * n + 7) * r + 1, NaN]]);
      const a = tensor(A, [B, n, n]);
      const cpu = spdSolve({ a, b, throwOnError: false });
      const dev = spdSolve({ a: target.place(a), b: target.place(b), out: target.poisoned([B, n, r], 'f32'), info: target.poisoned([B], 'i32'), throwOnError: false });
      return verdict([
        { name: 'x', c: compareNonFinite(await fetchNumbers(target, dev.x), numbers(cpu.x), 1e-2) },
        { name: 'info', c: compareNonFinite(hostContiguous(await target.fetch(dev.info)), hostContiguous(cpu.info), 0) },
      ], 1e-4);
    },
  },
  {
    op: 'grkvMerge',
    config: `H=${H} G=2 N=${N} d=${d} f32 value step (cgIters 0): a NaN surrogate query (KV head 0), a NaN retained key (KV head 1)`,
    async run(rng, target) {
      const Hq = 2 * H, Qs = 16;
      const k = planted(rng, [H, N, d], [[at([H, N, d], 1, N - 2) + 1, NaN]]), v = randomHost(rng, [H, N, d], 'f32');
      const q = planted(rng, [Hq, Qs, d], [[at([Hq, Qs, d], 0, 4) + 2, NaN]], 0.3);
      const scores = snapkvScores(randomHost(rng, [Hq, Qs, d], 'f32', 0.3), randomHost(rng, [H, N, d], 'f32'));
      const sel = selectTokens(scores, { keep: 128 });
      const plan = grkvSurrogates(N, { source: 'window', count: Qs });
      const args = { window: 16, cgIters: 0, diagnostics: true as const };
      const cpu = grkvMerge({ keys: k, values: v, selection: sel, queries: q, queryPositions: plan.queryPositions, weights: plan.weights, scores, ...args });
      const dev = grkvMerge({
        keys: target.place(k), values: target.place(v), selection: { indices: target.place(sel.indices), counts: target.place(sel.counts) },
        queries: target.place(q), queryPositions: target.place(plan.queryPositions), weights: target.place(plan.weights),
        scores: target.place(scores), ...args,
      });
      const chosen = (t: Float64Array) => Float64Array.from({ length: H }, (_, h) => t[h * 14]);
      return verdict([
        { name: 'keys', c: compareNonFinite(await fetchNumbers(target, dev.keys), numbers(cpu.keys), 1e-2) },
        { name: 'values', c: compareNonFinite(await fetchNumbers(target, dev.values), numbers(cpu.values), 1e-2) },
        { name: 'choice', c: compareNonFinite(chosen(await fetchNumbers(target, dev.diagnostics!)), chosen(numbers(cpu.diagnostics!)), 0) },
      ], 1e-4);
    },
  },
];
