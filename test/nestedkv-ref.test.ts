// Tests of the float64 NestedKV reference (test/ref/nestedkv.ts): a hand-computed case, a second independent
// (docs/methods/nestedkv.md §10 numpy-style) formulation, invariances, the block rule, degenerate inputs and planted structure at
// N = 4096 (the references are the oracles of the real kernels, so they must be right).
import t from 'tap';
import { Rng } from '../lib/rng';
import { keydiffScoresRef } from './ref/keydiff';
import { nestedkvBlockSize, nestedkvDetailRef, nestedkvScoresRef, type NestedkvOptions } from './ref/nestedkv';
import { plantedKeys } from './ref/planted';
import { selectRef } from './ref/select';
import { S2, biasedKeys, randomKeys, rankInHead } from './ref/keys';
import { maxAbsDiff } from './ref/compare';

/**
 * A second, independent formulation of NestedKV, transcribed from the docs/methods/nestedkv.md §10 numpy pseudocode
 * (prefix sums for the window, padded-block counts, sort for the tails). Used only on data without
 * degenerate anchors (it uses the docs/methods/nestedkv.md §10 `max(‖μ‖, ε)` clamp instead of the §9.13 zero rule).
 */
function nestedkvNumpyStyle(
  K: Float64Array, H: number, N: number, d: number,
  o: { W: number; b: number; beta: number; prior: number[]; tau: number; kappa: number; tail: number },
): { A: Float64Array[]; w: number[][]; alpha: Float64Array; score: Float64Array } {
  const EPS = 1e-12;
  const khat = new Float64Array(K.length);
  for (let r = 0; r < H * N; r++) {
    let n = 0;
    for (let c = 0; c < d; c++) n += K[r * d + c] ** 2;
    n = Math.max(Math.sqrt(n), EPS);
    for (let c = 0; c < d; c++) khat[r * d + c] = K[r * d + c] / n;
  }
  const cos = (r: number, mu: ArrayLike<number>, off: number): number => {
    let dot = 0, mm = 0;
    for (let c = 0; c < d; c++) { dot += khat[r * d + c] * mu[off + c]; mm += mu[off + c] ** 2; }
    return dot / Math.max(Math.sqrt(mm), EPS);
  };
  const nb = Math.ceil(N / o.b);
  const pad = nb * o.b - N;
  const A = [new Float64Array(H * N), new Float64Array(H * N), new Float64Array(H * N)];
  for (let h = 0; h < H; h++) {
    const muS = new Float64Array(d);
    const blk = new Float64Array(nb * d);
    const cs = new Float64Array((N + 1) * d); // cs[i+1] = Σ_{j≤i} k̂_j
    for (let i = 0; i < N; i++) {
      const bi = Math.floor(i / o.b);
      for (let c = 0; c < d; c++) {
        const v = khat[(h * N + i) * d + c];
        muS[c] += v / N;
        blk[bi * d + c] += v;
        cs[(i + 1) * d + c] = cs[i * d + c] + v;
      }
    }
    for (let bi = 0; bi < nb; bi++) {
      const cnt = bi === nb - 1 ? o.b - pad : o.b;
      for (let c = 0; c < d; c++) blk[bi * d + c] /= cnt;
    }
    const muC = new Float64Array(d);
    for (let i = 0; i < N; i++) {
      const lo = Math.max(0, i - o.W + 1);
      for (let c = 0; c < d; c++) muC[c] = (cs[(i + 1) * d + c] - cs[lo * d + c]) / (i - lo + 1);
      A[0][h * N + i] = -cos(h * N + i, muS, 0);
      A[1][h * N + i] = -cos(h * N + i, blk, Math.floor(i / o.b) * d);
      A[2][h * N + i] = -cos(h * N + i, muC, 0);
    }
  }
  const minmax = (x: Float64Array): void => {
    for (let h = 0; h < H; h++) {
      const row = x.subarray(h * N, (h + 1) * N);
      const lo = Math.min(...row), hi = Math.max(...row), rg = hi - lo;
      for (let i = 0; i < N; i++) row[i] = rg > EPS ? (row[i] - lo) / rg : 0;
    }
  };
  A.forEach(minmax);
  const m = Math.max(1, Math.floor(o.tail * N));
  const w: number[][] = [];
  const alpha = new Float64Array(H * N);
  const score = new Float64Array(H * N);
  const s = new Float64Array(H * N);
  for (let h = 0; h < H; h++) {
    const lg = A.map((a, x) => {
      const srt = Array.from(a.subarray(h * N, (h + 1) * N)).sort((p, q) => p - q);
      const top = srt.slice(N - m).reduce((p, q) => p + q, 0) / m;
      const bot = srt.slice(0, m).reduce((p, q) => p + q, 0) / m;
      return Math.log(o.prior[x]) + o.beta * (top - bot);
    });
    const mx = Math.max(...lg);
    const e = lg.map((l) => Math.exp(l - mx));
    w.push(e.map((v) => v / (e[0] + e[1] + e[2])));
    for (let i = 0; i < N; i++) {
      const v = [A[0][h * N + i], A[1][h * N + i], A[2][h * N + i]];
      const mean = (v[0] + v[1] + v[2]) / 3;
      s[h * N + i] = Math.sqrt(v.reduce((p, q) => p + (q - mean) ** 2, 0) / 3);
    }
  }
  minmax(s);
  for (let h = 0; h < H; h++) {
    let mean = 0;
    for (let i = 0; i < N; i++) mean += s[h * N + i] / N;
    for (let i = 0; i < N; i++) {
      const k = h * N + i;
      alpha[k] = 1 / (1 + Math.exp(-o.kappa * (s[k] - mean - o.tau)));
      const blend = w[h][0] * A[0][k] + w[h][1] * A[1][k] + w[h][2] * A[2][k];
      score[k] = (1 - alpha[k]) * blend + alpha[k] * Math.max(A[0][k], A[1][k], A[2][k]);
    }
  }
  return { A, w, alpha, score };
}

