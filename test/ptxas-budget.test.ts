// Static kernel budgets (docs/performance.md §10): the ptxas resource usage of every kernel variant of the CUDA build
// under test — no spill or local memory in the default (d <= 256) variants beyond the documented allowances, no
// occupancy below the documented floors, a budget row for every kernel, and bench/results/ptxas-sm80.json /
// -sm90.json matching the build. Reads the reports tools/gpu/ptxas-log.js wrote during the build (<build>/ptxas), so
// no second CUDA compilation; skipped, saying why, without a CUDA toolchain or a CUDA build. The parser and the
// occupancy calculator are checked everywhere.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { backendInfo } from '../lib/index';
import * as px from '../tools/gpu/ptxas.js';
import * as sol from '../tools/gpu/sol-model.js';

const root = path.join(__dirname, '..');
const docs = fs.readFileSync(path.join(root, 'docs', 'performance.md'), 'utf8');
const table = px.budgetTable(docs);

t.test('ptxas reports parse: registers, stack, spills, shared memory per entry and architecture', async (t) => {
  const text = [
    "ptxas info    : 0 bytes gmem",
    "ptxas info    : Compiling entry function '_ZN3kvt4cuda12_GLOBAL__N_112merge_kernelENS1_7DecArgsE' for 'sm_90'",
    'ptxas info    : Function properties for _ZN3kvt4cuda12_GLOBAL__N_112merge_kernelENS1_7DecArgsE',
    '    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads',
    'ptxas info    : Used 40 registers, used 1 barriers, 32 bytes smem, 800 bytes cmem[0]',
    'ptxas info    : Compile time = 1.2 ms',
    "ptxas info    : Compiling entry function '_ZN3kvt4cuda12_GLOBAL__N_112pass2_kernelILi2ELi8ELi1EEEvNS1_3CtxE' for 'sm_80'",
    'ptxas info    : Function properties for _ZN3kvt4cuda12_GLOBAL__N_112pass2_kernelILi2ELi8ELi1EEEvNS1_3CtxE',
    '    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads',
    'ptxas info    : Used 96 registers, used 1 barriers, 192 bytes smem, 400 bytes cmem[0]',
  ].join('\n');
  const e = px.parseReport(text, 'decode.cu.o');
  t.equal(e.length, 2);
  t.match(e[0], { file: 'decode.cu', arch: 'sm_90', regs: 40, stack: 8, spillStores: 4, spillLoads: 4, smem: 32, barriers: 1, entry: true });
  t.match(e[1], { arch: 'sm_80', regs: 96, stack: 0, spillStores: 0, smem: 192 });
  const names = px.demangle(e.map((x) => x.mangled));
  const k = px.kernelName(names.get(e[1].mangled) ?? '');
  if (names.get(e[1].mangled) !== e[1].mangled) t.same(k, { kernel: 'pass2_kernel', args: ['2', '8', '1'] }, 'demangled name and template arguments');
  t.same(px.kernelName('void kvt::cuda::grkv::(anonymous namespace)::av_kernel<2, 256>(kvt::cuda::grkv::Ctx, int)'), { kernel: 'av_kernel', args: ['2', '256'] });
  t.same(px.kernelName('kvt::cuda::(anonymous namespace)::gather_kernel(kvt::cuda::T3, kvt::cuda::T3)'), { kernel: 'gather_kernel', args: [] });
  t.ok(px.matchArgs(['2', '1', '32'], '<*, 1, 32>') && !px.matchArgs(['2', '8', '1'], '<*, 1, 32>'), 'variant patterns');
  // a batched (BATCH = true) variant's own floor and allowance: "`<pattern>` floor % / local bytes" in the batched column
  const doc = [
    '## 10. x', '',
    '| file | kernel | threads | dynamic smem (bytes) | occupancy floor | local bytes (d ≤ 256) | d > 256 variants | batched variants (floor / local bytes) | note |',
    '|---|---|---|---|---|---|---|---|---|',
    '| `a.cu` | `k_kernel` | 256 | 0 | 50 % | 0 | | `<true, *>` 25 % / 8 | why |',
  ].join('\n');
  const row = px.budgetTable(doc)[0];
  t.match(row, { floor: 0.5, localBytes: 0, batched: { patterns: ['<true, *>'], floor: 0.25, localBytes: 8 } });
  const parsedEntry = { object: 'a.cu.o', mangled: 'k', arch: 'sm_90', barriers: 0, smem: 0, cmem: 0, spillLoads: 0, lmem: 0, entry: true, demangled: 'k' };
  const entry = (args: string[]) => ({ ...parsedEntry, args, kernel: 'k_kernel', file: 'a.cu', regs: 128, stack: 8, spillStores: 8 });
  const rows = px.budgetRows([entry(['true', '1']), entry(['false', '1'])], [row], 'sm_90');
  const b = rows.find((r) => r.args[0] === 'true'), s = rows.find((r) => r.args[0] === 'false');
  t.match(b, { batched: true, floor: 0.25, localBytes: 8, occupancy: 0.25 });
  t.match(s, { batched: false, floor: 0.5, localBytes: 0 });
});

