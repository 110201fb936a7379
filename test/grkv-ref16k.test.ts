// grkvMerge at the paper's layer shape — H_kv = 8, G = 4, Qs = 32, d = 128, N = 16384, keep 10 % (SnapKV), the
// release's stratified surrogates — against the float64 reference on a subset of heads (the reference takes ~6 s per
// head at this size), plus invariants on every head.
//
// (The float64 objective of the output is recomputed against plain eviction on every head in grkv.test.ts.)
// ΔV must match to 1e-4. ΔK must match to 1e-4 where the reference's own key step is stable: where its movement under
// a 1e-7 relative perturbation of the queries (the noise level of any fp32 pipeline), times 3, exceeds 1e-4 (the
// truncated CG is ill-conditioned, relative residuals ~0.2–1 after 16 iterations) the comparison is a visible skip
// naming that spread; grkv.test.ts checks the key step on every head at 2 CG iterations, where it is well conditioned.
import t from 'tap';
import { grkvMerge, gatherKV, tensor, decodeGrkvDiagnostics } from '../lib/index';
import type { Tensor } from '../lib/index';
import { grkvMergeRef, grkvPartitionRef } from './ref/grkv';
import type { GrkvMergeArgs } from './ref/grkv';
import { frobeniusNorm } from './ref/linalg';
import { BACKENDS, on, place, fetch, QUICK, QUICK_SKIP } from './helpers';
import { expectWritten } from './ref/compare';
import { traceLayer, keptRows, snapkvSelection, surrogates } from './grkv-helpers';

const N = 16384, H = 8, d = 128;
const REF_HEADS = [1, 5];

// KVTRIM_TEST_QUICK=1 (reduced sizes): the whole file is the N = 16384 case, a visible skip
const L = traceLayer({ N: QUICK ? 1024 : N, Hkv: H, d, groupSize: 4, seed: 1 });
const sel = snapkvSelection(L, 0.9);
const kept = keptRows(sel);
const s = surrogates(L, 'stratified');
const G = L.Hq / H, Qs = s.Qs;

/** Reference arguments restricted to the KV heads `heads` (their K, V, query heads, scores and kept rows). */
function refArgs(heads: number[], q: ArrayLike<number> = s.q): GrkvMergeArgs {
  const nh = heads.length;
  const K = new Float32Array(nh * N * d), V = new Float32Array(nh * N * d), raw = new Float32Array(nh * N);
  const qs = new Float64Array(nh * G * Qs * d);
  heads.forEach((h, i) => {
    K.set(L.K.subarray(h * N * d, (h + 1) * N * d), i * N * d);
    V.set(L.V.subarray(h * N * d, (h + 1) * N * d), i * N * d);
    raw.set(L.raw.subarray(h * N, (h + 1) * N), i * N);
    for (let x = 0; x < G * Qs * d; x++) qs[i * G * Qs * d + x] = q[h * G * Qs * d + x];
  });
  return {
    K, V, Hkv: nh, N, d, dv: d, kept: heads.map((h) => kept[h]), raw, q: qs, Hq: nh * G, qpos: s.qpos, weights: s.weights,
    W: L.W, round: Math.fround, recheck: false,
  };
}

function rel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Mutable-row deltas of head h in a compacted output. */
function deltas(ko: Tensor, vo: Tensor, h: number, mutable: number[]) {
  const pos = new Map(kept[h].map((p, j) => [p, j]));
  const dK: number[] = [], dV: number[] = [];
  for (const p of mutable) {
    const j = pos.get(p) as number;
    for (let e = 0; e < d; e++) {
      dK.push(ko.at(h, j, e) - L.K[(h * N + p) * d + e]);
      dV.push(vo.at(h, j, e) - L.V[(h * N + p) * d + e]);
    }
  }
  return { dK, dV };
}

