import t from 'tap';
import { spawnSync } from 'node:child_process';
import { nestedkvScores, nestedkvBlockSize, keydiffScores, selectTokens, selectCapacity, keepFromRatio, gatherKV, tensor } from '../lib/index';
import type { DType, NestedkvOptions } from '../lib/index';
import { Rng } from '../lib/rng';
import { nestedkvScoresRef, nestedkvDetailRef } from './ref/nestedkv';
import { keydiffScoresRef } from './ref/keydiff';
import { plantedKeys } from './ref/planted';
import { selectRef, checkSelectionValid } from './ref/select';
import { BACKENDS, on, place, poisoned, fetch, values, randomTensor, rows, Layout, expectBadCalls, BadCall, QUICK_SKIP } from './helpers';
import { FILLS, expectClose } from './ref/compare';

// NestedKV scores are in [0, 1] (sinks +Infinity). Tolerance 1e-5 relative with a 1e-2 floor (absolute 1e-7 near 0:
// about two f32 ulps of a raw cosine divided by a typical per-head cosine range). The CPU backend accumulates its row
// reductions in double; the CUDA kernels use f32 lane partials and warp trees (double per row would cost more than
// the memory traffic on most GPUs), which a CPU emulation of their exact reduction order puts at <= 7e-6 on these
// cases and 1.3e-5 on the planted geometry (narrow cosine ranges): CUDA is held to 3e-5.
const tolOf = (b: string): number => (b === 'cuda' ? 3e-5 : 1e-5);

/** Keys with a shared bias direction plus noise (cosines to the anchors spread over roughly [-0.8, 0.2]). */
function biasedGen(rng: Rng, d: number, bias = 0.8): (a: number, b: number, c: number) => number {
  const dir = Array.from({ length: d }, () => rng.normal());
  return (_a, _b, c) => bias * dir[c] + rng.normal();
}

function sinksOk(got: ArrayLike<number>, H: number, N: number, sinks: number): boolean {
  for (let h = 0; h < H; h++)
    for (let i = 0; i < N; i++) {
      const v = got[h * N + i];
      if (i < sinks ? v !== Infinity : !(v >= 0 && v <= 1)) return false;
    }
  return true;
}

const cases: { H: number; N: number; d: number; dtype: DType; layout: Layout; opts?: NestedkvOptions; full?: true }[] = [
  { H: 2, N: 4096, d: 128, dtype: 'f32', layout: 'hnd' },
  { H: 2, N: 4096, d: 64, dtype: 'bf16', layout: 'nhd' },
  { H: 1, N: 32768, d: 128, dtype: 'bf16', layout: 'nhd', full: true },
  { H: 1, N: 32768, d: 64, dtype: 'f16', layout: 'padded', full: true },
  { H: 3, N: 5000, d: 128, dtype: 'f32', layout: 'nhd' }, // b = 156, last block of 8
  { H: 2, N: 5000, d: 64, dtype: 'f16', layout: 'padded' },
  { H: 2, N: 5000, d: 64, dtype: 'bf16', layout: 'hnd', opts: { window: 7, block: 50, tail: 0.25, prior: [1, 2, 3], beta: 1.5, tau: 0.3, kappa: 4, sinks: 2 } },
  { H: 2, N: 3001, d: 32, dtype: 'f32', layout: 'hnd', opts: { window: 700, block: 3001, prior: [0, 1, 1] } },
  { H: 1, N: 2000, d: 128, dtype: 'f32', layout: 'hnd', opts: { window: 1, block: 1 } },
  { H: 2, N: 777, d: 96, dtype: 'f16', layout: 'hnd' },
  { H: 2, N: 100, d: 300, dtype: 'f32', layout: 'nhd' }, // N < block, d beyond the register path of the CUDA kernels
  // window > 1024 rows: the CPU backend's second 1024-row segment starts inside the first window chunk (no previous chunk)
  { H: 2, N: 2600, d: 32, dtype: 'f32', layout: 'hnd', opts: { window: 1500 } },
];

