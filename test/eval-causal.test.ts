/**
 * The causal split evaluation of `kvtrim eval` (lib/eval/protocol.ts, lib/eval/causal.ts): it equals a plain
 * float64 reference of the same protocol (test/ref/causal.ts) on dumps with query positions and on the built-in
 * trace, and no held-out query ever sees a key at a later position (a planted key that would dominate is ignored).
 */
import t from 'tap';
import type { Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runEval, EVAL_CONFIGS, EvalRow } from '../lib/eval/run';
import { generateTrace } from '../lib/trace';
import { writeNpy } from '../lib/io/npy';
import { main } from '../lib/cli';
import { formatEvalReport } from '../lib/eval/report';
import { compress, tensor, Compressed } from '../lib/index';
import { hostContiguous } from '../lib/tensor';
import { Rng } from '../lib/rng';
import { BACKENDS, on, captureConsole } from './helpers';
import { causalSplitErrorsRef } from './ref/causal';
import { attentionRef, quantile } from './ref/attention';
import type { MomentStateRef } from './ref/moments';

const Hkv = 2, G = 2, Hq = Hkv * G, d = 32, N = 700, EXTRA = 20, S = 400;

interface Synth {
  K: Float32Array[];
  V: Float32Array[];
  /** [Hq, N + EXTRA, d]: a query at every position, then a continuation of EXTRA positions past N */
  Q: Float32Array[];
}

/**
 * Keys and values of a small built-in trace (sink, local drift, segments), and a query at every position p: the
 * key at min(p, N−1), the sink key (a logit of about 28) and noise, so attention is local with a sink and differs
 * per position.
 */
function synth(layers: number, seed: number): Synth {
  const tr = generateTrace({ tokens: N, layers, kvHeads: Hkv, groupSize: G, headDim: d, heldOut: 0, needles: 4, segments: 8, seed });
  const rng = new Rng(seed + 100);
  const T = N + EXTRA;
  const Q = tr.layers.map((l) => {
    const q = new Float32Array(Hq * T * d);
    for (let j = 0; j < Hq; j++) {
      const h = Math.floor(j / G);
      let k0 = 0;
      for (let c = 0; c < d; c++) k0 += l.keys[h * N * d + c] ** 2;
      const sink = (28 * Math.sqrt(d)) / k0; // a logit of about 28 on the sink key (the self logit is ~26)
      for (let p = 0; p < T; p++) {
        const s = Math.min(p, N - 1);
        for (let c = 0; c < d; c++) q[(j * T + p) * d + c] = 0.5 * l.keys[(h * N + s) * d + c] + sink * l.keys[h * N * d + c] + 0.8 * rng.normal();
      }
    }
    return q;
  });
  return { K: tr.layers.map((l) => l.keys), V: tr.layers.map((l) => l.values), Q };
}

/** Writes k/v/q (and qpos 0..N+EXTRA−1 unless `noQpos`) for every layer into a fresh directory. */
function writeDump(t: Test, s: Synth, noQpos = false): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-causal-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const T = N + EXTRA;
  s.K.forEach((_, l) => {
    fs.writeFileSync(path.join(dir, `k_${l}.npy`), writeNpy(s.K[l], [Hkv, N, d]));
    fs.writeFileSync(path.join(dir, `v_${l}.npy`), writeNpy(s.V[l], [Hkv, N, d]));
    fs.writeFileSync(path.join(dir, `q_${l}.npy`), writeNpy(s.Q[l], [Hq, T, d]));
    if (!noQpos) fs.writeFileSync(path.join(dir, `qpos_${l}.npy`), writeNpy(Int32Array.from({ length: T }, (_, i) => i), [T]));
  });
  return dir;
}

/** Rows [a, b) of each of H heads of x [H, n, w] → [H, b − a, w]. */
function rows(x: Float32Array, H: number, n: number, w: number, a: number, b: number): Float32Array {
  const out = new Float32Array(H * (b - a) * w);
  for (let h = 0; h < H; h++) out.set(x.subarray((h * n + a) * w, (h * n + b) * w), h * (b - a) * w);
  return out;
}

