// Every CUDA code path of kvtrim, run on the CPU by the emulator of tools/cuda-emu (no GPU, no nvcc needed): builds
// the addon with -DKVTRIM_CUDA_EMU=ON (or uses KVTRIM_EMU_ADDON=/path/to/kvtrim.node), then, in child processes with
// KVTRIM_ADDON pointing at it:
//  - test/emu/run-checks.ts: every `kvtrim check` entry (small shapes: the family checks and the code-path
//    sweep), the bench baselines against the ops, `kvtrim bench` on CUDA — twice, under the default schedule and
//    under shuffled thread and block orders, and the fetched outputs must be identical bit for bit (no
//    order-dependent reads);
//  - the same on an sm_90-like device (227 KB of shared memory per block, 132 SMs: other chunkings, the SPD factor
//    in shared memory);
//  - a few op test files (their 'cuda' cases run on the emulator), and the batched-op tests' CUDA cases (a subset of
//    their layouts) under shuffled schedules;
//  - every __global__ kernel of cuda/ must have been launched.
// Skipped only when there is no host C++ compiler or python3 (or not on Linux).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.join(__dirname, '..');
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const compiler = process.env.CXX || ['c++', 'g++', 'clang++'].find(have);
const skip =
  process.platform !== 'linux' ? 'the emulator needs Linux' :
  !process.env.KVTRIM_EMU_ADDON && !compiler ? 'no host C++ compiler (c++ / g++ / clang++) to build the emulated addon' :
  !process.env.KVTRIM_EMU_ADDON && !have('python3') ? 'no python3 (tools/cuda-emu/emulate.py rewrites the kernels)' :
  false;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    // a plain process: without the runner's TAP* / processinfo / coverage variables of this test process
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS_|NODE_V8_COVERAGE)/.test(k)));
    const p = spawn(cmd, args, { cwd: root, env: { ...base, ...env } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

/** The failing assertions (and emulator diagnostics) of a child tap run, for the parent's message. */
function failures(out: string): string {
  const lines = out.split('\n');
  const bad = lines.filter((l) => /^\s*not ok|^emu:|runtime error|^\s+(error|message):/.test(l));
  return (bad.length ? bad : lines.slice(-20)).slice(0, 30).join('\n');
}

// Each test file runs directly under node with tap's TypeScript loader (a tap test file is a program that prints TAP
// and exits non-zero on a failure), two at a time. Not a child `tap` run: that would start a new run in this project
// and delete the parent run's .tap/coverage and .tap/processinfo.
async function tapRun(files: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  const results: { code: number; out: string }[] = [];
  const queue = [...files];
  const worker = async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      const r = await run(process.execPath, ['--import=@tapjs/typescript/import', f], { TAP_TIMEOUT: '900', ...env });
      results.push({ code: r.code, out: `# ${f}\n${r.out}` });
    }
  };
  await Promise.all([worker(), worker()]);
  return { code: Math.max(...results.map((r) => r.code)), out: results.map((r) => r.out).join('\n') };
}

