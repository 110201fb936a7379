// grkvMerge (docs/methods/grkv.md §4–§7, §11) against the float64 reference grkvMergeRef on trace layers: every dtype,
// both surrogate sources, GQA, ragged (adaptive) budgets, strided caches, d ≠ dv; invariants (fixed/evicted/padding
// rows bit-identical to gatherKV, objective never above plain eviction, caps); dual = primal value step; skip and
// non-finite paths; the surrogate helper and diagnostics. The N = 16384 comparison is in grkv-ref16k.test.ts.
import t, { Test } from 'tap';
import { grkvMerge, gatherKV, tensor, grkvSurrogates, decodeGrkvDiagnostics, GRKV_DIAG_COLS, f32ToF16, f16ToF32 } from '../lib/index';
import type { DType, Tensor, Selection, GrkvHeadDiagnostics } from '../lib/index';
import { grkvMergeRef, grkvObjectiveRef, grkvPartitionRef, roundBf16, headAttentionRef, valueStepPrimalRef, stratifiedPositions } from './ref/grkv';
import type { GrkvMergeArgs as RefArgs, GrkvMergeArgs } from './ref/grkv';
import { frobeniusNorm } from './ref/linalg';
import { BACKENDS, on, place, poisoned, fetch, values } from './helpers';
import { expectWritten } from './ref/compare';
import { traceLayer, rounded, stored, keptRows, snapkvSelection, surrogates, Layer } from './grkv-helpers';

const roundF16 = (x: number) => f16ToF32(f32ToF16(x));
const ROUND: Record<string, (x: number) => number> = { f32: Math.fround, bf16: roundBf16, f16: roundF16 };

interface Case {
  name: string;
  layer: Layer;
  dtype: DType;
  source: 'window' | 'stratified';
  ratio: number;
  budget?: 'uniform' | 'adaptive';
  /** values viewed with fewer channels (d ≠ dv) */
  dv?: number;
  /** cache stored [N, H, d] and viewed through strides */
  nhd?: boolean;
  acceptance?: 'best' | 'joint';
  caps?: { key?: number; value?: number };
  gamma?: number;
  /** explicit kept positions per head (ascending) instead of the SnapKV selection at `ratio` */
  kept?: number[][];
  /** the first `Qs` surrogate queries only (default 32) */
  Qs?: number;
}

const small = traceLayer({ N: 1024, Hkv: 2, d: 64, groupSize: 4, seed: 3 });
const gqa2 = traceLayer({ N: 777, Hkv: 3, d: 64, groupSize: 2, seed: 4 });
// N = 2·512 + 16: the window's 32 surrogate queries straddle the last 512-key chunk of the target, so the first 16
// see no key of that chunk (their partial softmax there is empty and must not count)
const straddle = traceLayer({ N: 1040, Hkv: 2, d: 64, groupSize: 2, seed: 6 });

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
}

/** A selection [H, cap] (−1 padded) of explicit kept positions. */
function explicitSelection(kept: number[][]): Selection {
  const H = kept.length, cap = Math.max(...kept.map((r) => r.length));
  const idx = new Int32Array(H * cap).fill(-1);
  kept.forEach((r, h) => r.forEach((p, j) => (idx[h * cap + j] = p)));
  return { indices: tensor(idx, [H, cap]), counts: tensor(Int32Array.from(kept.map((r) => r.length)), [H]) };
}

/** The first Qs of the 32 surrogate queries of each query head (their positions and weights). */
function firstQueries(s: ReturnType<typeof surrogates>, Qs: number, Hq: number, d: number): ReturnType<typeof surrogates> {
  if (Qs === s.Qs) return s;
  const q = new Float32Array(Hq * Qs * d);
  for (let j = 0; j < Hq; j++) q.set(s.q.subarray(j * s.Qs * d, (j * s.Qs + Qs) * d), j * Qs * d);
  return { q, Qs, qpos: s.qpos.slice(0, Qs), weights: s.weights.slice(0, Qs) };
}

/** Inputs of one case: storage tensors (host), the selection, and the float64 reference arguments. */
function build(c: Case) {
  const L = c.layer;
  const { Hkv: H, N, d } = L;
  const dv = c.dv ?? d;
  const K32 = rounded(L.K, c.dtype);
  const Vfull = rounded(L.V, c.dtype);
  const V32 = new Float32Array(H * N * dv);
  for (let r = 0; r < H * N; r++) for (let e = 0; e < dv; e++) V32[r * dv + e] = Vfull[r * d + e];
  let keys: Tensor, vals: Tensor;
  if (c.nhd) {
    const ks = stored(K32, c.dtype), vs = stored(Vfull, c.dtype);
    const kT = new (ks.constructor as { new (n: number): Float32Array | Uint16Array })(ks.length);
    const vT = new (vs.constructor as { new (n: number): Float32Array | Uint16Array })(vs.length);
    for (let h = 0; h < H; h++)
      for (let n = 0; n < N; n++)
        for (let e = 0; e < d; e++) {
          kT[(n * H + h) * d + e] = ks[(h * N + n) * d + e];
          vT[(n * H + h) * d + e] = vs[(h * N + n) * d + e];
        }
    keys = tensor(kT, [H, N, d], { dtype: c.dtype, strides: [d, H * d, 1] });
    vals = tensor(vT, [H, N, dv], { dtype: c.dtype, strides: [d, H * d, 1] });
  } else {
    keys = tensor(stored(K32, c.dtype), [H, N, d], { dtype: c.dtype });
    vals = tensor(stored(Vfull, c.dtype), [H, N, dv], { dtype: c.dtype, strides: [N * d, d, 1] });
  }
  const sel = c.kept ? explicitSelection(c.kept) : snapkvSelection(L, c.ratio, c.budget ?? 'uniform');
  const kept = keptRows(sel);
  const s = firstQueries(surrogates(L, c.source), c.Qs ?? 32, L.Hq, d);
  const ref: RefArgs = {
    K: K32, V: V32, Hkv: H, N, d, dv, kept, raw: L.raw, q: s.q, Hq: L.Hq, qpos: s.qpos, weights: s.weights, W: L.W,
    gamma: c.gamma, capK: c.caps?.key, capV: c.caps?.value, round: ROUND[c.dtype], recheck: c.dtype !== 'f32',
  };
  return { keys, vals, sel, kept, s, ref, K32, V32, H, N, d, dv };
}

