#!/usr/bin/env node
// Mutation testing of the native CPU backend and shared math (tools/mutation/README.md).
//
//   node tools/mutation/native.mjs list                      population by file and operator
//   node tools/mutation/native.mjs run [options]             build and test mutants, append to the results log
//   node tools/mutation/native.mjs report                    bench/results/mutation.json from the log
//   node tools/mutation/native.mjs freeze [--seed S --count K --revision R]   tools/mutation/sample-<seed>.json
//
// run options: --seed S (17) --count K (300): the seeded sample of the population (plus the named mutants of
// tools/mutation/targets.mjs); --ci: the fixed small sample CI runs (fails when a mutant of it survives or the
// unmutated build fails its tests); --only ID,ID: those mutants; --first ID,ID: those of the sample run first;
// --quick: tests at reduced sizes
// (KVTRIM_TEST_QUICK=1); --dir D (build-mutation): the mutation workspace; --log FILE (D/results.jsonl);
// --suite REV (HEAD): the revision of test/ and lib/ that judges (a snapshot in D/suite; `worktree`: as checked out).
// --in-place --build B (CI): mutate the checkout's own csrc/ and rebuild the existing, configured build directory B
// (e.g. the coverage build: no second full build), tests from the checkout; refuses when csrc/ has uncommitted
// changes, restores every file (also on SIGINT/SIGTERM). --no-baseline: skip the unmutated run of the tests (a
// step before ran them on the same build); per-file timeout --timeout S (600) then.
//
// Each mutant is applied to a copy of the sources in D/src, the addon is rebuilt there CPU-only and incrementally
// (cmake/ninja: the mutated translation unit, or the units including a mutated header, and the link), and the
// test files of the mutated file's ops (targets.mjs) run one after another under node with TAP_BAIL=1 and
// KVTRIM_ADDON pointing at the mutant: the first failing file kills it. Per-file timeout: 3x the unmutated time
// + 60 s (a timeout kills the mutant: an endless loop is a detected fault).
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mutantsOf } from './operators.mjs';
import { NAMED, opsFor, regionsOf, targetFiles, testsForOp } from './targets.mjs';
import { seededSample } from './seeded.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const cmd = args[0] ?? 'list';
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? def : args[i + 1];
};
const flag = (name) => args.includes(`--${name}`);
const dir = path.resolve(root, opt('dir', 'build-mutation'));
const logFile = path.resolve(root, opt('log', path.join(dir, 'results.jsonl')));
const quick = flag('quick');
const inPlace = flag('in-place');

