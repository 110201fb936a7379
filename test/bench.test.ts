import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runBench, measureBandwidth, allBenches } from '../lib/bench';
import { main } from '../lib/cli';
import { backendInfo } from '../lib/index';

t.test('runBench on the CPU backend: one row per case and N, consistent derived fields', async (t) => {
  const progress: number[] = [];
  const r = runBench({ backend: 'cpu', N: [1000, 2051], H: 2, d: 64, repeats: 2, warmup: 0, onProgress: (d) => progress.push(d) });
  t.equal(r.backend, 'cpu');
  t.ok(r.bandwidthGBs > 0.1, `bandwidth ${r.bandwidthGBs} GB/s`);
  t.equal(r.rows.length, allBenches().length * 2);
  t.same(progress, [...Array(r.rows.length + 1).keys()], 'progress reported before each case and at the end');
  for (const row of r.rows) {
    t.ok(row.medianMs > 0 && row.minMs <= row.medianMs, `${row.op}: timing`);
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
  if (!backendInfo().cuda) t.throws(() => runBench({ backend: 'cuda' }), /CUDA is not available/);
  t.ok(measureBandwidth('cpu', 0, undefined, 2 ** 20) > 0);
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
  t.same(Object.keys(j).sort(), ['backend', 'bandwidthGBs', 'device', 'repeats', 'rows', 'threads']);
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