function run(c: Case, backend: 'cpu' | 'cuda', b: ReturnType<typeof build>, extra: Record<string, unknown> = {}) {
  const cap = b.sel.indices.shape[1] + 3; // padding rows beyond every count
  const outs = {
    keysOut: poisoned([b.H, cap, b.d], c.dtype, backend),
    valuesOut: poisoned([b.H, cap, b.dv], c.dtype, backend),
    countsOut: poisoned([b.H], 'i32', backend),
    diagnostics: poisoned([b.H, GRKV_DIAG_COLS], 'f32', backend),
  };
  const res = grkvMerge({
    keys: place(b.keys, backend), values: place(b.vals, backend),
    selection: { indices: place(b.sel.indices, backend), counts: place(b.sel.counts, backend) },
    queries: place(tensor(b.s.q, [b.ref.Hq, b.s.Qs, b.d]), backend),
    queryPositions: place(tensor(Int32Array.from(b.s.qpos), [b.s.Qs]), backend),
    weights: place(tensor(Float32Array.from(b.s.weights), [b.s.Qs]), backend),
    scores: place(tensor(b.ref.raw as Float32Array, [b.H, b.N]), backend),
    window: b.ref.W, gamma: c.gamma, caps: c.caps, acceptance: c.acceptance, cap, ...outs, ...extra,
  });
  return { res, outs, cap };
}

/** Host values of the output rows and the plain-eviction rows (gatherKV on the host inputs). */
async function outputs(b: ReturnType<typeof build>, res: { keys: Tensor; values: Tensor; counts: Tensor; diagnostics?: Tensor }, cap: number) {
  const plain = gatherKV({ keys: b.keys, values: b.vals, indices: b.sel.indices, counts: b.sel.counts, cap });
  const ko = await fetch(res.keys), vo = await fetch(res.values), co = await fetch(res.counts);
  const diag = await decodeGrkvDiagnostics(res.diagnostics as Tensor);
  const unwritten = [ko, vo, co, await fetch(res.diagnostics as Tensor)].filter((x) => x !== undefined);
  return { plain, ko, vo, co, diag, outs: unwritten };
}

/** Retained rows [n_h, w] of head h from a compacted tensor, as float64. */
function headRows(x: Tensor, h: number, n: number): Float64Array {
  const w = x.shape[2];
  const out = new Float64Array(n * w);
  for (let j = 0; j < n; j++) for (let e = 0; e < w; e++) out[j * w + e] = x.at(h, j, e);
  return out;
}

/** Bitwise row equality of two host tensors (same dtype). */
function sameRow(a: Tensor, b: Tensor, h: number, j: number): boolean {
  const w = a.shape[2];
  for (let e = 0; e < w; e++) if (!Object.is(a.at(h, j, e), b.at(h, j, e))) return false;
  return true;
}

// `bounded(h)`: the objective bound holds by construction ('best' acceptance: the lowest of the candidates, the unchanged
// cache among them); 'joint' applies the key+value step whatever its objective, so there it is a property of the
// trajectory, asserted only where that is well conditioned (see `conditioned`).
async function invariants(t: Test, tag: string, b: ReturnType<typeof build>, o: Awaited<ReturnType<typeof outputs>>, gamma = 0.1,
  bounded: (h: number) => string | false = () => false) {
  o.outs.forEach((x, k) => expectWritten(t, x, `${tag}: ${['keys', 'values', 'counts', 'diagnostics'][k]}`));
  t.same(Array.from(o.co.host), Array.from(b.sel.counts.host), `${tag}: counts = selection counts`);
  const { mutable } = grkvPartitionRef(b.kept, b.ref.raw, b.N, b.ref.W, gamma);
  let fixedBad = 0, padBad = 0, rejectedBad = 0;
  for (let h = 0; h < b.H; h++) {
    const mset = new Set(mutable[h]);
    const chosen = o.diag[h].chosen;
    for (let j = 0; j < o.ko.shape[1]; j++) {
      const live = j < b.kept[h].length;
      const keysSame = sameRow(o.ko, o.plain.keys, h, j), valsSame = sameRow(o.vo, o.plain.values, h, j);
      if (!live) padBad += Number(!keysSame || !valsSame);
      else if (!mset.has(b.kept[h][j])) fixedBad += Number(!keysSame || !valsSame);
      else if (chosen !== 'key+value' && !keysSame) rejectedBad++;
      else if (chosen === 'unchanged' && !valsSame) rejectedBad++;
    }
    t.equal(o.diag[h].mutable, mutable[h].length, `${tag} h${h}: mutable count = reference partition`);
    t.equal(o.diag[h].fixed, b.kept[h].length - mutable[h].length, `${tag} h${h}: fixed count`);
    // the accepted state never has a higher objective than plain eviction (float64 yardstick of the reference)
    const Lplain = grkvObjectiveRef(b.ref, h, headRows(o.plain.keys, h, b.kept[h].length), headRows(o.plain.values, h, b.kept[h].length));
    const Lout = grkvObjectiveRef(b.ref, h, headRows(o.ko, h, b.kept[h].length), headRows(o.vo, h, b.kept[h].length));
    const dg = o.diag[h];
    const Lchosen = dg.objectives[['unchanged', 'value', 'key+value'].indexOf(dg.chosen)];
    const unbounded = bounded(h);
    t.ok(Lout <= Lplain * (1 + 1e-6), `${tag} h${h}: objective ${Lout.toFixed(4)} ≤ plain eviction ${Lplain.toFixed(4)} (${chosen})`, { skip: unbounded });
    t.ok(Lchosen <= dg.objectives[0], `${tag} h${h}: diagnostics: chosen objective ≤ L0`, { skip: unbounded });
    // the reported objective of the kept candidate is the objective of the rows written (float64 yardstick)
    t.ok(Math.abs(Lchosen - Lout) <= 1e-4 * Math.max(Lplain, Lout), `${tag} h${h}: diagnostics: objective of the kept candidate ${Lchosen} = float64 ${Lout.toFixed(5)}`);
    t.ok(Math.abs(dg.objectives[0] - Lplain) <= 1e-5 * Lplain, `${tag} h${h}: diagnostics L0 ${dg.objectives[0]} = float64 ${Lplain.toFixed(5)}`);
  }
  t.equal(fixedBad, 0, `${tag}: fixed (window + anchor) rows bit-identical to gatherKV`);
  t.equal(padBad, 0, `${tag}: padding rows zero, as gatherKV`);
  t.equal(rejectedBad, 0, `${tag}: rows of rejected candidates bit-identical to gatherKV`);
}

