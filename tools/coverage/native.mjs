#!/usr/bin/env node
// Line coverage of csrc/ from a gcov-instrumented CPU build (CMake -DKVTRIM_COVERAGE=ON), with gcov alone (GCC's
// JSON output; no gcovr/lcov needed).
//
//   node tools/coverage/native.mjs reset  [--build build-cov]            delete the counters (.gcda) of a build
//   node tools/coverage/native.mjs tests  [--build build-cov] [--jobs 2] run the op test files against that build
//   node tools/coverage/native.mjs report [--build build-cov] [--floor P] [--json FILE]
//
// tests: every test/<op>.test.ts and test/<op>-<aspect>.test.ts that loads the addon (the -ref files test float64
// references alone, ops including compact and tp_select), plus EXTRA below (bad input, hostile views, non-finite data, the
// fuzzer's CI corpus, the async forms, the bench), at reduced sizes (KVTRIM_TEST_QUICK=1), CPU backend, under node
// with tap's TypeScript loader, `--jobs` at a time; exits 1 when one fails.
//
// report: per source file of csrc/ (headers included: a line counts as covered when any translation unit that
// inlines it ran it) the executable lines and those run, then the total; exits 1 when the total is below --floor
// (percent). A line is executable when gcov lists it (it has code in the CPU-only build; CUDA-only branches of
// the shared headers are not compiled there and do not count).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? def : args[i + 1];
};
const build = path.resolve(root, opt('build', 'build-cov'));

function find(dir, ext, out = []) {
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) find(p, ext, out);
    else if (e.name.endsWith(ext)) out.push(p);
  }
  return out;
}

function reset() {
  const files = find(build, '.gcda');
  for (const f of files) fs.rmSync(f);
  console.log(`removed ${files.length} .gcda files under ${path.relative(root, build) || '.'}`);
}

