import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBench, measureBandwidth, allBenches } from '../lib/bench';
import { matchesFilter } from '../lib/check';
import { main } from '../lib/cli';
import { backendInfo, gatherKV, keydiffScores, selectTokens, snapkvScores } from '../lib/index';
import { findTorchPython, torchPeer } from '../lib/peer';
import { Rng } from '../lib/rng';
import { randomHost } from '../lib/checks/util';
import type { Tensor } from '../lib/tensor';

t.test('runBench on the CPU backend: one row per case and N, consistent derived fields', async (t) => {
  const progress: number[] = [];
  const r = runBench({ backend: 'cpu', N: [1000, 2051], H: 2, d: 64, repeats: 2, warmup: 0, onProgress: (d) => progress.push(d) });
  t.equal(r.backend, 'cpu');
  // well-formed numbers only: speed is what `kvtrim bench` reports, never a test threshold
  t.ok(Number.isFinite(r.bandwidthGBs) && r.bandwidthGBs > 0, `bandwidth ${r.bandwidthGBs} GB/s: a finite positive number`);
  t.equal(r.rows.length, allBenches().length * 2);
  t.same(progress, [...Array(r.rows.length + 1).keys()], 'progress reported before each case and at the end');
  for (const row of r.rows) {
    t.ok(Number.isFinite(row.medianMs) && row.medianMs > 0 && row.minMs <= row.medianMs, `${row.op}: min <= median, finite`);
    t.ok(Math.abs(row.solMs - row.solBytes / (r.bandwidthGBs * 1e6)) < 1e-9, `${row.op}: solMs = bytes / bandwidth`);
    t.ok(Math.abs(row.solFraction - row.solMs / row.medianMs) < 1e-9, `${row.op}: solFraction = solMs / median`);
    t.ok(Math.abs(row.gbps - row.solBytes / (row.medianMs * 1e6)) < 1e-9, `${row.op}: GB/s`);
    if (row.baseline) t.ok(Math.abs(row.baseline.speedup - row.baseline.medianMs / row.medianMs) < 1e-9, `${row.op}: speedup`);
  }
  t.ok(r.rows.some((x) => x.baseline), 'baselines measured');
  const kd = r.rows.find((x) => x.op === 'keydiffScores' && x.N === 2051)!;
  t.equal(kd.solBytes, 2 * 2 * 2051 * 64 * 4 + 2 * 2051 * 4, 'KeyDiff bound: two passes over K plus the scores');
});

t.test('filter and errors', async (t) => {
  const r = runBench({ backend: 'cpu', N: [512], H: 1, d: 32, repeats: 1, filter: 'GATHER' });
  t.ok(r.rows.length >= 1 && r.rows.every((x) => x.op === 'gatherKV' || x.op === 'gatherKVBatched'), 'only the gather cases');
  t.ok(r.rows.some((x) => x.op === 'gatherKVBatched' && x.baseline), 'the batched cases with B separate calls as their baseline');
  t.throws(() => runBench({ backend: 'cuda' }), /CUDA is not available/, 'CUDA bench without a GPU says why', { skip: backendInfo().cuda && 'a GPU is present: the CUDA bench runs' });
  const bw = measureBandwidth('cpu', 0, undefined, 2 ** 20);
  t.ok(Number.isFinite(bw) && bw > 0, 'measureBandwidth: a finite positive number');
});

t.test('kvtrim bench CLI writes the JSON report', async (t) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-bench-')), 'bench.json');
  const log = console.log;
  const out: string[] = [];
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  let code: number;
  try {
    code = await main(['bench', '--backend', 'cpu', '--N', '700', '--H', '2', '--d', '32', '--repeats', '1', '--json', file]);
  } finally {
    console.log = log;
  }
  t.equal(code, 0);
  t.match(out.join('\n'), /% SoL/);
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  t.same(Object.keys(j).sort(), ['backend', 'bandwidthGBs', 'cpuIsa', 'device', 'fmaPeakGFs', 'host', 'repeats', 'rows', 'threads']);
  t.ok(j.fmaPeakGFs > 0 && ['avx512', 'avx2', 'baseline', 'neon'].includes(j.cpuIsa), `the CPU report carries the FMA peak (${j.fmaPeakGFs}) and the ISA level (${j.cpuIsa})`);
  t.match(j.host, { cpu: String, date: String, loadavg: Array }, 'and the host, date and load of the run');
  t.same(Object.keys(j.rows[0]).filter((k) => k !== 'baseline').sort(), ['H', 'N', 'd', 'dtype', 'gbps', 'medianMs', 'minMs', 'op', 'solBytes', 'solFraction', 'solMs', 'variant'].sort());
  const help: string[] = [];
  console.log = (...a: unknown[]) => void help.push(a.join(' '));
  try {
    await main(['bench', '--help']);
  } finally {
    console.log = log;
  }
  t.match(help.join('\n'), /Usage: kvtrim bench/);
  const errs: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => void errs.push(a.join(' '));
  try {
    t.equal(await main(['bench', '--N', 'abc']), 1);
    t.equal(await main(['bench', '--dtype', 'f64']), 1);
    t.equal(await main(['bench', '--backend', 'tpu']), 1);
  } finally {
    console.error = error;
  }
  t.match(errs.join('\n'), /--N: expected a positive integer/);
  t.match(errs.join('\n'), /--dtype: expected f32, f16 or bf16/);
  t.match(errs.join('\n'), /--backend: expected cpu or cuda/);
});