t.test('nestedkv: hand-computed case (window 2, block 2, N=5), docs/methods/nestedkv.md §3.1–§3.6', async (t) => {
  // keys e0, e1, e0, e0, e1 (norms vary: S1 normalises)
  const K = new Float64Array([1, 0, 0, 2, 3, 0, 0.5, 0, 0, 7]);
  const det = nestedkvDetailRef(K, 1, 5, 2, { window: 2, block: 2, sinks: 0 });
  const c1 = 3 / Math.sqrt(13), c2 = 2 / Math.sqrt(13); // μ_s = (3/5, 2/5)
  t.ok(maxAbsDiff(det.raw[0], [-c1, -c2, -c1, -c1, -c2]) < 1e-15, 'raw stable');
  // blocks {0,1} → (.5,.5); {2,3} → e0; {4} (last partial block, own mean) → e1
  t.ok(maxAbsDiff(det.raw[1], [-S2, -S2, -1, -1, -1]) < 1e-15, 'raw episodic (last partial block keeps its own mean)');
  // windows: {0} e0; {0,1}; {1,2}; {2,3} e0; {3,4}
  t.ok(maxAbsDiff(det.raw[2], [-1, -S2, -S2, -1, -S2]) < 1e-15, 'raw current (causal, inclusive, truncated at 0)');
  t.ok(maxAbsDiff(det.A[0], [0, 1, 0, 0, 1]) < 1e-12, 'min-max stable');
  t.ok(maxAbsDiff(det.A[1], [1, 1, 0, 0, 0]) < 1e-12, 'min-max episodic');
  t.ok(maxAbsDiff(det.A[2], [0, 1, 1, 0, 1]) < 1e-12, 'min-max current');
  // m = max(1, ⌊0.5⌋) = 1; every Δ = 1 - 0 = 1 → w = prior
  t.equal(det.tailCount, 1);
  t.ok(maxAbsDiff(det.delta[0], [1, 1, 1]) < 1e-12, 'delta');
  t.ok(maxAbsDiff(det.w[0], [0.4, 0.4, 0.2]) < 1e-12, 'w = prior when all Δ equal');
  const blend = [0.4, 1, 0.2, 0, 0.6];
  t.ok(maxAbsDiff(det.blend, blend) < 1e-12, 'blend');
  // std: (0,1,0)→√2/3, (1,1,1)→0, (0,0,1)→√2/3, 0, (1,0,1)→√2/3; ŝ = 1,0,1,0,1; mean .6
  t.ok(maxAbsDiff(det.surprise, [0.4, -0.6, 0.4, -0.6, 0.4]) < 1e-12, 'normalised, centred surprise');
  const sig = (x: number): number => 1 / (1 + Math.exp(-x));
  const alpha = [sig(-2), sig(-12), sig(-2), sig(-12), sig(-2)];
  t.ok(maxAbsDiff(det.alpha, alpha) < 1e-12, 'alpha');
  const win = [1, 1, 1, 0, 1];
  const want = blend.map((b, i) => (1 - alpha[i]) * b + alpha[i] * win[i]);
  t.ok(maxAbsDiff(det.score, want) < 1e-12, `score ${Array.from(det.score)} vs ${want}`);
  // sinks pinned after the statistics: same values elsewhere
  const pinned = nestedkvScoresRef(K, 1, 5, 2, { window: 2, block: 2, sinks: 2 });
  t.same(Array.from(pinned.subarray(0, 2)), [Infinity, Infinity]);
  t.ok(maxAbsDiff(pinned.subarray(2), want.slice(2)) < 1e-12, 'sinks do not change the other scores');
});

