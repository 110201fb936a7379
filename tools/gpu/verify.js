#!/usr/bin/env node
// @ts-check
// `npm run gpu:verify`: the first thing to run on a machine with a GPU and the CUDA toolchain (README "Verifying on a
// GPU"). In one command, each step under its own time budget and all of them under one deadline (default 470 s, for
// an 8-minute slot): probe the GPU and the tools; build the addon for the local architecture only; `kvtrim check` at
// full size; compute-sanitizer memcheck over `kvtrim check` at small size; `kvtrim bench` (% of the speed of light)
// with the same math in PyTorch timed in the same run as the peer (tools/gpu/torch_peer.py); Nsight Compute's DRAM
// throughput of every memory-bound kernel; racecheck and synccheck at small size. A step that runs past its budget is
// stopped (its process group), recorded as 'timeout', and the run goes on; steps that no longer fit the deadline are
// skipped. The report — JSON and markdown named after the device — is written after every step, so whatever happens
// a partial report is on disk: bench/results/gpu-<device>.{json,md} and, with --out DIR (or KVTRIM_VERIFY_OUT), a
// copy of both plus the step logs in DIR.
//
// Needs Node (on a bare GPU host: `. .gpu/env.sh`, see README), the compiled TypeScript (dist/), CMake and nvcc;
// uses ninja, compute-sanitizer, ncu and a python3 with torch when present (absent tools: their steps are skipped).
// test/gpu-verify.test.ts runs this script on the CUDA emulator with stand-in tools and tiny budgets.
'use strict';
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { parseArgs } = require('util');

const root = path.join(__dirname, '..', '..');

/** Default step budgets (seconds), in run order; the sum exceeds the deadline on purpose: most steps end early. */
const STEPS = /** @type {const} */ ([
  ['probe', 20],
  ['build', 200],
  ['info', 20],
  ['check', 75],
  ['memcheck', 90],
  ['bench', 75],
  ['peer', 60],
  ['ncu', 90],
  ['racecheck', 75],
  ['synccheck', 60],
]);
/** Memory-bound kernels whose DRAM throughput Nsight Compute reads (docs/performance.md §5), by function name. */
const NCU_KERNELS = ['anchor_partial_kernel', 'score_kernel', 'gather_kernel', 'pass1_kernel', 'pass2_kernel', 'snap_kernel', 'partial_kernel', 'segment_kernel'];
/** The bench ops whose kernels those are. */
const NCU_OPS = ['keydiffScores', 'gatherKV', 'nestedkvScores', 'snapkvScores', 'decodeAttention', 'MomentState.merge'];
const NCU_METRICS = ['dram__throughput.avg.pct_of_peak_sustained_elapsed', 'gpu__time_duration.sum', 'dram__bytes.sum'];

