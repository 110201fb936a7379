// `npm run gpu:verify` (tools/gpu/verify.js) without a GPU, so that it cannot rot before a GPU session runs it:
//  - its parsers on real-format tool output (Nsight Compute CSV, compute-sanitizer summaries, check JSON lines);
//  - the PyTorch peer (tools/gpu/torch_peer.py) computes the same functions as kvtrim: its inputs and outputs at a
//    small shape, in float64, against kvtrim's CPU backend (when a python3 with torch and numpy is present);
//  - the whole run on the CUDA emulator (tools/cuda-emu) with stand-ins for nvidia-smi, cmake, nvcc,
//    compute-sanitizer and ncu on PATH: every step's plumbing (the local-architecture build arguments, the check, bench
//    and peer reports, the ncu kernel rows of real launches, a sanitizer finding, a step stopped at its budget) and the
//    JSON + markdown report named after the device, in bench/results-like and --out directories;
//  - the deadline: a step that hangs is stopped, the rest skipped, and the partial report is still written.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as verify from '../tools/gpu/verify.js';
import { emuSkip, emulatedAddon, run } from './emu/addon';
import { values } from './helpers';
import { readNpy } from '../lib/io/npy';
import { tensor, keydiffScores, nestedkvScores, selectTokens, gatherKV, snapkvScores, decodeAttention, spdSolve, MomentState } from '../lib/index';
import type { Tensor } from '../lib/index';

const root = path.join(__dirname, '..');
const script = path.join(root, 'tools', 'gpu', 'verify.js');

t.test('parsers: Nsight Compute CSV, sanitizer summaries, check lines, device names', async (t) => {
  const csv = [
    '==PROF== Connected to process 123 (/usr/bin/node)',
    '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","dram__bytes.sum","dram__throughput.avg.pct_of_peak_sustained_elapsed","gpu__time_duration.sum"',
    '"","","","","","","","","","","","byte","%","nsecond"',
    '"0","123","node","h","void kvt::cuda::(anonymous namespace)::gather_kernel(kvt::cuda::T3)","1","13","(256, 1, 1)","(1024, 1, 1)","0","9.0","33,554,432","71.25","14,208"',
    '"1","123","node","h","void kvt::cuda::(anonymous namespace)::score_kernel<2, 8, 1>(kvt::cuda::T3)","1","13","(256, 1, 1)","(62, 8, 1)","0","9.0","67108864","80.5","25000"',
  ].join('\n');
  const rows = verify.parseNcu(csv);
  t.equal(rows.length, 2);
  t.match(rows[0], { grid: '(1024, 1, 1)', block: '(256, 1, 1)', metrics: { 'dram__bytes.sum': 33554432, 'dram__throughput.avg.pct_of_peak_sustained_elapsed': 71.25, 'gpu__time_duration.sum': 14208 } });
  t.match(rows[1].kernel, /score_kernel<2, 8, 1>/);
  t.same(verify.parseNcu('no csv here'), []);

  const mem = verify.parseSanitizer('========= COMPUTE-SANITIZER\n========= Invalid __global__ read of size 4 bytes\n=========     at gather_kernel\n========= ERROR SUMMARY: 3 errors\n');
  t.match(mem, { errors: 3 });
  t.match(mem.findings[0], /Invalid __global__ read/);
  t.match(verify.parseSanitizer('========= RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)'), { errors: 1, warnings: 1 });
  t.match(verify.parseSanitizer('cut short, no summary'), { errors: null });

  const lines = ['{"device":{},"seed":1,"size":"small"}', 'kvtrim noise', '{"row":{"op":"keydiffScores","config":"a","pass":true}}', '{"row":{"op":"x","config":"b","pass":false}}'];
  const c = verify.parseCheckLines(lines.join('\n'));
  t.equal(c.rows.length, 2);
  t.equal(c.summary, null, 'no summary line: the run was cut short');
  t.ok(verify.parseCheckLines([...lines, '{"done":true,"passed":1,"failed":1}'].join('\n')).summary);
  t.equal(verify.slug('NVIDIA H100 80GB HBM3'), 'nvidia-h100-80gb-hbm3');
  t.equal(verify.slug('kvtrim CUDA emulator'), 'kvtrim-cuda-emulator');
});

