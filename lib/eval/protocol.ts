/**
 * The causal split protocol of `kvtrim eval`, which mirrors decoding: the prefix [0, S) is compressed with the
 * observation window of the W queries at positions S−W..S−1, and each held-out query at position p ≥ S attends
 * the compressed prefix plus the uncompressed keys/values of positions S..p (what a runtime appends after
 * compressing), against the full causal cache 0..p as the reference. A query never sees a key at a later
 * position. Queries at p ≥ N continue past the dumped keys: they see all N keys (the continuation's own keys are
 * not in the dump). This module plans the split on the host: which queries form the window, which are held out,
 * and how the held-out ones group by position.
 */

/** Default number of held-out positions after the split: F = min(512, ⌊N/8⌋), so S = N − F. */
export function defaultSplit(N: number): number {
  return N - Math.min(512, Math.floor(N / 8));
}

/** Error by distance p − S of a held-out query from the split: the first 64 positions, 64–255, the rest. */
export const DISTANCE_BUCKETS: readonly { label: string; lo: number; hi: number }[] = Object.freeze([
  { label: '0-63', lo: 0, hi: 64 },
  { label: '64-255', lo: 64, hi: 256 },
  { label: '256+', lo: 256, hi: Infinity },
]);

export function distanceBucket(distance: number): number {
  return DISTANCE_BUCKETS.findIndex((b) => distance >= b.lo && distance < b.hi);
}

/** Held-out queries t0..t1−1 all sit at position `pos` (positions are non-decreasing). */
export interface PositionGroup {
  pos: number;
  t0: number;
  t1: number;
}

/** Consecutive runs of equal positions. */
export function groupByPosition(positions: ArrayLike<number>): PositionGroup[] {
  const out: PositionGroup[] = [];
  for (let t = 0; t < positions.length; t++) {
    const last = out[out.length - 1];
    if (last && last.pos === positions[t]) last.t1 = t + 1;
    else out.push({ pos: positions[t], t0: t, t1: t + 1 });
  }
  return out;
}

/** One layer under the protocol: the window [Hq, W, d] before S and the held-out queries [Hq, T, d] at p ≥ S. */
export interface SplitLayer {
  window: Float32Array;
  W: number;
  heldOut: Float32Array;
  /** [T] positions of the held-out queries (non-decreasing, each ≥ S) */
  positions: Int32Array;
  T: number;
}

/**
 * Split the queries [Hq, T, d] of one layer (at strictly increasing `positions`) at S: the window is the run of
 * consecutive positions ending at S−1 (at most `maxWindow` queries, and fewer than S so a prefix remains), the
 * held-out queries are those at p ≥ S. `where` names the layer in errors.
 */
export function splitQueries(
  queries: Float32Array, positions: Int32Array, Hq: number, d: number, N: number, S: number, maxWindow: number, where: string,
): SplitLayer {
  const Tall = positions.length;
  const span = Tall ? `positions ${positions[0]}..${positions[Tall - 1]}` : 'no positions';
  const last = lowerBound(positions, S) - 1; // index of the last query before S
  if (last < 0 || positions[last] !== S - 1) {
    throw new RangeError(
      `${where}: the observation window needs the query at position S−1 = ${S - 1} (split S = ${S}), but the dump's ${Tall} ` +
        `queries cover ${span}${last >= 0 ? ` and the last one before S is at ${positions[last]}` : ''}: choose the split ` +
        `(--split) right after a dumped query, or dump queries for the positions before S`,
    );
  }
  let first = last;
  const cap = Math.min(maxWindow, S - 1);
  while (first > 0 && last - first + 1 < cap && positions[first - 1] === positions[first] - 1) first--;
  const W = last - first + 1;
  const T = Tall - (last + 1);
  if (T < 1) {
    throw new RangeError(
      `${where}: no query at or after the split S = ${S} to hold out (the dump's queries cover ${span}, N = ${N}): choose a ` +
        `smaller --split, or dump the queries of later positions (a continuation past N is allowed)`,
    );
  }
  if (W < 1) throw new RangeError(`${where}: split S = ${S} leaves no prefix for the window`);
  const window = new Float32Array(Hq * W * d), heldOut = new Float32Array(Hq * T * d);
  for (let h = 0; h < Hq; h++) {
    window.set(queries.subarray((h * Tall + first) * d, (h * Tall + last + 1) * d), h * W * d);
    heldOut.set(queries.subarray((h * Tall + last + 1) * d, (h + 1) * Tall * d), h * T * d);
  }
  return { window, W, heldOut, positions: positions.slice(last + 1), T };
}

function lowerBound(a: Int32Array, x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (a[m] < x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/** [Hkv, N, w] → rows [a, b) of every head, contiguous [Hkv, b − a, w]. */
export function sliceRows(x: Float32Array, Hkv: number, N: number, w: number, a: number, b: number): Float32Array {
  if (a === 0 && b === N) return x;
  const n = b - a, out = new Float32Array(Hkv * n * w);
  for (let h = 0; h < Hkv; h++) out.set(x.subarray((h * N + a) * w, (h * N + b) * w), h * n * w);
  return out;
}