function options(/** @type {string[]} */ argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      results: { type: 'string' },
      addon: { type: 'string' },
      'build-dir': { type: 'string' },
      deadline: { type: 'string' },
      budget: { type: 'string', multiple: true },
      steps: { type: 'string' },
      'check-op': { type: 'string' },
      'check-size': { type: 'string' },
      'bench-op': { type: 'string' },
      'bench-N': { type: 'string' },
      'bench-repeats': { type: 'string' },
      python: { type: 'string' },
      'peer-device': { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(`Usage: node tools/gpu/verify.js [--out DIR] [--results DIR] [--addon FILE | --build-dir DIR] [--deadline S]
                 [--budget STEP=S ...] [--steps a,b,...] [--check-op OPS] [--check-size full|small] [--bench-op OPS]
                 [--bench-N N] [--bench-repeats R] [--python PY] [--peer-device cuda|cpu] [--seed S]
Steps: ${STEPS.map(([s, b]) => `${s} (${b} s)`).join(', ')}.
--out DIR (or KVTRIM_VERIFY_OUT): copy the report and the step logs there too (e.g. $OUT on a lent device).
--addon FILE: use this addon, skip the build. --deadline: seconds for the whole run (default 470).
KVTRIM_COMMIT: the commit to name in the report where the copy of the tree has no .git.`);
    process.exit(0);
  }
  /** @type {Record<string, number>} */
  const budgets = Object.fromEntries(STEPS);
  for (const b of values.budget ?? []) {
    for (const kv of b.split(',')) {
      const [k, v] = kv.split('=');
      if (!(k in budgets) || !(Number(v) > 0)) throw new RangeError(`--budget: expected STEP=SECONDS with STEP one of ${STEPS.map((s) => s[0]).join(', ')}, got '${kv}'`);
      budgets[k] = Number(v);
    }
  }
  const steps = values.steps ? values.steps.split(',').map((s) => s.trim()) : STEPS.map((s) => s[0]);
  for (const s of steps) if (!(s in budgets)) throw new RangeError(`--steps: unknown step '${s}'`);
  const size = values['check-size'] ?? 'full';
  if (size !== 'full' && size !== 'small') throw new RangeError(`--check-size: expected full or small, got '${size}'`);
  const peerDevice = values['peer-device'] ?? 'cuda';
  if (peerDevice !== 'cuda' && peerDevice !== 'cpu') throw new RangeError(`--peer-device: expected cuda or cpu, got '${peerDevice}'`);
  return {
    out: values.out ?? process.env.KVTRIM_VERIFY_OUT ?? '',
    results: path.resolve(values.results ?? path.join(root, 'bench', 'results')),
    addon: values.addon ? path.resolve(values.addon) : '',
    buildDir: path.resolve(values['build-dir'] ?? path.join(root, 'build-gpu')),
    deadline: Number(values.deadline ?? 470),
    budgets,
    steps: new Set(steps),
    checkOp: values['check-op'] ?? '',
    checkSize: size,
    benchOp: values['bench-op'] ?? '',
    benchN: Number(values['bench-N'] ?? 32768),
    benchRepeats: values['bench-repeats'] ? Number(values['bench-repeats']) : 0,
    python: values.python ?? '',
    peerDevice,
    seed: Number(values.seed ?? Math.floor(Math.random() * 2 ** 31)),
  };
}

const have = (/** @type {string} */ cmd) => spawnSync('sh', ['-c', `command -v "${cmd}"`], { stdio: 'ignore' }).status === 0;

/** "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3". */
function slug(/** @type {string} */ name) {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '') || 'unknown-device';
}

/**
 * Runs a command in its own process group with a time budget; output goes to `log`. Resolves with the exit code
 * (null when killed), whether the budget ran out, the seconds taken and the output (last 1 MB).
 * @param {string} cmd @param {string[]} args @param {{ env?: NodeJS.ProcessEnv, budget: number, log: string, cwd?: string }} o
 * @returns {Promise<{ code: number | null, timedOut: boolean, seconds: number, out: string }>}
 */
function runBudgeted(cmd, args, o) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const fd = fs.openSync(o.log, 'a');
    fs.writeSync(fd, `$ ${[cmd, ...args].join(' ')}\n`);
    let out = '';
    let timedOut = false;
    /** @type {import('child_process').ChildProcess} */
    let p;
    try {
      p = spawn(cmd, args, { cwd: o.cwd ?? root, env: o.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      fs.closeSync(fd);
      resolve({ code: 127, timedOut: false, seconds: 0, out: String(e) });
      return;
    }
    const take = (/** @type {Buffer} */ d) => {
      fs.writeSync(fd, d);
      out += d.toString();
      if (out.length > 2 ** 20) out = out.slice(-(2 ** 20));
    };
    p.stdout?.on('data', take);
    p.stderr?.on('data', take);
    const kill = (/** @type {NodeJS.Signals} */ sig) => {
      try {
        if (p.pid) process.kill(-p.pid, sig);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      setTimeout(() => kill('SIGKILL'), 3000).unref();
    }, Math.max(1, o.budget) * 1000);
    p.on('error', (e) => take(Buffer.from(`\n${e.message}\n`)));
    p.on('close', (code) => {
      clearTimeout(timer);
      const seconds = (Date.now() - t0) / 1000;
      fs.writeSync(fd, `\n[exit ${code}${timedOut ? ', stopped at the budget' : ''}, ${seconds.toFixed(1)} s]\n`);
      fs.closeSync(fd);
      resolve({ code: p.exitCode ?? code, timedOut, seconds, out });
    });
  });
}

