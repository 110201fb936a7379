/**
 * Float64 reference for token selection (test oracle), plus tie-tolerant comparison helpers.
 *
 * The selection rule is the library's deterministic contract (docs/methods/selection.md §4 = kvpress
 * AdaKVPress; docs/methods/nestedkv.md §9.8, §9.13, §9.14), written plainly as an explicit comparator and a sort:
 *
 * Ranking of two tokens (h, i) and (h', j) — "a ranks before b" means a is preferred:
 *  - Forced tokens (positions i < sinks or i ≥ N − recent; in adaptive mode also each head's
 *    safeguard tokens) rank before every non-forced token, whatever the scores (even +Infinity).
 *    Among forced tokens: lower position first, then lower head.
 *  - Non-forced tokens: higher score first; NaN ranks below −Infinity (all NaNs equal);
 *    −0 equals +0; ties: lower position first, then lower head.
 *
 * keep = n_keep, the per-head average keep count (1 ≤ keep ≤ N).
 *  - 'uniform':  each head keeps its own first n_keep tokens in that order.
 *  - 'adaptive': n_safe = ⌊n_keep · safeguard⌋; each head's own first n_safe tokens (in that order,
 *    forced first) become forced too; then the layer keeps the first H·n_keep of all (h, i) pairs
 *    in that order. Counts are ragged and sum to H·n_keep.
 * Output: per head the kept positions ascending; counts[h] = number kept in head h.
 */

export interface SelectOptions {
  /** n_keep: per-head average number of tokens kept, 1 ≤ keep ≤ N */
  keep: number;
  budget: 'uniform' | 'adaptive';
  /** safeguard fraction α_s for 'adaptive'. Default 0.2. */
  safeguard?: number;
  /** leading positions always kept. Default 0. */
  sinks?: number;
  /** trailing positions always kept. Default 0. */
  recent?: number;
}

export interface Selection {
  /** per head, kept positions in ascending order */
  indices: number[][];
  /** counts[h] = indices[h].length */
  counts: number[];
}

interface Entry {
  h: number;
  i: number;
  s: number;
  forced: boolean;
}

/**
 * Score order: negative if score a ranks before score b (a is higher), positive if after, 0 if
 * equal. NaN is below −Infinity; −0 equals +0.
 */
export function compareScoresDesc(a: number, b: number): number {
  const aNaN = Number.isNaN(a);
  const bNaN = Number.isNaN(b);
  if (aNaN && bNaN) return 0;
  if (aNaN) return 1;
  if (bNaN) return -1;
  if (a > b) return -1;
  if (a < b) return 1;
  return 0; // equal, including −0 vs +0 and Infinity vs Infinity
}

/** The full ranking comparator described in the file header. */
function compareEntries(a: Entry, b: Entry): number {
  if (a.forced !== b.forced) return a.forced ? -1 : 1;
  if (!a.forced) {
    const c = compareScoresDesc(a.s, b.s);
    if (c !== 0) return c;
  }
  if (a.i !== b.i) return a.i - b.i;
  return a.h - b.h;
}

