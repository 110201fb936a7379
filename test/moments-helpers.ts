// Helpers of the tests that use a moment state (test/moments*, decode*, momentkv_select* test files): index lists,
// host copies of a state, reference states and their error measures (not a test file).
import { MomentState, tensor } from '../lib/index';
import type { Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { MomentStateRef, batchMomentsRef, gatherRows } from './ref/moments';
import { Backend, fetch, values } from './helpers';
import { maxAbs, maxAbsDiff } from './ref/compare';

/** [H, cap] i32 index tensor (−1 padded) and counts from per-head lists. */
export function lists(l: number[][], cap = Math.max(1, ...l.map((x) => x.length))): { indices: Tensor; counts: Tensor } {
  const H = l.length;
  const idx = new Int32Array(H * cap).fill(-1);
  l.forEach((r, h) => r.forEach((s, j) => (idx[h * cap + j] = s)));
  return { indices: tensor(idx, [H, cap]), counts: tensor(Int32Array.from(l.map((r) => r.length)), [H]) };
}
export async function stateHost(st: MomentState): Promise<MomentStateRef> {
  const [n, muK, muV, m] = await Promise.all([st.n, st.muK, st.muV, st.m].map((x) => fetch(x)));
  return { H: st.H, d: st.d, dv: st.dv, n: values(n), muK: values(muK), muV: values(muV), M: values(m) };
}
export function newState(H: number, d: number, dv: number, b: Backend): MomentState {
  return MomentState.create(H, d, dv, { device: b === 'cuda' ? 0 : 'cpu' });
}
/** Relative errors of a state against a reference: n exact, means and C = M/n relative to their max. */
export function stateErrors(got: MomentStateRef, ref: MomentStateRef): { n: number; mu: number; C: number } {
  const C = (S: MomentStateRef) => {
    const out = new Float64Array(S.M.length);
    const per = S.d * S.dv;
    for (let i = 0; i < out.length; i++) {
      const n = S.n[Math.floor(i / per)];
      out[i] = n > 0 ? S.M[i] / n : 0;
    }
    return out;
  };
  const muErr = Math.max(maxAbsDiff(got.muK, ref.muK) / Math.max(maxAbs(ref.muK), 1e-30), maxAbsDiff(got.muV, ref.muV) / Math.max(maxAbs(ref.muV), 1e-30));
  const cr = C(ref);
  return { n: maxAbsDiff(got.n, ref.n), mu: muErr, C: maxAbsDiff(C(got), cr) / Math.max(maxAbs(cr), 1e-30) };
}
/** The float64 reference state of rows sets[h] of each head h of K [H, N, d] and V [H, N, dv] (host arrays). */
export function setsMomentsRef(K: ArrayLike<number>, V: ArrayLike<number>, H: number, N: number, d: number, dv: number, sets: number[][]): MomentStateRef {
  const ref: MomentStateRef = { H, d, dv, n: new Float64Array(H), muK: new Float64Array(H * d), muV: new Float64Array(H * dv), M: new Float64Array(H * dv * d) };
  for (let h = 0; h < H; h++) {
    const bm = batchMomentsRef(gatherRows(K, h, N, d, sets[h]), gatherRows(V, h, N, dv, sets[h]), d, dv);
    ref.n[h] = bm.n;
    ref.muK.set(bm.muK, h * d);
    ref.muV.set(bm.muV, h * dv);
    ref.M.set(bm.M, h * dv * d);
  }
  return ref;
}
export function shuffled(rng: Rng, a: number[]): number[] {
  const p = a.slice();
  for (let i = p.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

// ---- the small host inputs of the bad-input tests (moments, decode, momentkv_select) ----
export const f32 = (n: number): Float32Array => new Float32Array(n);
export const i32 = (a: number[]): Int32Array => new Int32Array(a);
/** H = 2 heads of N = 8 tokens, d = 4, dv = 3; ev / evCnt: rows {0, 2, 5} of head 0 and {1, 3} of head 1; st(): an empty state. */
export const small = (() => {
  const H = 2, N = 8, d = 4, dv = 3;
  return {
    H, N, d, dv,
    keys: tensor(f32(H * N * d).map((_, i) => Math.sin(i)), [H, N, d]),
    vals: tensor(f32(H * N * dv).map((_, i) => Math.cos(i)), [H, N, dv]),
    ev: tensor(i32([0, 2, 5, -1, 1, 3, -1, -1]), [H, 4]),
    evCnt: tensor(i32([3, 2]), [H]),
    st: (): MomentState => MomentState.create(H, d, dv),
  };
})();