// The fixed CI sample: one killable mutant per kind of fault, in small files with fast tests (a few minutes).
const CI_SAMPLE = [
  { file: 'csrc/cpu/select.cc', operator: 'relational', before: /if \(kk >= head_pivot/, replacement: ' > ' },
  { file: 'csrc/cpu/keydiff.cc', operator: 'loop-bound', before: /for \(int64_t c = 0; c < C; c\+\+\) s \+= partial/, replacement: '(C) - 1' },
  { file: 'csrc/abi/select.cc', operator: 'rounding', before: null, replacement: null, named: 'select-safeguard-ceil' },
  { file: 'csrc/cpu/keydiff.cc', operator: 'dropped-write', before: null, replacement: null, named: 'keydiff-skip-zero-rows' },
];

function mutantId(file, m) {
  return crypto.createHash('sha1').update(`${file}\0${m.before}\0${m.col}\0${m.operator}\0${m.replacement}`).digest('hex').slice(0, 10);
}

/** Every generated mutant of the target files (sorted: file, line, column, operator), and the named ones. */
function population() {
  const out = [];
  for (const file of targetFiles(root)) {
    const src = fs.readFileSync(path.join(root, file), 'utf8');
    const regions = regionsOf(file, src);
    // The same edit of two identical lines (e.g. two `for (int64_t s = 0; s < S; s++) {` in one file) hashes alike:
    // the first occurrence keeps the hash, the k-th (k >= 2, in line order) is `hash~k`, so every mutant has its own
    // id and its own verdict in the log.
    const seen = new Map();
    for (const m of mutantsOf(src)) {
      if (regions && !regions.some(([a, b]) => m.line >= a && m.line <= b)) continue;
      const h = mutantId(file, m);
      const k = (seen.get(h) ?? 0) + 1;
      seen.set(h, k);
      out.push({ id: k === 1 ? h : `${h}~${k}`, file, ...m });
    }
  }
  return out;
}

function namedMutants() {
  return NAMED.map((n) => {
    const src = fs.readFileSync(path.join(root, n.file), 'utf8');
    const lines = src.split('\n');
    const k = lines.findIndex((l) => l.includes(n.find));
    if (k < 0) throw new Error(`named mutant ${n.name}: '${n.find}' not found in ${n.file}`);
    const col = lines[k].indexOf(n.find);
    const after = lines[k].slice(0, col) + n.replace + lines[k].slice(col + n.find.length);
    return { id: n.name, named: true, file: n.file, line: k + 1, col: col + 1, operator: n.operator, original: n.find, replacement: n.replace, before: lines[k], after, what: n.what };
  });
}

/**
 * The seeded sample: the first `count` of a mulberry32 shuffle of the (sorted) population. The sources grow (new
 * files add mutants and reshuffle everything), so a drawn sample is frozen (`freeze`: tools/mutation/sample-<seed>.json,
 * the mutants and the population they were drawn from): while that file exists and matches seed and count, `run` and
 * `report` use it. A frozen mutant is looked up by id in the current population (its line number may have moved); one
 * whose line has changed since is `stale`: it cannot be applied any more, keeps the verdict it had, and is marked so.
 */
function frozenFile(seed) {
  return path.resolve(root, opt('sample', `tools/mutation/sample-${seed}.json`));
}
function frozen(seed, count) {
  const f = frozenFile(seed);
  if (!fs.existsSync(f)) return null;
  const z = JSON.parse(fs.readFileSync(f, 'utf8'));
  return z.seed === seed && z.count === count ? z : null;
}
function sample(pop, seed, count) {
  const z = frozen(seed, count);
  if (!z) return seededSample(pop, seed, count);
  const byId = new Map(pop.map((m) => [m.id, m]));
  return z.mutants.map((m) => byId.get(m.id) ?? { ...m, stale: true });
}

function sh(command, argv, options = {}) {
  const r = spawnSync(command, argv, { encoding: 'utf8', maxBuffer: 1 << 28, ...options });
  return { code: r.status ?? 1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, signal: r.signal };
}

/** The mutation workspace: a copy of the sources, -Werror dropped (a mutant's new warning is not a fault). */
function setup() {
  if (inPlace) {
    const b = path.resolve(root, opt('build', ''));
    if (!opt('build') || !fs.existsSync(b)) throw new Error('--in-place needs --build DIR, an existing configured build directory');
    const dirty = sh('git', ['-C', root, 'status', '--porcelain', '--', 'csrc']).out.trim();
    if (dirty && !flag('force')) throw new Error(`--in-place: csrc/ has uncommitted changes (commit them, or --force):\n${dirty}`);
    return { src: root, build: b };
  }
  const src = path.join(dir, 'src');
  fs.mkdirSync(src, { recursive: true });
  syncTree(path.join(root, 'csrc'), path.join(src, 'csrc'));
  writeIfChanged(path.join(src, 'package.json'), fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const cm = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
  const patched = cm.replace(/set\(KVT_WARN -Wall -Wextra -Werror\)/, 'set(KVT_WARN -w)');
  if (patched === cm) throw new Error('CMakeLists.txt: set(KVT_WARN ...) not found');
  writeIfChanged(path.join(src, 'CMakeLists.txt'), patched);
  const nm = path.join(src, 'node_modules');
  if (!fs.existsSync(nm)) fs.symlinkSync(path.join(root, 'node_modules'), nm);
  const build = path.join(dir, 'build');
  if (!fs.existsSync(path.join(build, 'build.ninja')) && !fs.existsSync(path.join(build, 'Makefile'))) {
    const r = sh(process.execPath, [path.join(root, 'node_modules/cmake-js/bin/cmake-js'), 'configure', '-d', src, '-O', build, '--CDKVTRIM_CUDA=OFF'], { cwd: root });
    if (r.code !== 0) throw new Error(`configure failed:\n${r.out.slice(-3000)}`);
  }
  return { src, build };
}

/** Mirrors a source folder, rewriting only changed files (unchanged ones keep their mtime: incremental builds). */
function syncTree(from, to) {
  fs.mkdirSync(to, { recursive: true });
  const want = new Set(fs.readdirSync(from));
  for (const f of fs.readdirSync(to)) if (!want.has(f)) fs.rmSync(path.join(to, f), { recursive: true, force: true });
  for (const f of want) {
    const a = path.join(from, f), b = path.join(to, f);
    if (fs.statSync(a).isDirectory()) syncTree(a, b);
    else writeIfChanged(b, fs.readFileSync(a));
  }
}

function writeIfChanged(file, text) {
  if (fs.existsSync(file) && Buffer.from(fs.readFileSync(file)).equals(Buffer.from(text))) return;
  fs.writeFileSync(file, text);
}

function build(b) {
  const r = sh('cmake', ['--build', b, '--target', 'kvtrim', '-j', String(Math.min(2, os.cpus().length))], { timeout: 1800e3 });
  return r;
}

function addonPath(b) {
  for (const p of [path.join(b, 'Release/kvtrim.node'), path.join(b, 'kvtrim.node')]) if (fs.existsSync(p)) return p;
  throw new Error(`no kvtrim.node under ${b}`);
}

/**
 * A snapshot of the test suite (test/, lib/ and what they load) in D/suite, taken when a run starts: editing the
 * tests during a long run cannot change its verdicts half way.
 */
function snapshotSuite(rev) {
  const suite = path.join(dir, 'suite');
  const parts = ['test', 'lib', 'docs', 'examples', 'package.json', 'tsconfig.json', 'README.md'];
  if (rev === 'worktree') {
    for (const d of parts) {
      const a = path.join(root, d), b = path.join(suite, d);
      if (fs.statSync(a).isDirectory()) syncTree(a, b);
      else writeIfChanged(b, fs.readFileSync(a));
    }
  } else {
    // a committed revision of the suite (default HEAD): the report names it
    for (const d of parts) fs.rmSync(path.join(suite, d), { recursive: true, force: true });
    fs.mkdirSync(suite, { recursive: true });
    const tar = sh('sh', ['-c', `git -C "${root}" archive "${rev}" ${parts.join(' ')} | tar -x -C "${suite}"`]);
    if (tar.code !== 0) throw new Error(`git archive ${rev} failed: ${tar.out}`);
  }
  const nm = path.join(suite, 'node_modules');
  if (!fs.existsSync(nm)) fs.symlinkSync(path.join(root, 'node_modules'), nm);
  return suite;
}
let suiteDir = root;

/** Runs one tap test file directly (no tap runner: no coverage, no .tap/ state), bailing at the first failure. */
function runTest(file, addon, timeoutMs) {
  return new Promise((resolve) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS_|NODE_V8_COVERAGE)/.test(k)));
    Object.assign(env, { TAP_BAIL: '1', TS_NODE_TRANSPILE_ONLY: '1', KVTRIM_ADDON: addon, KVTRIM_BACKEND: 'cpu', TAP_TIMEOUT: String(Math.ceil(timeoutMs / 1000) + 30) });
    if (quick) env.KVTRIM_TEST_QUICK = '1';
    const t0 = Date.now();
    const p = spawn(process.execPath, ['--import=@tapjs/typescript/import', file], { cwd: suiteDir, env, detached: true });
    let out = '';
    p.stdout.on('data', (d) => (out = (out + d).slice(-200000)));
    p.stderr.on('data', (d) => (out = (out + d).slice(-200000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, signal, timedOut, ms: Date.now() - t0, out });
    });
  });
}

