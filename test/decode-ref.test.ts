// The float64 corrected-decode reference (test/ref/decode.ts) checked against exact attention and its own
// invariants: n = 0, padding, one evicted token, chunked merges, clip, and the error order on a structured case.
import t from 'tap';
import { Rng } from '../lib/rng';
import { attentionRef, median, relativeErrors } from './ref/attention';
import { decodeAttentionRef } from './ref/decode';
import { complement, evictedMomentsRef, gatherRows, momentsInitRef, momentsMergeRef } from './ref/moments';
import { maxAbs, maxAbsDiff } from './ref/compare';

/** Compact kept rows into [H, cap, w], padding with NaN (must never be read). */
function compact(X: ArrayLike<number>, H: number, N: number, w: number, kept: number[][], cap: number): Float64Array {
  const out = new Float64Array(H * cap * w).fill(NaN);
  for (let h = 0; h < H; h++) out.set(gatherRows(X, h, N, w, kept[h]), h * cap * w);
  return out;
}

/** A random cache with `keep` retained per head at random positions, the rest evicted. */
function randomCase(seed: number, Hkv: number, G: number, N: number, d: number, dv: number, keep: number) {
  const rng = new Rng(seed);
  const K = rng.normals64(Hkv * N * d);
  const V = rng.normals64(Hkv * N * dv);
  const kept: number[][] = [];
  for (let h = 0; h < Hkv; h++) {
    const perm = Array.from({ length: N }, (_, i) => i);
    for (let i = N - 1; i > 0; i--) { const j = rng.int(i + 1); [perm[i], perm[j]] = [perm[j], perm[i]]; }
    kept.push(perm.slice(0, keep).sort((a, b) => a - b));
  }
  const T = 5;
  const q = rng.normals64(Hkv * G * T * d).map((x) => 1.5 * x);
  return { K, V, kept, q, T, Hq: Hkv * G, rng };
}

t.test('decode attention: n = 0 equals plain attention; padding past counts is never read', async (t) => {
  const Hkv = 3, G = 2, N = 40, d = 8, dv = 6;
  const { K, V, kept, q, T, Hq } = randomCase(22, Hkv, G, N, d, dv, 17);
  const ragged = kept.map((k, h) => k.slice(0, 17 - 3 * h)); // counts 17, 14, 11
  const cap = 20;
  const args = {
    q, Hq, T, d, K_R: compact(K, Hkv, N, d, ragged, cap), V_R: compact(V, Hkv, N, dv, ragged, cap),
    Hkv, cap, dv, counts: ragged.map((k) => k.length), scale: 1 / Math.sqrt(d),
  };
  const plain = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, kept: ragged, scale: args.scale }).out;
  for (const order of [0, 1] as const) {
    const a = decodeAttentionRef({ ...args, order });
    const b = decodeAttentionRef({ ...args, order, moments: momentsInitRef(Hkv, d, dv) });
    t.ok(maxAbsDiff(a, plain) < 1e-14, `order ${order}, no moments = plain attention`);
    t.ok(maxAbsDiff(b, plain) < 1e-14, `order ${order}, n = 0 moments = plain attention`);
  }
  t.throws(() => decodeAttentionRef({ ...args, order: 1, counts: [21, 1, 1] }), /counts\[0\] = 21/);
});