// ---- the PyTorch peer computes kvtrim's functions ----------------------------------------------------------------
function torchPython(): string {
  for (const py of ['python3', '/usr/bin/python3']) {
    if (spawnSync(py, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0) return py;
  }
  return '';
}
const py = torchPython();

t.test('the PyTorch peer computes the same functions as kvtrim (float64 peer vs the CPU backend)', { skip: py ? false : 'no python3 with torch and numpy' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-peer-'));
  const H = 2, N = 1000, d = 32;
  const r = await run(py, [path.join(root, 'tools', 'gpu', 'torch_peer.py'), '--N', String(N), '--H', String(H), '--d', String(d), '--device', 'cpu', '--dtype', 'f32',
    '--compute', 'f64', '--repeats', '1', '--warmup', '0', '--dump', dir, '--json', path.join(dir, 'peer.json')], {});
  t.equal(r.code, 0, 'torch_peer.py ran', { output: r.out.slice(-2000) });
  if (r.code !== 0) return;
  const npy = (f: string) => readNpy(fs.readFileSync(path.join(dir, `${f}.npy`)), { source: f, integers: true });
  /** an input of the peer (f32 or i32) as a kvtrim host tensor */
  const load = (f: string): Tensor => {
    const a = npy(f);
    return tensor(a.data as Float32Array | Int32Array, a.shape as number[]);
  };
  /** an output of the peer (f64 here) as numbers */
  const ref = (f: string) => Array.from(npy(f).data as ArrayLike<number>);
  const num = (x: Tensor) => Array.from(values(x));
  /** max |a - b| / max(1, max |b|) over finite entries; infinities must coincide */
  const err = (a: Tensor, y: number[]) => {
    const x = num(a);
    let m = 0, s = 1;
    for (let i = 0; i < y.length; i++) {
      if (!Number.isFinite(y[i]) || !Number.isFinite(x[i])) {
        if (x[i] !== y[i]) return Infinity;
        continue;
      }
      s = Math.max(s, Math.abs(y[i]));
      m = Math.max(m, Math.abs(x[i] - y[i]));
    }
    return x.length === y.length ? m / s : Infinity;
  };
  t.ok(err(keydiffScores(load('keydiffScores.keys')), ref('keydiffScores.out')) < 1e-5, 'keydiffScores');
  t.ok(err(nestedkvScores(load('nestedkvScores.keys')), ref('nestedkvScores.out')) < 1e-4, 'nestedkvScores (all three anchors, blend, gate, sinks)');
  const keep = Math.floor(N * 0.25);
  const sel = selectTokens(load('selectTokens.scores'), { keep });
  t.same(num(sel.indices), ref('selectTokens.out'), 'selectTokens uniform: the same positions, ascending');
  const ada = selectTokens(load('selectTokens_adaptive.scores'), { keep, budget: 'adaptive' });
  t.same(num(ada.counts), ref('selectTokens_adaptive.counts'), 'selectTokens adaptive (kvpress AdaKVPress): the same counts');
  const peerIdx = ref('selectTokens_adaptive.indices'), cap = peerIdx.length / H, ours = num(ada.indices), oc = ada.indices.shape[1];
  const cnt = num(ada.counts);
  t.ok([0, 1].every((h) => peerIdx.slice(h * cap, h * cap + cnt[h]).every((v, j) => v === ours[h * oc + j])), 'selectTokens adaptive: the same positions');
  const counts = tensor(new Int32Array(H).fill(keep), [H]);
  const g = gatherKV({ keys: load('gatherKV.keys'), values: load('gatherKV.values'), indices: load('gatherKV.indices'), counts });
  t.equal(err(g.keys, ref('gatherKV.keysOut')) + err(g.values, ref('gatherKV.valuesOut')), 0, 'gatherKV');
  const st = MomentState.create(H, d, d);
  gatherKV({ keys: load('MomentState_merge.keys'), values: load('MomentState_merge.values'), indices: load('MomentState_merge.indices'), counts, moments: st });
  t.ok(err(st.n, ref('MomentState_merge.n')) === 0 && err(st.muK, ref('MomentState_merge.muK')) < 1e-5 && err(st.muV, ref('MomentState_merge.muV')) < 1e-5 && err(st.m, ref('MomentState_merge.m')) < 1e-4,
    'MomentState.merge of the evicted rows (n, mu_k, mu_v, m)');
  t.ok(err(snapkvScores(load('snapkvScores.queries'), load('snapkvScores.keys')), ref('snapkvScores.out')) < 1e-4, 'snapkvScores (window causal mask, avg pool, GQA mean)');
  const moments = MomentState.from({ n: load('decodeAttention.n'), muK: load('decodeAttention.muK'), muV: load('decodeAttention.muV'), m: load('decodeAttention.m') });
  const dq = load('decodeAttention.queries');
  const o = decodeAttention({ queries: dq, keys: load('decodeAttention.keys'), values: load('decodeAttention.values'), counts: tensor(new Int32Array(H).fill(N), [H]), moments });
  t.ok(err(o, ref('decodeAttention.out')) < 1e-4, 'decodeAttention with the moment correction (order 1)');
  t.ok(err(spdSolve({ a: load('spdSolve.a'), b: load('spdSolve.b'), lambda: 1e-2 }).x, ref('spdSolve.out')) < 1e-3, 'spdSolve');
  const report = JSON.parse(fs.readFileSync(path.join(dir, 'peer.json'), 'utf8'));
  t.ok(report.rows.length >= 9 && report.rows.every((x: { medianMs: number }) => x.medianMs > 0), `${report.rows.length} peer ops timed`);
  fs.rmSync(dir, { recursive: true, force: true });
});

// ---- the whole run on the emulated device ------------------------------------------------------------------------
/** Writes executable stand-ins for the GPU tools into `bin`. */
function fakeTools(bin: string, o: { slowProbe?: boolean } = {}): void {
  fs.mkdirSync(bin, { recursive: true });
  const node = `#!${process.execPath}`;
  const write = (name: string, body: string) => fs.writeFileSync(path.join(bin, name), body, { mode: 0o755 });
  write('nvidia-smi', `#!/bin/sh\n${o.slowProbe ? 'sleep 60\n' : ''}echo "kvtrim CUDA emulator, 9.0, 580.00.00, 1024 MiB"\n`);
  write('nvcc', '#!/bin/sh\necho "Cuda compilation tools, release 13.0, V13.0.88"\n');
  // cmake: configure records its arguments; --build installs the emulated addon and a ptxas report
  write('cmake', `${node}
const fs = require('fs'), path = require('path');
const a = process.argv.slice(2);
if (a[0] === '--version') { console.log('cmake version 3.28.0'); process.exit(0); }
if (a[0] === '--build') {
  const dir = a[1];
  fs.mkdirSync(path.join(dir, 'Release'), { recursive: true });
  fs.copyFileSync(process.env.KVTRIM_FAKE_ADDON, path.join(dir, 'Release', 'kvtrim.node'));
  fs.mkdirSync(path.join(dir, 'ptxas'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'ptxas', 'gather.cu.o.ptxas.txt'), [
    "ptxas info    : Compiling entry function '_ZN3kvt4cuda12_GLOBAL__N_113gather_kernelENS0_2T3E' for 'sm_90'",
    'ptxas info    : Function properties for _ZN3kvt4cuda12_GLOBAL__N_113gather_kernelENS0_2T3E',
    '    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads',
    'ptxas info    : Used 40 registers, used 0 barriers, 400 bytes cmem[0]', ''].join('\\n'));
  console.log('[1/1] fake build');
  process.exit(0);
}
const b = a[a.indexOf('-B') + 1];
fs.mkdirSync(b, { recursive: true });
fs.writeFileSync(path.join(b, 'configure-args.json'), JSON.stringify(a));
`);
  // compute-sanitizer: runs the program; racecheck reports a hazard, synccheck hangs (stopped at its budget)
  write('compute-sanitizer', `${node}
const { spawnSync } = require('child_process');
const a = process.argv.slice(2);
if (a[0] === '--version') { console.log('NVIDIA (R) Compute Sanitizer\\nVersion 2025.3.0'); process.exit(0); }
const tool = a[a.indexOf('--tool') + 1];
if (tool === 'synccheck') { setTimeout(() => {}, 120000); return; }
const i = a.indexOf(process.execPath);
const r = spawnSync(a[i], a.slice(i + 1), { stdio: 'inherit' });
if (tool === 'racecheck') {
  console.log('========= Error: Race reported between Write access at 0x10 in stand_in_kernel\\n========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)');
  process.exit(86);
}
console.log('========= ERROR SUMMARY: 0 errors');
process.exit(r.status);
`);
  // ncu: runs the program with the emulator's launch trace and reports the launches whose function name matches
  write('ncu', `${node}
const { spawnSync } = require('child_process');
const a = process.argv.slice(2);
if (a[0] === '--version') { console.log('NVIDIA (R) Nsight Compute Command Line Profiler\\nVersion 2025.3.1.0'); process.exit(0); }
const re = new RegExp(a[a.indexOf('--kernel-name') + 1].replace(/^regex:/, ''));
const metrics = a[a.indexOf('--metrics') + 1].split(',');
const i = a.indexOf(process.execPath);
const r = spawnSync(a[i], a.slice(i + 1), { env: { ...process.env, KVTRIM_EMU_TRACE: '1' }, encoding: 'utf8', maxBuffer: 1 << 30 });
process.stdout.write(r.stdout);
const rows = [];
let cur = null;
for (const l of r.stderr.split('\\n')) {
  let m;
  if ((m = /^emu: launch #\\d+ .* grid (\\([^)]*\\)) block (\\([^)]*\\))/.exec(l))) cur = { grid: m[1], block: m[2] };
  else if (cur && !cur.name && (m = /^emu:   (.*\\b(\\w+)\\(.*)$/.exec(l)) && !/ ms$/.test(l)) { cur.name = m[1]; cur.fn = /(\\w+)\\(/.exec(m[1])[1]; }
  else if (cur && cur.name && (m = /^emu:   ([\\d.]+) ms$/.exec(l))) { if (re.test(cur.fn)) rows.push({ ...cur, ns: Number(m[1]) * 1e6 }); cur = null; }
}
const q = (x) => '"' + String(x).replace(/"/g, '""') + '"';
console.log(['ID', 'Kernel Name', 'Block Size', 'Grid Size', ...metrics].map(q).join(','));
console.log(['', '', '', '', ...metrics.map(() => '')].map(q).join(','));
rows.forEach((x, k) => console.log([k, x.name, x.block, x.grid, ...metrics.map((m) => (m.startsWith('gpu__time') ? x.ns.toFixed(0) : '0'))].map(q).join(',')));
process.exit(r.status);
`);
}

const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8'));

t.test('gpu:verify end to end on the CUDA emulator, with stand-in GPU tools', { skip: emuSkip() }, async (t) => {
  const built = await emulatedAddon();
  if ('error' in built) {
    t.fail('the emulated addon builds', { output: built.error });
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-verify-'));
  const bin = path.join(tmp, 'bin'), results = path.join(tmp, 'results'), out = path.join(tmp, 'out'), buildDir = path.join(tmp, 'build');
  fakeTools(bin);
  const env = { PATH: `${bin}:${process.env.PATH}`, KVTRIM_FAKE_ADDON: built.addon };
  const args = [script, '--results', results, '--out', out, '--build-dir', buildDir, '--check-op', 'keydiff', '--check-size', 'small',
    '--bench-op', 'keydiff,gather', '--bench-N', '640', '--bench-repeats', '2', '--peer-device', 'cpu', '--budget', 'synccheck=3', '--seed', '5',
    ...(py ? ['--python', py] : [])];
  const r = await run(process.execPath, args, env);
  t.equal(r.code, 1, 'exit code 1: a sanitizer finding and a step stopped at its budget', { output: r.out.slice(-3000) });
  t.match(r.out, /PARTIAL or FAILED/);
  for (const dir of [results, out]) {
    t.ok(fs.existsSync(path.join(dir, 'gpu-kvtrim-cuda-emulator.json')) && fs.existsSync(path.join(dir, 'gpu-kvtrim-cuda-emulator.md')), `report named after the device in ${path.basename(dir)}/`);
  }
  t.ok(fs.existsSync(path.join(out, 'gpu-verify-steps.log')), 'the step logs in --out');
  const R = readJson(path.join(out, 'gpu-kvtrim-cuda-emulator.json'));
  const status = Object.fromEntries(R.steps.map((s: { name: string; status: string }) => [s.name, s.status]));
  t.same(status, { probe: 'ok', build: 'ok', info: 'ok', check: 'ok', memcheck: 'ok', bench: 'ok', peer: py ? 'ok' : 'skipped', ncu: 'ok', racecheck: 'fail', synccheck: 'timeout' }, 'step statuses');
  t.equal(R.complete, false);
  t.match(R.device, { name: 'kvtrim CUDA emulator', computeCap: '9.0', driver: '580.00.00' });
  const cfg = readJson(path.join(buildDir, 'configure-args.json')) as string[];
  t.ok(cfg.includes('-DKVTRIM_CUDA_ARCHS=90-real'), 'built for the probed architecture only');
  t.ok(cfg.some((a) => a.startsWith('-DCMAKE_JS_INC=') && a.includes('node-api-headers')), 'Node-API headers passed to a plain CMake build');
  t.match(R.ptxas, [{ file: 'gather.cu', kernel: 'gather_kernel', regs: 40, occupancy: 0.75 }], "the build's ptxas report for its architecture");
  t.match(R.backend, { cuda: true, versions: { cudaArchs: 'emulated' } }, 'info: the built addon sees the (emulated) GPU');
  t.ok(R.check.rows.length > 0 && R.check.rows.every((x: { op: string; pass: boolean }) => x.pass && /keydiff/i.test(x.op)) && R.check.complete && R.check.size === 'small', `check: ${R.check.rows.length} keydiff checks passed`);
  t.match(R.sanitizer, { memcheck: { errors: 0 }, racecheck: { errors: 1 } });
  t.ok(R.sanitizer.memcheck.checks.startsWith(String(R.check.rows.length)), 'memcheck ran the same checks');
  // synccheck's stand-in never ends by itself: its 'timeout' status above says the 3 s budget stopped it (no clock is
  // read here: test/timing.test.ts)
  const ops = new Set(R.bench.rows.map((x: { op: string }) => x.op));
  t.same([...ops].sort(), ['gatherKV', 'keydiffScores'], 'bench: the selected ops');
  t.ok(R.bench.rows.every((x: { N: number; solFraction: number; medianMs: number }) => x.N === 640 && x.solFraction > 0 && x.medianMs > 0), 'bench rows with % of the speed of light');
  if (py) {
    for (const b of R.bench.rows) t.ok(R.peer.rows.some((p: { op: string; variant: string; N: number }) => p.op === b.op && p.variant === b.variant && p.N === b.N), `PyTorch peer row for ${b.op} ${b.variant}`);
  }
  const kernels = new Set(R.ncu.map((x: { kernel: string }) => /(\w+)\(/.exec(x.kernel)?.[1]));
  t.same([...kernels].sort(), ['anchor_partial_kernel', 'gather_kernel', 'score_kernel'], 'ncu: the memory-bound kernels of the selected ops, from real launches (no baseline kernels)');
  const md = fs.readFileSync(path.join(out, 'gpu-kvtrim-cuda-emulator.md'), 'utf8');
  for (const h of ['# kvtrim gpu:verify — kvtrim CUDA emulator', '## kvtrim check (small', '## compute-sanitizer racecheck', '## kvtrim bench', '## Nsight Compute', '## ptxas (sm_90']) t.match(md, h, `markdown: ${h}`);
  if (py) t.match(md, /\| keydiffScores \| 2 passes \| 640 \|.*\| [\d.]+x \|$/m, 'markdown: kvtrim next to the PyTorch peer');
  fs.rmSync(tmp, { recursive: true, force: true });
});

t.test('gpu:verify stops a hanging step at the deadline and still writes the partial report', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-verify-'));
  const bin = path.join(tmp, 'bin'), results = path.join(tmp, 'results');
  fakeTools(bin, { slowProbe: true });
  // the stand-in probe never ends by itself: that the run returns at all, with the probe 'timeout', is the deadline at work
  const r = await run(process.execPath, [script, '--results', results, '--deadline', '10'], { PATH: `${bin}:${process.env.PATH}` });
  t.equal(r.code, 1);
  const R = readJson(path.join(results, 'gpu-unknown.json'));
  t.equal(R.steps[0].status, 'timeout', 'probe stopped');
  t.ok(R.steps.slice(1).every((s: { status: string }) => s.status === 'skipped'), 'the other steps skipped, with the reason');
  t.match(fs.readFileSync(path.join(results, 'gpu-unknown.md'), 'utf8'), /\*\*partial\*\*/);
  fs.rmSync(tmp, { recursive: true, force: true });
});

t.test('kvtrim info names the minimum driver when the driver is too old (emulated CUDA 13 runtime)', { skip: emuSkip() }, async (t) => {
  const built = await emulatedAddon();
  if ('error' in built) {
    t.fail('the emulated addon builds', { output: built.error });
    return;
  }
  const info = (env: NodeJS.ProcessEnv) => run(process.execPath, ['--import=@tapjs/typescript/import', path.join(root, 'lib', 'cli.ts'), 'info'], { KVTRIM_ADDON: built.addon, ...env });
  const old = await info({ KVTRIM_EMU_RUNTIME: '13000', KVTRIM_EMU_DRIVER: '12040' });
  t.match(old.out, /CUDA\s+: no — the NVIDIA driver is too old \(cudaErrorInsufficientDriver\): it supports CUDA up to 12\.4; this kvtrim binary links the CUDA 13\.0 runtime, which needs an NVIDIA driver R580 or newer/, 'an R5xx driver for CUDA 12.4');
  t.match(old.out, /needs an NVIDIA driver R580 or newer/, 'the compiled line names R580');
  const none = await info({ KVTRIM_EMU_RUNTIME: '13000', KVTRIM_EMU_DRIVER: '0' });
  t.match(none.out, /no NVIDIA driver found \(cudaErrorInsufficientDriver\): this kvtrim binary links the CUDA 13\.0 runtime, which needs an NVIDIA driver R580 or newer/, 'no driver');
  const cuda12 = await info({ KVTRIM_EMU_RUNTIME: '12080', KVTRIM_EMU_DRIVER: '11080' });
  t.match(cuda12.out, /CUDA 12\.8 runtime, which needs an NVIDIA driver R525 or newer/, 'a CUDA 12 runtime needs R525');
  const ok = await info({ KVTRIM_EMU_RUNTIME: '13000', KVTRIM_EMU_DRIVER: '13020' });
  t.match(ok.out, /CUDA\s+: yes/, 'a CUDA 13.2 driver runs the 13.0 runtime');
});