/** The first failing assertion of a TAP log (its name), for the report. */
function firstFailure(out) {
  const lines = out.split('\n');
  const k = lines.findIndex((l) => /^\s*not ok \d+/.test(l) && !/# (SKIP|TODO)/.test(l));
  if (k >= 0) {
    // the innermost failing assertion is the first `not ok` line; name the subtest path by the lines after it
    return lines[k].trim().replace(/^not ok \d+ - /, '').slice(0, 240);
  }
  const err = lines.find((l) => /Error|Segmentation|Aborted|core dumped/.test(l));
  return (err ?? lines.filter(Boolean).slice(-1)[0] ?? '').trim().slice(0, 240);
}

function readLog() {
  if (!fs.existsSync(logFile)) return new Map();
  const m = new Map();
  for (const l of fs.readFileSync(logFile, 'utf8').split('\n')) {
    if (!l.trim()) continue;
    const r = JSON.parse(l);
    m.set(r.id, r);
  }
  return m;
}

function machine() {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} x ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}`;
}

async function run() {
  const pop = population();
  const named = namedMutants();
  let chosen;
  if (flag('ci')) {
    chosen = CI_SAMPLE.map((c) => {
      if (c.named) return named.find((n) => n.id === c.named);
      const m = pop.find((p) => p.file === c.file && p.operator === c.operator && c.before.test(p.before) &&
        (typeof c.replacement === 'string' ? p.replacement === c.replacement : c.replacement.test(p.replacement)));
      if (!m) throw new Error(`CI sample: no ${c.operator} mutant at ${c.before} in ${c.file} (update CI_SAMPLE)`);
      return m;
    });
  } else if (opt('only')) {
    const ids = new Set(opt('only').split(','));
    chosen = [...named, ...pop].filter((m) => ids.has(m.id));
    if (chosen.length < ids.size) throw new Error(`--only: ${[...ids].filter((i) => !chosen.some((m) => m.id === i)).join(', ')} not in the current population`);
  } else {
    const drawn = sample(pop, Number(opt('seed', '17')), Number(opt('count', '300')));
    const stale = drawn.filter((m) => m.stale);
    if (stale.length) console.log(`${stale.length} frozen mutants are stale (their line changed since): skipped, they keep their verdicts`);
    chosen = [...named, ...drawn.filter((m) => !m.stale)];
    // --first ID,ID: those of the sample first (e.g. survivors to re-judge after a test was added), then the rest
    const first = new Set((opt('first') ?? '').split(',').filter(Boolean));
    if (first.size) chosen = [...chosen.filter((m) => m.named || first.has(m.id)), ...chosen.filter((m) => !m.named && !first.has(m.id))];
  }
  // The seeded sample runs in its shuffled order (the named mutants first), so that a run stopped after k mutants
  // has judged the first k of the shuffle: a uniform sample of the population (the report's interval assumes it).
  // Runs before this order (a log written by a file-sorted run) are accounted for by the report (see `report`).
  if (flag('ci') || opt('only')) chosen.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
  const { src, build: b } = setup();
  const rev = inPlace ? 'worktree' : opt('suite', 'HEAD');
  const suiteCommit = rev === 'worktree' ? 'worktree' : sh('git', ['-C', root, 'rev-parse', '--short', rev]).out.trim();
  suiteDir = inPlace ? root : snapshotSuite(rev);
  // whatever happens, a mutated file goes back to its original text
  const originals = new Map();
  const restoreAll = () => {
    for (const [f, text] of originals) fs.writeFileSync(f, text);
    originals.clear();
  };
  process.on('exit', restoreAll);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { restoreAll(); process.exit(130); });
  const done = flag('ci') || flag('fresh') ? new Map() : readLog();
  if (!flag('ci')) fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const log = flag('ci') ? null : fs.openSync(logFile, 'a');

  // the unmutated build must pass every test file a mutant will run; its times set the timeouts
  // the test files of the suite snapshot (a file added to the checkout during the run is not part of it)
  const files = [...new Set(chosen.flatMap((m) => opsFor(m.file).flatMap((o) => testsForOp(suiteDir, o))))];
  for (const f of targetFiles(root)) writeIfChanged(path.join(src, f), fs.readFileSync(path.join(root, f), 'utf8'));
  let r = build(b);
  if (r.code !== 0) throw new Error(`unmutated build failed:\n${r.out.slice(-3000)}`);
  const addon = addonPath(b);
  const baseline = {};
  const baseFile = path.join(dir, `baseline-${suiteCommit}${quick ? '-quick' : ''}.json`);
  const known = fs.existsSync(baseFile) && !flag('ci') ? JSON.parse(fs.readFileSync(baseFile, 'utf8')) : {};
  const fixedTimeout = Number(opt('timeout', '600')) * 1000;
  for (const f of files) {
    if (flag('no-baseline')) { baseline[f] = (fixedTimeout - 60e3) / 3; continue; }
    if (known[f]) { baseline[f] = known[f]; continue; }
    const t = await runTest(f, addon, 1800e3);
    if (t.code !== 0) throw new Error(`unmutated ${f} fails (${t.timedOut ? 'timeout' : `exit ${t.code}`}):\n${firstFailure(t.out)}\n${t.out.slice(-2000)}`);
    baseline[f] = t.ms;
    console.log(`baseline ${f}: ${(t.ms / 1000).toFixed(1)} s`);
  }
  if (!flag('ci') && !flag('no-baseline')) fs.writeFileSync(baseFile, JSON.stringify({ ...known, ...baseline }, null, 1));

  let survived = 0, n = 0;
  for (const m of chosen) {
    n++;
    // Resuming: a mutant already killed (or not compiling) under a committed revision of the suite keeps its
    // verdict (the tests only grow between revisions: a later suite kills what an earlier one did; the report names
    // each verdict's revision); a survivor is judged again when the suite changed (a test may have been added).
    const prev = done.get(m.id);
    if (prev && prev.after === m.after && suiteCommit !== 'worktree' && !opt('only') &&
      (prev.suite === suiteCommit || (prev.status !== 'survived' && prev.suite !== 'worktree'))) continue;
    // the workspace copy (restored after every mutant), not the checkout: a checkout being edited, or mutated in
    // place by another run, must not leak into this one
    const orig = fs.readFileSync(path.join(src, m.file), 'utf8');
    const lines = orig.split('\n');
    if (lines[m.line - 1] !== m.before) throw new Error(`${m.id}: ${m.file}:${m.line} changed since generation`);
    lines[m.line - 1] = m.after;
    originals.set(path.join(src, m.file), orig);
    fs.writeFileSync(path.join(src, m.file), lines.join('\n'));
    const t0 = Date.now();
    r = build(b);
    const buildMs = Date.now() - t0;
    const rec = { id: m.id, suite: suiteCommit, quick, named: m.named ?? false, file: m.file, line: m.line, col: m.col, operator: m.operator, original: m.original, replacement: m.replacement, before: m.before, after: m.after, buildMs };
    if (m.what) rec.what = m.what;
    if (r.code !== 0) {
      rec.status = 'compile-error';
      rec.detail = r.out.split('\n').filter((l) => /error/.test(l)).slice(0, 3).join(' | ').slice(0, 400);
    } else {
      const tests = [...new Set(opsFor(m.file).flatMap((o) => testsForOp(suiteDir, o)))].sort((x, y) => baseline[x] - baseline[y]);
      const unbased = tests.filter((f) => !(baseline[f] > 0));
      if (unbased.length) throw new Error(`no baseline time for ${unbased.join(', ')}`);
      rec.status = 'survived';
      rec.ran = [];
      for (const f of tests) {
        const t = await runTest(f, addonPath(b), 3 * baseline[f] + 60e3);
        rec.ran.push(f);
        if (t.timedOut) { rec.status = 'killed'; rec.killedBy = f; rec.how = 'timeout'; break; }
        if (t.signal) { rec.status = 'killed'; rec.killedBy = f; rec.how = `crash (${t.signal})`; break; }
        if (t.code !== 0) { rec.status = 'killed'; rec.killedBy = f; rec.how = 'assertion'; rec.detail = firstFailure(t.out); break; }
      }
      if (rec.status === 'survived') survived++;
    }
    rec.ms = Date.now() - t0;
    rec.at = new Date().toISOString();
    console.log(`[${n}/${chosen.length}] ${m.id} ${m.file}:${m.line} ${m.operator} '${m.original}' -> '${m.replacement}': ${rec.status}${rec.killedBy ? ` by ${rec.killedBy}` : ''} (${(rec.ms / 1000).toFixed(0)} s)`);
    if (log !== null) fs.writeSync(log, JSON.stringify(rec) + '\n');
    else done.set(m.id, rec);
    restoreAll();
  }
  // leave the workspace unmutated
  r = build(b);
  if (flag('ci')) {
    const recs = [...done.values()];
    const bad = recs.filter((x) => x.status !== 'killed');
    console.log(`mutation CI sample: ${recs.length - bad.length} of ${recs.length} mutants killed`);
    for (const x of bad) console.log(`  NOT KILLED: ${x.file}:${x.line} ${x.operator} '${x.original}' -> '${x.replacement}' (${x.status})`);
    process.exitCode = bad.length ? 1 : 0;
  } else {
    console.log(`${chosen.length} mutants; ${survived} survived in this session`);
  }
}

/**
 * Wilson score interval (95 %) of a binomial proportion k/n: stays inside [0, 1] and is honest for rates near 1
 * with a few hundred trials, where the normal approximation is not.
 */
function wilson(k, n, z = 1.959964) {
  if (!n) return null;
  const p = k / n, z2 = z * z;
  const c = (p + z2 / (2 * n)) / (1 + z2 / n);
  const h = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [+Math.max(0, c - h).toFixed(4), +Math.min(1, c + h).toFixed(4)];
}

function tally(list) {
  const n = (s) => list.filter((m) => m.status === s).length;
  const killed = n('killed'), survived = n('survived'), equivalent = n('equivalent'), compileErrors = n('compile-error');
  const surv = list.filter((m) => m.status === 'survived');
  return {
    run: list.length, killed, survived, equivalent, compileErrors,
    nonEquivalent: killed + survived,
    killRate: killed + survived ? +(killed / (killed + survived)).toFixed(4) : null,
    killRateWilson95: wilson(killed, killed + survived),
    survivorsExplained: surv.filter((m) => m.reason !== 'unexplained').length,
    unexplained: surv.filter((m) => m.reason === 'unexplained').length,
  };
}

/**
 * bench/results/mutation.json from the log. The estimate is taken on the uniform part of the sample: the longest
 * prefix of the seeded shuffle whose mutants have all run (a run in shuffle order judges them in that order; an
 * earlier run in file order left others done further on, counted under `alsoRun` but not in the estimate, which
 * they would bias towards their files). The named mutants are reported apart: chosen by hand, not sampled.
 */
function report() {
  const log = readLog();
  const eqFile = path.join(root, 'tools/mutation/equivalent.json');
  const eq = fs.existsSync(eqFile) ? JSON.parse(fs.readFileSync(eqFile, 'utf8')) : {};
  const notesFile = path.join(root, 'tools/mutation/survivors.json');
  const notes = fs.existsSync(notesFile) ? JSON.parse(fs.readFileSync(notesFile, 'utf8')) : {};
  const pop = population();
  const seed = Number(opt('seed', '17')), count = Number(opt('count', '300'));
  const planned = sample(pop, seed, count);
  const z = frozen(seed, count);
  const staleIds = new Set(planned.filter((m) => m.stale).map((m) => m.id));
  const view = (r) => {
    const o = { id: r.id, named: r.named || undefined, stale: staleIds.has(r.id) || undefined, where: `${r.file}:${r.line}`, operator: r.operator, original: r.original, replacement: r.replacement, mutated: r.after.trim(), status: r.status, suite: r.suite, quickSizes: r.quick };
    if (r.what) o.what = r.what;
    if (r.status === 'killed') Object.assign(o, { killedBy: r.killedBy, how: r.how, detail: r.detail });
    if (r.status === 'compile-error') o.detail = r.detail;
    if (r.status === 'survived') {
      o.ran = r.ran;
      if (eq[r.id]) { o.status = 'equivalent'; o.argument = eq[r.id]; }
      else o.reason = notes[r.id] ?? 'unexplained';
    }
    return o;
  };
  // a log record counts only when it is of the mutant as generated now (the line may have changed since)
  const judged = (m) => log.has(m.id) && log.get(m.id).after === m.after;
  let prefix = 0;
  while (prefix < planned.length && judged(planned[prefix])) prefix++;
  const uniform = planned.slice(0, prefix).map((m) => view(log.get(m.id)));
  const alsoRun = planned.slice(prefix).filter(judged).map((m) => view(log.get(m.id)));
  const named = namedMutants().filter(judged).map((m) => view(log.get(m.id)));
  const by = (list, key) => {
    const o = {};
    for (const m of list) {
      const k = key(m);
      o[k] ??= { killed: 0, survived: 0, equivalent: 0, 'compile-error': 0 };
      o[k][m.status]++;
    }
    return o;
  };
  const popByOp = {};
  for (const m of pop) popByOp[m.operator] = (popByOp[m.operator] ?? 0) + 1;
  const all = [...uniform, ...alsoRun];
  const rep = {
    what: 'Mutation testing of the CPU backend (csrc/cpu) and the shared math (csrc/math) plus the adaptive safeguard of csrc/abi/select.cc: tools/mutation/native.mjs (README there).',
    generated: new Date().toISOString(),
    machine: machine(),
    sample: {
      seed, planned: count, population: z ? z.population : pop.length, populationByOperator: z ? z.populationByOperator : popByOp,
      frozen: z ? { file: path.relative(root, frozenFile(seed)), drawnAt: z.revision, currentPopulation: pop.length, stale: staleIds.size,
        how: `drawn from the population of revision ${z.revision} (${z.population} mutants) and frozen; the current sources have ${pop.length}. A "stale" mutant's line has changed since: it keeps the verdict it had on the sources of its suite revision` } : undefined,
      bySuite: Object.fromEntries([...new Set(planned.filter(judged).map((m) => log.get(m.id).suite))].map((v) => [v, planned.filter((m) => judged(m) && log.get(m.id).suite === v).length])),
      uniformPrefix: prefix, alsoRun: alsoRun.length, notYetRun: count - prefix - alsoRun.length,
      complete: prefix === count,
      how: `the first ${count} of a mulberry32 shuffle (seed ${seed}) of the sorted population; "estimate" counts its first ${prefix}, all run: a uniform sample of the population. "alsoRun" are later mutants of the shuffle that an earlier, file-ordered run reached (files csrc/abi/select.cc to csrc/cpu/grkv_key.cc); they are listed and judged but left out of the estimate`,
    },
    sizes: 'each mutant records the revision of the tests that judged it ("suite") and whether they ran at reduced sizes (KVTRIM_TEST_QUICK=1, README "Tests")',
    estimate: tally(uniform),
    allSampledRun: tally(all),
    named: { what: 'the three mutants issue 17 found by hand (tools/mutation/targets.mjs NAMED): not part of the sample', ...tally(named) },
    byFile: by(all, (m) => m.where.replace(/:\d+$/, '')),
    byOperator: by(all, (m) => m.operator),
    survivors: [...named, ...all].filter((m) => m.status === 'survived'),
    equivalents: [...named, ...all].filter((m) => m.status === 'equivalent'),
    mutants: { named, uniform, alsoRun },
  };
  const out = path.resolve(root, opt('out', 'bench/results/mutation.json'));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(rep, null, 1) + '\n');
  const e = rep.estimate;
  console.log(`${path.relative(root, out)}: ${prefix} of ${count} sampled mutants run in shuffle order (+${alsoRun.length} further ones run earlier, not in the estimate): ` +
    `${e.killed} killed, ${e.survived} survived (${e.unexplained} unexplained), ${e.equivalent} equivalent, ${e.compileErrors} compile errors; ` +
    `kill rate ${e.killRate} of ${e.nonEquivalent} non-equivalent, 95 % interval ${JSON.stringify(e.killRateWilson95)}; named: ${rep.named.killed} of ${rep.named.run} killed`);
}

