// The addon built against the CUDA emulator of tools/cuda-emu, shared by the test files that run on it
// (test/cuda-emu.test.ts, test/gpu-verify.test.ts): KVTRIM_EMU_ADDON when given, otherwise an incremental
// `cmake-js compile -O build-emu --CDKVTRIM_CUDA_EMU=ON`. tap runs test files in parallel, so the build holds a lock
// (a directory next to build-emu): the first file builds, the others wait and then find it up to date.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.join(__dirname, '..', '..');
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** Why the emulated addon cannot be built here, or false. */
export function emuSkip(): string | false {
  const compiler = process.env.CXX || ['c++', 'g++', 'clang++'].find(have);
  if (process.platform !== 'linux') return 'the emulator needs Linux';
  if (process.env.KVTRIM_EMU_ADDON) return false;
  if (!compiler) return 'no host C++ compiler (c++ / g++ / clang++) to build the emulated addon';
  if (!have('python3')) return 'no python3 (tools/cuda-emu/emulate.py rewrites the kernels)';
  return false;
}

/** Environment of a plain child process: without the runner's TAP* / processinfo / coverage variables. */
export function plainEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS_|NODE_V8_COVERAGE)/.test(k)));
  return { ...base, ...extra };
}

export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd = root): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd, env: plainEnv(env) });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Holds a directory lock while `fn` runs; a lock whose owner process is gone is taken over. */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const owner = path.join(dir, 'pid');
  for (;;) {
    try {
      fs.mkdirSync(dir);
      fs.writeFileSync(owner, String(process.pid));
      break;
    } catch {
      const pid = Number(fs.existsSync(owner) ? fs.readFileSync(owner, 'utf8') : NaN);
      let alive = true;
      try {
        if (pid) process.kill(pid, 0);
      } catch {
        alive = false;
      }
      if (!alive) fs.rmSync(dir, { recursive: true, force: true });
      else await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The emulated addon's path, or the build's failure. */
export async function emulatedAddon(): Promise<{ addon: string } | { error: string }> {
  if (process.env.KVTRIM_EMU_ADDON) return { addon: process.env.KVTRIM_EMU_ADDON };
  const out = path.join(root, 'build-emu');
  return withLock(`${out}.lock`, async () => {
    const b = await run(process.execPath, [path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'compile', '-O', out, '--CDKVTRIM_CUDA_EMU=ON'], {});
    if (b.code !== 0) return { error: b.out.split('\n').filter((l) => /error|Error/.test(l)).slice(0, 10).join('\n') || b.out.slice(-2000) };
    return { addon: path.join(out, 'Release', 'kvtrim.node') };
  });
}