function report() {
  const gcda = find(build, '.gcda');
  if (!gcda.length) {
    console.error(`no .gcda files under ${build}: build with -DKVTRIM_COVERAGE=ON and run tests with KVTRIM_ADDON first`);
    process.exitCode = 2;
    return;
  }
  const lines = new Map(); // file -> Map(line -> count)
  // gcov writes one JSON document per data file to stdout; a few at a time keeps the command line short
  for (let i = 0; i < gcda.length; i += 16) {
    const batch = gcda.slice(i, i + 16);
    const r = spawnSync('gcov', ['--json-format', '--stdout', ...batch], { cwd: build, encoding: 'utf8', maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`gcov failed: ${r.stderr}`);
    for (const doc of r.stdout.split('\n').filter((l) => l.trim().startsWith('{'))) {
      const j = JSON.parse(doc);
      for (const f of j.files) {
        const abs = path.resolve(j.current_working_directory ?? build, f.file);
        const rel = path.relative(root, abs);
        if (!rel.startsWith('csrc' + path.sep)) continue;
        if (!lines.has(rel)) lines.set(rel, new Map());
        const m = lines.get(rel);
        for (const l of f.lines) m.set(l.line_number, Math.max(m.get(l.line_number) ?? 0, l.count));
      }
    }
  }
  const files = [...lines.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([file, m]) => {
    const total = m.size, covered = [...m.values()].filter((c) => c > 0).length;
    const missed = [...m.entries()].filter(([, c]) => c === 0).map(([l]) => l).sort((a, b) => a - b);
    return { file, lines: total, covered, percent: total ? +((100 * covered) / total).toFixed(1) : 100, missed: ranges(missed) };
  });
  const total = files.reduce((a, f) => a + f.lines, 0), covered = files.reduce((a, f) => a + f.covered, 0);
  const percent = total ? +((100 * covered) / total).toFixed(2) : 0;
  const byDir = {};
  for (const f of files) {
    const d = path.dirname(f.file);
    byDir[d] ??= { lines: 0, covered: 0 };
    byDir[d].lines += f.lines;
    byDir[d].covered += f.covered;
  }
  const w = Math.max(...files.map((f) => f.file.length));
  for (const f of files) console.log(`${f.file.padEnd(w)}  ${String(f.covered).padStart(5)} / ${String(f.lines).padEnd(5)} ${f.percent.toFixed(1).padStart(5)} %`);
  for (const [d, v] of Object.entries(byDir)) console.log(`${(d + '/').padEnd(w)}  ${String(v.covered).padStart(5)} / ${String(v.lines).padEnd(5)} ${((100 * v.covered) / v.lines).toFixed(1).padStart(5)} %`);
  console.log(`native line coverage of csrc/: ${covered} of ${total} lines, ${percent} %`);
  const json = opt('json');
  if (json) {
    const out = { what: 'gcov line coverage of csrc/ (CPU-only build, -DKVTRIM_COVERAGE=ON)', generated: new Date().toISOString(), total: { lines: total, covered, percent }, byDir, files };
    fs.mkdirSync(path.dirname(path.resolve(root, json)), { recursive: true });
    fs.writeFileSync(path.resolve(root, json), JSON.stringify(out, null, 1) + '\n');
  }
  const floor = opt('floor');
  if (floor !== undefined && percent < Number(floor)) {
    console.log(`FAIL: native line coverage ${percent} % is below the floor of ${floor} %`);
    process.exitCode = 1;
  }
}

/** [1, 2, 3, 7] -> "1-3, 7" */
function ranges(xs) {
  const out = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    out.push(i === j ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

const OPS = ['keydiff', 'nestedkv', 'snapkv', 'select', 'gather', 'moments', 'decode', 'momentkv_select', 'spd', 'grkv', 'compact', 'tp_select'];
/** Test files beyond the ops' own that reach native code: bad input of every kind, the fuzzer's corpus, async forms, the bench. */
const EXTRA = ['bad-input.test.ts', 'batch-bad-input.test.ts', 'hostile.test.ts', 'nonfinite.test.ts', 'async.test.ts', 'batched-async.test.ts', 'fuzz.test.ts', 'bench.test.ts'];

/** The op test files (see the header). */
function opTests() {
  return fs.readdirSync(path.join(root, 'test'))
    .filter((f) => f.endsWith('.test.ts') && !f.endsWith('-ref.test.ts'))
    .filter((f) => EXTRA.includes(f) || OPS.some((op) => f === `${op}.test.ts` || f.startsWith(`${op}-`)))
    .map((f) => `test/${f}`)
    .sort();
}

async function tests() {
  const addon = ['Release/kvtrim.node', 'kvtrim.node'].map((p) => path.join(build, p)).find((p) => fs.existsSync(p));
  if (!addon) throw new Error(`no kvtrim.node under ${build}`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS_|NODE_V8_COVERAGE)/.test(k)));
  Object.assign(env, { KVTRIM_ADDON: addon, KVTRIM_TEST_QUICK: '1', KVTRIM_BACKEND: 'cpu', TS_NODE_TRANSPILE_ONLY: '1', TAP_TIMEOUT: '1800' });
  const queue = opTests();
  const failed = [];
  const worker = async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      const t0 = process.hrtime.bigint();
      const { code, out } = await new Promise((resolve) => {
        const p = spawn(process.execPath, ['--import=@tapjs/typescript/import', f], { cwd: root, env });
        let o = '';
        p.stdout.on('data', (d) => (o += d));
        p.stderr.on('data', (d) => (o += d));
        p.on('close', (c) => resolve({ code: c ?? 1, out: o }));
      });
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const sum = /# \{ total: .*\}/.exec(out)?.[0] ?? '';
      console.log(`${code === 0 ? 'ok    ' : 'FAILED'} ${f} (${s.toFixed(0)} s) ${sum}`);
      if (code !== 0) {
        failed.push(f);
        console.log(out.split('\n').filter((l) => /^\s*not ok/.test(l) && !/# (SKIP|TODO)/.test(l)).slice(0, 10).join('\n'));
      }
    }
  };
  await Promise.all(Array.from({ length: Number(opt('jobs', '2')) }, worker));
  if (failed.length) {
    console.log(`${failed.length} test files failed against the coverage build: ${failed.join(', ')}`);
    process.exitCode = 1;
  }
}

const cmd = args[0];
if (cmd === 'reset') reset();
else if (cmd === 'tests') tests();
else if (cmd === 'report') report();
else {
  console.error('usage: node tools/coverage/native.mjs reset|tests|report [--build DIR] [--jobs N] [--floor PERCENT] [--json FILE]');
  process.exitCode = 2;
}