for (const backend of BACKENDS) {
  t.test(`grkvMerge ${backend} H=8 G=4 Qs=32 d=128 N=16384 keep 10% stratified vs float64 reference`, on(backend, { skip: QUICK_SKIP }), async (t) => {
    const inputs = {
      keys: place(tensor(L.K, [H, N, d]), backend), values: place(tensor(L.V, [H, N, d]), backend),
      selection: { indices: place(sel.indices, backend), counts: place(sel.counts, backend) },
      queries: place(tensor(s.q, [L.Hq, Qs, d]), backend), queryPositions: place(tensor(Int32Array.from(s.qpos), [Qs]), backend),
      weights: place(tensor(Float32Array.from(s.weights), [Qs]), backend), scores: place(tensor(L.raw, [H, N]), backend),
      diagnostics: true,
    };
    const best = grkvMerge(inputs);
    const dBest = await decodeGrkvDiagnostics(best.diagnostics as Tensor);
    const joint = grkvMerge({ ...inputs, acceptance: 'joint' });
    const dJoint = await decodeGrkvDiagnostics(joint.diagnostics as Tensor);
    t.ok(dJoint.every((x) => x.chosen === 'key+value'), `joint acceptance applies the key+value step on every head (${dJoint.map((x) => x.chosen).join(' ')})`);
    const bk = await fetch(best.keys), bv = await fetch(best.values), jk = await fetch(joint.keys), jv = await fetch(joint.values);
    for (const [name, x] of [['keys', bk], ['values', bv], ['joint keys', jk], ['joint values', jv], ['counts', await fetch(best.counts)]] as const) expectWritten(t, x, name);
    // every head: choice never worse than plain eviction; fixed / evicted rows bit-identical to gatherKV
    const plain = gatherKV({ keys: tensor(L.K, [H, N, d]), values: tensor(L.V, [H, N, d]), ...sel });
    const { mutable } = grkvPartitionRef(kept, L.raw, N, L.W, 0.1);
    let fixedBad = 0;
    for (let h = 0; h < H; h++) {
      const dg = dBest[h];
      const Lc = dg.objectives[['unchanged', 'value', 'key+value'].indexOf(dg.chosen)];
      t.ok(Lc <= dg.objectives[0], `h${h}: ${dg.chosen}: objective ${Lc.toFixed(3)} ≤ plain eviction ${dg.objectives[0].toFixed(3)} (L = [${dg.objectives.map((x) => x.toFixed(2)).join(', ')}])`);
      const mset = new Set(mutable[h]);
      for (let j = 0; j < bk.shape[1]; j++) {
        if (j < kept[h].length && mset.has(kept[h][j])) continue;
        for (let e = 0; e < d; e++) {
          if (!Object.is(bk.at(h, j, e), plain.keys.at(h, j, e)) || !Object.is(bv.at(h, j, e), plain.values.at(h, j, e))) fixedBad++;
          if (!Object.is(jk.at(h, j, e), plain.keys.at(h, j, e)) || !Object.is(jv.at(h, j, e), plain.values.at(h, j, e))) fixedBad++;
        }
      }
    }
    t.equal(fixedBad, 0, 'fixed (window + anchors), evicted-padding rows bit-identical to gatherKV, both acceptances');
    // float64 reference on a subset of heads, and its movement under a 1e-7 perturbation of the queries
    const ref = grkvMergeRef(refArgs(REF_HEADS));
    const perturbed = grkvMergeRef(refArgs(REF_HEADS, Float64Array.from(s.q, (x, i) => x * (1 + 1e-7 * Math.sin(i * 7.31)))));
    REF_HEADS.forEach((h, i) => {
      const hr = ref.heads[i];
      t.same(hr.mutable, mutable[h], `h${h}: same partition (${hr.mutable.length} mutable of ${kept[h].length})`);
      t.ok(Math.abs(dBest[h].objectives[0] - hr.objectives[0]) <= 1e-5 * hr.objectives[0], `h${h}: L0 ${dBest[h].objectives[0]} vs ${hr.objectives[0].toFixed(4)}`);
      t.ok(Math.abs(dBest[h].objectives[1] - hr.objectives[1]) <= 1e-4 * hr.objectives[0], `h${h}: L1 ${dBest[h].objectives[1]} vs ${hr.objectives[1].toFixed(4)}`);
      const { dK, dV } = deltas(jk, jv, h, hr.mutable);
      const K0 = hr.mutable.flatMap((p) => Array.from(L.K.subarray((h * N + p) * d, (h * N + p + 1) * d)));
      const V0 = hr.mutable.flatMap((p) => Array.from(L.V.subarray((h * N + p) * d, (h * N + p + 1) * d)));
      const eV = rel(dV, Array.from(hr.dV.rows, (x, k) => x - V0[k]));
      const eK = rel(dK, Array.from(hr.dK.rows, (x, k) => x - K0[k]));
      t.ok(eV <= 1e-4, `h${h}: ΔV relative error vs float64 ${eV.toExponential(2)} ≤ 1e-4`);
      const spread = frobeniusNorm(perturbed.heads[i].dK.rows.map((x, k) => x - hr.dK.rows[k])) / frobeniusNorm(hr.dK.capped);
      t.ok(eK <= 1e-4, `h${h}: ΔK relative error vs float64 ${eK.toExponential(2)} ≤ 1e-4`,
        { skip: 3 * spread > 1e-4 && `ill-conditioned key step: the reference's ΔK moves by ${spread.toExponential(2)} under a 1e-7 perturbation of the queries` });
    });
  });
}