function momentsRef(c: Compressed): MomentStateRef | undefined {
  if (!c.moments) return undefined;
  const f = (x: ReturnType<typeof tensor>) => Float64Array.from(hostContiguous(x) as Float32Array);
  return { H: Hkv, d, dv: d, n: f(c.moments.n), muK: f(c.moments.muK), muV: f(c.moments.muV), M: f(c.moments.m) };
}

interface RefSummary {
  median: number;
  p90: number;
  mean: number;
  byDistance: Record<string, number>;
  byLayer: number[];
}

/**
 * The protocol, written out plainly: compress the prefix [0, split) with the window at split−W..split−1 (the same
 * compress() call a user would make), then the float64 reference of every held-out query at p ≥ split.
 */
function referenceRow(
  K: Float32Array[], V: Float32Array[], windows: Float32Array[], held: Float32Array[], qpos: number[], split: number,
  cfg: (typeof EVAL_CONFIGS)[number], ratio: number,
): RefSummary {
  const all: number[] = [], byLayer: number[] = [];
  const buckets: Record<string, number[]> = {};
  const T = qpos.length;
  K.forEach((_, l) => {
    const c = compress(
      { keys: tensor(rows(K[l], Hkv, N, d, 0, split), [Hkv, split, d]), values: tensor(rows(V[l], Hkv, N, d, 0, split), [Hkv, split, d]), queries: tensor(windows[l], [Hq, windows[l].length / (Hq * d), d]) },
      { method: cfg.method, ratio, merge: cfg.merge, correction: cfg.correction },
    );
    const e = causalSplitErrorsRef({
      K: K[l], V: V[l], Hkv, N, d, dv: d, q: held[l], Hq, T, qpos, S: split,
      K_R: hostContiguous(c.keys), V_R: hostContiguous(c.values), cap: c.keys.shape[1], counts: hostContiguous(c.counts), moments: momentsRef(c),
      scale: 1 / Math.sqrt(d),
    });
    e.forEach((x, r) => {
      all.push(x);
      const dist = qpos[r % T] - split;
      (buckets[dist < 64 ? '0-63' : dist < 256 ? '64-255' : '256+'] ??= []).push(x);
    });
    byLayer.push(quantile(e, 0.5));
  });
  return {
    median: quantile(all, 0.5),
    p90: quantile(all, 0.9),
    mean: all.reduce((a, b) => a + b, 0) / all.length,
    byDistance: Object.fromEntries(Object.entries(buckets).map(([k, v]) => [k, quantile(v, 0.5)])),
    byLayer,
  };
}

/** Queries [Hq, Tall, d] at positions [a, b) → [Hq, b − a, d]. */
const qrows = (q: Float32Array, Tall: number, a: number, b: number) => rows(q, Hq, Tall, d, a, b);

function close(t: Test, got: number, want: number, what: string): void {
  t.ok(Math.abs(got - want) <= 2e-5 + 2e-4 * Math.abs(want), `${what}: ${got} vs reference ${want}`);
}

function compareRow(t: Test, row: EvalRow, ref: RefSummary): void {
  const w = `${row.config} r=${row.ratio}`;
  close(t, row.medianError, ref.median, `${w} median`);
  close(t, row.p90Error, ref.p90, `${w} p90`);
  close(t, row.meanError, ref.mean, `${w} mean`);
  t.same(Object.keys(row.errorByDistance).sort(), Object.keys(ref.byDistance).sort(), `${w}: the same distance buckets`);
  for (const [k, v] of Object.entries(ref.byDistance)) close(t, row.errorByDistance[k], v, `${w} error at distance ${k}`);
  t.equal(row.errorByLayer.length, ref.byLayer.length);
  ref.byLayer.forEach((v, l) => close(t, row.errorByLayer[l], v, `${w} layer ${l}`));
}