for (const b of BACKENDS) {
  const TOL = tolOf(b);
  for (const c of cases) {
    t.test(`nestedkv ${b} H=${c.H} N=${c.N} d=${c.d} ${c.dtype} ${c.layout} ${JSON.stringify(c.opts ?? {})}`, on(b, { skip: c.full && QUICK_SKIP }), async (t) => {
      const rng = new Rng(c.N * 7 + c.d);
      const { t: keys, v } = randomTensor(rng, c.H, c.N, c.d, c.dtype, c.layout, biasedGen(rng, c.d));
      const ref = nestedkvScoresRef(v, c.H, c.N, c.d, c.opts);
      for (const fill of FILLS) {
        const out = poisoned([c.H, c.N], 'f32', b, fill);
        const res = nestedkvScores(place(keys, b), { ...c.opts, out });
        t.equal(res, out, `${fill} poison: writes into the given output`);
        const host = await fetch(res);
        t.ok(sinksOk(host.host as Float32Array, c.H, c.N, c.opts?.sinks ?? 4), `${fill} poison: sinks +Infinity, other scores in [0, 1], no NaN`);
        expectClose(t, host, ref, { tol: TOL, floor: 1e-2 }, `${fill} poison`);
      }
    });
  }

  t.test(`nestedkv ${b}: anchors whose keys cancel to one fixed-point unit are degenerate (anomaly 0), as the reference`, on(b), async (t) => {
    // Every 256-key block holds ±e0, (2^-32, 1, 0, ...) and (0, -1, 0, ...), and otherwise pairs (v, -v): the block sums
    // of the normalised keys (exact fixed point, unit 2^-32) are one unit in channel 0, so every block and the global
    // anchor have a norm below eps·count (1e-12 per key, docs/methods/nestedkv.md §10) and score an anomaly of 0 (window 1:
    // the current anchor of a key is the key itself).
    const rng = new Rng(29);
    const H = 1, N = 512, d = 8, B = 256;
    const K = new Float32Array(H * N * d);
    for (let blk = 0; blk < N / B; blk++) {
      const row = (i: number) => K.subarray((blk * B + i) * d, (blk * B + i + 1) * d);
      row(0)[0] = 1;
      row(1)[0] = -1;
      row(2)[0] = 2 ** -32;
      row(2)[1] = 1;
      row(3)[1] = -1;
      for (let i = 4; i < B; i += 2) {
        const v = rng.normals(d);
        row(i).set(v);
        row(i + 1).set(v.map((x) => -x));
      }
    }
    const opts = { block: B, window: 1 };  // window 1: the current anchor is the key itself, never degenerate
    const ref = nestedkvScoresRef(K, H, N, d, opts);
    const got = await fetch(nestedkvScores(place(tensor(K, [H, N, d]), b), opts));
    expectClose(t, got, ref, { tol: TOL, floor: 1e-2 }, 'degenerate anchors');
  });

  t.test(`nestedkv ${b}: an element-strided output gets the scores of a dense one, nothing written between them`, on(b), async (t) => {
    const rng = new Rng(23);
    const H = 2, N = 600, d = 32;
    const { t: keys } = randomTensor(rng, H, N, d, 'f32', 'hnd', biasedGen(rng, d));
    const dense = values(await fetch(nestedkvScores(place(keys, b))));
    // [H, N] viewed with element stride 2 inside a poisoned buffer of 2·H·N: the gaps must keep their poison
    const buf = poisoned([2 * H * N], 'f32', b);
    const res = nestedkvScores(place(keys, b), { out: buf.view([H, N], [2 * N, 2]) });
    const host = values(await fetch(buf));
    const got = Array.from({ length: H * N }, (_, i) => host[2 * i]);
    t.same(got, Array.from(dense), 'strided output = dense output');
    t.ok(Array.from({ length: H * N }, (_, i) => host[2 * i + 1]).every((x) => Number.isNaN(x)), 'nothing written between the elements');
    t.same(res.shape, [H, N]);
  });

  t.test(`nestedkv ${b}: scales 'global' matches the reference (min-max of the single-anchor score)`, on(b), async (t) => {
    const rng = new Rng(17);
    const H = 3, N = 4096, d = 128;
    const { t: keys, v } = randomTensor(rng, H, N, d, 'bf16', 'nhd', biasedGen(rng, d));
    const ref = nestedkvScoresRef(v, H, N, d, { scales: 'global' });
    const res = await fetch(nestedkvScores(place(keys, b), { scales: 'global' }));
    t.ok(sinksOk(res.host as Float32Array, H, N, 4), 'sinks pinned');
    // a* = ã_s directly: absolute error ~ a few f32 ulps of the raw cosine / range, so a 5e-2 floor (5e-7 absolute)
    expectClose(t, res, ref, { tol: TOL, floor: 5e-2 });
  });

  t.test(`nestedkv ${b}: degenerate inputs follow docs/methods/nestedkv.md §9.13 (no NaN)`, on(b), async (t) => {
    const rng = new Rng(61);
    const run = async (name: string, K: Float32Array, H: number, N: number, d: number, o: NestedkvOptions = {}) => {
      const res = await fetch(nestedkvScores(place(tensor(K, [H, N, d]), b), o));
      const got = res.host as Float32Array;
      const ref = nestedkvScoresRef(K, H, N, d, o);
      t.ok(sinksOk(got, H, N, o.sinks ?? 4), `${name}: +Infinity at sinks, [0, 1] elsewhere`);
      expectClose(t, res, ref, { tol: TOL, floor: 1e-2 }, `${name}: matches the reference`);
      return got;
    };
    const d = 8;
    const constant = new Float32Array(2 * 300 * d).map((_, r) => 0.3 + (r % d));
    const sc = await run('constant keys', constant, 2, 300, d);
    t.equal(Math.max(...sc.filter(Number.isFinite)), 0, 'constant keys score 0 (zero-range min-max)');
    const wide = new Float32Array(2 * 5000 * 128);
    const dir = Array.from({ length: 128 }, () => rng.normal());
    for (let r = 0; r < 2 * 5000; r++) for (let c = 0; c < 128; c++) wide[r * 128 + c] = dir[c] * (1 + (r % 5)); // same direction, varying norms
    const sw = await run('parallel keys of varying norm, N=5000 d=128', wide, 2, 5000, 128);
    t.equal(Math.max(...sw.filter(Number.isFinite)), 0, 'parallel keys score 0');
    const sz = await run('all-zero keys', new Float32Array(2 * 300 * d), 2, 300, d);
    t.equal(Math.max(...sz.filter(Number.isFinite)), 0, 'zero keys score 0');
    const mixed = Float32Array.from(rng.normals64(300 * d));
    for (let i = 0; i < 300; i += 7) for (let c = 0; c < d; c++) mixed[i * d + c] = 0;
    await run('some zero keys', mixed, 1, 300, d);
    const alt = new Float32Array(200 * d).map((_, r) => (Math.floor(r / d) % 2 ? -1 : 1) * ((r % d) + 1));
    await run('alternating ±k (zero window anchors)', alt, 1, 200, d, { window: 2 });
    await run('tiny keys', Float32Array.from(rng.normals64(300 * d), (x) => x * 1e-30), 1, 300, d);
    await run('N < block', Float32Array.from(rng.normals64(2 * 100 * d)), 2, 100, d);
    await run('N = sinks', Float32Array.from(rng.normals64(2 * 4 * d)), 2, 4, d);
    await run('N < sinks', Float32Array.from(rng.normals64(2 * 3 * d)), 2, 3, d);
    await run('N = 5', Float32Array.from(rng.normals64(5 * d)), 1, 5, d);
    await run('N = 1, no sinks', Float32Array.from(rng.normals64(3 * d)), 3, 1, d, { sinks: 0 });
    await run('d = 1', Float32Array.from(rng.normals64(50)), 1, 50, 1);
    await run('constant, global', constant, 2, 300, d, { scales: 'global' });
    await run('tail 0 and 1', Float32Array.from(rng.normals64(2 * 300 * d)), 2, 300, d, { tail: 0 });
    await run('tail 1', Float32Array.from(rng.normals64(2 * 300 * d)), 2, 300, d, { tail: 1 });
    const empty = nestedkvScores(place(tensor(new Float32Array(0), [2, 0, 8]), b));
    t.same(empty.shape, [2, 0], 'N = 0: empty output');
  });

  t.test(`nestedkv ${b}: invariant to per-token positive rescaling (S1)`, on(b), async (t) => {
    const rng = new Rng(41);
    const H = 2, N = 3000, d = 64;
    const { v } = randomTensor(rng, H, N, d, 'f32', 'hnd', biasedGen(rng, d));
    const pow2 = new Float32Array(H * N * d), any = new Float32Array(H * N * d);
    for (let r = 0; r < H * N; r++) {
      const e = 2 ** ((r % 9) - 4), f = Math.exp(6 * rng.uniform() - 3);
      for (let c = 0; c < d; c++) {
        pow2[r * d + c] = v[r * d + c] * e;
        any[r * d + c] = v[r * d + c] * f;
      }
    }
    const base = (await fetch(nestedkvScores(place(tensor(Float32Array.from(v), [H, N, d]), b)))).host as Float32Array;
    const p2 = (await fetch(nestedkvScores(place(tensor(pow2, [H, N, d]), b)))).host as Float32Array;
    t.same(Array.from(p2), Array.from(base), 'scaling rows by powers of two gives bitwise identical scores');
    const an = (await fetch(nestedkvScores(place(tensor(any, [H, N, d]), b)))).host as Float32Array;
    expectClose(t, an, base, { tol: TOL, floor: 1e-2 }, 'arbitrary positive rescaling changes scores only by rounding');
  });

  t.test(`nestedkv ${b}: adaptive budgets end to end (docs/methods/nestedkv.md §4): counts, safeguard, reference rule, ragged gather`, on(b), async (t) => {
    const rng = new Rng(23);
    const H = 8, N = 4096, d = 128;
    const { t: keys, v } = randomTensor(rng, H, N, d, 'bf16', 'nhd', biasedGen(rng, d));
    const ref = nestedkvScoresRef(v, H, N, d);
    const scores = nestedkvScores(place(keys, b));
    const got = (await fetch(scores)).host as Float32Array;
    for (const r of [0.5, 0.75, 0.9, 0.99]) {
      const keep = keepFromRatio(N, r);
      const o = { keep, budget: 'adaptive' as const, safeguard: 0.2 };
      const sel = selectTokens(scores, o);
      const cnt = Array.from((await fetch(sel.counts)).host);
      const kept = rows(await fetch(sel.indices), await fetch(sel.counts));
      const nSafe = Math.floor(keep * 0.2);
      t.equal(cnt.reduce((a, x) => a + x, 0), H * keep, `r=${r}: counts sum to H·n_keep = ${H * keep}`);
      t.ok(cnt.every((x) => x >= nSafe), `r=${r}: every head keeps >= n_safe = ${nSafe} (counts ${cnt.join(',')})`);
      t.ok(new Set(cnt).size > 1, `r=${r}: budgets are ragged`);
      t.ok(kept.every((row) => row.slice(0, 4).join() === '0,1,2,3'), `r=${r}: the sinks are kept in every head`);
      const want = selectRef(got, H, N, o);
      t.same(kept, want.indices, `r=${r}: equals selectRef on the f32 scores exactly`);
      t.same(cnt, want.counts, `r=${r}: counts equal the reference rule`);
      t.equal(checkSelectionValid(ref, H, N, { indices: kept }, o, 1e-6), null, `r=${r}: a valid layer top-B of the float64 scores (tie tolerance 1e-6)`);
      const refSel = selectRef(ref, H, N, o);
      const diff = kept.reduce((a, row, h) => a + Math.abs(row.length - refSel.counts[h]), 0);
      t.ok(diff <= 2, `r=${r}: per-head counts equal the float64 selection's up to ${diff} moved slots (ties at the cut)`);
    }
    // n_keep <= sinks (docs/methods/nestedkv.md §9.13): the pinned sinks fill the budget, lowest positions first, in every head
    const tiny = selectTokens(scores, { keep: 2, budget: 'adaptive' });
    t.same(rows(await fetch(tiny.indices), await fetch(tiny.counts)), Array.from({ length: H }, () => [0, 1]), 'keep 2 <= sinks: every head keeps positions 0, 1');
    // ragged compaction: every consumer masks by counts (gather zero-fills past counts[h])
    const keep = keepFromRatio(N, 0.75);
    const sel = selectTokens(scores, { keep, budget: 'adaptive' });
    const cap = selectCapacity(H, N, { keep, budget: 'adaptive' });
    t.equal(sel.indices.shape[1], cap);
    const kc = gatherKV({ keys: place(keys, b), values: place(keys, b), indices: sel.indices, counts: sel.counts });
    const hk = await fetch(kc.keys), hc = (await fetch(kc.counts)).host;
    const kidx = rows(await fetch(sel.indices), await fetch(sel.counts));
    let ok = true;
    for (let h = 0; h < H; h++) {
      for (let j = 0; j < cap; j++)
        for (const c of [0, d - 1]) {
          const want = j < hc[h] ? v[(h * N + kidx[h][j]) * d + c] : 0;
          if (hk.at(h, j, c) !== want) ok = false;
        }
    }
    t.ok(ok, 'gatherKV copies each head\'s ragged rows and zero-fills past counts[h]');
  });

  t.test(`nestedkv ${b}: 'global' + sinks 0 + uniform budget reproduces KeyDiff's selection`, on(b), async (t) => {
    const rng = new Rng(29);
    const H = 4, N = 5000, d = 128;
    for (const dtype of ['f32', 'bf16'] as const) {
      const { t: keys, v } = randomTensor(rng, H, N, d, dtype, 'nhd', biasedGen(rng, d));
      const g = (await fetch(nestedkvScores(place(keys, b), { scales: 'global', sinks: 0 }))).host as Float32Array;
      const kd = (await fetch(keydiffScores(place(keys, b)))).host as Float32Array;
      const kdRef = keydiffScoresRef(v, H, N, d);
      for (const r of [0.25, 0.75, 0.9]) {
        const keep = keepFromRatio(N, r);
        const selG = selectRef(g, H, N, { keep, budget: 'uniform' });
        const selK = selectRef(kd, H, N, { keep, budget: 'uniform' });
        const so = selectTokens(place(tensor(g, [H, N]), b), { keep });
        const viaOp = rows(await fetch(so.indices), await fetch(so.counts));
        t.same(viaOp, selG.indices, `${dtype} r=${r}: selectTokens equals the reference rule`);
        // Exact equality, except where the min-max rescale maps distinct KeyDiff scores to one f32 value (a tie
        // broken by position) or where the two f32 code paths round a near-tie differently: every differing token
        // must sit at the cut, within 1e-6 of the head's k-th KeyDiff value in float64.
        let moved = 0, unexplained = 0;
        for (let h = 0; h < H; h++) {
          const a = new Set(selG.indices[h]), k = new Set(selK.indices[h]);
          const kth = Array.from(kdRef.subarray(h * N, (h + 1) * N)).sort((x, y) => y - x)[keep - 1];
          for (const i of [...a].filter((x) => !k.has(x)).concat([...k].filter((x) => !a.has(x)))) {
            moved++;
            if (Math.abs(kdRef[h * N + i] - kth) > 1e-6) unexplained++;
          }
        }
        t.equal(unexplained, 0, `${dtype} r=${r}: identical selection up to ties at the cut (${moved} tokens differ, all within 1e-6 of the k-th value)`);
        t.ok(moved <= 2, `${dtype} r=${r}: at most a tie pair differs (${moved})`);
        t.equal(checkSelectionValid(kdRef, H, N, { indices: selG.indices }, { keep, budget: 'uniform' }, 1e-6), null, `${dtype} r=${r}: a valid KeyDiff top-k (float64, tol 1e-6)`);
      }
    }
  });

  t.test(`nestedkv ${b}: planted block-only and window-only anomalies are kept at r = 0.9 (docs/methods/nestedkv.md §11, N = 4096)`, on(b), async (t) => {
    const { K, plants, H, N, d } = plantedKeys();
    for (const dtype of ['f32', 'bf16'] as const) {
      const { t: keys, v } = randomTensor(new Rng(1), H, N, d, dtype, 'nhd', (a, i, c) => K[(a * N + i) * d + c]);
      const scores = nestedkvScores(place(keys, b));
      const keep = keepFromRatio(N, 0.9);
      const sel = selectTokens(scores, { keep, budget: 'adaptive' });
      const kept = rows(await fetch(sel.indices), await fetch(sel.counts));
      const kd = (await fetch(keydiffScores(place(keys, b)))).host as Float32Array;
      const selKd = selectRef(kd, H, N, { keep, budget: 'uniform' });
      const det = nestedkvDetailRef(v, H, N, d);
      const got = (await fetch(scores)).host as Float32Array;
      const rank = (x: ArrayLike<number>, h: number, p: number) => { let r = 0; for (let j = 0; j < N; j++) if (x[h * N + j] > x[h * N + p]) r++; return r; };
      for (let h = 0; h < H; h++) {
        const { A, Aw } = plants[h];
        t.ok(kept[h].includes(A), `${dtype} head ${h}: block-only token kept (rank ${rank(got, h, A)}, budget ${kept[h].length})`);
        t.ok(kept[h].includes(Aw), `${dtype} head ${h}: window-only token kept (rank ${rank(got, h, Aw)}, budget ${kept[h].length})`);
        t.notOk(selKd.indices[h].includes(A) || selKd.indices[h].includes(Aw), `${dtype} head ${h}: KeyDiff keeps neither (ranks ${rank(kd, h, A)}, ${rank(kd, h, Aw)})`);
        t.ok(rank(det.A[1], h, A) < 3 && rank(det.A[2], h, Aw) < 40, `${dtype} head ${h}: the geometry is as planted`);
      }
      expectClose(t, got, det.score, { tol: TOL, floor: 1e-2 }, `${dtype}: planted scores match the reference`);
    }
  });
}