/** Lines of `kvtrim check --jsonl` output: the check rows and the summary, whatever completed. */
function parseCheckLines(/** @type {string} */ out) {
  const rows = [];
  let summary = null;
  let header = null;
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line);
      if (j.row) rows.push(j.row);
      else if (j.done) summary = j;
      else if (j.seed !== undefined) header = j;
    } catch {
      /* not a JSON line (sanitizer output interleaved) */
    }
  }
  return { header, rows, summary };
}

/** compute-sanitizer's summary: "ERROR SUMMARY: N errors" or "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)". */
function parseSanitizer(/** @type {string} */ out) {
  const m = /ERROR SUMMARY: (\d+) error/.exec(out);
  const r = /RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)/.exec(out);
  const lines = out.split('\n').filter((l) => /^=========\s+(Invalid|Error|Race|Barrier|Program hit|Warning|ERROR|.*hazard)/i.test(l));
  return {
    errors: r ? Number(r[2]) : m ? Number(m[1]) : null,
    warnings: r ? Number(r[3]) : null,
    findings: lines.slice(0, 40),
  };
}

/** Nsight Compute `--csv --page raw` output: one row per profiled kernel launch, the requested metrics as numbers. */
function parseNcu(/** @type {string} */ out) {
  const lines = out.split('\n').filter((l) => l.startsWith('"'));
  if (lines.length < 2) return [];
  const cells = (/** @type {string} */ l) => [...l.matchAll(/"((?:[^"]|"")*)"/g)].map((m) => m[1].replace(/""/g, '"'));
  const header = cells(lines[0]);
  const col = (/** @type {string} */ name) => header.findIndex((h) => h === name);
  const iName = col('Kernel Name'), iGrid = col('Grid Size'), iBlock = col('Block Size');
  const rows = [];
  for (const l of lines.slice(1)) {
    const c = cells(l);
    if (c.length !== header.length || !/^\d+$/.test(c[0] ?? '')) continue;  // the units row has no launch ID
    /** @type {Record<string, number>} */
    const metrics = {};
    for (const m of NCU_METRICS) {
      const i = col(m);
      if (i >= 0) metrics[m] = Number(String(c[i]).replace(/,/g, ''));
    }
    rows.push({ kernel: iName >= 0 ? c[iName] : '?', grid: iGrid >= 0 ? c[iGrid] : '', block: iBlock >= 0 ? c[iBlock] : '', metrics });
  }
  return rows;
}

/** A python3 that imports torch, or ''. */
function findTorchPython(/** @type {string} */ given) {
  for (const py of given ? [given] : ['python3', '/usr/bin/python3', 'python']) {
    const r = spawnSync(py, ['-c', 'import torch, sys; sys.stdout.write(torch.__version__)'], { encoding: 'utf8', timeout: 60000 });
    if (r.status === 0) return py;
  }
  return '';
}