t.test('split evaluation of a dump with positions and a continuation equals the float64 reference', async (t) => {
  const s = synth(2, 5);
  const dir = writeDump(t, s);
  const Tall = N + EXTRA, W = 32;
  const windows = s.Q.map((q) => qrows(q, Tall, S - W, S));
  const held = s.Q.map((q) => qrows(q, Tall, S, Tall));
  const qpos = Array.from({ length: Tall - S }, (_, i) => S + i);
  const refs = new Map<string, RefSummary>();
  const refOf = (config: string, ratio: number) => {
    const key = `${config} ${ratio}`;
    if (!refs.has(key)) refs.set(key, referenceRow(s.K, s.V, windows, held, qpos, S, EVAL_CONFIGS.find((c) => c.name === config)!, ratio));
    return refs.get(key)!;
  };
  for (const b of BACKENDS) await t.test(b, on(b), async (t) => {
    const r = await runEval({ dump: dir, split: S, ratios: [0, 0.75], backend: b });
    t.same(r.protocol, { split: S, window: { from: S - W, to: S }, heldOut: { first: S, last: Tall - 1, count: Tall - S, continuation: EXTRA }, queries: 'qpos' }, `${b}: protocol`);
    t.same([r.shape.W, r.shape.T], [W, Tall - S]);
    for (const row of r.rows) {
      t.notOk(row.skipped, `${b} ${row.config} r=${row.ratio}: evaluated`);
      // nothing evicted: the packed prefix + suffix is the whole causal cache (the merge and the moment summary
      // have nothing to act on, MomentKV still protects its window: all compared with the reference below)
      if (row.ratio === 0 && !row.merge && !row.correction && row.method !== 'momentkv') {
        t.ok(row.p90Error < 2e-5, `${b} ${row.config}: ratio 0 reproduces the causal full cache (p90 ${row.p90Error})`);
      }
      compareRow(t, row, refOf(row.config, row.ratio));
    }
    for (const l of r.layers) {
      t.ok(l.sinkMass > 0 && l.sinkMass < 1 && l.localMass > 0 && l.localMass <= 1, `${b}: attention description in (0, 1]: ${JSON.stringify(l)}`);
    }
  });
  // the convention 'all-positions' (q holds every position, no qpos) is the same evaluation
  const noQpos = writeDump(t, s, true);
  await t.rejects(runEval({ dump: noQpos, ratios: [0.75], configs: ['keydiff'] }), /720 queries .* but only 700 cached tokens: without positions, q holds the last T/);
  const conv = await runEval({ dump: noQpos, dumpOptions: { queries: 'all-positions' }, split: S, ratios: [0.75], configs: ['keydiff', 'momentkv'] });
  t.equal(conv.protocol.queries, 'all-positions');
  for (const row of conv.rows) compareRow(t, row, refOf(row.config, 0.75));
});

t.test('default split S = N − min(512, N/8), and the window shrinks to the queries just before S', async (t) => {
  const s = synth(1, 9);
  const dir = writeDump(t, s);
  const r = await runEval({ dump: dir, ratios: [0.5], configs: ['snapkv'] });
  const S0 = N - Math.floor(N / 8);
  t.same(r.protocol.split, S0);
  t.same(r.protocol.window, { from: S0 - 32, to: S0 });
  const r8 = await runEval({ dump: dir, split: 5, window: 8, ratios: [0.5], configs: ['keydiff'] });
  t.same(r8.protocol.window, { from: 1, to: 5 }, 'fewer than S queries, so a prefix remains');
  await t.rejects(runEval({ dump: dir, split: N + 1 }), /split: must be in \[2, 700\]/);
  // a budget below the window MomentKV protects: that row is skipped with the reason, the others still run
  const sk = await runEval({ dump: dir, split: 100, ratios: [0.5, 0.95], configs: ['momentkv'] });
  t.notOk(sk.rows[0].skipped);
  t.match(sk.rows[1].skipped, /layer 0: keep: head 0 has 32 protected \(\+Infinity\) tokens, more than keep = 5/);
  t.ok(Number.isNaN(sk.rows[1].medianError));
  t.match(formatEvalReport(sk), /momentkv\s+0\.95\s+skipped\s+-[\s\S]*skipped momentkv at ratio 0\.95: layer 0: keep/);
  await t.rejects(runEval({ split: 100 }), /split, window: apply to dumps/);
});