t.test('nestedkv cpu: bitwise identical with 1 and 2 threads (the window state makes any row split exact)', async (t) => {
  const script = `const kv=require(${JSON.stringify(require.resolve('../lib/index'))});
    const {Rng}=require(${JSON.stringify(require.resolve('../lib/rng'))});
    const r=new Rng(5); const H=3,N=5000,d=64; const a=new Float32Array(H*N*d).map(()=>r.normal()+0.5);
    const s=kv.nestedkvScores(kv.tensor(a,[H,N,d]),{window:100}).host;
    let h=0; for (let i=0;i<s.length;i++) h=(h*31+new Uint32Array(s.buffer)[i])>>>0; console.log(h);`;
  const out = (threads: string) => spawnSync(process.execPath, [...process.execArgv, '-e', script], { encoding: 'utf8', env: { ...process.env, KVTRIM_THREADS: threads } });
  const a = out('1'), c = out('2');
  t.equal(a.status, 0, a.stderr);
  t.match(a.stdout, /^\d+/);
  t.equal(a.stdout, c.stdout, 'same hash of all scores');
});

t.test('nestedkvBlockSize and option defaults', async (t) => {
  t.equal(nestedkvBlockSize(4096), 128);
  t.equal(nestedkvBlockSize(5000), 156);
  t.equal(nestedkvBlockSize(6144), 192);
  t.equal(nestedkvBlockSize(100000), 256);
  t.equal(nestedkvBlockSize(1), 128);
  const rng = new Rng(3);
  const { t: keys } = randomTensor(rng, 2, 700, 32, 'f32', 'hnd', biasedGen(rng, 32));
  const a = nestedkvScores(keys).host;
  const b2 = nestedkvScores(keys, { window: 64, block: 128, prior: [0.4, 0.4, 0.2], beta: 3, tau: 0.6, kappa: 10, tail: 0.1, sinks: 4, scales: 'all' }).host;
  t.same(Array.from(b2), Array.from(a), 'explicit defaults (docs/methods/nestedkv.md §6) equal the defaults');
});