t.test('CUDA kernels under the CPU emulator', { skip }, async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-emu-'));
  let addon = process.env.KVTRIM_EMU_ADDON ?? '';
  if (!addon) {
    const out = path.join(root, 'build-emu');
    const b = await run(process.execPath, [path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'compile', '-O', out, '--CDKVTRIM_CUDA_EMU=ON'], {});
    t.equal(b.code, 0, 'cmake-js compile -O build-emu --CDKVTRIM_CUDA_EMU=ON', { diagnostic: b.code !== 0, output: b.out.split('\n').filter((l) => /error|Error/.test(l)).slice(0, 10).join('\n') });
    if (b.code !== 0) return;
    addon = path.join(out, 'Release', 'kvtrim.node');
  }
  const coverage = path.join(tmp, 'kernels.txt');
  const base = { KVTRIM_ADDON: addon, KVTRIM_CHECK_SIZE: 'small', KVTRIM_EMU_COVERAGE: coverage, KVTRIM_BACKEND: 'cuda' };
  const fixture = path.join('test', 'emu', 'run-checks.ts');
  const hashes = [path.join(tmp, 'a.txt'), path.join(tmp, 'b.txt')];

  // Two schedules in parallel (same device parameters), then the sm_90-like device with the op tests.
  const [a, b] = await Promise.all([
    tapRun([fixture], { ...base, KVTRIM_EMU_HASHES: hashes[0] }),
    tapRun([fixture], { ...base, KVTRIM_EMU_HASHES: hashes[1], KVTRIM_EMU_THREAD_ORDER: 'random', KVTRIM_EMU_BLOCK_ORDER: 'random', KVTRIM_EMU_SEED: '7' }),
  ]);
  t.equal(a.code, 0, 'kvtrim check, baselines, bench (default schedule)', { diagnostic: a.code !== 0, failures: failures(a.out) });
  t.equal(b.code, 0, 'the same under shuffled thread and block orders', { diagnostic: b.code !== 0, failures: failures(b.out) });
  if (a.code === 0 && b.code === 0) {
    const [x, y] = hashes.map((f) => fs.readFileSync(f, 'utf8').split('\n'));
    const diff = x.map((l, i) => (l === y[i] ? null : x.slice(i).find((z) => z.startsWith('# ')) ?? '?')).filter((l) => l);
    t.same([...new Set(diff)], [], `every output bit-identical under both schedules (${x.filter((l) => l && !l.startsWith('#')).length} outputs)`);
  }
  const ops = ['keydiff', 'select', 'gather', 'spd', 'bad-input', 'backend', 'device'].map((f) => path.join('test', `${f}.test.ts`));
  const c = await tapRun([fixture, ...ops], { ...base, KVTRIM_EMU_SM: '90', KVTRIM_EMU_SMS: '132' });
  t.equal(c.code, 0, `sm_90-like device (227 KB shared memory, 132 SMs): checks and ${ops.join(', ')}`, { diagnostic: c.code !== 0, failures: failures(c.out) });

  // The batched, paged and in-place ops (docs/runtime-caches.md §6): their CUDA cases (a subset of the layouts, every
  // op) must equal the per-sequence CUDA ops bit for bit under shuffled thread and block orders, on the sm_90-like
  // device; an order-dependent read in a batched kernel would show up as a mismatch.
  const batched = ['keydiff', 'nestedkv', 'snapkv', 'select', 'gather', 'moments', 'decode', 'momentkv_select', 'grkv']
    .map((op) => path.join('test', `${op}-batched.test.ts`))
    .concat(['compact', 'tp_select'].map((f) => path.join('test', `${f}.test.ts`)));
  const d = await tapRun(batched, {
    ...base, KVTRIM_EMU_SM: '90', KVTRIM_EMU_SMS: '132', KVTRIM_TEST_BATCH_SUBSET: '1',
    KVTRIM_EMU_THREAD_ORDER: 'random', KVTRIM_EMU_BLOCK_ORDER: 'random', KVTRIM_EMU_SEED: '11',
  });
  t.equal(d.code, 0, `batched ops = per-sequence ops on CUDA, shuffled orders: ${batched.join(', ')}`, { diagnostic: d.code !== 0, failures: failures(d.out) });

  // every kernel of cuda/ was launched
  const src = fs.readdirSync(path.join(root, 'cuda')).filter((f) => /\.cuh?$/.test(f));
  const kernels = new Set<string>();
  for (const f of src) {
    const text = fs.readFileSync(path.join(root, 'cuda', f), 'utf8').replace(/\/\/.*$/gm, '');
    for (const m of text.matchAll(/__global__\s+void\s+(?:__launch_bounds__\s*\((?:[^()]|\([^()]*\))*\)\s*)?(\w+)\s*\(/g)) kernels.add(`${f}:${m[1]}`);
  }
  const launched = fs.existsSync(coverage) ? fs.readFileSync(coverage, 'utf8') : '';
  const missing = [...kernels].filter((k) => {
    const [file, name] = k.split(':');
    return !new RegExp(`^${file.replace('.', '\\.')}: .*\\b${name}\\(`, 'm').test(launched);
  });
  t.ok(kernels.size >= 40, `${kernels.size} kernels found in cuda/`);
  t.same(missing, [], 'every __global__ kernel of cuda/ ran under the emulator');
  fs.rmSync(tmp, { recursive: true, force: true });
});