t.test('the per-layer description (sink mass, recent mass) equals a float64 computation', async (t) => {
  const s = synth(1, 11);
  const split = N - 40, Tall = N + EXTRA;
  const r = await runEval({ dump: writeDump(t, s), split, ratios: [0.5], configs: ['keydiff'] });
  let sink = 0, recent = 0;
  for (let p = split; p < Tall; p++) {
    const top = Math.min(p, N - 1);
    const ind = new Float64Array(Hkv * N * 2);
    for (let h = 0; h < Hkv; h++) {
      ind[h * N * 2] = 1;
      for (let x = Math.max(0, top - 63); x <= top; x++) ind[(h * N + x) * 2 + 1] = 1;
    }
    const o = attentionRef({ q: qrows(s.Q[0], Tall, p, p + 1), Hq, T: 1, d, K: s.K[0], V: ind, Hkv, N, dv: 2, qpos: [p], scale: 1 / Math.sqrt(d) }).out;
    for (let j = 0; j < Hq; j++) {
      sink += o[2 * j];
      recent += o[2 * j + 1];
    }
  }
  const n = Hq * (Tall - split);
  close(t, r.layers[0].sinkMass, sink / n, 'sink mass');
  close(t, r.layers[0].localMass, recent / n, 'mass on the 64 most recent keys');
  t.same([r.layers[0].T, r.layers[0].W], [Tall - split, 32]);
});

t.test('no held-out query sees a later key: a planted key that would dominate is ignored before its position', async (t) => {
  const s = synth(1, 7);
  const Tall = N + EXTRA, pStar = S + 100;
  // a key along the mean of the queries at S..S+63 of each KV head's group, large enough to take their attention
  const planted: Synth = { K: [Float32Array.from(s.K[0])], V: [Float32Array.from(s.V[0])], Q: s.Q };
  for (let h = 0; h < Hkv; h++) {
    const u = new Float64Array(d);
    for (let j = h * G; j < (h + 1) * G; j++) for (let p = S; p < S + 64; p++) for (let c = 0; c < d; c++) u[c] += s.Q[0][(j * Tall + p) * d + c];
    const norm = Math.hypot(...u);
    for (let c = 0; c < d; c++) {
      planted.K[0][(h * N + pStar) * d + c] = (60 * u[c]) / norm;
      planted.V[0][(h * N + pStar) * d + c] = 50;
    }
  }
  // seen (without the causal mask), it would take nearly all of the attention of the first 64 held-out queries
  const first = qrows(s.Q[0], Tall, S, S + 64);
  const seen = attentionRef({ q: first, Hq, T: 64, d, K: planted.K[0], V: planted.V[0], Hkv, N, dv: d, scale: 1 / Math.sqrt(d) }).out;
  let mass = 0;
  for (let i = 0; i < Hq * 64; i++) mass += seen[i * d] / 50; // value channel 0 is 50 only at p*, ~O(1) elsewhere
  t.ok(mass / (Hq * 64) > 0.9, `the planted key would dominate: mean attention ≈ ${(mass / (Hq * 64)).toFixed(3)}`);

  const clean = await runEval({ dump: writeDump(t, s), split: S, ratios: [0.5, 0.9] });
  const withKey = await runEval({ dump: writeDump(t, planted), split: S, ratios: [0.5, 0.9] });
  clean.rows.forEach((row, i) => {
    const other = withKey.rows[i];
    t.equal(other.errorByDistance['0-63'], row.errorByDistance['0-63'], `${row.config} r=${row.ratio}: queries before position ${pStar} are unchanged`);
    t.not(other.errorByDistance['64-255'], row.errorByDistance['64-255'], `${row.config} r=${row.ratio}: queries after it see it`);
  });
});