t.test('decode attention: ONE evicted token per head gives exactly full attention', async (t) => {
  const Hkv = 2, G = 3, N = 30, d = 8, dv = 5;
  const { K, V, kept, q, T, Hq } = randomCase(23, Hkv, G, N, d, dv, N - 1);
  const scale = 1 / Math.sqrt(d);
  const full = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, scale }).out;
  const plain = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, kept, scale }).out;
  const S = evictedMomentsRef(K, V, Hkv, N, d, dv, kept.map((k) => complement(k, N)));
  t.equal(maxAbs(S.M), 0, 'C = 0 when n = 1');
  const cap = N;
  const args = {
    q, Hq, T, d, K_R: compact(K, Hkv, N, d, kept, cap), V_R: compact(V, Hkv, N, dv, kept, cap),
    Hkv, cap, dv, counts: kept.map((k) => k.length), scale, moments: S,
  };
  for (const order of [0, 1] as const) {
    const o = decodeAttentionRef({ ...args, order });
    t.ok(maxAbsDiff(o, full) < 1e-13, `order ${order}: equals full attention (${maxAbsDiff(o, full).toExponential(2)})`);
  }
  t.ok(maxAbsDiff(plain, full) > 1e-3, 'plain eviction of that token is visibly different');
  // every token of head 1 evicted but one (counts 1) and all of head 0 evicted (counts 0)
  const kept2 = [[], [7]];
  const S2 = evictedMomentsRef(K, V, Hkv, N, d, dv, kept2.map((k) => complement(k, N)));
  const o2 = decodeAttentionRef({
    ...args, K_R: compact(K, Hkv, N, d, kept2, cap), V_R: compact(V, Hkv, N, dv, kept2, cap),
    counts: [0, 1], moments: S2, order: 1,
  });
  // head 0 (query heads 0..2): summary alone = mu_v + C a
  let worst = 0;
  for (let j = 0; j < G; j++) {
    for (let tt = 0; tt < T; tt++) {
      const want = new Float64Array(dv);
      for (let r = 0; r < dv; r++) {
        let s = S2.muV[r];
        for (let c = 0; c < d; c++) s += (S2.M[r * d + c] / S2.n[0]) * q[(j * T + tt) * d + c] * scale;
        want[r] = s;
      }
      worst = Math.max(worst, maxAbsDiff(o2.subarray((j * T + tt) * dv, (j * T + tt + 1) * dv), want));
    }
  }
  t.ok(worst <= 1e-13, `counts = 0 with n > 0 returns the summary alone (max abs diff ${worst.toExponential(2)})`);
  const none = decodeAttentionRef({ ...args, counts: [0, 0], moments: momentsInitRef(Hkv, d, dv), order: 1 });
  t.equal(maxAbs(none), 0, 'counts = 0 and n = 0 → zeros');
});

t.test('decode attention: several chunk merges equal one merge; clip semantics', async (t) => {
  const Hkv = 2, G = 2, N = 120, d = 8, dv = 8;
  const { K, V, kept, q, T, Hq, rng } = randomCase(24, Hkv, G, N, d, dv, 30);
  const scale = 1 / Math.sqrt(d);
  const ev = kept.map((k) => complement(k, N));
  const one = evictedMomentsRef(K, V, Hkv, N, d, dv, ev);
  const many = momentsInitRef(Hkv, d, dv);
  for (let h = 0; h < Hkv; h++) {
    const shuffled = ev[h].slice().sort(() => rng.uniform() - 0.5);
    for (let i = 0; i < shuffled.length; ) {
      const sz = 1 + rng.int(17);
      const part = shuffled.slice(i, i + sz);
      momentsMergeRef(many, h, gatherRows(K, h, N, d, part), gatherRows(V, h, N, dv, part));
      i += sz;
    }
  }
  const cap = 32;
  const args = {
    q, Hq, T, d, K_R: compact(K, Hkv, N, d, kept, cap), V_R: compact(V, Hkv, N, dv, kept, cap),
    Hkv, cap, dv, counts: kept.map((k) => k.length), scale,
  };
  for (const order of [0, 1] as const) {
    const a = decodeAttentionRef({ ...args, order, moments: one });
    const b = decodeAttentionRef({ ...args, order, moments: many });
    t.ok(maxAbsDiff(a, b) < 1e-12, `order ${order}: chunked merge = single merge (${maxAbsDiff(a, b).toExponential(2)})`);
  }
  const o0 = decodeAttentionRef({ ...args, order: 0, moments: one });
  const o1 = decodeAttentionRef({ ...args, order: 1, moments: one });
  const c0 = decodeAttentionRef({ ...args, order: 1, moments: one, clip: [0, 0] });
  const cInf = decodeAttentionRef({ ...args, order: 1, moments: one, clip: [1e9, 1e9] });
  t.ok(maxAbsDiff(c0, o0) < 1e-15, 'clip 0 → order 0');
  t.ok(maxAbsDiff(cInf, o1) === 0, 'huge clip → unclipped order 1');
  t.ok(maxAbsDiff(o0, o1) > 1e-3, 'order 1 differs from order 0');
  // a mid clip bounds the correction's norm: o1 − o_clip = (1−λ)(Ca − clipped Ca)
  const mid = decodeAttentionRef({ ...args, order: 1, moments: one, clip: [0.05, 0.05] });
  t.ok(maxAbsDiff(mid, o1) > 0 && maxAbsDiff(mid, o0) > 0, 'mid clip lies between');
});

/**
 * Evicted values ≈ orthogonal to retained ones (dims 8..15 vs 0..7), evicted keys with spread
 * `sigma`: k = mu_k + σz, v = mu_v + Bz. So C = σ·B·Cov(z): the C a term is O(σ) and the
 * remaining first-order error O(σ²).
 */