/**
 * The reference under two 1e-7 relative perturbations of the queries: how far its own key step moves. The truncated
 * CG of the key step is ill-conditioned on LLM-like data (relative residuals of 0.2–10 after 16 iterations), so its
 * iterate depends chaotically on fp32-level input noise; an fp32 pipeline can only be asked to stay within that spread.
 */
function refSpread(args: RefArgs, ref: ReturnType<typeof grkvMergeRef>) {
  const runs = [1, 2].map((k) => grkvMergeRef({ ...args, q: Float64Array.from(args.q, (x, i) => x * (1 + 1e-7 * Math.sin(i * 7.31 * k))) }));
  return ref.heads.map((hr, h) => {
    let dK = 0, L2 = 0;
    const chosen = new Set<number>([hr.chosen]);
    for (const r of runs) {
      const p = r.heads[h];
      dK = Math.max(dK, frobeniusNorm(p.dK.rows.map((x, i) => x - hr.dK.rows[i])) / Math.max(frobeniusNorm(hr.dK.capped), 1e-300));
      L2 = Math.max(L2, Math.abs(p.objectives[2] - hr.objectives[2]));
      chosen.add(p.chosen);
    }
    return { dK, L2, stableChoice: chosen.size === 1 };
  });
}

/** The candidate rows of head h: ΔV and ΔK of our output (mutable rows, minus the originals). */
function deltas(b: ReturnType<typeof build>, o: Awaited<ReturnType<typeof outputs>>, h: number, mutable: number[]) {
  const pos = new Map(b.kept[h].map((p, j) => [p, j]));
  const dV: number[] = [], dK: number[] = [];
  for (const p of mutable) {
    const j = pos.get(p) as number;
    for (let e = 0; e < b.dv; e++) dV.push(o.vo.at(h, j, e) - b.V32[(h * b.N + p) * b.dv + e]);
    for (let e = 0; e < b.d; e++) dK.push(o.ko.at(h, j, e) - b.K32[(h * b.N + p) * b.d + e]);
  }
  return { dV, dK };
}

const cases: Case[] = [
  { name: 'f32 stratified 20% uniform', layer: small, dtype: 'f32', source: 'stratified', ratio: 0.8 },
  { name: 'f32 window 10% adaptive (ragged)', layer: small, dtype: 'f32', source: 'window', ratio: 0.9, budget: 'adaptive' },
  { name: 'bf16 stratified 10% [N,H,d] strided', layer: small, dtype: 'bf16', source: 'stratified', ratio: 0.9, nhd: true },
  { name: 'f16 window 20% GQA G=2, dv=40 < d', layer: gqa2, dtype: 'f16', source: 'window', ratio: 0.8, dv: 40 },
  { name: 'bf16 window 10% gamma 0.3 adaptive', layer: gqa2, dtype: 'bf16', source: 'window', ratio: 0.9, budget: 'adaptive', gamma: 0.3 },
  { name: 'f32 window 10%, window across a key chunk (N = 1040)', layer: straddle, dtype: 'f32', source: 'window', ratio: 0.9 },
];