t.test('nestedkv: agrees with a second (docs/methods/nestedkv.md §10 numpy-style) formulation', async (t) => {
  const rng = new Rng(21);
  const cases: Array<{ H: number; N: number; d: number; opts: NestedkvOptions }> = [
    { H: 2, N: 306, d: 16, opts: {} }, // b = 128: blocks 128, 128, 50; m = ⌊30.6⌋ = 30 (not rounded)
    { H: 1, N: 1000, d: 32, opts: {} },
    { H: 3, N: 257, d: 8, opts: { window: 7, block: 50, tail: 0.25, prior: [1, 2, 3], beta: 1.5, tau: 0.3, kappa: 4 } },
    { H: 1, N: 4500, d: 16, opts: {} }, // b = 140, last block of 20
  ];
  for (const { H, N, d, opts } of cases) {
    const K = biasedKeys(rng, H, N, d, 0.7);
    const det = nestedkvDetailRef(K, H, N, d, { ...opts, sinks: 0 });
    const alt = nestedkvNumpyStyle(K, H, N, d, {
      W: opts.window ?? 64, b: opts.block ?? nestedkvBlockSize(N), beta: opts.beta ?? 3,
      prior: (opts.prior as number[]) ?? [0.4, 0.4, 0.2], tau: opts.tau ?? 0.6, kappa: opts.kappa ?? 10, tail: opts.tail ?? 0.1,
    });
    const tag = `H=${H} N=${N} d=${d} ${JSON.stringify(opts)}`;
    t.equal(det.tailCount, Math.max(1, Math.floor((opts.tail ?? 0.1) * N)), `tail count ${tag}`);
    t.ok(Math.max(...[0, 1, 2].map((x) => maxAbsDiff(det.A[x], alt.A[x]))) < 1e-9, `A ${tag}`);
    t.ok(maxAbsDiff(det.w.flat(), alt.w.flat()) < 1e-9, `w ${tag}`);
    t.ok(maxAbsDiff(det.alpha, alt.alpha) < 1e-9, `alpha ${tag}`);
    t.ok(maxAbsDiff(det.score, alt.score) < 1e-9, `score ${tag}`);
    // invariants of the pipeline
    let ok = true;
    for (let k = 0; k < H * N; k++) {
      const lo = det.blend[k] - 1e-12, hi = det.win[k] + 1e-12;
      if (!(det.score[k] >= lo && det.score[k] <= hi && det.score[k] >= 0 && det.score[k] <= 1)) ok = false;
    }
    t.ok(ok, `blend ≤ a* ≤ a_win, a* in [0,1] ${tag}`);
    for (let h = 0; h < H; h++) {
      const sw = det.w[h][0] + det.w[h][1] + det.w[h][2];
      if (Math.abs(sw - 1) > 1e-12) t.fail(`weights sum ${sw}`);
      for (let x = 0; x < 3; x++) {
        const row = det.A[x].subarray(h * N, (h + 1) * N);
        if (Math.min(...row) !== 0 || Math.abs(Math.max(...row) - 1) > 1e-12) t.fail(`A[${x}] head ${h} not min-max normalised`);
      }
    }
  }
});

