/**
 * Tie-tolerant validation of a momentkvSelect result (test helper, not a test file).
 *
 * An f32 implementation can legitimately differ from the float64 reference where two keys are within rounding of
 * each other, and one such swap changes the state, hence the later rounds. So instead of comparing sets, this
 * replays the rounds in float64 on the implementation's OWN trajectory (its per-round evicted sets, from
 * `evictedRound`): for each round it recomputes the reference keys (score × miFactorRef against the float64 state
 * of the rows the implementation evicted so far) and requires every token evicted in that round to rank no higher
 * than every surviving candidate, up to `relTol` of the key magnitude. It also checks the round sizes and the kept
 * count.
 */
import { miFactorRef } from './ref/momentkv_select';
import { momentsInitRef, momentsMergeRef } from './ref/moments';

export interface RoundCheckArgs {
  scores: ArrayLike<number>;
  K: ArrayLike<number>;
  V: ArrayLike<number>;
  Hkv: number;
  N: number;
  d: number;
  dv: number;
  keep: number;
  rounds?: number;
  r?: number;
  eps?: number;
  mi?: boolean;
  /** [Hkv, N] round of eviction (0-based) per token, −1 kept (the implementation's output). */
  evictedRound: ArrayLike<number>;
}

/** Returns null when valid, else a message; `worst` is the largest relative ranking violation seen. */
export function validateRoundsTolerant(a: RoundCheckArgs, relTol = 1e-5): { error: string | null; worst: number; nearTies: number } {
  const { scores, K, V, Hkv, N, d, dv, keep, evictedRound: er } = a;
  const mi = a.mi ?? true;
  const rounds = mi ? (a.rounds ?? 4) : 1;
  const r = a.r ?? 1, eps = a.eps ?? 0.05;
  let worst = 0, nearTies = 0;
  for (let h = 0; h < Hkv; h++) {
    const S = momentsInitRef(Hkv, d, dv);
    const evicted = new Set<number>();
    const excess = Math.max(0, N - keep);
    let done = 0;
    for (let rd = 0; rd < rounds; rd++) {
      const m = Math.ceil((excess - done) / (rounds - rd));
      if (m <= 0) break;
      const alive: number[] = [];
      for (let s = 0; s < N; s++) if (!evicted.has(s) && scores[h * N + s] !== Infinity) alive.push(s);
      const E = alive.filter((s) => er[h * N + s] === rd);
      const stray = Array.from({ length: N }, (_, s) => s).filter((s) => er[h * N + s] === rd && !alive.includes(s));
      if (E.length !== m || stray.length) return { error: `head ${h} round ${rd}: evicted ${E.length} candidates (+${stray.length} non-candidates), expected ${m}`, worst, nearTies };
      const Vc = new Float64Array(alive.length * dv);
      alive.forEach((s, i) => {
        for (let c = 0; c < dv; c++) Vc[i * dv + c] = V[(h * N + s) * dv + c];
      });
      const f = mi ? miFactorRef(Vc, S, h, r, eps) : new Float64Array(alive.length).fill(1);
      const key = new Map<number, number>();
      alive.forEach((s, i) => key.set(s, scores[h * N + s] * f[i]));
      const inE = new Set(E);
      let maxE = -Infinity, minR = Infinity;
      for (const s of alive) {
        const k = key.get(s)!;
        if (inE.has(s)) maxE = Math.max(maxE, k);
        else minR = Math.min(minR, k);
      }
      if (maxE > minR) {
        const rel = (maxE - minR) / Math.max(Math.abs(maxE), Math.abs(minR), 1e-30);
        worst = Math.max(worst, rel);
        if (rel > relTol) return { error: `head ${h} round ${rd}: an evicted key ${maxE} exceeds a surviving key ${minR} (rel ${rel.toExponential(2)})`, worst, nearTies };
        for (const s of alive) if (!inE.has(s) && key.get(s)! < maxE) nearTies++;
      }
      const Kd = new Float64Array(E.length * d), Vd = new Float64Array(E.length * dv);
      E.forEach((s, i) => {
        for (let c = 0; c < d; c++) Kd[i * d + c] = K[(h * N + s) * d + c];
        for (let c = 0; c < dv; c++) Vd[i * dv + c] = V[(h * N + s) * dv + c];
      });
      momentsMergeRef(S, h, Kd, Vd);
      for (const s of E) evicted.add(s);
      done += m;
    }
    let kept = 0;
    for (let s = 0; s < N; s++) if (er[h * N + s] === -1) kept++;
    if (kept !== N - excess) return { error: `head ${h}: ${kept} kept, expected ${N - excess}`, worst, nearTies };
  }
  return { error: null, worst, nearTies };
}