if (cmd === 'freeze') {
  // freezes the seeded sample of the current population (tools/mutation/sample-<seed>.json): later runs and reports
  // keep judging these mutants while the sources grow
  const pop = population();
  const seed = Number(opt('seed', '17')), count = Number(opt('count', '300'));
  const popByOp = {};
  for (const m of pop) popByOp[m.operator] = (popByOp[m.operator] ?? 0) + 1;
  const revision = opt('revision') ?? sh('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).out.trim();
  const mutants = seededSample(pop, seed, count).map(({ id, file, line, col, operator, original, replacement, before, after }) => ({ id, file, line, col, operator, original, replacement, before, after }));
  const out = frozenFile(seed);
  fs.writeFileSync(out, JSON.stringify({ seed, count, revision, population: pop.length, populationByOperator: popByOp, mutants }, null, 1) + '\n');
  console.log(`${path.relative(root, out)}: ${count} of ${pop.length} mutants (seed ${seed}, revision ${revision})`);
} else if (cmd === 'list') {
  const pop = population();
  const by = {};
  for (const m of pop) {
    by[m.file] ??= {};
    by[m.file][m.operator] = (by[m.file][m.operator] ?? 0) + 1;
  }
  if (flag('json')) console.log(JSON.stringify(pop, null, 1));
  else {
    for (const [f, o] of Object.entries(by)) console.log(`${f}: ${Object.values(o).reduce((a, b) => a + b, 0)} ${JSON.stringify(o)}`);
    console.log(`${pop.length} mutants; named: ${NAMED.map((n) => n.name).join(', ')}`);
    if (opt('seed')) for (const m of sample(pop, Number(opt('seed')), Number(opt('count', '300')))) console.log(`${m.id} ${m.file}:${m.line} ${m.operator} ${JSON.stringify(m.original)} -> ${JSON.stringify(m.replacement)}`);
  }
} else if (cmd === 'run') {
  run().catch((e) => {
    console.error(e.stack ?? String(e));
    process.exitCode = 2;
  });
} else if (cmd === 'report') {
  report();
} else {
  console.error(`unknown command '${cmd}' (list | run | report | freeze)`);
  process.exitCode = 2;
}
