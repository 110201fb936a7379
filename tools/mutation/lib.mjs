#!/usr/bin/env node
// Mutation testing of the TypeScript layer (lib/) with StrykerJS and its tap runner (tools/mutation/README.md).
//
//   node tools/mutation/lib.mjs run [--seed S] [--lines K] [--dir D]   a seeded sample of K code lines of lib/ (every
//                                                                       mutant Stryker makes on them), run by Stryker
//   node tools/mutation/lib.mjs run --only F:L[,F:L...] [--dir D]       those lines only (a sample's survivors again)
//   node tools/mutation/lib.mjs report [--dir D[,D2...]]               bench/results/mutation-lib.json from its report;
//                                                                       several runs: the union of their samples, a mutant
//                                                                       tested again in a later run (e.g. the survivors'
//                                                                       lines after new tests) taking that run's verdict
//
// The sample is uniform over code lines (not blank, not a comment, not an import or a type declaration) of the
// files of lib/; Stryker mutates exactly those lines (`mutate` lists each as `file:L-L`). Tests: every test file of
// test/ except those that never load lib/ from source or only run other programs (packaging, the emulator build,
// the PyTorch capture, the examples and the native library's loader, which load dist/; gpu:verify, whose steps have
// time budgets; the Python client; cpu-isa, which reruns other suites at other instruction sets) and the long
// end-to-end files (listed in SLOW below); a mutant only those would kill counts as survived. Each test file runs
// under node with tap's TypeScript loader; Stryker's per-test coverage runs only the files that reach a mutant.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { seededSample } from './seeded.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? def : args[i + 1];
};
const dirs = opt('dir', 'build-stryker').split(',').map((d) => path.resolve(root, d));
const dir = dirs[0];
const seed = Number(opt('seed', '17')), count = Number(opt('lines', '100'));

// Test files not used: they load dist/ or other programs, or take minutes end to end (kill power for lib/ is in the
// unit tests; the ops behind these are mutated natively).
// (citations lists files with `git ls-files`, which sees nothing inside Stryker's sandbox under the ignored build-*)
const EXCLUDED = ['cuda-emu', 'packaging', 'capture', 'examples', 'citations', 'gpu-verify', 'native-library', 'python-client', 'cpu-isa'];
const SLOW = ['grkv-ref16k', 'grkv-heldout', 'decode-fidelity', 'momentkv_select-realistic', 'nestedkv-ref', 'grkv-ref'];

function walk(d) {
  return fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
}

/** Code lines of lib/: [file, line] pairs, sorted. */
export function codeLines() {
  const out = [];
  for (const abs of walk(path.join(root, 'lib')).filter((f) => f.endsWith('.ts')).sort()) {
    const file = path.relative(root, abs);
    const lines = fs.readFileSync(abs, 'utf8').split('\n');
    let inComment = false, inType = 0;
    lines.forEach((l, k) => {
      const s = l.trim();
      if (inComment) {
        if (s.includes('*/')) inComment = false;
        return;
      }
      if (s.startsWith('/*')) {
        if (!s.includes('*/')) inComment = true;
        return;
      }
      // type-only declarations (interfaces, type aliases) have no runtime code
      if (inType > 0) {
        inType += (s.match(/\{/g) ?? []).length - (s.match(/\}/g) ?? []).length;
        return;
      }
      if (/^(export\s+)?(interface|type)\s/.test(s) || /^declare\s/.test(s)) {
        inType = (s.match(/\{/g) ?? []).length - (s.match(/\}/g) ?? []).length;
        return;
      }
      if (!s || s.startsWith('//') || s.startsWith('*') || /^import\s/.test(s) || /^export\s+(\*|\{[^}]*\})\s+from\s/.test(s) || /^[})\];,]+$/.test(s)) return;
      out.push([file, k + 1]);
    });
  }
  return out;
}

function sample(items, n) {
  return seededSample(items, seed, n).sort((x, y) => x[0].localeCompare(y[0]) || x[1] - y[1]);
}

// Stryker runs the files covering a mutant in this order and stops at the first failure: fast unit tests first.
const FIRST = ['tensor', 'bad-input', 'defaults', 'methods', 'rng', 'io', 'dump-positions', 'backend', 'ref-compare', 'select', 'keydiff',
  'decode', 'moments', 'decode-bad-input', 'moments-bad-input', 'momentkv_select-bad-input', 'grkv-bad-input', 'momentkv_select', 'spd', 'compress'];