t.test("nestedkv: scales 'global' ranks exactly like KeyDiff (min-max is monotone)", async (t) => {
  const rng = new Rng(31);
  const H = 3, N = 700, d = 32;
  const K = biasedKeys(rng, H, N, d, 0.5);
  const kd = keydiffScoresRef(K, H, N, d);
  const g = nestedkvScoresRef(K, H, N, d, { scales: 'global', sinks: 0 });
  const want = new Float64Array(H * N);
  for (let h = 0; h < H; h++) {
    const row = kd.subarray(h * N, (h + 1) * N);
    const lo = Math.min(...row), hi = Math.max(...row);
    for (let i = 0; i < N; i++) want[h * N + i] = (row[i] - lo) / (hi - lo);
  }
  t.ok(maxAbsDiff(g, want) < 1e-10, 'a* = min-max(KeyDiff)');
  for (const keep of [1, 35, 70, 699]) {
    t.same(selectRef(g, H, N, { keep, budget: 'uniform' }), selectRef(kd, H, N, { keep, budget: 'uniform' }), `same selection keep=${keep}`);
  }
  const full = nestedkvScoresRef(K, H, N, d, { sinks: 0 });
  t.ok(maxAbsDiff(full, g) > 1e-3, "'all' differs from 'global'");
  const gp = nestedkvScoresRef(K, H, N, d, { scales: 'global' });
  t.ok(gp[0] === Infinity && gp[3] === Infinity && gp[N + 2] === Infinity && Number.isFinite(gp[4]), 'sinks pinned in global mode');
  t.ok(maxAbsDiff(gp.subarray(4, N), want.subarray(4, N)) < 1e-10, 'other scores unchanged by pinning');
  const det = nestedkvDetailRef(K, H, N, d, { scales: 'global' });
  t.same(det.w[0], [1, 0, 0]);
  t.equal(Math.max(...det.alpha), 0);
});

t.test('nestedkv: invariant to per-token positive rescaling (S1)', async (t) => {
  const rng = new Rng(41);
  const H = 2, N = 400, d = 16;
  const K = biasedKeys(rng, H, N, d, 0.8);
  const S = K.slice();
  for (let r = 0; r < H * N; r++) {
    const f = Math.exp(6 * rng.uniform() - 3);
    for (let c = 0; c < d; c++) S[r * d + c] *= f;
  }
  t.ok(maxAbsDiff(nestedkvScoresRef(K, H, N, d), nestedkvScoresRef(S, H, N, d)) < 1e-9);
});