// ---- bad input: TypeError / RangeError naming the argument ----
const f32 = (n: number) => new Float32Array(n);
const keys = tensor(f32(2 * 8 * 4), [2, 8, 4]);
const bad: BadCall[] = [
  ['not a tensor', () => nestedkvScores(42 as never), 'TypeError', /keys: expected a tensor/],
  ['rank 2 keys', () => nestedkvScores(tensor(f32(16), [2, 8])), 'TypeError', /keys: expected a 3-D tensor \[H, N, d\], got 2-D/],
  ['i32 keys', () => nestedkvScores(tensor(new Int32Array(8), [1, 2, 4])), 'TypeError', /keys: expected dtype f32 \| f16 \| bf16, got i32/],
  ['window 0', () => nestedkvScores(keys, { window: 0 }), 'RangeError', /window: must be in \[1,/],
  ['window fractional', () => nestedkvScores(keys, { window: 2.5 }), 'TypeError', /window: expected an integer/],
  ['block 0', () => nestedkvScores(keys, { block: 0 }), 'RangeError', /block: must be in \[1,/],
  ['block negative', () => nestedkvScores(keys, { block: -3 }), 'RangeError', /block: must be in \[1,/],
  ['prior 2 numbers', () => nestedkvScores(keys, { prior: [0.5, 0.5] }), 'RangeError', /prior: expected 3 weights/],
  ['prior not array', () => nestedkvScores(keys, { prior: 0.4 as never }), 'TypeError', /prior: expected an array of 3 numbers/],
  ['prior negative', () => nestedkvScores(keys, { prior: [0.4, -0.1, 0.2] }), 'RangeError', /prior\[1\]: must be >= 0/],
  ['prior all zero', () => nestedkvScores(keys, { prior: [0, 0, 0] }), 'RangeError', /prior: at least one weight must be positive/],
  ['prior NaN', () => nestedkvScores(keys, { prior: [0.4, NaN, 0.2] }), 'TypeError', /prior\[1\]: expected a number/],
  ['prior Infinity', () => nestedkvScores(keys, { prior: [Infinity, 1, 1] }), 'RangeError', /prior\[0\]: must be finite/],
  ['prior string', () => nestedkvScores(keys, { prior: ['a', 1, 1] as never }), 'TypeError', /prior\[0\]: expected a number/],
  ['beta NaN', () => nestedkvScores(keys, { beta: NaN }), 'TypeError', /beta: expected a number/],
  ['beta Infinity', () => nestedkvScores(keys, { beta: Infinity }), 'RangeError', /beta: must be finite/],
  ['tau string', () => nestedkvScores(keys, { tau: '0.6' as never }), 'TypeError', /tau: expected a number/],
  ['kappa -Infinity', () => nestedkvScores(keys, { kappa: -Infinity }), 'RangeError', /kappa: must be finite/],
  ['tail > 1', () => nestedkvScores(keys, { tail: 1.5 }), 'RangeError', /tail: must be in \[0, 1\]/],
  ['tail negative', () => nestedkvScores(keys, { tail: -0.1 }), 'RangeError', /tail: must be in \[0, 1\]/],
  ['sinks negative', () => nestedkvScores(keys, { sinks: -1 }), 'RangeError', /sinks: must be in \[0,/],
  ['sinks fractional', () => nestedkvScores(keys, { sinks: 1.5 }), 'TypeError', /sinks: expected an integer/],
  ['scales unknown', () => nestedkvScores(keys, { scales: 'local' as never }), 'RangeError', /scales: expected one of 'all', 'global'/],
  ['unknown option', () => nestedkvScores(keys, { windw: 3 } as never), 'TypeError', /options: unknown option 'windw'/],
  ['options not object', () => nestedkvScores(keys, 5 as never), 'TypeError', /options: expected an options object/],
  ['out wrong shape', () => nestedkvScores(keys, { out: tensor(f32(15), [3, 5]) }), 'RangeError', /out: expected shape \[2, 8\], got \[3, 5\]/],
  ['out wrong dtype', () => nestedkvScores(keys, { out: tensor(new Int32Array(16), [2, 8]) }), 'TypeError', /out: expected dtype f32, got i32/],
  ['out aliases keys', () => nestedkvScores(keys, { out: tensor(keys.data, [2, 8]) }), 'RangeError', /out: must not overlap keys/],
  ['stream on host tensors', () => nestedkvScores(keys, { stream: {} as never }), 'TypeError', /stream: expected a Stream/],
  ['keys view too large', () => nestedkvScores({ data: f32(8), shape: [2, 2, 4] }), 'RangeError', /keys: view .* holds 8 f32 elements/],
  ['d = 0', () => nestedkvScores(tensor(f32(0), [2, 3, 0])), 'RangeError', /keys: head dim d must be >= 1/],
];
expectBadCalls(t, bad, 'nestedkv bad input: ');
t.test('nestedkv still works after the bad calls', async (t) => {
  t.ok(Array.from(nestedkvScores(tensor(new Float32Array([1, 0, 0, 1, 1, 1, 2, 2, 3, 1]), [1, 5, 2])).host).every((x) => !Number.isNaN(x)));
});