/** The markdown report. */
function markdown(/** @type {any} */ R) {
  const L = [];
  const fx = (/** @type {number | undefined | null} */ x, d = 2) => (x === undefined || x === null || !Number.isFinite(x) ? '-' : x.toFixed(d));
  L.push(`# kvtrim gpu:verify — ${R.device.name}`, '');
  L.push(`${R.started} · commit ${R.commit} · driver ${R.device.driver} · compute capability ${R.device.computeCap} · nvcc ${R.tools.nvcc ?? '-'} · ${R.complete ? 'complete' : '**partial** (see the steps)'}`, '');
  L.push('| step | status | seconds | budget | note |', '|---|---|---|---|---|');
  for (const s of R.steps) L.push(`| ${s.name} | ${s.status} | ${fx(s.seconds, 1)} | ${s.budget ?? '-'} | ${(s.note ?? '').replace(/\|/g, '/')} |`);
  if (R.check) {
    L.push('', `## kvtrim check (${R.check.size}, seed ${R.check.seed})`, '', `${R.check.passed} passed, ${R.check.failed} failed${R.check.complete ? '' : ' (cut short)'}.`);
    const bad = R.check.rows.filter((/** @type {any} */ r) => !r.pass);
    if (bad.length) {
      L.push('', '| op | config | error | tolerance | detail |', '|---|---|---|---|---|');
      for (const r of bad) L.push(`| ${r.op} | ${r.config} | ${r.error} | ${r.tolerance} | ${r.detail ?? ''} |`);
    }
  }
  for (const tool of ['memcheck', 'racecheck', 'synccheck']) {
    const s = R.sanitizer?.[tool];
    if (!s) continue;
    L.push('', `## compute-sanitizer ${tool}`, '', `errors: ${s.errors ?? 'unknown'}${s.warnings !== null && s.warnings !== undefined ? `, warnings: ${s.warnings}` : ''}; checks completed: ${s.checks}`);
    for (const f of s.findings) L.push(`    ${f}`);
  }
  if (R.bench) {
    L.push('', `## kvtrim bench (${R.bench.device}; copy bandwidth ${fx(R.bench.bandwidthGBs, 1)} GB/s; median of ${R.bench.repeats})`, '');
    L.push('| op | variant | N | median ms | GB/s | % SoL | baseline | speedup | PyTorch peer ms | vs PyTorch |', '|---|---|---|---|---|---|---|---|---|---|');
    for (const r of R.bench.rows) {
      const p = R.peer?.rows?.find((/** @type {any} */ x) => x.op === r.op && x.variant === r.variant && x.N === r.N);
      L.push(`| ${r.op} | ${r.variant} | ${r.N} | ${fx(r.medianMs, 3)} | ${fx(r.gbps, 1)} | ${fx(100 * r.solFraction, 1)} | ${r.baseline ? `${r.baseline.name} ${fx(r.baseline.medianMs, 3)} ms` : '-'} | ${r.baseline ? `${fx(r.baseline.speedup, 1)}x` : '-'} | ${p ? fx(p.medianMs, 3) : '-'} | ${p ? `${fx(p.medianMs / r.medianMs, 1)}x` : '-'} |`);
    }
    if (R.peer) L.push('', `PyTorch peer: torch ${R.peer.torch} on ${R.peer.device}; the same functions written in PyTorch (tools/gpu/torch_peer.py), timed with CUDA events in the same run.`);
  }
  if (R.ncu?.length) {
    L.push('', '## Nsight Compute: DRAM throughput of the memory-bound kernels', '', '| kernel | grid | block | µs | DRAM % of peak | DRAM MB |', '|---|---|---|---|---|---|');
    for (const r of R.ncu) {
      const m = r.metrics;
      L.push(`| ${r.kernel.slice(0, 110)} | ${r.grid} | ${r.block} | ${fx(m['gpu__time_duration.sum'] / 1e3, 1)} | ${fx(m['dram__throughput.avg.pct_of_peak_sustained_elapsed'], 1)} | ${fx(m['dram__bytes.sum'] / 1e6, 1)} |`);
    }
  }
  if (R.ptxas?.length) {
    const spills = R.ptxas.filter((/** @type {any} */ k) => k.spillStores || k.stack);
    L.push('', `## ptxas (${R.ptxasArch}, this machine's nvcc)`, '', `${R.ptxas.length} kernel variants; ${spills.length} with a stack frame or spills${spills.length ? ': ' + spills.map((/** @type {any} */ k) => `${k.file} ${k.kernel}<${k.args.join(', ')}> ${k.stack} B`).join('; ') : ''}.`);
  }
  return L.join('\n') + '\n';
}