function structuredCase(sigma: number, seed = 31) {
  const rng = new Rng(seed);
  const Hkv = 2, G = 2, Hq = 4, d = 16, dv = 16, L = 48, n = 200, N = L + n, T = 64;
  const K = new Float64Array(Hkv * N * d);
  const V = new Float64Array(Hkv * N * dv);
  const kept: number[][] = [];
  for (let h = 0; h < Hkv; h++) {
    const perm = Array.from({ length: N }, (_, i) => i);
    for (let i = N - 1; i > 0; i--) { const j = rng.int(i + 1); [perm[i], perm[j]] = [perm[j], perm[i]]; }
    const keptH = perm.slice(0, L).sort((a, b) => a - b);
    kept.push(keptH);
    const isKept = new Set(keptH);
    const muK = rng.normals64(d).map((x) => 0.7 * x);
    const muV = new Float64Array(dv);
    for (let c = 8; c < 16; c++) muV[c] = rng.normal() * 1.5;
    const B = rng.normals64(8 * d).map((x) => 0.3 * x); // value dims 8..15 ← key deviation / σ
    for (let s = 0; s < N; s++) {
      const ko = (h * N + s) * d, vo = (h * N + s) * dv;
      if (isKept.has(s)) {
        for (let c = 0; c < d; c++) K[ko + c] = rng.normal();
        for (let c = 0; c < 8; c++) V[vo + c] = rng.normal();
      } else {
        const z = rng.normals64(d);
        for (let c = 0; c < d; c++) K[ko + c] = muK[c] + sigma * z[c];
        for (let c = 8; c < 16; c++) {
          let s2 = muV[c];
          for (let e = 0; e < d; e++) s2 += B[(c - 8) * d + e] * z[e];
          V[vo + c] = s2 + 0.01 * rng.normal();
        }
        for (let c = 0; c < 8; c++) V[vo + c] = 0.01 * rng.normal();
      }
    }
  }
  const q = rng.normals64(Hq * T * d).map((x) => 2 * x);
  return { Hkv, G, Hq, d, dv, N, T, K, V, kept, q, L };
}

function structuredErrors(sigma: number) {
  const c = structuredCase(sigma);
  const { Hkv, Hq, d, dv, N, T, K, V, kept, q, L } = c;
  const scale = 1 / Math.sqrt(d);
  const full = attentionRef({ q, Hq, T, d, K, V, Hkv, N, dv, scale }).out;
  const S = evictedMomentsRef(K, V, Hkv, N, d, dv, kept.map((k) => complement(k, N)));
  const args = {
    q, Hq, T, d, K_R: compact(K, Hkv, N, d, kept, L), V_R: compact(V, Hkv, N, dv, kept, L),
    Hkv, cap: L, dv, counts: kept.map((k) => k.length), scale,
  };
  const rows = Hq * T;
  const err = (o: Float64Array) => median(relativeErrors(o, full, rows, dv));
  return {
    plain: err(decodeAttentionRef({ ...args, order: 1 })),
    order0: err(decodeAttentionRef({ ...args, order: 0, moments: S })),
    order1: err(decodeAttentionRef({ ...args, order: 1, moments: S })),
  };
}

t.test('decode attention on a structured case: median error order1 < order0 < plain', async (t) => {
  const e = structuredErrors(0.2);
  t.comment(`median rel. error: plain ${e.plain.toFixed(4)}, order0 ${e.order0.toFixed(4)}, order1 ${e.order1.toFixed(4)}`);
  t.ok(e.order0 < e.plain, 'order 0 beats plain eviction');
  t.ok(e.order1 < e.order0, 'order 1 beats order 0');
  t.ok(e.order1 < 0.5 * e.order0, 'order 1 is much better than order 0 here');
  // error scaling in the key spread: order 1 is O(σ²), order 0 is O(σ) (through the missing C a)
  const half = structuredErrors(0.1);
  const r1 = e.order1 / half.order1, r0 = e.order0 / half.order0;
  t.comment(`halving σ: order1 error ÷${r1.toFixed(2)}, order0 error ÷${r0.toFixed(2)}`);
  t.ok(r1 > 3, 'order-1 error shrinks ~4x when the spread halves');
  t.ok(r0 > 1.4 && r0 < 2.8, 'order-0 error shrinks ~2x when the spread halves');
});