t.test('occupancy as the CUDA occupancy calculator computes it', async (t) => {
  // 256 threads = 8 warps; registers are allocated per warp in units of 256 of a 64 K file
  t.match(px.occupancy({ arch: 'sm_90', regs: 128, smem: 0, threads: 256 }), { blocksPerSM: 2, occupancy: 0.25, limiter: 'registers' });
  t.match(px.occupancy({ arch: 'sm_90', regs: 40, smem: 0, threads: 256 }), { blocksPerSM: 6, occupancy: 0.75 }); // 1280 regs per warp -> 51 warps
  t.match(px.occupancy({ arch: 'sm_80', regs: 32, smem: 0, threads: 256 }), { blocksPerSM: 8, occupancy: 1 });
  t.match(px.occupancy({ arch: 'sm_86', regs: 32, smem: 0, threads: 256 }), { blocksPerSM: 6, occupancy: 1, limiter: 'threads' }); // 48 warps
  t.match(px.occupancy({ arch: 'sm_80', regs: 255, smem: 0, threads: 256 }), { blocksPerSM: 1, occupancy: 0.125 });
  // shared memory: 64 KB + 1 KB reserved per block -> 2 blocks in 164 KB (sm_80), 3 in 228 KB (sm_90)
  t.match(px.occupancy({ arch: 'sm_80', regs: 32, smem: 0, dynSmem: 65536, threads: 256 }), { blocksPerSM: 2, limiter: 'shared memory' });
  t.match(px.occupancy({ arch: 'sm_90', regs: 32, smem: 0, dynSmem: 65536, threads: 256 }), { blocksPerSM: 3 });
  t.match(px.occupancy({ arch: 'sm_90', regs: 32, smem: 0, threads: 1024 }), { blocksPerSM: 2, occupancy: 1 });
});