/** Appends the usual CUDA and Nsight Compute locations to PATH when the tools are not on it already. */
function toolPath() {
  const extra = ['/usr/local/cuda/bin'];
  const nsight = '/opt/nvidia/nsight-compute';
  if (fs.existsSync(nsight)) for (const v of fs.readdirSync(nsight).sort().reverse()) extra.push(path.join(nsight, v));
  for (const [tool, dirs] of /** @type {const} */ ([['nvcc', extra], ['compute-sanitizer', extra], ['ncu', extra]])) {
    if (have(tool)) continue;
    const dir = dirs.find((dd) => fs.existsSync(path.join(dd, tool)));
    if (dir) process.env.PATH = `${process.env.PATH}:${dir}`;
  }
}

async function main() {
  const o = options(process.argv.slice(2));
  toolPath();
  const t0 = Date.now();
  const left = () => o.deadline - (Date.now() - t0) / 1000;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-verify-'));
  const logAll = path.join(work, 'steps.log');
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  /** @type {any} */
  const R = {
    kvtrimVerify: 1,
    started: new Date().toISOString(),
    commit: commit.status === 0 ? commit.stdout.trim() : process.env.KVTRIM_COMMIT ?? 'unknown',
    deadline: o.deadline,
    device: { name: 'unknown', computeCap: '', driver: '', memory: '' },
    tools: {},
    steps: [],
    complete: false,
  };
  let addon = o.addon;
  const cli = path.join(root, 'dist', 'cli.js');
  const nodeEnv = (/** @type {Record<string, string>} */ extra = {}) => ({ ...process.env, KVTRIM_ADDON: addon, KVTRIM_BACKEND: 'cuda', ...extra });
  const names = () => {
    const base = `gpu-${slug(R.device.name)}`;
    return { json: `${base}.json`, md: `${base}.md` };
  };
  const write = () => {
    const n = names();
    const md = markdown(R);
    for (const dir of [o.results, o.out].filter((d) => d)) {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, n.json), JSON.stringify(R, null, 2) + '\n');
      fs.writeFileSync(path.join(dir, n.md), md);
    }
    if (o.out && fs.existsSync(logAll)) {
      // at most 15 MB (a lent device returns files of up to 16 MB): the end of the log
      const size = fs.statSync(logAll).size, cap = 15 * 2 ** 20;
      if (size <= cap) fs.copyFileSync(logAll, path.join(o.out, 'gpu-verify-steps.log'));
      else {
        const buf = Buffer.alloc(cap), fd = fs.openSync(logAll, 'r');
        fs.readSync(fd, buf, 0, cap, size - cap);
        fs.closeSync(fd);
        fs.writeFileSync(path.join(o.out, 'gpu-verify-steps.log'), buf);
      }
    }
  };
  /** Runs one step: `fn` gets its budget and returns { status, note }. */
  const step = async (/** @type {string} */ name, /** @type {(budget: number) => Promise<{ status: string, note?: string }>} */ fn, skipWhy = '') => {
    const budget = o.budgets[name];
    const rec = { name, status: 'skipped', seconds: 0, budget, note: '' };
    R.steps.push(rec);
    const b = Math.min(budget, left() - 5);
    if (!o.steps.has(name)) rec.note = 'not selected';
    else if (skipWhy) rec.note = skipWhy;
    else if (b < 3) rec.note = `no time left before the ${o.deadline} s deadline`;
    else {
      const s0 = Date.now();
      try {
        Object.assign(rec, await fn(b));
      } catch (e) {
        rec.status = 'error';
        rec.note = e instanceof Error ? e.message : String(e);
      }
      rec.seconds = (Date.now() - s0) / 1000;
      if (b < budget && rec.status === 'timeout') rec.note = `${rec.note ? rec.note + '; ' : ''}cut to ${b.toFixed(0)} s by the deadline`;
    }
    console.log(`[gpu:verify] ${name}: ${rec.status}${rec.note ? ` (${rec.note})` : ''} ${rec.seconds.toFixed(1)} s`);
    write();
    return rec;
  };
  const run = (/** @type {string} */ cmd, /** @type {string[]} */ args, /** @type {number} */ budget, /** @type {NodeJS.ProcessEnv | undefined} */ env = undefined) =>
    runBudgeted(cmd, args, { budget, env, log: logAll });
  const verdict = (/** @type {{ code: number | null, timedOut: boolean }} */ r, ok = r.code === 0) =>
    r.timedOut ? 'timeout' : ok ? 'ok' : 'fail';

  // 1. probe: the device and the tools
  await step('probe', async (b) => {
    const r = await run('nvidia-smi', ['--query-gpu=name,compute_cap,driver_version,memory.total', '--format=csv,noheader'], b);
    const first = r.out.split('\n').find((l) => l.includes(','));
    if (r.code !== 0 || !first) return { status: verdict(r, false), note: 'nvidia-smi failed' };
    const [name, cc, driver, memory] = first.split(',').map((x) => x.trim());
    R.device = { name, computeCap: cc, driver, memory };
    for (const [tool, args] of /** @type {const} */ ([['nvcc', ['--version']], ['cmake', ['--version']], ['ninja', ['--version']], ['compute-sanitizer', ['--version']], ['ncu', ['--version']]])) {
      const v = spawnSync(tool, [...args], { encoding: 'utf8', timeout: 20000 });
      R.tools[tool] = v.status === 0 ? (/(?:V|version |release )(\d+[\d.]*)/.exec(v.stdout) ?? [])[1] ?? 'yes' : null;
    }
    R.tools.node = process.versions.node;
    return { status: 'ok', note: `${name}, sm_${cc.replace('.', '')}` };
  });
  const cc = R.device.computeCap.replace('.', '');

  // 2. build for the local architecture only
  await step(
    'build',
    async (b) => {
      const nm = path.join(root, 'node_modules');
      const gen = R.tools.ninja ? ['-G', 'Ninja'] : [];
      const cfg = await run('cmake', ['-S', root, '-B', o.buildDir, ...gen, '-DCMAKE_BUILD_TYPE=Release', `-DKVTRIM_CUDA_ARCHS=${cc}-real`,
        `-DCMAKE_JS_INC=${path.join(nm, 'node-api-headers', 'include')};${path.join(nm, 'node-addon-api')}`,
        `-DNODE_ADDON_API_DIR=${path.join(nm, 'node-addon-api')}`, `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${path.join(o.buildDir, 'Release')}`], b);
      if (cfg.code !== 0) return { status: verdict(cfg), note: 'cmake configure failed' };
      const r = await run('cmake', ['--build', o.buildDir, '-j', String(Math.max(1, os.cpus().length))], b - cfg.seconds);
      addon = path.join(o.buildDir, 'Release', 'kvtrim.node');
      if (r.code !== 0 || !fs.existsSync(addon)) return { status: verdict(r, false), note: 'build failed' };
      // this machine's ptxas report for its architecture (tools/gpu/ptxas-log.js wrote it during the build)
      try {
        const px = require('./ptxas.js');
        const docs = fs.readFileSync(path.join(root, 'docs', 'performance.md'), 'utf8');
        R.ptxasArch = `sm_${cc}`;
        R.ptxas = px.budgetRows(px.readLogs(path.join(o.buildDir, 'ptxas')), px.budgetTable(docs), R.ptxasArch);
      } catch (e) {
        R.ptxasError = e instanceof Error ? e.message : String(e);
      }
      return { status: 'ok', note: `sm_${cc} only, ${(fs.statSync(addon).size / 2 ** 20).toFixed(1)} MB` };
    },
    o.addon ? '--addon given' : !cc ? 'no device probed' : '',
  );
  const haveAddon = !!addon && fs.existsSync(addon);

  // 3. the addon sees the GPU
  let cudaOk = false;
  await step(
    'info',
    async (b) => {
      const r = await run(process.execPath, [cli, 'info', '--json'], b, nodeEnv({ KVTRIM_BACKEND: 'auto' }));
      const j = JSON.parse(r.out.slice(r.out.indexOf('{')));
      R.backend = { cuda: j.cuda, reason: j.reason, versions: j.versions, devices: j.devices };
      cudaOk = j.cuda === true;
      return { status: cudaOk ? 'ok' : 'fail', note: cudaOk ? `CUDA runtime ${j.versions.cudaRuntime}, driver ${j.versions.cudaDriver}` : `no CUDA: ${j.reason}` };
    },
    haveAddon ? '' : 'no addon',
  );
  const gpuSkip = cudaOk ? '' : 'CUDA is not usable (info)';

  // 4. kvtrim check at full size
  const checkArgs = ['check', '--jsonl', '--seed', String(o.seed), ...(o.checkOp ? ['--op', o.checkOp] : [])];
  await step(
    'check',
    async (b) => {
      const r = await run(process.execPath, [cli, ...checkArgs], b, nodeEnv({ KVTRIM_CHECK_SIZE: o.checkSize }));
      const c = parseCheckLines(r.out);
      const failed = c.rows.filter((x) => !x.pass).length;
      R.check = { size: c.header?.size ?? o.checkSize, seed: o.seed, rows: c.rows, passed: c.rows.length - failed, failed, complete: !!c.summary };
      return { status: verdict(r, r.code === 0 && !!c.summary && failed === 0), note: `${c.rows.length - failed} passed, ${failed} failed${c.summary ? '' : ', cut short'}` };
    },
    gpuSkip,
  );

  // 5-. compute-sanitizer over the check at small size
  const sanitizer = async (/** @type {string} */ tool, /** @type {number} */ b) => {
    const args = ['--tool', tool, '--error-exitcode', '86', '--print-limit', '50', ...(tool === 'memcheck' ? ['--leak-check', 'no'] : []),
      process.execPath, cli, ...checkArgs];
    const r = await run('compute-sanitizer', args, b, nodeEnv({ KVTRIM_CHECK_SIZE: 'small' }));
    const s = parseSanitizer(r.out);
    const c = parseCheckLines(r.out);
    R.sanitizer = R.sanitizer ?? {};
    R.sanitizer[tool] = { ...s, checks: `${c.rows.length}${c.summary ? '' : ' (cut short)'}`, exit: r.code };
    const clean = r.code === 0 && s.errors === 0;
    return { status: verdict(r, clean), note: `${s.errors ?? '?'} errors, ${c.rows.length} checks${c.summary ? '' : ' (cut short)'}` };
  };
  const noSan = R.tools['compute-sanitizer'] ? '' : 'compute-sanitizer not found';
  await step('memcheck', (b) => sanitizer('memcheck', b), gpuSkip || noSan);

  // kvtrim bench at the bench shape, then the PyTorch peer at the same shapes
  const benchN = String(o.benchN);
  const benchJson = path.join(work, 'bench.json');
  await step(
    'bench',
    async (b) => {
      const args = [cli, 'bench', '--N', benchN, '--json', benchJson, ...(o.benchOp ? ['--op', o.benchOp] : []), ...(o.benchRepeats ? ['--repeats', String(o.benchRepeats)] : [])];
      const r = await run(process.execPath, args, b, nodeEnv());
      if (fs.existsSync(benchJson)) R.bench = JSON.parse(fs.readFileSync(benchJson, 'utf8'));
      return { status: verdict(r, r.code === 0 && !!R.bench), note: R.bench ? `${R.bench.rows.length} cases, copy bandwidth ${R.bench.bandwidthGBs.toFixed(0)} GB/s` : 'no report' };
    },
    gpuSkip,
  );
  await step(
    'peer',
    async (b) => {
      const py = findTorchPython(o.python);
      if (!py) return { status: 'skipped', note: 'no python3 with torch' };
      const peerJson = path.join(work, 'peer.json');
      const args = [path.join(__dirname, 'torch_peer.py'), '--N', benchN, '--H', String(R.bench?.rows?.[0]?.H ?? 8), '--d', String(R.bench?.rows?.[0]?.d ?? 128),
        '--device', o.peerDevice, '--json', peerJson, ...(o.benchOp ? ['--op', o.benchOp] : []), ...(o.benchRepeats ? ['--repeats', String(o.benchRepeats)] : [])];
      const r = await run(py, args, b, { ...process.env, PYTHONUNBUFFERED: '1' });
      if (fs.existsSync(peerJson)) R.peer = JSON.parse(fs.readFileSync(peerJson, 'utf8'));
      return { status: verdict(r, r.code === 0 && !!R.peer), note: R.peer ? `${R.peer.rows.length} ops, torch ${R.peer.torch}` : 'no report' };
    },
    o.peerDevice === 'cuda' ? gpuSkip : '',
  );

  // Nsight Compute: DRAM throughput of each memory-bound kernel, one launch each (no warm-up, one repeat)
  await step(
    'ncu',
    async (b) => {
      const ops = o.benchOp ? o.benchOp : NCU_OPS.join(',');
      const args = ['--csv', '--page', 'raw', '--clock-control', 'none', '--metrics', NCU_METRICS.join(','), '--kernel-name', `regex:(^|[^A-Za-z0-9_])(${NCU_KERNELS.join('|')})([^A-Za-z0-9_]|$)`,
        '--launch-count', '60', process.execPath, cli, 'bench', '--N', benchN, '--repeats', '1', '--warmup', '0', '--op', ops, '--json', path.join(work, 'ncu-bench.json')];
      const r = await run('ncu', args, b, nodeEnv());
      R.ncu = parseNcu(r.out);
      return { status: verdict(r, r.code === 0 && R.ncu.length > 0), note: `${R.ncu.length} kernel launches profiled` };
    },
    gpuSkip || (R.tools.ncu ? '' : 'ncu not found'),
  );
  await step('racecheck', (b) => sanitizer('racecheck', b), gpuSkip || noSan);
  await step('synccheck', (b) => sanitizer('synccheck', b), gpuSkip || noSan);

  R.seconds = (Date.now() - t0) / 1000;
  R.complete = R.steps.every((/** @type {any} */ s) => s.status === 'ok' || (s.status === 'skipped' && /not selected|not found|no python3|--addon given/.test(s.note)));
  write();
  const n = names();
  console.log(`[gpu:verify] ${R.complete ? 'complete' : 'PARTIAL or FAILED'} in ${R.seconds.toFixed(0)} s: ${path.join(o.results, n.json)}, ${n.md}${o.out ? ` (and in ${o.out})` : ''}`);
  for (const s of R.steps) console.log(`  ${s.name.padEnd(10)} ${s.status.padEnd(8)} ${s.seconds.toFixed(1).padStart(6)} s  ${s.note}`);
  process.exitCode = R.complete ? 0 : 1;
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`gpu:verify: ${e instanceof Error ? e.stack : String(e)}`);
    process.exitCode = 2;
  });
}

module.exports = { parseNcu, parseSanitizer, parseCheckLines, slug, runBudgeted, markdown, STEPS, NCU_KERNELS };
