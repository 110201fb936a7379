#!/usr/bin/env node
// The per-call cost of each way into kvtrim (README "From PyTorch and C"), measured in one run on the same inputs:
// the Node API (sync and async form) and the Python client over ctypes + DLPack (numpy arrays, and PyTorch CPU
// tensors when torch imports), on a tiny KeyDiff call (the cost of the call itself) and at N = 32768 (8 heads,
// d = 128: the cost relative to the op). Writes bench/results/call-overhead.json.
//
//   node bench/call-overhead.mjs [--out FILE] [--reps N]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const out = opt('--out', path.join(root, 'bench', 'results', 'call-overhead.json'));
const reps = Number(opt('--reps', '2000'));
const k = await import(path.join(root, 'dist', 'index.js'));
const lib = k.nativeLibrary();

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
function keys(H, N, d) {
  const a = new Float32Array(H * N * d);
  let x = 12345;
  for (let i = 0; i < a.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    a[i] = (x / 2 ** 32) * 2 - 1;
  }
  return a;
}
async function nodeTimes(H, N, d, n) {
  const t = k.tensor(keys(H, N, d), [H, N, d]);
  const o = k.tensor(new Float32Array(H * N), [H, N]);
  for (let i = 0; i < Math.min(n, 20); i++) k.keydiffScores(t, { out: o });
  const sync = [], asyncT = [];
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    k.keydiffScores(t, { out: o });
    sync.push(Number(process.hrtime.bigint() - s) / 1e3);
  }
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    await k.keydiffScoresAsync(t, { out: o });
    asyncT.push(Number(process.hrtime.bigint() - s) / 1e3);
  }
  return { syncUs: median(sync), asyncUs: median(asyncT) };
}

const PY = `
import sys, time, statistics
sys.path.insert(0, sys.argv[1])
import numpy as np
from kvtrim_dlpack import Kvtrim
kv = Kvtrim(sys.argv[2])
H, N, d, n, backend = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
x = np.random.default_rng(1).uniform(-1, 1, (H, N, d)).astype(np.float32)
o = np.zeros((H, N), np.float32)
if backend == 'torch':
    import torch
    x = torch.from_numpy(x); o = torch.from_numpy(o)
for _ in range(min(n, 20)): kv.keydiff_scores(x, out=o)
ts = []
for _ in range(n):
    s = time.perf_counter_ns(); kv.keydiff_scores(x, out=o); ts.append((time.perf_counter_ns() - s) / 1e3)
print(statistics.median(ts))
`;
function pythons() {
  const found = [];
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(py, ['-c', 'import numpy'], { stdio: 'ignore' });
      found.push(py);
    } catch {
      /* not this one */
    }
  }
  return found;
}
function pyTime(py, backend, H, N, d, n) {
  try {
    if (backend === 'torch') execFileSync(py, ['-c', 'import torch'], { stdio: 'ignore' });
    const r = execFileSync(py, ['-c', PY, path.join(root, 'examples', 'python'), lib.library, String(H), String(N), String(d), String(n), backend], { encoding: 'utf8' });
    return Number(r.trim());
  } catch {
    return null;
  }
}

const pys = pythons();
const py = pys[0];
const pyTorch = pys.find((p) => {
  try {
    execFileSync(p, ['-c', 'import torch'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});
const cases = [
  { name: 'tiny (KeyDiff 1 x 16 x 8)', H: 1, N: 16, d: 8, n: reps },
  { name: 'N = 32768 (KeyDiff 8 x 32768 x 128)', H: 8, N: 32768, d: 128, n: 25 },
];
const rows = [];
for (const c of cases) {
  const node = await nodeTimes(c.H, c.N, c.d, c.n);
  const numpy = py ? pyTime(py, 'numpy', c.H, c.N, c.d, c.n) : null;
  const torch = pyTorch ? pyTime(pyTorch, 'torch', c.H, c.N, c.d, c.n) : null;
  const row = { case: c.name, H: c.H, N: c.N, d: c.d, calls: c.n, nodeSyncUs: node.syncUs, nodeAsyncUs: node.asyncUs, pythonNumpyUs: numpy, pythonTorchUs: torch };
  if (numpy !== null) row.pythonNumpyOverNodeSync = numpy / node.syncUs;
  rows.push(row);
  console.log(JSON.stringify(row));
}
const report = {
  what: 'median wall time per call (microseconds) of kvtrim KeyDiff through each entry point, in one run',
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg() },
  python: { numpy: py ?? null, torch: pyTorch ?? null },
  rows,
};
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
console.log(`wrote ${path.relative(process.cwd(), out)}`);
