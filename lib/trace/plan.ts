/** Document-level structure: topic segments, needle spans, the GRKV stratified positions and the query plan. */
import type { Rng } from '../rng';
import type { HeldOutKind, TraceOptions } from './options';

export const NEEDLE_SPAN = 4; // a needle "sentence": the needle key of each head is one token of it
export const NEEDLE_GAP = 12; // minimum distance between needle spans

export function segmentBoundsFor(rng: Rng, N: number, S: number): Int32Array {
  const w = new Float64Array(S);
  let tot = 0;
  for (let s = 0; s < S; s++) {
    w[s] = 0.4 - Math.log(1 - rng.uniform());
    tot += w[s];
  }
  const minLen = Math.max(1, Math.min(32, Math.floor(N / (2 * S))));
  const b = new Int32Array(S + 1);
  let cum = 0;
  for (let s = 1; s < S; s++) {
    cum += w[s - 1];
    b[s] = Math.round((N * cum) / tot);
  }
  b[S] = N;
  // enforce the minimum length, forwards then backwards
  for (let s = 1; s < S; s++) if (b[s] < b[s - 1] + minLen) b[s] = b[s - 1] + minLen;
  for (let s = S - 1; s >= 1; s--) if (b[s] > b[s + 1] - minLen) b[s] = b[s + 1] - minLen;
  return b;
}

export function needleSpansFor(rng: Rng, N: number, W: number, K: number): Int32Array {
  const lo = 8;
  const hi = N - W - 16 - NEEDLE_SPAN; // spans end well before the observation window
  const out = new Int32Array(K);
  if (K === 0) return out;
  for (let attempt = 0; attempt < 200; attempt++) {
    for (let k = 0; k < K; k++) out[k] = lo + rng.int(hi - lo);
    const sorted = Array.from(out).sort((a, b) => a - b);
    let ok = true;
    for (let k = 1; k < K; k++) if (sorted[k] - sorted[k - 1] < NEEDLE_GAP) ok = false;
    if (ok) return out;
  }
  // crowded: evenly spaced with a random order
  const step = (hi - lo) / K;
  const idx = Array.from({ length: K }, (_, k) => k);
  for (let k = K - 1; k > 0; k--) {
    const j = rng.int(k + 1);
    [idx[k], idx[j]] = [idx[j], idx[k]];
  }
  for (let k = 0; k < K; k++) out[k] = lo + Math.floor(idx[k] * step);
  return out;
}

/** GRKV Default stratified positions (docs/methods/grkv.md §5.2). */
export function stratifiedPositions(N: number, Qs = 32): Int32Array {
  if (N < Qs) return Int32Array.from({ length: N }, (_, i) => i);
  const e = (j: number): number => Math.floor((j * N) / Qs);
  const out = new Int32Array(Qs);
  for (let j = 0; j < Qs; j++) out[j] = Math.floor((e(j) + e(j + 1) - 1) / 2);
  return out;
}

export interface QueryPlan {
  kinds: HeldOutKind[];
  needleIdx: Int32Array; // per held-out query: needle index or -1
  segment: Int32Array; // per held-out query: segment or -1
  followUp: Uint8Array;
  asked: number; // needles 0..asked-1 are asked in the window
  relevant: number[]; // segments the window asks about
  windowRole: Int32Array; // per window position: 0 plain, 1 needle question, 2 topic question
  windowTarget: Int32Array; // needle index or segment
}

export function planQueries(rng: Rng, o: Required<TraceOptions>): QueryPlan {
  const T = o.heldOut, K = o.needles, S = o.segments, W = o.window;
  const asked = Math.ceil(K / 2);
  // relevant segments (what the prompt's question is about): a random quarter, never the last
  const pool = Array.from({ length: Math.max(1, S - 1) }, (_, s) => s);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  const relevant = pool.slice(0, Math.max(1, Math.round(S / 4)));
  const others: number[] = [];
  for (let s = 0; s < S; s++) if (!relevant.includes(s)) others.push(s);
  const cycle: HeldOutKind[] = K > 0 ? ['needle', 'local', 'topic'] : ['local', 'topic'];
  const kinds: HeldOutKind[] = [];
  const needleIdx = new Int32Array(T).fill(-1);
  const segment = new Int32Array(T).fill(-1);
  const followUp = new Uint8Array(T);
  let nq = 0, tq = 0;
  for (let t = 0; t < T; t++) {
    const kind = cycle[t % cycle.length];
    kinds.push(kind);
    if (kind === 'needle') {
      const k = nq++ % K;
      needleIdx[t] = k;
      followUp[t] = k >= asked ? 1 : 0;
    } else if (kind === 'topic') {
      const j = tq++;
      if (j % 4 === 3 && others.length > 0) {
        segment[t] = others[rng.int(others.length)];
        followUp[t] = 1;
      } else {
        segment[t] = relevant[j % relevant.length];
      }
    }
  }
  const windowRole = new Int32Array(W);
  const windowTarget = new Int32Array(W).fill(-1);
  let wn = 0, wt = 0;
  const half = Math.floor(W / 2);
  for (let w = half; w < W; w++) {
    const r = (w - half) % 4;
    if (r === 0 && K > 0) {
      windowRole[w] = 1;
      windowTarget[w] = wn++ % asked;
    } else if (r === 2) {
      windowRole[w] = 2;
      windowTarget[w] = relevant[wt++ % relevant.length];
    }
  }
  return { kinds, needleIdx, segment, followUp, asked, relevant, windowRole, windowTarget };
}
