/**
 * The PyTorch peer of `kvtrim bench --peer torch`: one Python child (tools/gpu/torch_peer.py --serve) that times the
 * same math written in PyTorch, case by case, on the inputs the bench gave kvtrim, in the same run. The bench is
 * synchronous, so requests and answers go through two named pipes read without blocking the process forever: the
 * child's death or a silent hour ends the wait with an error.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostContiguous } from './tensor';
import type { Tensor } from './tensor';

export interface PeerTiming {
  medianMs: number;
  checksum: number;
}

export interface BenchPeer {
  /** e.g. "PyTorch 1.13.0 (2 threads)" */
  readonly name: string;
  /**
   * Median milliseconds of the peer's formulation of (op, variant) on `inputs`, and the sum of the finite values of its
   * (first) output; undefined when it has none.
   */
  time(op: string, variant: string, inputs: Record<string, Tensor>, params: Record<string, number>, repeats: number, warmup: number): PeerTiming | undefined;
  close(): void;
}

/** tools/gpu/torch_peer.py, from lib/ (ts) or dist/ (js): both are one level below the package root. */
export const TORCH_PEER_SCRIPT = path.join(__dirname, '..', 'tools', 'gpu', 'torch_peer.py');

/** The first of `candidates` that imports torch and numpy, or ''. Debian's python3-torch is often not the PATH one. */
export function findTorchPython(candidates: string[] = ['python3', '/usr/bin/python3', 'python']): string {
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch, numpy'], { stdio: 'ignore', timeout: 120_000 });
    if (r.status === 0) return py;
  }
  return '';
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms: number) => Atomics.wait(sleeper, 0, 0, ms);

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

const DTYPE_NAMES: Record<string, string> = { f32: 'f32', f64: 'f64', i32: 'i32', f16: 'f16', bf16: 'bf16' };

/** Starts the PyTorch peer with `threads` intra-op threads (the CPU backend's). Throws when it cannot start. */
export function torchPeer(o: { threads: number; python?: string; timeoutMs?: number }): BenchPeer {
  const py = o.python ?? findTorchPython();
  if (!py) throw new Error('--peer torch: no python3 that imports torch and numpy (tried python3, /usr/bin/python3, python)');
  if (!fs.existsSync(TORCH_PEER_SCRIPT)) throw new Error(`--peer torch: ${TORCH_PEER_SCRIPT} is missing`);
  const timeoutMs = o.timeoutMs ?? 3_600_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-peer-'));
  const req = path.join(dir, 'req'), resp = path.join(dir, 'resp'), log = path.join(dir, 'stderr.log');
  for (const f of [req, resp]) {
    const r = spawnSync('mkfifo', [f]);
    if (r.status !== 0) throw new Error(`--peer torch: mkfifo failed (${r.stderr?.toString().trim() || r.error?.message})`);
  }
  const errFd = fs.openSync(log, 'w');
  const child: ChildProcess = spawn(py, [TORCH_PEER_SCRIPT, '--serve', req, resp, '--threads', String(o.threads)], {
    stdio: ['ignore', 'ignore', errFd],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  fs.closeSync(errFd);
  // O_RDWR: opening the request pipe does not wait for the reader; O_NONBLOCK: nor does reading the answers.
  const reqFd = fs.openSync(req, fs.constants.O_RDWR);
  const respFd = fs.openSync(resp, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  let pending = '';
  const buf = Buffer.alloc(65536);
  const cleanup = () => {
    for (const fd of [reqFd, respFd]) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already closed */
      }
    }
    if (alive(child.pid)) child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const fail = (what: string): never => {
    let tail = '';
    try {
      tail = fs.readFileSync(log, 'utf8').slice(-2000).trim();
    } catch {
      /* no log */
    }
    cleanup();
    throw new Error(`--peer torch: ${what}${tail ? `\n${tail}` : ''}`);
  };
  const readLine = (): Record<string, unknown> => {
    const t0 = Date.now();
    for (;;) {
      const nl = pending.indexOf('\n');
      if (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        return JSON.parse(line) as Record<string, unknown>;
      }
      let n = 0;
      try {
        n = fs.readSync(respFd, buf, 0, buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      }
      if (n > 0) {
        pending += buf.toString('utf8', 0, n);
        continue;
      }
      if (!alive(child.pid)) fail('the Python peer exited');
      if (Date.now() - t0 > timeoutMs) fail(`no answer in ${timeoutMs / 1000} s`);
      sleep(2);
    }
  };
  const hello = readLine();
  const name = `PyTorch ${hello.torch} (${hello.threads} thread${hello.threads === 1 ? '' : 's'})`;
  let seq = 0;
  return {
    name,
    time(op, variant, inputs, params, repeats, warmup) {
      const files: Record<string, [string, string, number[]]> = {};
      try {
        for (const [k, t] of Object.entries(inputs)) {
          const dt = DTYPE_NAMES[t.dtype];
          if (!dt) throw new TypeError(`--peer torch: input ${k} has dtype ${t.dtype}`);
          const f = path.join(dir, `${seq++}.${k}.bin`);
          const h = hostContiguous(t);
          fs.writeFileSync(f, new Uint8Array(h.buffer, h.byteOffset, h.byteLength));
          files[k] = [f, dt, [...t.shape]];
        }
        fs.writeSync(reqFd, JSON.stringify({ op, variant, inputs: files, params, repeats, warmup }) + '\n');
        const r = readLine();
        if (typeof r.error === 'string') throw new Error(`--peer torch: ${op} (${variant}): ${r.error}`);
        return typeof r.ms === 'number' ? { medianMs: r.ms, checksum: Number(r.checksum) } : undefined;
      } finally {
        for (const [f] of Object.values(files)) fs.rmSync(f, { force: true });
      }
    },
    close: cleanup,
  };
}