function testFiles() {
  const rank = (f) => {
    const k = FIRST.indexOf(f.replace(/^test\//, '').replace(/\.test\.ts$/, ''));
    return k < 0 ? FIRST.length : k;
  };
  return fs.readdirSync(path.join(root, 'test'))
    .filter((f) => f.endsWith('.test.ts'))
    .filter((f) => ![...EXCLUDED, ...SLOW].includes(f.replace(/\.test\.ts$/, '')))
    .map((f) => `test/${f}`)
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function run() {
  const lines = codeLines();
  const only = opt('only', '');
  const picked = only ? only.split(',').map((x) => [x.slice(0, x.lastIndexOf(':')), Number(x.slice(x.lastIndexOf(':') + 1))]) : sample(lines, count);
  fs.mkdirSync(dir, { recursive: true });
  const addon = process.env.KVTRIM_ADDON ?? path.join(root, 'build/Release/kvtrim.node');
  if (!fs.existsSync(addon)) throw new Error(`no addon at ${addon}: build it (npx cmake-js compile -O build --CDKVTRIM_CUDA=OFF) or set KVTRIM_ADDON`);
  const config = {
    testRunner: 'tap',
    plugins: ['@stryker-mutator/tap-runner'],
    mutate: picked.map(([f, l]) => `${f}:${l}-${l}`),
    tap: { testFiles: testFiles(), nodeArgs: ['--import=@tapjs/typescript/import', '{{testFile}}'], forceBail: true },
    coverageAnalysis: 'perTest',
    // a mutant of module-level code runs when a module loads, before any test: it would need every test file
    ignoreStatic: true,
    concurrency: 1,
    timeoutMS: 120000,
    dryRunTimeoutMinutes: 180,
    timeoutFactor: 3,
    disableTypeChecks: 'lib/**/*.ts',
    // event-recorder: one file per tested mutant, so a run stopped before its end still has its verdicts
    reporters: ['json', 'clear-text', 'progress-append-only', 'event-recorder'],
    jsonReporter: { fileName: path.relative(root, path.join(dir, 'report.json')) },
    eventReporter: { baseDir: path.relative(root, path.join(dir, 'events')) },
    tempDirName: path.relative(root, path.join(dir, 'tmp')),
    ignorePatterns: ['/build*', '/prebuilds', '/coverage', '/.tap', '/bench-out', '/kvtrim-eval', '/dist', '/types', '/reports'],
    cleanTempDir: 'always',
  };
  const cfgFile = path.join(dir, 'stryker.config.json');
  fs.writeFileSync(cfgFile, JSON.stringify(config, null, 1));
  fs.rmSync(path.join(dir, 'report.json'), { force: true });
  fs.writeFileSync(path.join(dir, 'sample.json'), JSON.stringify({ seed: only ? null : seed, lines: picked.length, population: lines.length, picked, ...(only ? { only: true } : {}) }, null, 1));
  console.log(`lib/: ${lines.length} code lines; ${only ? 'lines given' : `sample (seed ${seed})`}: ${picked.length}; ${config.tap.testFiles.length} test files`);
  // reduced sizes (KVTRIM_TEST_QUICK=1): the sizes of op tests matter to kernels, not to the TypeScript layer
  const env = { ...process.env, KVTRIM_ADDON: path.resolve(addon), KVTRIM_BACKEND: 'cpu', TS_NODE_TRANSPILE_ONLY: '1', TAP_TIMEOUT: '900', KVTRIM_TEST_QUICK: '1' };
  const r = spawnSync(process.execPath, [path.join(root, 'node_modules/@stryker-mutator/core/bin/stryker.js'), 'run', cfgFile], { cwd: root, env, stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
}

/**
 * The run's results: Stryker's JSON report when the run finished, else (a run stopped early) the mutants the event
 * recorder saw tested, in the report's shape ({ files: { [file]: { source, mutants } } }), and how many were planned.
 */
function results(dir) {
  const full = path.join(dir, 'report.json');
  if (fs.existsSync(full)) {
    const rep = JSON.parse(fs.readFileSync(full, 'utf8'));
    return { rep, planned: Object.values(rep.files).reduce((a, f) => a + f.mutants.length, 0), complete: true };
  }
  const ev = path.join(dir, 'events');
  const names = fs.existsSync(ev) ? fs.readdirSync(ev).sort() : [];
  const read = (n) => JSON.parse(fs.readFileSync(path.join(ev, n), 'utf8'));
  const plan = names.find((n) => n.endsWith('-onMutationTestingPlanReady.json'));
  if (!plan) throw new Error(`no ${full} and no event files under ${ev}: run first`);
  const planned = read(plan).mutantPlans.length;
  const files = {};
  for (const n of names.filter((x) => x.endsWith('-onMutantTested.json'))) {
    const m = read(n);
    const file = path.relative(root, path.resolve(root, m.fileName));
    files[file] ??= { source: fs.readFileSync(path.join(root, file), 'utf8'), mutants: [] };
    files[file].mutants.push(m);
  }
  return { rep: { files }, planned, complete: false };
}

function report() {
  const runs = dirs.map((d) => ({ dir: d, ...results(d), s: JSON.parse(fs.readFileSync(path.join(d, 'sample.json'), 'utf8')) }));
  const notes = readJson(path.join(root, 'tools/mutation/survivors-lib.json'));
  const eq = readJson(path.join(root, 'tools/mutation/equivalent-lib.json'));
  const byKey = new Map();
  runs.forEach(({ rep }, r) => {
    for (const [file, f] of Object.entries(rep.files)) {
      const lines = f.source.split('\n');
      for (const m of f.mutants) {
        const l = m.location.start.line;
        const key = `${file}:${l}:${m.mutatorName}:${m.replacement ?? ''}`;
        const o = { id: m.id, where: `${file}:${l}`, mutator: m.mutatorName, original: lines[l - 1].trim(), replacement: m.replacement, status: m.status, run: r };
        if (m.status === 'Killed' || m.status === 'Timeout') Object.assign(o, { killedBy: m.killedBy, detail: m.statusReason?.slice(0, 240) });
        if (m.status === 'Survived' || m.status === 'NoCoverage') {
          if (eq[key]) {
            o.status = 'Equivalent';
            o.argument = eq[key];
          } else {
            o.reason = notes[key] ?? 'unexplained';
          }
          o.key = key;
        }
        byKey.set(`${key}:${m.location.start.column}`, o);
      }
    }
  });
  const mutants = [...byKey.values()];
  const n = (st) => mutants.filter((m) => m.status === st).length;
  const killed = n('Killed') + n('Timeout'), survived = n('Survived') + n('NoCoverage');
  const k = killed + survived;
  const z = 1.959964, p = k ? killed / k : 0;
  const c = (p + z * z / (2 * k)) / (1 + z * z / k), h = (z / (1 + z * z / k)) * Math.sqrt(p * (1 - p) / k + z * z / (4 * k * k));
  const out = {
    what: 'StrykerJS mutation testing of lib/ (tools/mutation/lib.mjs, README there): a seeded sample of code lines, every mutant on them',
    generated: new Date().toISOString(),
    samples: runs.map(({ s }) => ({ seed: s.seed, ...(s.only ? { rerun: true } : {}), lines: s.lines, populationLines: s.population, picked: s.picked.map(([f, l]) => `${f}:${l}`) })),
    runs: runs.map(({ dir, planned, rep, complete }) => ({
      dir: path.relative(root, dir), mutantsPlanned: planned, mutantsTested: Object.values(rep.files).reduce((a, f) => a + f.mutants.length, 0), complete,
    })),
    totals: {
      killed, survived, equivalent: n('Equivalent'), compileErrors: n('CompileError'), runtimeErrors: n('RuntimeError'), ignored: n('Ignored'),
      nonEquivalent: k, killRate: k ? +(killed / k).toFixed(4) : null,
      // 95 % Wilson interval; the mutants of a line are not independent trials, so it is a rough guide
      killRateWilson95: k ? [+Math.max(0, c - h).toFixed(4), +Math.min(1, c + h).toFixed(4)] : null,
      survivorsExplained: mutants.filter((m) => m.reason && m.reason !== 'unexplained').length,
      unexplained: mutants.filter((m) => m.reason === 'unexplained').length,
    },
    survivors: mutants.filter((m) => m.status === 'Survived' || m.status === 'NoCoverage'),
    equivalents: mutants.filter((m) => m.status === 'Equivalent'),
    mutants,
  };
  const file = path.resolve(root, opt('out', 'bench/results/mutation-lib.json'));
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  console.log(`${path.relative(root, file)}: ${killed} killed, ${survived} survived, ${out.totals.equivalent} equivalent; kill rate ${out.totals.killRate} of ${killed + survived}`);
}

function readJson(f) {
  return fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : {};
}

const cmd = args[0];
if (cmd === 'run') run();
else if (cmd === 'report') report();
else if (cmd === 'lines') console.log(JSON.stringify(sample(codeLines(), count)));
else {
  console.error('usage: node tools/mutation/lib.mjs run|report|lines [--seed S] [--lines K] [--dir D]');
  process.exitCode = 2;
}