t.test('nestedkv: block size rule and block/window placement', async (t) => {
  t.equal(nestedkvBlockSize(4096), 128);
  t.equal(nestedkvBlockSize(6144), 192);
  t.equal(nestedkvBlockSize(8192), 256);
  t.equal(nestedkvBlockSize(100000), 256);
  t.equal(nestedkvBlockSize(5000), 156);
  t.equal(nestedkvBlockSize(128), 128);
  t.equal(nestedkvBlockSize(100), 128);
  t.equal(nestedkvBlockSize(1), 128);
  // behavioural: piecewise-constant key direction switching every b tokens → every token equals its
  // block mean exactly (raw a_e = −1) only when the blocks are placed at multiples of b from 0
  const d = 4;
  for (const N of [4096, 6144, 8192]) {
    const b = nestedkvBlockSize(N);
    const K = new Float64Array(N * d);
    for (let i = 0; i < N; i++) K[i * d + (Math.floor(i / b) % d)] = 1 + (i % 3);
    const det = nestedkvDetailRef(K, 1, N, d, { window: 8 });
    t.equal(det.blockSize, b);
    t.ok(maxAbsDiff(det.raw[1], new Float64Array(N).fill(-1)) < 1e-12, `N=${N}: blocks of ${b} from 0`);
    t.ok(Math.max(...det.A[1]) === 0, `N=${N}: zero-range episodic min-max → 0`);
  }
  // N ≤ 128 → one block → μ_e = μ_s
  const rng = new Rng(51);
  const K = biasedKeys(rng, 2, 100, 8);
  const det = nestedkvDetailRef(K, 2, 100, 8);
  t.ok(maxAbsDiff(det.raw[0], det.raw[1]) < 1e-12, 'N=100: a_e = a_s');
  // N = 130: last partial block (2 tokens) keeps its own mean (not merged)
  const K2 = new Float64Array(130 * 2);
  for (let i = 0; i < 130; i++) K2[i * 2 + (i < 128 ? 0 : 1)] = 1;
  const d2 = nestedkvDetailRef(K2, 1, 130, 2);
  t.ok(maxAbsDiff(d2.raw[1], new Float64Array(130).fill(-1)) < 1e-12, 'N=130: partial last block');
  // window: W tokens back inclusive; token 70 with W=64 sees 7..70
  const K3 = new Float64Array(100 * 2);
  for (let i = 0; i < 100; i++) K3[i * 2 + (i < 7 ? 1 : 0)] = 1; // e1 for i<7, then e0
  const d3 = nestedkvDetailRef(K3, 1, 100, 2);
  t.ok(Math.abs(d3.raw[2][70] + 1) < 1e-12, 'token 70: window 7..70 is all e0');
  const mu69 = [63 / 64, 1 / 64]; // window 6..69: one e1, 63 e0
  t.ok(Math.abs(d3.raw[2][69] + mu69[0] / Math.hypot(mu69[0], mu69[1])) < 1e-12, 'token 69: window 6..69');
  t.ok(Math.abs(d3.raw[2][0] + 1) < 1e-12, 'token 0: a_c = −1');
});

t.test('nestedkv: degenerate inputs never give NaN (docs/methods/nestedkv.md §9.13)', async (t) => {
  const rng = new Rng(61);
  const check = (name: string, K: Float64Array, H: number, N: number, d: number, opts: NestedkvOptions = {}): Float64Array => {
    const s = nestedkvScoresRef(K, H, N, d, opts);
    const sinks = opts.sinks ?? 4;
    let ok = s.length === H * N;
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < N; i++) {
        const v = s[h * N + i];
        if (i < sinks ? v !== Infinity : !(v >= 0 && v <= 1)) ok = false;
      }
    }
    t.ok(ok, `${name}: no NaN, [0,1] or +Inf at sinks`);
    return s;
  };
  const d = 8;
  const constant = new Float64Array(2 * 300 * d);
  for (let r = 0; r < 600; r++) for (let c = 0; c < d; c++) constant[r * d + c] = 0.3 + c;
  const sc = check('constant keys', constant, 2, 300, d);
  t.equal(Math.max(...sc.subarray(4, 300)), 0, 'constant keys score 0');
  const sz = check('all-zero keys', new Float64Array(2 * 300 * d), 2, 300, d);
  t.equal(Math.max(...sz.subarray(4, 300)), 0, 'zero keys score 0');
  const mixed = randomKeys(rng, 1, 300, d);
  for (let i = 0; i < 300; i += 7) for (let c = 0; c < d; c++) mixed[i * d + c] = 0;
  check('some zero keys', mixed, 1, 300, d);
  // k, −k alternating: window means of even length are exactly 0 → cosine 0
  const alt = new Float64Array(200 * d);
  for (let i = 0; i < 200; i++) for (let c = 0; c < d; c++) alt[i * d + c] = (i % 2 ? -1 : 1) * (c + 1);
  check('alternating ±k (zero anchors)', alt, 1, 200, d, { window: 2 });
  // an anchor of norm 0 < ‖μ‖ < ε gives cosine exactly 0 (not k̂·μ/ε)
  const near = new Float64Array([1, 0, -1, 1.5e-12, 1, 0, -1, 1.5e-12]);
  const dn = nestedkvDetailRef(near, 1, 4, 2, { window: 2, sinks: 0 });
  t.ok(Object.is(dn.raw[2][1], 0) && Object.is(dn.raw[2][3], 0), `‖μ‖ < ε → cosine 0 (${dn.raw[2][1]})`);
  const tiny = randomKeys(rng, 1, 300, d).map((x) => x * 1e-200);
  check('tiny keys', tiny, 1, 300, d);
  check('N < block', randomKeys(rng, 2, 100, d), 2, 100, d);
  check('N = sinks', randomKeys(rng, 2, 4, d), 2, 4, d);
  check('N < sinks', randomKeys(rng, 2, 3, d), 2, 3, d);
  check('N = 5', randomKeys(rng, 1, 5, d), 1, 5, d);
  check('N = 1, no sinks', randomKeys(rng, 3, 1, d), 3, 1, d, { sinks: 0 });
  check('N = 1', randomKeys(rng, 1, 1, d), 1, 1, d);
  check('d = 1', randomKeys(rng, 1, 50, 1), 1, 50, 1);
  check('constant, global', constant, 2, 300, d, { scales: 'global' });
  t.throws(() => nestedkvScoresRef(new Float64Array(10), 1, 5, 3), RangeError);
  t.throws(() => nestedkvScoresRef(new Float64Array(10), 1, 5, 2, { window: 0 }), RangeError);
});

