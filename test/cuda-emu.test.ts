// Every CUDA code path of kvtrim, run on the CPU by the emulator of tools/cuda-emu (no GPU, no nvcc needed): builds
// the addon with -DKVTRIM_CUDA_EMU=ON (or uses KVTRIM_EMU_ADDON=/path/to/kvtrim.node), then, in child processes with
// KVTRIM_ADDON pointing at it:
//  - test/emu/run-checks.ts: every `kvtrim check` entry (small shapes: the family checks and the code-path
//    sweep), the bench baselines against the ops, `kvtrim bench` on CUDA — twice, under the default schedule and
//    under shuffled thread and block orders, and the fetched outputs must be identical bit for bit (no
//    order-dependent reads);
//  - the same on an sm_90-like device (227 KB of shared memory per block, 132 SMs: the SPD factor in shared memory),
//    whose outputs must be bit-identical to the 4-SM device's: partitions depend on the shapes only, never on the
//    device (cuda/common.cuh kRefSMs; docs/performance.md §10), and no launcher reads the multiprocessor count;
//  - a few op test files (their 'cuda' cases run on the emulator), and the batched-op tests' CUDA cases (a subset of
//    their layouts) under shuffled schedules;
//  - every __global__ kernel of cuda/ must have been launched.
// Skipped only when there is no host C++ compiler or python3 (or not on Linux).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { emuSkip, emulatedAddon, run } from './emu/addon';

const root = path.join(__dirname, '..');
const skip = emuSkip();

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
  const built = await emulatedAddon();
  if ('error' in built) {
    t.fail('cmake-js compile -O build-emu --CDKVTRIM_CUDA_EMU=ON', { output: built.error });
    return;
  }
  const addon = built.addon;
  const coverage = path.join(tmp, 'kernels.txt');
  const base = { KVTRIM_ADDON: addon, KVTRIM_CHECK_SIZE: 'small', KVTRIM_EMU_COVERAGE: coverage, KVTRIM_BACKEND: 'cuda' };
  const fixture = path.join('test', 'emu', 'run-checks.ts');
  const hashes = [path.join(tmp, 'a.txt'), path.join(tmp, 'b.txt'), path.join(tmp, 'c.txt')];
  const digests = (f: string) => fs.readFileSync(f, 'utf8').split('\n');
  /** The checks (their '# op config' headers) whose output digests differ between two runs. */
  const differing = (x: string[], y: string[]) =>
    [...new Set(x.map((l, i) => (l === y[i] ? null : x.slice(i).find((z) => z.startsWith('# ')) ?? '?')).filter((l) => l))];

  // Two schedules in parallel (same device parameters), then the sm_90-like device with the op tests.
  const [a, b] = await Promise.all([
    tapRun([fixture], { ...base, KVTRIM_EMU_HASHES: hashes[0] }),
    tapRun([fixture], { ...base, KVTRIM_EMU_HASHES: hashes[1], KVTRIM_EMU_THREAD_ORDER: 'random', KVTRIM_EMU_BLOCK_ORDER: 'random', KVTRIM_EMU_SEED: '7' }),
  ]);
  t.equal(a.code, 0, 'kvtrim check, baselines, bench (default schedule)', { diagnostic: a.code !== 0, failures: failures(a.out) });
  t.equal(b.code, 0, 'the same under shuffled thread and block orders', { diagnostic: b.code !== 0, failures: failures(b.out) });
  if (a.code === 0 && b.code === 0) {
    const [x, y] = hashes.slice(0, 2).map(digests);
    t.same(differing(x, y), [], `every output bit-identical under both schedules (${x.filter((l) => l && !l.startsWith('#')).length} outputs)`);
  }
  // the op suites at reduced sizes (KVTRIM_TEST_QUICK=1: their N = 32768 cases are skips) — every case runs twice,
  // under both output poisons, and the emulator runs the kernels ~10^4 times slower than a GPU
  const ops = ['keydiff', 'select', 'gather', 'spd', 'bad-input', 'backend', 'device', 'async'].map((f) => path.join('test', `${f}.test.ts`));
  const c = await tapRun([fixture, ...ops], { ...base, KVTRIM_EMU_SM: '90', KVTRIM_EMU_SMS: '132', KVTRIM_EMU_HASHES: hashes[2], KVTRIM_TEST_QUICK: '1' });
  t.equal(c.code, 0, `sm_90-like device (227 KB shared memory, 132 SMs): checks and ${ops.join(', ')}`, { diagnostic: c.code !== 0, failures: failures(c.out) });
  if (a.code === 0 && c.code === 0) {
    const [x, z] = [hashes[0], hashes[2]].map(digests);
    t.same(differing(x, z), [], 'every output bit-identical on the 4-SM sm_86-like and the 132-SM sm_90-like device (partitions depend on the shapes only)');
  }
  // ... because no launcher sizes a partition from the device: the multiprocessor count is read nowhere in cuda/
  const readers = fs.readdirSync(path.join(root, 'cuda')).filter((f) => /MultiProcessorCount|multiProcessorCount/.test(fs.readFileSync(path.join(root, 'cuda', f), 'utf8')));
  t.same(readers, [], 'no file of cuda/ reads the multiprocessor count');

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
