/**
 * Causal decode attention for the split protocol (lib/eval/protocol.ts), on either backend, through
 * `decodeAttention`, whose per-KV-head `counts` mask the rows a query reads. The cache of head h is packed as
 * [its c_h compressed prefix rows, then the uncompressed rows S..N−1]; a query at position p then reads
 * c_h + (min(p, N−1) − S + 1) rows: the compressed prefix and the suffix up to its own position. The full-cache
 * reference is the same with no compressed rows and S = 0. Queries are grouped by position, one decodeAttention
 * call per group over views of one query tensor and one output tensor.
 */
import { Tensor, empty, tensor } from '../tensor';
import { decodeAttention } from '../ops/decode';
import type { MomentTensors } from '../ops/moments';
import type { Stream } from '../device';
import type { PositionGroup } from './protocol';

/**
 * [G, Hkv] rows read by each position group: base[h] + min(pos, N−1) − S + 1 (base = the compressed rows per head,
 * or all zero with S = 0 for the full cache).
 */
export function groupCounts(base: ArrayLike<number>, Hkv: number, groups: readonly PositionGroup[], S: number, N: number): Int32Array {
  const out = new Int32Array(groups.length * Hkv);
  groups.forEach((g, i) => {
    const suffix = Math.min(g.pos, N - 1) - S + 1;
    for (let h = 0; h < Hkv; h++) out[i * Hkv + h] = base[h] + suffix;
  });
  return out;
}

/**
 * The packed cache [Hkv, cap + F, w]: head h holds its counts[h] compressed rows (of `compressed` [Hkv, cap, w]),
 * then the F suffix rows of `suffix` [Hkv, F, w]. Rows past counts[h] + F stay zero and are never read.
 */
export function packCache(compressed: Float32Array, counts: ArrayLike<number>, cap: number, suffix: Float32Array, F: number, Hkv: number, w: number): Float32Array {
  const R = cap + F, out = new Float32Array(Hkv * R * w);
  for (let h = 0; h < Hkv; h++) {
    const c = counts[h];
    out.set(compressed.subarray(h * cap * w, (h * cap + c) * w), h * R * w);
    out.set(suffix.subarray(h * F * w, (h + 1) * F * w), (h * R + c) * w);
  }
  return out;
}

export interface CausalDecodeArgs {
  /** [Hq, T, d], contiguous */
  queries: Tensor;
  /** [Hkv, R, d] / [Hkv, R, dv]: a packed cache, or the full cache */
  keys: Tensor;
  values: Tensor;
  /** i32 [G, Hkv] (groupCounts), on the device of keys */
  counts: Tensor;
  groups: readonly PositionGroup[];
  moments?: MomentTensors;
  stream?: Stream;
}

/** f32 [Hq, T, dv]: query t of group g attends the first counts[g, h] rows of its KV head (plus the summary). */
export function causalDecode(a: CausalDecodeArgs): Tensor {
  const [Hq, T, d] = a.queries.shape, Hkv = a.keys.shape[0], dv = a.values.shape[2];
  const single = a.groups.length === 1 && a.groups[0].t0 === 0 && a.groups[0].t1 === T;
  const countsOf = (g: number): Tensor => a.counts.view([Hkv], [1], a.counts.offset + g * Hkv);
  if (single) return decodeAttention({ queries: a.queries, keys: a.keys, values: a.values, counts: countsOf(0), moments: a.moments, stream: a.stream });
  const out = empty([Hq, T, dv], 'f32', a.keys.device, a.stream);
  a.groups.forEach((g, i) => {
    const n = g.t1 - g.t0;
    decodeAttention({
      queries: a.queries.view([Hq, n, d], [T * d, d, 1], a.queries.offset + g.t0 * d),
      keys: a.keys,
      values: a.values,
      counts: countsOf(i),
      moments: a.moments,
      stream: a.stream,
      out: out.view([Hq, n, dv], [T * dv, dv, 1], g.t0 * dv),
    });
  });
  return out;
}

/**
 * What kind of attention a layer has, from its full causal attention over the held-out queries (host, f32):
 * the mean probability on position 0 (the attention sink) and on the `recent` most recent visible keys. A
 * description, not a metric: it uses at most `maxGroups` positions, evenly spaced, to stay cheap on long dumps.
 */
export function attentionProfile(
  keys: Float32Array, Hkv: number, N: number, d: number, queries: Float32Array, Hq: number, T: number,
  allGroups: readonly PositionGroup[], recent = 64, maxGroups = 64,
): { sinkMass: number; localMass: number } {
  const G = allGroups.length;
  const groups = G <= maxGroups ? allGroups : Array.from({ length: maxGroups }, (_, i) => allGroups[Math.floor((i * G) / maxGroups)]);
  // values with two indicator channels: [1 at position 0, 1 on the recent window of the group's position]
  const ind = new Float32Array(Hkv * N * 2);
  for (let h = 0; h < Hkv; h++) ind[h * N * 2] = 1;
  const setRecent = (top: number, x: number): void => {
    for (let h = 0; h < Hkv; h++) for (let s = Math.max(0, top - recent + 1); s <= top; s++) ind[(h * N + s) * 2 + 1] = x;
  };
  const K = tensor(keys, [Hkv, N, d]), V = tensor(ind, [Hkv, N, 2]), Q = tensor(queries, [Hq, T, d]);
  const out = new Float32Array(Hq * T * 2);
  let sink = 0, local = 0;
  for (const g of groups) {
    const top = Math.min(g.pos, N - 1), n = g.t1 - g.t0;
    setRecent(top, 1);
    decodeAttention({
      queries: Q.view([Hq, n, d], [T * d, d, 1], g.t0 * d),
      keys: K,
      values: V,
      counts: tensor(new Int32Array(Hkv).fill(top + 1), [Hkv]),
      out: tensor(out, [Hq, n, 2], { strides: [T * 2, 2, 1], offset: g.t0 * 2 }),
    });
    setRecent(top, 0);
  }
  let n = 0;
  for (const g of groups) {
    for (let j = 0; j < Hq; j++) {
      for (let t = g.t0; t < g.t1; t++) {
        sink += out[2 * (j * T + t)];
        local += out[2 * (j * T + t) + 1];
        n++;
      }
    }
  }
  return { sinkMass: sink / n, localMass: local / n };
}