for (const backend of BACKENDS) {
  for (const c of cases) {
    t.test(`grkvMerge ${backend} ${c.name}`, on(backend), async (t) => {
      const b = build(c);
      const ref = grkvMergeRef(b.ref);
      const spread = refSpread(b.ref, ref);
      // The key step (16 CG iterations on an ill-conditioned system, docs/methods/grkv.md §7.2) is a chaotic function of the inputs on
      // some heads: there the reference itself moves L2 by far more than the tolerance under 1e-7 input noise, and
      // an fp32 pipeline lands anywhere in that range (the CUDA kernels compiled with and without FMA contraction
      // differ by tens of percent of L2 on such heads; so does the CPU backend from the float64 reference). Both
      // backends are compared with the reference's key step at a fixed tolerance where it is well conditioned (its
      // 1e-7 spread, times 3, stays below the tolerance); elsewhere the comparison is a visible skip naming the
      // spread, and the key-step kernels are checked on every head at 2 CG iterations (test below), where the
      // iterate is well conditioned.
      const tolL2Of = (h: number) => (c.dtype === 'f32' ? 1e-4 : 2e-3) * ref.heads[h].objectives[0];
      const conditioned = (h: number) => 3 * spread[h].L2 <= tolL2Of(h) && spread[h].stableChoice;
      const chaotic = (h: number) => !conditioned(h) && `ill-conditioned key step: the reference's L2 moves by ${spread[h].L2.toPrecision(3)} under 1e-7 input noise (tolerance ${tolL2Of(h).toPrecision(2)})`;
      // 1. per-head choice (default acceptance) and invariants
      const best = run(c, backend, b);
      t.equal(best.res.keys, best.outs.keysOut, 'writes into the given outputs');
      const ob = await outputs(b, best.res, best.cap);
      await invariants(t, 'best', b, ob, c.gamma);
      for (let h = 0; h < b.H; h++) {
        const hr = ref.heads[h];
        const dg = ob.diag[h];
        const L = dg.objectives;
        t.ok(Math.abs(L[0] - hr.objectives[0]) <= 1e-5 * hr.objectives[0], `h${h}: L0 ${L[0]} vs reference ${hr.objectives[0].toFixed(5)}`);
        t.ok(Math.abs(L[1] - hr.objectives[1]) <= 1e-4 * hr.objectives[0], `h${h}: L1 ${L[1]} vs reference ${hr.objectives[1].toFixed(5)}`);
        const tolL2 = tolL2Of(h);
        t.ok(Number.isFinite(L[2]) || dg.keyValueNonFinite, `h${h}: L2 ${L[2]} finite (or flagged)`);
        t.ok(Math.abs(L[2] - hr.objectives[2]) <= tolL2,
          `h${h}: L2 ${L[2]} vs reference ${hr.objectives[2].toFixed(5)} (tol ${tolL2.toPrecision(2)}; reference spread under 1e-7 input noise: ${spread[h].L2.toPrecision(3)})`, { skip: chaotic(h) });
        const refChosen = ['unchanged', 'value', 'key+value'][hr.chosen];
        const gap = Math.abs(hr.objectives[1] - hr.objectives[2]);
        t.equal(dg.chosen, refChosen, `h${h}: same choice as the reference (${refChosen})`,
          { skip: chaotic(h) || (gap <= 2 * tolL2 && `L1 and L2 within 2 tolerances (${gap.toPrecision(2)}): a tie`) });
        t.equal(dg.valueShrinks, hr.dV.shrinks, `h${h}: value recheck shrinks ${hr.dV.shrinks}`);
        t.ok(Math.abs(dg.valueScale - hr.dV.scale) <= 1e-4 * hr.dV.scale, `h${h}: value step scale ${dg.valueScale} vs ${hr.dV.scale}`);
        t.equal(dg.cgIterations, hr.cg.iterations, `h${h}: CG iterations ${hr.cg.iterations}`);
      }
      // 2. joint acceptance exposes both steps: compare the candidate rows with the reference's
      const joint = run({ ...c, acceptance: 'joint' }, backend, b);
      const oj = await outputs(b, joint.res, joint.cap);
      await invariants(t, 'joint', b, oj, c.gamma, (h) => chaotic(h) && `'joint' applies the key+value step whatever its objective; ${chaotic(h)}`);
      const tolV = c.dtype === 'f32' ? 1e-4 : 2e-2;
      for (let h = 0; h < b.H; h++) {
        const hr = ref.heads[h];
        t.equal(oj.diag[h].chosen, 'key+value', `h${h}: joint acceptance applies the key+value step`);
        const { dV, dK } = deltas(b, oj, h, hr.mutable);
        const V0 = hr.mutable.flatMap((p) => Array.from(b.V32.subarray((h * b.N + p) * b.dv, (h * b.N + p + 1) * b.dv)));
        const K0 = hr.mutable.flatMap((p) => Array.from(b.K32.subarray((h * b.N + p) * b.d, (h * b.N + p + 1) * b.d)));
        const refDV = Array.from(hr.dV.rows, (x, i) => x - V0[i]);
        const refDK = Array.from(hr.dK.rows, (x, i) => x - K0[i]);
        const eV = relDiff(dV, refDV), eK = relDiff(dK, refDK);
        t.ok(eV <= tolV, `h${h}: ΔV vs reference ${eV.toExponential(2)} ≤ ${tolV}`);
        const tolK = c.dtype === 'f32' ? 1e-3 : 2e-2;
        t.ok(eK <= tolK, `h${h}: ΔK vs reference ${eK.toExponential(2)} ≤ ${tolK.toExponential(2)}`,
          { skip: 3 * spread[h].dK > tolK && `ill-conditioned key step: the reference's ΔK moves by ${spread[h].dK.toExponential(2)} under 1e-7 input noise` });
        // caps hold on the stored rows (recheck on 16-bit storage; fp32 within rounding)
        const capTol = c.dtype === 'f32' ? 1e-6 : 1e-9;
        t.ok(frobeniusNorm(dV) <= 0.1 * frobeniusNorm(V0) * (1 + capTol), `h${h}: ‖ΔV‖ ≤ 0.10‖V0‖`);
        t.ok(frobeniusNorm(dK) <= 0.025 * frobeniusNorm(K0) * (1 + capTol), `h${h}: ‖ΔK‖ ≤ 0.025‖K0‖`);
      }
    });
  }

  // The key step at 2 CG iterations (every key-step kernel, the p update included, on a well-conditioned iterate):
  // joint acceptance exposes the candidate; L2 and ΔK against the reference on every head. A head whose storage-
  // rounding recheck (a threshold test, docs/methods/grkv.md §7.3) decided differently is compared up to that decision.
  for (const c of [cases[1], cases[2], cases[3]]) {
    t.test(`grkvMerge ${backend} ${c.name}: key step at cgIters 2 vs the reference, every head`, on(backend), async (t) => {
      const b = build(c);
      const ref = grkvMergeRef({ ...b.ref, cgIters: 2 });
      const joint = run({ ...c, acceptance: 'joint' }, backend, b, { cgIters: 2 });
      const oj = await outputs(b, joint.res, joint.cap);
      for (let h = 0; h < b.H; h++) {
        const hr = ref.heads[h], dg = oj.diag[h];
        t.equal(dg.cgIterations, hr.cg.iterations, `h${h}: CG iterations ${hr.cg.iterations}`);
        const sameShrinks = dg.keyShrinks === hr.dK.shrinks && dg.valueShrinks === hr.dV.shrinks;
        // a storage-rounding recheck (a threshold test) may fall on the other side on CUDA; the CPU backend decides
        // exactly as the reference here
        const flipped = !sameShrinks && `a rounding recheck fell on the other side of its threshold (key shrinks ${dg.keyShrinks} vs ${hr.dK.shrinks})`;
        t.ok(sameShrinks, `h${h}: the recheck shrinks as the reference (key ${hr.dK.shrinks}, value ${hr.dV.shrinks})`, { skip: backend !== 'cpu' && flipped });
        const L2 = dg.objectives[2], L0 = hr.objectives[0];
        const tolL2 = (c.dtype === 'f32' ? 1e-4 : 2e-3) * Math.max(L0, Math.abs(hr.objectives[2]));
        t.ok(Math.abs(L2 - hr.objectives[2]) <= tolL2, `h${h}: L2 ${L2} vs reference ${hr.objectives[2].toFixed(5)} (tol ${tolL2.toPrecision(2)})`, { skip: flipped });
        const { dK } = deltas(b, oj, h, hr.mutable);
        const K0 = hr.mutable.flatMap((p) => Array.from(b.K32.subarray((h * b.N + p) * b.d, (h * b.N + p + 1) * b.d)));
        const eK = relDiff(dK, Array.from(hr.dK.rows, (x, i) => x - K0[i]));
        const tolK = c.dtype === 'f32' ? 1e-3 : 2e-2;
        t.ok(eK <= tolK, `h${h}: ΔK vs reference ${eK.toExponential(2)} ≤ ${tolK}`, { skip: flipped });
      }
    });
  }

  t.test(`grkvMerge ${backend}: heads whose logits lie 200 apart (each head is normalised by its own maximum)`, on(backend), async (t) => {
    // head 1's keys ×12: its logits reach ~220 where head 0's stay below ~18, beyond the f32 exponent range of each
    // other (a softmax shifted by another head's maximum overflows or underflows)
    const K = Float32Array.from(small.K);
    for (let x = small.N * small.d; x < 2 * small.N * small.d; x++) K[x] *= 12;
    const c: Case = { name: 'logit scales', layer: { ...small, K }, dtype: 'f32', source: 'stratified', ratio: 0.9 };
    const b = build(c);
    const ref = grkvMergeRef(b.ref);
    const { res, cap } = run(c, backend, b);
    const o = await outputs(b, res, cap);
    await invariants(t, 'logit scales', b, o, c.gamma);
    for (let h = 0; h < b.H; h++) {
      const hr = ref.heads[h], L = o.diag[h].objectives;
      t.ok(Math.abs(L[0] - hr.objectives[0]) <= 1e-5 * hr.objectives[0], `h${h}: L0 ${L[0]} vs reference ${hr.objectives[0].toPrecision(6)}`);
      t.ok(Math.abs(L[1] - hr.objectives[1]) <= 1e-4 * hr.objectives[0], `h${h}: L1 ${L[1]} vs reference ${hr.objectives[1].toPrecision(6)}`);
    }
  });

  t.test(`grkvMerge ${backend}: tile and row-block edges (65 retained slots, 17 query rows, a head with one slot)`, on(backend), async (t) => {
    // 65 = 64 + 1 retained slots (one full 64-slot tile and one slot), G = 1 with 17 queries (16 + 1 query rows), and a
    // head that keeps a single slot (its plain-eviction objective L0 is still computed)
    const L = traceLayer({ N: 650, Hkv: 2, d: 64, groupSize: 1, seed: 8 });
    const top = Array.from(snapkvSelection(L, 0.9).indices.host.subarray(0, 65));
    const c: Case = { name: 'edges', layer: L, dtype: 'f32', source: 'window', ratio: 0.9, kept: [top, [L.N - 1]], Qs: 17 };
    const b = build(c);
    t.same(b.kept.map((r) => r.length), [65, 1], 'counts 65 and 1');
    const ref = grkvMergeRef(b.ref);
    const { res, cap } = run(c, backend, b);
    const o = await outputs(b, res, cap);
    await invariants(t, 'edges', b, o, c.gamma);
    for (let h = 0; h < b.H; h++) {
      const hr = ref.heads[h], L2 = o.diag[h].objectives;
      t.ok(Math.abs(L2[0] - hr.objectives[0]) <= 1e-5 * hr.objectives[0], `h${h}: L0 ${L2[0]} vs reference ${hr.objectives[0].toPrecision(6)}`);
      t.ok(Math.abs(L2[1] - hr.objectives[1]) <= 1e-4 * hr.objectives[0], `h${h}: L1 ${L2[1]} vs reference ${hr.objectives[1].toPrecision(6)}`, { skip: o.diag[h].skipped && 'the head keeps only its window row: nothing to fit' });
    }
  });

  t.test(`grkvMerge ${backend}: the first and the last retained slot mutable (no window row kept), γ = 0`, on(backend), async (t) => {
    // head 0 keeps only prefix positions, so its first and its last slot are regressed; head 1 keeps its window rows too
    const L = traceLayer({ N: 600, Hkv: 2, d: 64, groupSize: 2, seed: 9 });
    const prefix = Array.from({ length: 40 }, (_, j) => 3 + 13 * j).filter((p) => p < L.N - L.W);
    const withWindow = [...prefix.slice(0, 30), ...Array.from({ length: L.W }, (_, j) => L.N - L.W + j)];
    const c: Case = { name: 'prefix only', layer: L, dtype: 'f32', source: 'window', ratio: 0.9, kept: [prefix, withWindow], gamma: 0 };
    const b = build(c);
    const { mutable } = grkvPartitionRef(b.kept, b.ref.raw, b.N, b.ref.W, 0);
    t.same([mutable[0][0], mutable[0][mutable[0].length - 1]], [prefix[0], prefix[prefix.length - 1]], 'head 0: first and last slot mutable');
    const ref = grkvMergeRef(b.ref);
    const { res, cap } = run(c, backend, b);
    const o = await outputs(b, res, cap);
    await invariants(t, 'prefix only', b, o, 0);
    const joint = run({ ...c, acceptance: 'joint' }, backend, b);
    const oj = await outputs(b, joint.res, joint.cap);
    for (let h = 0; h < b.H; h++) {
      const hr = ref.heads[h], Lh = o.diag[h].objectives;
      t.ok(Math.abs(Lh[0] - hr.objectives[0]) <= 1e-5 * hr.objectives[0], `h${h}: L0 ${Lh[0]} vs reference ${hr.objectives[0].toPrecision(6)}`);
      t.ok(Math.abs(Lh[1] - hr.objectives[1]) <= 1e-4 * hr.objectives[0], `h${h}: L1 ${Lh[1]} vs reference ${hr.objectives[1].toPrecision(6)}`);
      const { dV } = deltas(b, oj, h, hr.mutable);
      const V0 = hr.mutable.flatMap((p) => Array.from(b.V32.subarray((h * b.N + p) * b.dv, (h * b.N + p + 1) * b.dv)));
      const eV = relDiff(dV, Array.from(hr.dV.rows, (x, i) => x - V0[i]));
      t.ok(eV <= 1e-4, `h${h}: ΔV of every mutable row vs reference ${eV.toExponential(2)}`);
    }
    // γ = 0.1 with head 0's last slot the best-scored prefix position: it ranks among the anchors (fixed)
    const lim = L.N - L.W;
    let best = Math.floor(lim / 2);
    for (let q = best; q < lim; q++) if (L.raw[q] > L.raw[best]) best = q;
    const ladder = [...prefix.filter((q) => q < best), best];
    const c2: Case = { ...c, name: 'last slot an anchor', kept: [ladder, withWindow], gamma: 0.1 };
    const b2 = build(c2);
    const part = grkvPartitionRef(b2.kept, b2.ref.raw, b2.N, b2.ref.W, 0.1);
    t.ok(part.fixed[0].includes(best), `head 0: the last slot (position ${best}) is an anchor`);
    const r2 = run(c2, backend, b2);
    await invariants(t, 'last slot an anchor', b2, await outputs(b2, r2.res, r2.cap), 0.1);
  });

  t.test(`grkvMerge ${backend}: outputs with a gap after every row: merged, copied and padding rows stay inside their rows`, on(backend), async (t) => {
    const c: Case = { name: 'row gaps', layer: small, dtype: 'f32', source: 'stratified', ratio: 0.9, acceptance: 'joint' };
    const b = build(c);
    const dense = run(c, backend, b);
    const od = await outputs(b, dense.res, dense.cap);
    t.ok(od.diag.every((x) => x.chosen === 'key+value'), 'every head writes merged key and value rows');
    const cap = dense.cap;
    // [H, cap, w] with row stride w + 1 inside a poisoned buffer: the element after each row must keep its poison
    const gapped = (w: number) => poisoned([b.H * cap * (w + 1)], 'f32', backend);
    const kb = gapped(b.d), vb = gapped(b.dv);
    run(c, backend, b, { keysOut: kb.view([b.H, cap, b.d], [cap * (b.d + 1), b.d + 1, 1]), valuesOut: vb.view([b.H, cap, b.dv], [cap * (b.dv + 1), b.dv + 1, 1]) });
    for (const [name, buf, w, want] of [['keys', kb, b.d, od.ko], ['values', vb, b.dv, od.vo]] as const) {
      const host = values(await fetch(buf)), ref = values(want);
      let rowsSame = true, gapsPoisoned = true;
      for (let r = 0; r < b.H * cap; r++) {
        for (let e = 0; e < w; e++) rowsSame &&= Object.is(host[r * (w + 1) + e], ref[r * w + e]);
        gapsPoisoned &&= Number.isNaN(host[r * (w + 1) + w]);
      }
      t.ok(rowsSame, `${name}: rows = dense outputs`);
      t.ok(gapsPoisoned, `${name}: nothing written after a row (padding rows zero-filled within their width)`);
    }
  });

  t.test(`grkvMerge ${backend}: a value step dropped by the storage recheck has scale 0 and leaves the rows as they were`, on(backend), async (t) => {
    // One mutable row with one value channel (dv = 1) holding 1.5 in bf16 (spacing u = 2^-7 around it) and a value cap
    // with cap·‖V0‖ = 0.85u: the capped step (0.85u, and 0.9^4·0.85u = 0.56u after 4 shrinks) always rounds to one
    // full u, which breaks the cap, so the step is dropped (docs/methods/grkv.md §7.3): s = 0 and the row stays 1.5.
    const p = 100;
    const V = Float32Array.from(small.V);
    for (let h = 0; h < small.Hkv; h++) V[(h * small.N + p) * small.d] = 1.5;
    const layer = { ...small, V };
    const win = Array.from({ length: small.W }, (_, j) => small.N - small.W + j);
    const c: Case = { name: 'dropped', layer, dtype: 'bf16', source: 'stratified', ratio: 0.9, dv: 1, kept: [[p, ...win], [p, ...win]], gamma: 0, acceptance: 'joint' };
    const b = build(c);
    const u = 2 ** -7;
    const drop = run({ ...c, caps: { key: 0, value: (0.85 * u) / 1.5 } }, backend, b);
    const od = await outputs(b, drop.res, drop.cap);
    const keep = run({ ...c, caps: { key: 0, value: (3 * u) / 1.5 } }, backend, b);
    const ok = await outputs(b, keep.res, keep.cap);
    for (let h = 0; h < b.H; h++) {
      t.equal(od.diag[h].mutable, 1, `h${h}: one mutable row`);
      t.ok(od.diag[h].valueDropped && od.diag[h].valueShrinks === 4, `h${h}: cap 0.85u: dropped after 4 shrinks`);
      t.equal(od.diag[h].valueScale, 0, `h${h}: dropped: scale 0`);
      t.equal(od.vo.at(h, 0, 0), 1.5, `h${h}: dropped: the row keeps 1.5`);
      t.ok(!ok.diag[h].valueDropped && ok.diag[h].valueScale > 0, `h${h}: cap 3u: the step is kept (scale ${ok.diag[h].valueScale})`);
      t.not(ok.vo.at(h, 0, 0), 1.5, `h${h}: cap 3u: the row moves`);
    }
  });

  t.test(`grkvMerge ${backend}: f16 rounding of the value step: subnormal and overflowing candidates, as the float64 reference`, on(backend), async (t) => {
    // One mutable row with one value channel (dv = 1) per head, V0 = ±x (head 0 +x, head 1 −x) in f16, and a value cap
    // with cap·‖V0‖ = f·u (u the f16 spacing at x): the candidate x ± f·u is rounded to f16 (subnormal spacing 2^-24 for
    // x = 100·2^-24; x = 65504, the largest f16, overflows to ∞ at 65520), then rechecked against the cap
    // (docs/methods/grkv.md §7.3). Shrinks, drop and the stored row must be the reference's (test/ref/grkv.ts with the
    // f16 rounding of lib/half.ts). For x = 65504 every prefix row holds ±x too, so the evicted rows pull the kept one
    // outwards (the step points away from 0 and overflows).
    const p = 100;
    const win = Array.from({ length: small.W }, (_, j) => small.N - small.W + j);
    for (const [x, u] of [[100 * 2 ** -24, 2 ** -24], [65504, 32]]) {
      const V = Float32Array.from(small.V);
      for (let h = 0; h < small.Hkv; h++)
        for (let q = x > 1 ? 0 : p; q <= p || (x > 1 && q < small.N - small.W); q++) V[(h * small.N + q) * small.d] = h === 0 ? x : -x;
      const c: Case = { name: 'f16 rounding', layer: { ...small, V }, dtype: 'f16', source: 'stratified', ratio: 0.9, dv: 1, kept: [[p, ...win], [p, ...win]], gamma: 0, acceptance: 'joint' };
      for (const f of [0.3, 0.7, 1.7]) {
        const cc = { ...c, caps: { key: 0, value: (f * u) / x } };
        const b = build(cc);
        const ref = grkvMergeRef(b.ref);
        const r = run(cc, backend, b);
        const o = await outputs(b, r.res, r.cap);
        for (let h = 0; h < b.H; h++) {
          const hr = ref.heads[h], dg = o.diag[h], tag = `x ${h === 0 ? '' : '−'}${x}, step ${f}u, h${h}`;
          t.same([dg.valueShrinks, dg.valueDropped], [hr.dV.shrinks, hr.dV.reverted], `${tag}: shrinks and drop as the reference (${hr.dV.shrinks}, ${hr.dV.reverted})`);
          t.equal(o.vo.at(h, 0, 0), hr.dV.rows[0], `${tag}: stored value ${hr.dV.rows[0]} as the reference`);
        }
      }
    }
  });

  t.test(`grkvMerge ${backend}: diagnostics into an element-strided view`, on(backend), async (t) => {
    const c: Case = { name: 'diag view', layer: small, dtype: 'f32', source: 'stratified', ratio: 0.9 };
    const b = build(c);
    const dense = run(c, backend, b);
    const want = values(await fetch(dense.res.diagnostics as Tensor));
    // [H, cols] with element stride 2 inside a poisoned buffer: every column lands on its element, the gaps keep the poison
    const buf = poisoned([2 * b.H * GRKV_DIAG_COLS], 'f32', backend);
    run(c, backend, b, { diagnostics: buf.view([b.H, GRKV_DIAG_COLS], [2 * GRKV_DIAG_COLS, 2]) });
    const host = values(await fetch(buf));
    t.same(Array.from({ length: b.H * GRKV_DIAG_COLS }, (_, i) => host[2 * i]), Array.from(want), 'strided diagnostics = dense diagnostics');
    t.ok(Array.from({ length: b.H * GRKV_DIAG_COLS }, (_, i) => host[2 * i + 1]).every((x) => Number.isNaN(x)), 'nothing written between the elements');
  });

  t.test(`grkvMerge ${backend}: the dual value step equals the primal ridge solution (caps off, value only)`, on(backend), async (t) => {
    const c: Case = { name: 'dual', layer: small, dtype: 'f32', source: 'stratified', ratio: 0.9, caps: { key: 0, value: Infinity } };
    const b = build(c);
    const { res, cap } = run(c, backend, b);
    const o = await outputs(b, res, cap);
    const ref = grkvMergeRef({ ...b.ref, capK: 0, capV: Infinity });
    for (let h = 0; h < b.H; h++) {
      const hr = ref.heads[h];
      t.equal(o.diag[h].chosen, 'value', `h${h}: value-only (key cap 0)`);
      t.equal(o.diag[h].keyScale, 0, `h${h}: no key step`);
      t.equal(o.diag[h].cgStop, 'not-run');
      // primal (AᵀA + λI)⁻¹ Aᵀ r over the R mutable rows, from the reference's attention at K0
      const { d, dv } = b;
      const G = b.ref.Hq / b.H, Qs = b.s.Qs, rows = G * Qs, S = hr.retained.length;
      const qh = new Float64Array(rows * d), qp = new Float64Array(rows), sw = new Float64Array(rows);
      for (let g = 0; g < G; g++)
        for (let j = 0; j < Qs; j++) {
          for (let e = 0; e < d; e++) qh[(g * Qs + j) * d + e] = b.s.q[((h * G + g) * Qs + j) * d + e];
          qp[g * Qs + j] = b.s.qpos[j];
          sw[g * Qs + j] = Math.sqrt(b.s.weights[j]);
        }
      const Ks = new Float64Array(S * d), Vs = new Float64Array(S * dv);
      hr.retained.forEach((p, s) => {
        for (let e = 0; e < d; e++) Ks[s * d + e] = b.K32[(h * b.N + p) * d + e];
        for (let e = 0; e < dv; e++) Vs[s * dv + e] = b.V32[(h * b.N + p) * dv + e];
      });
      const at = headAttentionRef({ q: qh, rows, d, K: Ks, V: Vs, S, dv, pos: hr.retained, qpos: qp, scale: 1 / Math.sqrt(d) });
      const mset = new Set(hr.mutable);
      const mi = hr.retained.map((p, s) => (mset.has(p) ? s : -1)).filter((s) => s >= 0);
      const R = mi.length;
      const Aw = new Float64Array(rows * R), r = new Float64Array(rows * dv);
      for (let i = 0; i < rows; i++) {
        mi.forEach((s, tt) => (Aw[i * R + tt] = sw[i] * at.a[i * S + s]));
        for (let e = 0; e < dv; e++) r[i * dv + e] = sw[i] * (hr.target[i * dv + e] - at.o[i * dv + e]);
      }
      const primal = valueStepPrimalRef(Aw, rows, R, r, dv, 0.01);
      const { dV } = deltas(b, o, h, hr.mutable);
      const e = relDiff(dV, primal);
      t.ok(e < 1e-4, `h${h}: R=${R}: ‖ΔV_dual(ours) − ΔV_primal(float64)‖/‖ΔV_primal‖ = ${e.toExponential(2)} < 1e-4`);
      t.ok(relDiff(primal, hr.dV.uncapped) < 1e-8, `h${h}: reference dual = primal`);
    }
  });

  t.test(`grkvMerge ${backend}: skip paths, non-finite input, default options`, on(backend), async (t) => {
    const c: Case = { name: 'skip', layer: small, dtype: 'bf16', source: 'stratified', ratio: 0.8 };
    const b = build(c);
    // γ = 1: every retained prefix token is an anchor → nothing to fit; output = plain eviction
    const all = run({ ...c, gamma: 1 }, backend, b);
    const oa = await outputs(b, all.res, all.cap);
    t.ok(oa.diag.every((x: GrkvHeadDiagnostics) => x.skipped && x.chosen === 'unchanged' && x.mutable === 0), 'γ = 1: skipped');
    // a skipped head reports the plain-eviction objective for every candidate (nothing else was tried)
    t.ok(oa.diag.every((x: GrkvHeadDiagnostics) => x.objectives[0] > 0 && x.objectives[1] === x.objectives[0] && x.objectives[2] === x.objectives[0]),
      `γ = 1: objectives [L0, L0, L0] (${oa.diag.map((x) => x.objectives.join('/')).join(', ')})`);
    t.same(Array.from(oa.ko.host), Array.from(oa.plain.keys.host), 'γ = 1: keys = gatherKV');
    t.same(Array.from(oa.vo.host), Array.from(oa.plain.values.host), 'γ = 1: values = gatherKV');
    // window ≥ N: every retained token is fixed
    const win = run(c, backend, b, { window: b.N });
    const ow = await outputs(b, win.res, win.cap);
    t.ok(ow.diag.every((x: GrkvHeadDiagnostics) => x.skipped), 'window ≥ N: skipped');
    t.same(Array.from(ow.vo.host), Array.from(ow.plain.values.host), 'window ≥ N: values = gatherKV');
    // no surrogate query (Qs = 0)
    const nq = grkvMerge({
      keys: place(b.keys, backend), values: place(b.vals, backend),
      selection: { indices: place(b.sel.indices, backend), counts: place(b.sel.counts, backend) },
      queries: place(tensor(new Float32Array(0), [b.ref.Hq, 0, b.d]), backend),
      queryPositions: place(tensor(new Int32Array(0), [0]), backend),
      scores: place(tensor(b.ref.raw as Float32Array, [b.H, b.N]), backend), diagnostics: true,
    });
    const onq = await outputs(b, nq, b.sel.indices.shape[1]);
    t.ok(onq.diag.every((x: GrkvHeadDiagnostics) => x.skipped && x.objectives[0] === 0), 'Qs = 0: skipped');
    t.same(Array.from(onq.ko.host), Array.from(onq.plain.keys.host), 'Qs = 0: keys = gatherKV');
    // a NaN in one mutable key row of head 1: that head falls back to plain eviction, head 0 is unaffected
    const { mutable } = grkvPartitionRef(b.kept, b.ref.raw, b.N, b.ref.W, 0.1);
    const Kbad = Float32Array.from(b.K32);
    Kbad[(1 * b.N + mutable[1][3]) * b.d + 5] = NaN;
    const bad = { ...b, keys: tensor(stored(Kbad, 'bf16'), [b.H, b.N, b.d], { dtype: 'bf16' as DType }) };
    const nan = run(c, backend, bad);
    const on = await outputs(bad, nan.res, nan.cap);
    t.equal(on.diag[1].chosen, 'unchanged', 'non-finite head: unchanged');
    t.ok(on.diag[1].valueNonFinite && on.diag[1].keyValueNonFinite, 'non-finite head: candidates flagged');
    // each flag is its own bit: the non-finite head was fitted (not skipped), the other head has no non-finite flag
    t.equal(on.diag[1].skipped, false, 'non-finite head: fitted, not flagged skipped');
    t.equal(on.diag[0].valueNonFinite || on.diag[0].keyValueNonFinite || on.diag[0].skipped, false, 'the other head: no non-finite or skipped flag');
    t.ok(on.diag[1].objectives.every((x) => Number.isNaN(x)), 'non-finite head: objectives NaN');
    let same = true;
    for (let j = 0; j < on.ko.shape[1]; j++) same &&= sameRow(on.ko, on.plain.keys, 1, j) && sameRow(on.vo, on.plain.values, 1, j);
    t.ok(same, 'non-finite head: rows bit-identical to gatherKV');
    t.not(on.diag[0].chosen, 'unchanged', 'the other head still merges');
    // defaults: outputs allocated, weights default 1 (= passing ones), diagnostics optional
    const q = place(tensor(b.s.q, [b.ref.Hq, b.s.Qs, b.d]), backend);
    const args = {
      keys: place(b.keys, backend), values: place(b.vals, backend),
      selection: { indices: place(b.sel.indices, backend), counts: place(b.sel.counts, backend) },
      queries: q, queryPositions: place(tensor(Int32Array.from(b.s.qpos), [b.s.Qs]), backend),
      scores: place(tensor(b.ref.raw as Float32Array, [b.H, b.N]), backend),
    };
    const d1 = grkvMerge(args);
    t.equal(d1.diagnostics, undefined, 'no diagnostics unless asked');
    t.same(d1.keys.shape, [b.H, b.sel.indices.shape[1], b.d], 'default capacity = selection capacity');
    const d2 = grkvMerge({ ...args, weights: 1 });
    const d3 = grkvMerge({ ...args, weights: place(tensor(new Float32Array(b.s.Qs).fill(1), [b.s.Qs]), backend) });
    t.same(values(await fetch(d1.values)), values(await fetch(d2.values)), 'weights: 1 = default');
    t.same(values(await fetch(d2.values)), values(await fetch(d3.values)), 'weights: number = tensor');
  });
}