t.test('nestedkv: planted block-only and window-only anomalies at N = 4096 (docs/methods/nestedkv.md §11)', async (t) => {
  const { K, plants, H, N, d, B } = plantedKeys();
  t.equal(nestedkvBlockSize(N), B);
  const keep = Math.floor(0.1 * N);
  const det = nestedkvDetailRef(K, H, N, d);
  const sel = selectRef(det.score, H, N, { keep, budget: 'adaptive' });
  const kd = keydiffScoresRef(K, H, N, d);
  const selKd = selectRef(kd, H, N, { keep, budget: 'uniform' });
  const selGlobal = selectRef(nestedkvScoresRef(K, H, N, d, { scales: 'global' }), H, N, { keep, budget: 'adaptive' });
  t.equal(sel.counts[0] + sel.counts[1], H * keep);
  for (let h = 0; h < H; h++) {
    const { A, Aw } = plants[h];
    const r = (x: ArrayLike<number>, p: number): number => rankInHead(x, N, h, p);
    const [As, Ae, Ac] = det.A;
    // the geometry is what the comment says
    t.ok(r(Ae, A) < 3 && r(Ac, A) > N / 4 && r(As, A) > N / 10,
      `head ${h}: A is anomalous at the block scale only (ranks s ${r(As, A)}, e ${r(Ae, A)}, c ${r(Ac, A)})`);
    t.ok(r(Ac, Aw) < 40 && r(Ae, Aw) > N / 4 && r(As, Aw) > N / 4,
      `head ${h}: A' is anomalous at the window scale only (ranks s ${r(As, Aw)}, e ${r(Ae, Aw)}, c ${r(Ac, Aw)})`);
    t.ok(sel.indices[h].includes(A), `head ${h}: NestedKV keeps the block-only token (rank ${r(det.score, A)}, budget ${sel.counts[h]})`);
    t.ok(sel.indices[h].includes(Aw), `head ${h}: NestedKV keeps the window-only token (rank ${r(det.score, Aw)}, budget ${sel.counts[h]})`);
    t.notOk(selKd.indices[h].includes(A) && selKd.indices[h].includes(Aw), `head ${h}: KeyDiff does not keep both`);
    t.notOk(selKd.indices[h].includes(A) || selKd.indices[h].includes(Aw), `head ${h}: KeyDiff keeps neither (ranks ${r(kd, A)}, ${r(kd, Aw)})`);
    t.notOk(selGlobal.indices[h].includes(A) && selGlobal.indices[h].includes(Aw), `head ${h}: single-anchor ablation does not keep both`);
    t.ok(rankInHead(det.alpha, N, h, A) < N / 20 && rankInHead(det.alpha, N, h, Aw) < N / 20,
      `head ${h}: the surprise gate is among the 5 % most open for both (α ${det.alpha[h * N + A].toFixed(2)}, ${det.alpha[h * N + Aw].toFixed(2)})`);
  }
});
