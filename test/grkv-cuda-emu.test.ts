// The GRKV and SPD CUDA kernel sources, run on the CPU under scripts/cuda-emu (fibers per CUDA thread, barriers and
// shuffles as scheduling points, poisoned device memory) and compared with the CPU backend on the same inputs. This
// keeps the CUDA code exercised on machines without a GPU; it cannot find races, occupancy or performance problems.
// Skipped when g++ or python3 is missing.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.join(__dirname, '..');
const out = path.join(root, 'build-emu');
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

const configs = [
  // H G Qs N d dv keep dtype source acceptance smem_optin gamma capKey cgIters capExtra
  '2 2 16 400 64 48 120 f32 stratified best',
  '2 4 32 700 128 128 180 f32 stratified best 232448',
  '2 4 32 700 128 128 180 bf16 window best',
  '3 2 13 333 40 24 90 f16 window joint',
  '2 1 7 260 256 256 70 f32 window best',
  '2 3 5 150 32 200 60 f32 stratified joint',
  '2 2 16 300 64 64 100 bf16 stratified best 101376 1.0',
  '2 2 16 300 64 64 100 f32 stratified best 101376 0.1 0',
];

t.test('CUDA kernels under the CPU emulator match the CPU backend', { skip: process.platform !== 'linux' || !have('g++') || !have('python3') ? 'needs linux, g++ and python3' : false }, async (t) => {
  const b = spawnSync(path.join(root, 'scripts/cuda-emu/build.sh'), [out], { encoding: 'utf8' });
  t.equal(b.status, 0, `emulator build (${b.stderr.split('\n').filter((l) => /error/.test(l)).slice(0, 3).join(' | ')})`);
  if (b.status !== 0) return;
  for (const c of configs) {
    const r = spawnSync(path.join(out, 'grkv_emu_test'), c.split(' '), { encoding: 'utf8' });
    const fails = r.stdout.split('\n').filter((l) => /FAIL/.test(l));
    t.equal(r.status, 0, `${c}: ${fails.length ? fails.join(' | ') : 'all comparisons within tolerance'}`);
  }
});