t.test('grkvSurrogates: positions and weights of both sources (docs/methods/grkv.md §5)', async (t) => {
  const s = grkvSurrogates(16384, { source: 'stratified' });
  t.same(Array.from(s.capturePositions), stratifiedPositions(16384), 'stratum midpoints 255, 767, …, 16127');
  t.same([s.capturePositions[0], s.capturePositions[31]], [255, 16127]);
  t.ok((s.queryPositions.host as Int32Array).every((p) => p === 16383), 'queries rotated to N − 1');
  t.ok((s.weights.host as Float32Array).every((w) => w === Math.fround(6 / 32)), 'weights 6/Qs');
  const w = grkvSurrogates(100, { source: 'window', count: 8 });
  t.same(Array.from(w.capturePositions), [92, 93, 94, 95, 96, 97, 98, 99]);
  t.same(Array.from(w.queryPositions.host), [92, 93, 94, 95, 96, 97, 98, 99], 'window: true positions (causal)');
  t.ok((w.weights.host as Float32Array).every((x) => x === 1), 'window: weights 1');
  const few = grkvSurrogates(10, { source: 'stratified' });
  t.same(Array.from(few.capturePositions), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'N < Qs: every position');
  t.ok((few.weights.host as Float32Array).every((x) => x === Math.fround(0.6)), 'N < Qs: weights 6/N');
  t.same(Array.from(grkvSurrogates(5, { source: 'window' }).capturePositions), [0, 1, 2, 3, 4], 'window longer than N');
});

void (null as unknown as GrkvMergeArgs);
void (null as unknown as Selection);