t.test('--peer torch: a peer that dies says so, with the end of its stderr', async (t) => {
  // a stand-in "python" that writes to stderr and exits before answering (any machine: no torch needed)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-fakepy-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const py = path.join(dir, 'python3');
  fs.writeFileSync(py, '#!/bin/sh\necho "ImportError: no module named torch (stand-in)" >&2\nexit 3\n', { mode: 0o755 });
  t.throws(() => torchPeer({ threads: 1, python: py }), /--peer torch: the Python peer exited\nImportError: no module named torch \(stand-in\)/);
});

t.test('--peer torch: PyTorch times the same math on the same inputs (when a python3 with torch is present)', async (t) => {
  const py = findTorchPython();
  if (!py) {
    t.throws(() => torchPeer({ threads: 1, python: '/nonexistent/python3' }), /--peer torch/, 'a missing python is an error');
    t.pass('no python3 with torch and numpy: the peer rows are not measured here');
    return;
  }
  const peer = torchPeer({ threads: 1, python: py });
  t.teardown(() => peer.close());
  t.match(peer.name, /^PyTorch \d/);
  // The peer's output on the inputs handed to it sums to kvtrim's on the same inputs: both got the same data and
  // compute the same function (random inputs, so a mangled transfer or another formula would not match).
  const rng = new Rng(7);
  const keys = randomHost(rng, [2, 300, 32], 'bf16'), queries = randomHost(rng, [8, 16, 32], 'bf16', 0.5);
  const finiteSum = (x: Tensor) => Array.from(x.data as Float32Array).filter(Number.isFinite).reduce((a, b) => a + b, 0);
  const kd = peer.time('keydiffScores', '2 passes', { keys }, {}, 1, 0)!;
  t.ok(kd.medianMs > 0, 'timed');
  t.ok(Math.abs(kd.checksum - finiteSum(keydiffScores(keys))) < 1e-3, `KeyDiff: ${kd.checksum} vs ${finiteSum(keydiffScores(keys))}`);
  const sk = peer.time('snapkvScores', 'G=4 W=16 avg', { queries, keys }, {}, 1, 0)!;
  const ours = finiteSum(snapkvScores(queries, keys));
  t.ok(Math.abs(sk.checksum - ours) < 1e-4 * Math.max(1, Math.abs(ours)), `SnapKV: ${sk.checksum} vs ${ours}`);
  // The pipelines (scores, top keep per head, gather): the kept keys sum alike when both kept the same rows. f32 inputs,
  // so the sums are of values, not of bf16 bit patterns.
  const k32 = randomHost(rng, [2, 300, 32], 'f32'), v32 = randomHost(rng, [2, 300, 32], 'f32'), q32 = randomHost(rng, [8, 16, 32], 'f32', 0.5);
  for (const [name, variant, scores, inputs] of [
    ['KeyDiff', 'KeyDiff scores + select + gather, keep 25%', keydiffScores(k32), { keys: k32, values: v32 }],
    ['SnapKV', 'SnapKV G=4 W=16 avg scores + select + gather, keep 25%', snapkvScores(q32, k32), { queries: q32, keys: k32, values: v32 }],
  ] as const) {
    const pl = peer.time('pipeline', variant, inputs, { keep: 75 }, 1, 0)!;
    const kept = gatherKV({ keys: k32, values: v32, ...selectTokens(scores, { keep: 75 }) }).keys;
    t.ok(Math.abs(pl.checksum - finiteSum(kept)) < 1e-3, `${name} pipeline: ${pl.checksum} vs ${finiteSum(kept)}`);
  }
  t.equal(peer.time('grkvMerge', 'no formulation', { keys }, {}, 1, 0), undefined, 'an op without a PyTorch formulation');
  t.throws(() => peer.time('spdSolve', 'x', { keys }, {}, 1, 0), /--peer torch: spdSolve/, "the peer's errors are reported");
  const r = runBench({ backend: 'cpu', N: [700], H: 2, d: 32, repeats: 1, warmup: 0, filter: ['keydiffScores', 'gatherKV', 'pipeline'], peer });
  t.equal(r.peer, peer.name);
  for (const row of r.rows.filter((x) => ['keydiffScores', 'gatherKV', 'pipeline'].includes(x.op)))
    t.ok(row.peer && Math.abs(row.peer.speedup - row.peer.medianMs / row.medianMs) < 1e-9, `${row.op}: peer row`);
  t.throws(() => runBench({ backend: 'cuda', peer }), /peer runs on the CPU/);
});

t.test('--op: substrings of op names, or a whole name ending in $', async (t) => {
  const ops = [...new Set(allBenches().map((c) => c.op))];
  const pick = (f: string[]) => ops.filter((o) => matchesFilter(o, f));
  t.same(pick(['keydiffScores$']), ['keydiffScores'], 'the per-sequence op only');
  t.same(pick(['KEYDIFFSCORES']).sort(), ['keydiffScores', 'keydiffScoresBatched'], 'a substring matches its batched form too');
  t.same(pick(['pipeline$', 'spdsolve$']).sort(), ['pipeline', 'spdSolve']);
  t.same(pick(['scores$']), [], 'a $ name is never a suffix match');
  t.equal(pick([]).length, ops.length, 'no filter: every op');
});