t.test('docs/performance.md §10: one budget row per kernel of cuda/', async (t) => {
  t.ok(table.length >= 40, `${table.length} rows`);
  const kernels = new Set<string>();
  for (const f of fs.readdirSync(path.join(root, 'cuda')).filter((f) => /\.cuh?$/.test(f) && f !== 'bench_baselines.cu')) {
    const text = fs.readFileSync(path.join(root, 'cuda', f), 'utf8').replace(/\/\/.*$/gm, '');
    for (const m of text.matchAll(/__global__\s+void\s+(?:__launch_bounds__\s*\((?:[^()]|\([^()]*\))*\)\s*)?(\w+)\s*\(/g)) {
      // kernels of a shared header (spd_device.cuh) are compiled into the files that include them
      const files = f.endsWith('.cuh') ? table.filter((r) => r.kernel === m[1]).map((r) => r.file) : [f];
      t.ok(files.length > 0, `${f}: ${m[1]} has a budget row`);
      for (const file of files) kernels.add(`${file} ${m[1]}`);
    }
  }
  for (const r of table) {
    t.ok(kernels.has(`${r.file} ${r.kernel}`), `row ${r.file} ${r.kernel} names a kernel of cuda/`);
    t.ok(r.threads > 0 && r.threads <= 1024 && r.floor > 0 && r.floor <= 1 && Number.isFinite(r.dynSmem) && Number.isFinite(r.localBytes), `row ${r.file} ${r.kernel} is complete`);
  }
});

// ---- the build under test ------------------------------------------------------------------------------------
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const info = backendInfo();
const logDir =
  process.env.KVTRIM_PTXAS_DIR ??
  (process.env.KVTRIM_ADDON ? path.join(path.dirname(path.dirname(path.resolve(process.env.KVTRIM_ADDON))), 'ptxas') : path.join(root, 'build', 'ptxas'));
const skip = !have('nvcc')
  ? 'no CUDA toolchain (nvcc on PATH): the static budgets need a CUDA build'
  : !info.versions.compiledWithCuda
    ? 'the addon under test was built without CUDA (KVTRIM_CUDA=OFF / cmake-js --CDKVTRIM_CUDA=OFF)'
    : info.versions.cudaArchs === 'emulated'
      ? 'the addon under test is the CUDA emulator build'
      : false;
const archs = ['sm_80', 'sm_90'].filter((a) => String(info.versions.cudaArchs ?? '').split(',').some((x: string) => x.startsWith(a.slice(3))));

t.test(`the CUDA build's kernels are within their budgets (${logDir})`, { skip }, async (t) => {
  const entries = px.readLogs(logDir);
  t.ok(entries.length > 0, `ptxas reports of the build in ${path.relative(root, logDir)} (rebuild if missing: npm run build:native)`);
  if (!entries.length) return;
  t.ok(archs.length > 0, `the build has sm_80 or sm_90 code (archs ${info.versions.cudaArchs})`);
  const nvcc = px.nvccVersion();
  for (const arch of archs) {
    const rows = px.budgetRows(entries, table, arch).filter((r) => r.file !== 'bench_baselines.cu');
    t.ok(rows.length >= 100, `${arch}: ${rows.length} kernel variants`);
    const unbudgeted = rows.filter((r) => r.threads === null).map((r) => `${r.file} ${r.kernel}`);
    t.same([...new Set(unbudgeted)], [], `${arch}: every kernel has a budget row`);
    const local = rows.filter((r) => !r.largeD && Math.max(r.stack, r.spillStores, r.lmem) > (r.localBytes ?? 0));
    t.same(local.map((r) => `${r.file} ${r.kernel}<${r.args.join(', ')}>: stack ${r.stack}, spill stores ${r.spillStores} B (allowed ${r.localBytes})`), [],
      `${arch}: no spill or local memory in the default variants beyond the documented allowances`);
    const low = rows.filter((r) => !r.largeD && r.occupancy !== null && r.floor !== null && r.occupancy + 1e-9 < r.floor);
    t.same(low.map((r) => `${r.file} ${r.kernel}<${r.args.join(', ')}>: ${(100 * (r.occupancy ?? 0)).toFixed(1)} % < floor ${(100 * (r.floor ?? 0)).toFixed(1)} % (${r.regs} registers, limited by ${r.limiter})`), [],
      `${arch}: no default variant below its occupancy floor`);
    const recorded = path.join(root, 'bench', 'results', `ptxas-${arch.replace('_', '')}.json`);
    const rec = fs.existsSync(recorded) ? JSON.parse(fs.readFileSync(recorded, 'utf8')) : null;
    t.ok(rec, `${path.relative(root, recorded)} exists (npm run ptxas:report)`);
    if (!rec) continue;
    const key = (r: { file: string; kernel: string; args: string[]; regs: number; stack: number; spillStores: number; smem: number }) =>
      `${r.file} ${r.kernel}<${r.args.join(', ')}> regs ${r.regs} stack ${r.stack} spill ${r.spillStores} smem ${r.smem}`;
    if (rec.nvcc === nvcc) {
      const now = px.budgetRows(entries, table, arch).map(key).sort(), then = (rec.kernels as Parameters<typeof key>[0][]).map(key).sort();
      t.same(now.filter((x) => !then.includes(x)), [], `${arch}: the build matches ${path.basename(recorded)} (regenerate: npm run ptxas:report)`);
      t.same(then.filter((x) => !now.includes(x)), [], `${arch}: ${path.basename(recorded)} lists no variant the build lacks`);
    } else {
      t.comment(`${path.basename(recorded)} was recorded with nvcc ${rec.nvcc}, this build used ${nvcc}: not compared`);
    }
  }
});

t.test("README's expected-speed-of-light table is the static model's output (docs/performance.md §11)", async (t) => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = /<!-- SOL_MODEL_START -->\n([\s\S]*?)\n<!-- SOL_MODEL_END -->/.exec(readme);
  t.ok(m, 'README has the SOL_MODEL block');
  const rec = JSON.parse(fs.readFileSync(path.join(root, 'bench', 'results', 'ptxas-sm90.json'), 'utf8'));
  t.equal(m?.[1], sol.markdown(sol.model(rec)), 'regenerate: node tools/gpu/sol-model.js --markdown');
  for (const r of sol.model(rec)) {
    t.ok(r.parts.every((p) => p.occ !== null), `${r.op}: every kernel's variant is in ptxas-sm90.json`);
    t.ok(r.fraction > 0 && r.fraction < 1, `${r.op}: ${(100 * r.fraction).toFixed(1)} % of the speed of light, modelled`);
  }
});