function checkScores(scores: ArrayLike<number>, H: number, N: number, fn: string): void {
  for (const [name, v] of [['H', H], ['N', N]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${fn}: ${name} must be a positive integer, got ${v}`);
  }
  if (scores.length !== H * N) throw new RangeError(`${fn}: scores.length must be H*N = ${H * N}, got ${scores.length}`);
}

/**
 * Reference token selection, docs/methods/selection.md §4 (adaptive = kvpress AdaKVPress; uniform =
 * ScorerPress / "w/o adaptive budget" ablation) with the deterministic tie rule of the file header.
 *
 * @param scores [H, N] row-major
 */
export function selectRef(scores: ArrayLike<number>, H: number, N: number, opts: SelectOptions): Selection {
  checkScores(scores, H, N, 'selectRef');
  const keep = opts.keep;
  const safeguard = opts.safeguard ?? 0.2;
  const sinks = opts.sinks ?? 0;
  const recent = opts.recent ?? 0;
  if (!Number.isInteger(keep) || keep < 1 || keep > N) throw new RangeError(`selectRef: keep must be an integer in [1, N=${N}], got ${keep}`);
  if (opts.budget !== 'uniform' && opts.budget !== 'adaptive') {
    throw new RangeError(`selectRef: budget must be 'uniform' or 'adaptive', got ${String(opts.budget)}`);
  }
  if (!(safeguard >= 0 && safeguard <= 1)) throw new RangeError(`selectRef: safeguard must be in [0, 1], got ${safeguard}`);
  if (!Number.isInteger(sinks) || sinks < 0) throw new RangeError(`selectRef: sinks must be a non-negative integer, got ${sinks}`);
  if (!Number.isInteger(recent) || recent < 0) throw new RangeError(`selectRef: recent must be a non-negative integer, got ${recent}`);

  // one Entry per (h, i)
  const entries: Entry[][] = [];
  for (let h = 0; h < H; h++) {
    const row: Entry[] = [];
    for (let i = 0; i < N; i++) {
      row.push({ h, i, s: scores[h * N + i], forced: i < sinks || i >= N - recent });
    }
    entries.push(row);
  }

  const kept: boolean[][] = entries.map((row) => row.map(() => false));

  if (opts.budget === 'uniform') {
    for (let h = 0; h < H; h++) {
      const order = entries[h].slice().sort(compareEntries);
      for (let r = 0; r < keep; r++) kept[h][order[r].i] = true;
    }
  } else {
    const nSafe = Math.floor(keep * safeguard);
    // per-head safeguard: the head's first n_safe tokens become forced
    for (let h = 0; h < H; h++) {
      const order = entries[h].slice().sort(compareEntries);
      for (let r = 0; r < nSafe; r++) order[r].forced = true;
    }
    // global top H·n_keep over all (h, i)
    const all: Entry[] = [];
    for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) all.push(entries[h][i]);
    all.sort(compareEntries);
    for (let r = 0; r < H * keep; r++) kept[all[r].h][all[r].i] = true;
  }

  const indices: number[][] = [];
  const counts: number[] = [];
  for (let h = 0; h < H; h++) {
    const idx: number[] = [];
    for (let i = 0; i < N; i++) if (kept[h][i]) idx.push(i);
    indices.push(idx);
    counts.push(idx.length);
  }
  return { indices, counts };
}

/** Sort comparator for score multisets: ascending, −0 = +0, NaN last. */
function ascendingScores(a: number, b: number): number {
  return -compareScoresDesc(a, b);
}

/**
 * Per head, the kept scores sorted ascending (NaN last). `sel.indices[h]` may be any iterable of
 * positions (only the first counts[h] are used when counts is given).
 */
export function keptScoreMultiset(
  scores: ArrayLike<number>,
  H: number,
  N: number,
  sel: { indices: ArrayLike<number>[] | ArrayLike<ArrayLike<number>>; counts?: ArrayLike<number> },
): number[][] {
  checkScores(scores, H, N, 'keptScoreMultiset');
  const out: number[][] = [];
  for (let h = 0; h < H; h++) {
    const idx = sel.indices[h];
    const n = sel.counts ? sel.counts[h] : idx.length;
    const vals: number[] = [];
    for (let r = 0; r < n; r++) {
      const i = idx[r];
      if (!Number.isInteger(i) || i < 0 || i >= N) throw new RangeError(`keptScoreMultiset: head ${h} index ${i} out of range`);
      vals.push(scores[h * N + i]);
    }
    out.push(vals.sort(ascendingScores));
  }
  return out;
}

function sameScore(a: number, b: number): boolean {
  return compareScoresDesc(a, b) === 0;
}

/**
 * True when both selections have identical per-head counts and, per head, the same sorted multiset
 * of kept scores (scores looked up in `scores`, typically the float64 reference scores or the
 * kernel's own f32 scores). Tolerates index differences caused by ties. Duplicate indices make it
 * false.
 */
export function sameSelectionUpToTies(
  scores: ArrayLike<number>,
  H: number,
  N: number,
  selA: { indices: ArrayLike<number>[] | ArrayLike<ArrayLike<number>>; counts?: ArrayLike<number> },
  selB: { indices: ArrayLike<number>[] | ArrayLike<ArrayLike<number>>; counts?: ArrayLike<number> },
): boolean {
  for (const sel of [selA, selB]) {
    for (let h = 0; h < H; h++) {
      const idx = sel.indices[h];
      const n = sel.counts ? sel.counts[h] : idx.length;
      const seen = new Set<number>();
      for (let r = 0; r < n; r++) {
        if (seen.has(idx[r])) return false;
        seen.add(idx[r]);
      }
    }
  }
  const a = keptScoreMultiset(scores, H, N, selA);
  const b = keptScoreMultiset(scores, H, N, selB);
  for (let h = 0; h < H; h++) {
    if (a[h].length !== b[h].length) return false;
    for (let r = 0; r < a[h].length; r++) if (!sameScore(a[h][r], b[h][r])) return false;
  }
  return true;
}

/**
 * Layer-level variant for 'adaptive' budgets: true when both selections keep the same total number
 * of tokens and the same multiset of kept scores over the whole layer (so a tie at the budget cut
 * between two heads may move one slot from one head to another). Forced positions (sinks/recent)
 * must be kept in every head by both.
 */
export function sameLayerSelectionUpToTies(
  scores: ArrayLike<number>,
  H: number,
  N: number,
  selA: { indices: ArrayLike<number>[] | ArrayLike<ArrayLike<number>>; counts?: ArrayLike<number> },
  selB: { indices: ArrayLike<number>[] | ArrayLike<ArrayLike<number>>; counts?: ArrayLike<number> },
): boolean {
  const a = keptScoreMultiset(scores, H, N, selA).flat().sort(ascendingScores);
  const b = keptScoreMultiset(scores, H, N, selB).flat().sort(ascendingScores);
  if (a.length !== b.length) return false;
  for (let r = 0; r < a.length; r++) if (!sameScore(a[r], b[r])) return false;
  return true;
}

/**
 * Selection as a keep mask [H, N] (1 = kept). Handy for comparisons and for counting differences.
 */
export function selectionMask(
  H: number,
  N: number,
  sel: { indices: ArrayLike<number>[] | ArrayLike<ArrayLike<number>>; counts?: ArrayLike<number> },
): Uint8Array {
  const mask = new Uint8Array(H * N);
  for (let h = 0; h < H; h++) {
    const idx = sel.indices[h];
    const n = sel.counts ? sel.counts[h] : idx.length;
    for (let r = 0; r < n; r++) mask[h * N + idx[r]] = 1;
  }
  return mask;
}

/**
 * Checks that `sel` is *a* valid top selection of `scores` under `opts`, allowing score
 * perturbations up to `tol` (for a selection computed from f32 scores, checked against float64
 * reference scores). Returns null when valid, else a message. Checks:
 *  - indices per head strictly ascending, in range; counts uniform = keep, or sum = H·keep
 *    (adaptive) with each count ≥ n_safe (and ≤ N);
 *  - forced positions (sinks/recent) kept whenever the reference keeps them all;
 *  - uniform: in each head, min kept non-forced score ≥ max dropped non-forced score − tol;
 *  - adaptive: the same over the whole layer, excluding from the "kept" side each head's safeguard
 *    tokens (scores ≥ that head's n_safe-th best − tol; they may be kept only by the safeguard).
 * NaN scores are treated as −Infinity here. This is the "k-th value" check of DESIGN.md.
 */
export function checkSelectionValid(
  scores: ArrayLike<number>,
  H: number,
  N: number,
  sel: { indices: ArrayLike<number>[] | ArrayLike<ArrayLike<number>>; counts?: ArrayLike<number> },
  opts: SelectOptions,
  tol = 0,
): string | null {
  checkScores(scores, H, N, 'checkSelectionValid');
  const keep = opts.keep;
  const sinks = opts.sinks ?? 0;
  const recent = opts.recent ?? 0;
  const nSafe = opts.budget === 'adaptive' ? Math.floor(keep * (opts.safeguard ?? 0.2)) : 0;
  const val = (x: number): number => (Number.isNaN(x) ? -Infinity : x);
  const isForced = (i: number): boolean => i < sinks || i >= N - recent;
  const counts: number[] = [];
  for (let h = 0; h < H; h++) {
    const idx = sel.indices[h];
    const n = sel.counts ? sel.counts[h] : idx.length;
    counts.push(n);
    for (let r = 0; r < n; r++) {
      const i = idx[r];
      if (!Number.isInteger(i) || i < 0 || i >= N) return `head ${h}: index ${i} out of range`;
      if (r > 0 && !(idx[r - 1] < i)) return `head ${h}: indices not strictly ascending at ${r}`;
    }
  }
  const total = counts.reduce((p, q) => p + q, 0);
  if (opts.budget === 'uniform') {
    for (let h = 0; h < H; h++) if (counts[h] !== keep) return `head ${h}: count ${counts[h]} != keep ${keep}`;
  } else {
    if (total !== H * keep) return `total count ${total} != H*keep ${H * keep}`;
    for (let h = 0; h < H; h++) if (counts[h] < nSafe) return `head ${h}: count ${counts[h]} < n_safe ${nSafe}`;
  }
  const mask = selectionMask(H, N, sel);
  let nForced = 0;
  for (let i = 0; i < N; i++) if (isForced(i)) nForced++;
  if (nForced <= keep) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < N; i++) if (isForced(i) && !mask[h * N + i]) return `head ${h}: forced position ${i} dropped`;
    }
  }
  if (opts.budget === 'uniform') {
    for (let h = 0; h < H; h++) {
      let minKept = Infinity;
      let maxDropped = -Infinity;
      for (let i = 0; i < N; i++) {
        if (isForced(i)) continue;
        const v = val(scores[h * N + i]);
        if (mask[h * N + i]) minKept = Math.min(minKept, v);
        else maxDropped = Math.max(maxDropped, v);
      }
      if (minKept < maxDropped - tol) return `head ${h}: kept score ${minKept} < dropped score ${maxDropped} - tol`;
    }
  } else {
    // exclude each head's safeguard tokens (its n_safe best, forced first) from the kept side
    let minKept = Infinity;
    let maxDropped = -Infinity;
    for (let h = 0; h < H; h++) {
      const nonForced: number[] = [];
      for (let i = 0; i < N; i++) if (!isForced(i)) nonForced.push(i);
      nonForced.sort((p, q) => compareScoresDesc(val(scores[h * N + p]), val(scores[h * N + q])) || p - q);
      const safeSlots = Math.max(0, nSafe - (N - nonForced.length));
      // tokens within tol of the head's safeguard threshold may have been kept by the safeguard
      const safeThreshold = safeSlots > 0 ? val(scores[h * N + nonForced[safeSlots - 1]]) - tol : Infinity;
      for (const i of nonForced) {
        const v = val(scores[h * N + i]);
        if (mask[h * N + i]) {
          if (!(v >= safeThreshold)) minKept = Math.min(minKept, v);
        } else maxDropped = Math.max(maxDropped, v);
      }
    }
    if (minKept < maxDropped - tol) return `layer: kept score ${minKept} < dropped score ${maxDropped} - tol`;
  }
  return null;
}