t.test('the built-in trace: decode queries at position N, S = N, equal the float64 reference', async (t) => {
  const small = { tokens: 1024, layers: 1, kvHeads: Hkv, groupSize: G, headDim: d, heldOut: 12, needles: 4, segments: 8, seed: 4 };
  const tr = generateTrace(small);
  const r = await runEval({ trace: small, ratios: [0.9] });
  t.same(r.protocol, { split: 1024, window: { from: 992, to: 1024 }, heldOut: { first: 1024, last: 1024, count: 12, continuation: 12 }, queries: 'trace' });
  t.same(Object.keys(r.rows[0].errorByDistance), ['0-63']);
  const L = tr.layers[0];
  const qpos = new Array(tr.T).fill(tr.N);
  for (const row of r.rows) {
    const cfg = EVAL_CONFIGS.find((c) => c.name === row.config)!;
    const c = compress({ keys: tensor(L.keys, [Hkv, tr.N, d]), values: tensor(L.values, [Hkv, tr.N, d]), queries: tensor(L.windowQueries, [Hq, tr.W, d]) }, { method: cfg.method, ratio: 0.9, merge: cfg.merge, correction: cfg.correction });
    const e = causalSplitErrorsRef({
      K: L.keys, V: L.values, Hkv, N: tr.N, d, dv: d, q: L.heldOutQueries, Hq, T: tr.T, qpos, S: tr.N,
      K_R: hostContiguous(c.keys), V_R: hostContiguous(c.values), cap: c.keys.shape[1], counts: hostContiguous(c.counts), moments: momentsRef(c),
      scale: 1 / Math.sqrt(d),
    });
    close(t, row.medianError, quantile(e, 0.5), `${row.config} median`);
    close(t, row.meanError, e.reduce((a, b) => a + b, 0) / e.length, `${row.config} mean`);
  }
});

t.test('kvtrim eval --dump --split --queries: protocol line, distance columns, per-layer table', async (t) => {
  const s = synth(2, 3);
  const dir = writeDump(t, s, true);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-causal-cli-'));
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }));
  const { out: text, err } = await captureConsole(async () => {
    t.equal(await main(['eval', '--dump', dir, '--queries', 'all-positions', '--split', String(S), '--ratios', '0.5,0.9', '--configs', 'keydiff,snapkv', '--out', out, '--quiet']), 0);
    t.equal(await main(['eval', '--dump', dir, '--queries', 'first']), 1);
    t.equal(await main(['eval', '--dump', dir, '--queries', 'all-positions', '--split', '0']), 1);
    t.equal(await main(['eval', '--split', '10']), 1);
  });
  t.match(text, /split S=400: prefix \[0, 400\) compressed, window 368\.\.399; held out per head: 320 queries at positions 400\.\.719 \(20 past N=700: they see all N keys\); positions from all-positions/);
  t.match(text, /config\s+ratio\s+median err\s+p90 err\s+err @0-63\s+err @64-255\s+err @256\+/);
  t.match(text, /per layer \(median err at ratio 0\.90; sink = attention on position 0/);
  t.match(text, /layer\s+sink\s+recent\s+keydiff\s+snapkv/);
  t.match(text, /\n\s*1\s+0\.\d{3}\s+0\.\d{3}\s+\d\.\d{4}\s+\d\.\d{4}/, 'a row for layer 1');
  t.match(err, /--queries: expected last or all-positions, got 'first'/);
  t.match(err, /--split: expected a positive integer, got '0'/);
  t.match(err, /split, window: apply to dumps/);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'eval.json'), 'utf8'));
  t.equal(j.layers.length, 2);
  t.same(Object.keys(j.rows[0].errorByDistance), ['0-63', '64-255', '256+']);
});
