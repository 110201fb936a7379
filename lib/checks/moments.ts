/**
 * Target-vs-CPU checks of the moment state (docs/methods/momentkv.md §4.3): merges, and the merge fused into the compaction
 * (gatherKV with moments). The state helpers are shared with the decode and momentkv_select checks.
 */
import { MomentState } from '../ops/moments';
import { gatherKV } from '../ops/gather';
import { Tensor, tensor, hostContiguous } from '../tensor';
import type { Check, Target } from './types';
import { randomHost, numbers, mismatches, checkShapes } from './util';
import type { Rng } from '../rng';

const { H, N } = checkShapes, d = 128, dv = 128;

/** A fresh empty state placed on the target (created on the host, copied: the target is abstract). */
export function stateOn(target: Target, Hs = H, ds = d, dvs = dv): MomentState {
  const h = MomentState.create(Hs, ds, dvs);
  return MomentState.from({ n: target.place(h.n), muK: target.place(h.muK), muV: target.place(h.muV), m: target.place(h.m) });
}

/** The four statistics of a state as numbers (`fetch`: the target's, or identity for a host state). */
export async function stateNumbers(st: MomentState, fetch: (t: Tensor) => Promise<Tensor>): Promise<Float64Array[]> {
  return Promise.all([st.n, st.muK, st.muV, st.m].map(async (t) => numbers(await fetch(t))));
}

/** Largest error of the target state vs the CPU state: n exact, means and M relative to their max magnitude. */
export function stateError(a: Float64Array[], b: Float64Array[]): number {
  let e = 0;
  for (let p = 0; p < 4; p++) {
    let mx = 0, diff = 0;
    for (let i = 0; i < b[p].length; i++) {
      mx = Math.max(mx, Math.abs(b[p][i]));
      const x = Math.abs(a[p][i] - b[p][i]);
      diff = Number.isNaN(x) ? Infinity : Math.max(diff, x);
    }
    e = Math.max(e, p === 0 ? (diff === 0 ? 0 : Infinity) : diff / Math.max(mx, 1e-30));
  }
  return e;
}

/** Random ascending position lists per head (each position with probability `frac`), padded with −1. */
function randomLists(rng: Rng, frac: number, cap = N): { indices: Tensor; counts: Tensor; lists: number[][] } {
  const lists = Array.from({ length: H }, () => Array.from({ length: N }, (_, i) => i).filter(() => rng.uniform() < frac));
  const idx = new Int32Array(H * cap).fill(-1);
  lists.forEach((l, h) => l.slice(0, cap).forEach((s, j) => (idx[h * cap + j] = s)));
  return { indices: tensor(idx, [H, cap]), counts: tensor(Int32Array.from(lists.map((l) => Math.min(cap, l.length))), [H]), lists };
}

export const momentsChecks: Check[] = [
  {
    op: 'MomentState.merge',
    config: `H=${H} N=${N} d=dv=${d} bf16, two merges (~40 % + ~35 % of rows)`,
    async run(rng, target) {
      const k = randomHost(rng, [H, N, d], 'bf16', 3), v = randomHost(rng, [H, N, dv], 'bf16');
      const a = randomLists(rng, 0.4), b = randomLists(rng, 0.35);
      // disjoint second list
      const bl = b.lists.map((l, h) => l.filter((s) => !a.lists[h].includes(s)));
      const bIdx = new Int32Array(H * N).fill(-1);
      bl.forEach((l, h) => l.forEach((s, j) => (bIdx[h * N + j] = s)));
      const bt = { indices: tensor(bIdx, [H, N]), counts: tensor(Int32Array.from(bl.map((l) => l.length)), [H]) };
      const cpu = MomentState.create(H, d, dv).merge(k, v, a.indices, a.counts).merge(k, v, bt.indices, bt.counts);
      const kt = target.place(k), vt = target.place(v);
      const dev = stateOn(target).merge(kt, vt, target.place(a.indices), target.place(a.counts)).merge(kt, vt, target.place(bt.indices), target.place(bt.counts));
      const err = stateError(await stateNumbers(dev, (t) => target.fetch(t)), await stateNumbers(cpu, async (t) => t));
      return { pass: err <= 1e-5, error: err, tolerance: 1e-5, detail: 'max rel. error of mu/M (n exact)' };
    },
  },
  {
    op: 'MomentState.merge',
    config: `fused into the compaction (gatherKV with moments): H=${H} N=${N} d=dv=${d} f16 [N,H,d] strided, keep ~25 %, cap 1100`,
    async run(rng, target) {
      const kh = randomHost(rng, [N, H, d], 'f16'), vh = randomHost(rng, [N, H, dv], 'f16');
      const view = (x: Tensor, w: number) => x.view([H, N, w], [w, H * w, 1]);
      const cap = 1100;
      const sel = randomLists(rng, 0.25, cap);
      const cpuSt = MomentState.create(H, d, dv);
      const cpu = gatherKV({ keys: view(kh, d), values: view(vh, dv), indices: sel.indices, counts: sel.counts, moments: cpuSt });
      const devSt = stateOn(target);
      const dev = gatherKV({
        keys: view(target.place(kh), d), values: view(target.place(vh), dv), indices: target.place(sel.indices), counts: target.place(sel.counts),
        moments: devSt, keysOut: target.poisoned([H, cap, d], 'f16'), valuesOut: target.poisoned([H, cap, dv], 'f16'), countsOut: target.poisoned([H], 'i32'),
      });
      const bad =
        mismatches(hostContiguous(await target.fetch(dev.keys)), cpu.keys.host) +
        mismatches(hostContiguous(await target.fetch(dev.values)), cpu.values.host) +
        mismatches(hostContiguous(await target.fetch(dev.counts)), cpu.counts.host);
      const err = stateError(await stateNumbers(devSt, (t) => target.fetch(t)), await stateNumbers(cpuSt, async (t) => t));
      const pass = bad === 0 && err <= 1e-5;
      return { pass, error: bad === 0 ? err : Infinity, tolerance: 1e-5, detail: bad ? `${bad} mismatching compacted elements` : 'max rel. error of the merged state' };
    },
  },
];
