/**
 * Loads the native addon (one `.node` for CPU and CUDA) and initialises the backend. Follows sharp's pattern:
 * every way loading can fail is collected into one error that says what to do about it.
 *
 * Environment:
 * - `KVTRIM_BACKEND=auto|cpu|cuda` (default auto): `cpu` never touches the CUDA runtime; `cuda` makes loading
 *   fail (code ERR_KVTRIM_NO_CUDA) when no usable GPU is present instead of falling back to the CPU backend.
 * - `KVTRIM_ADDON=/path/to/kvtrim.node`: load this file instead of searching `build/` and `prebuilds/`.
 * - `KVTRIM_THREADS=n`: CPU backend threads (read by the addon).
 */
import path from 'node:path';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type NativeTensor = { data: unknown; dtype: string; shape: readonly number[]; strides: readonly number[]; offset: number };

export interface NativeDevice {
  id: number;
  name: string;
  sm: string;
  memory: number;
  multiprocessors: number;
  supported: boolean;
}

export interface NativeInfo {
  cuda: boolean;
  reason?: string;
  devices: NativeDevice[];
  threads: number;
  versions: Record<string, string | number | boolean>;
}

/** The raw addon surface (internal; the typed API in index.ts wraps it). */
export interface Native {
  init(opts: { cuda: boolean }): NativeInfo;
  NativeBuffer: new (...args: any[]) => { ptr?: bigint; free(): void };
  streamCreate(device: number): bigint;
  streamDestroy(handle: bigint): void;
  streamSynchronize(handle: bigint, device: number): Promise<void>;
  eventCreate(device: number): bigint;
  eventRecord(event: bigint, stream?: bigint): void;
  eventElapsed(start: bigint, end: bigint): number;
  eventDestroy(event: bigint): void;
  copyToDevice(dst: unknown, dstOffset: number, src: ArrayBufferView, srcOffset: number, bytes: number, stream?: bigint): void;
  copyToHost(dst: ArrayBufferView, dstOffset: number, src: unknown, srcOffset: number, bytes: number, stream?: bigint): Promise<void>;
  copyDevice(dst: unknown, dstOffset: number, src: unknown, srcOffset: number, bytes: number, stream?: bigint): void;
  fillBytes(dst: unknown, offset: number, byte: number, bytes: number, stream?: bigint): void;
  deviceSynchronize(device: number): void;
  [op: string]: any;
}

export type BackendChoice = 'auto' | 'cpu' | 'cuda';

export const packageRoot = path.join(__dirname, '..');

function describe(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}

/** Builds the single explanatory error for a failed load (exported for tests). */
export function loadError(errors: unknown[], where: string): Error {
  const msgs = errors.map(describe);
  const all = msgs.join('\n');
  const help: string[] = [];
  if (/No native build was found/.test(all)) {
    help.push(
      `- No prebuilt binary matches this platform (${process.platform}-${process.arch}); kvtrim ships linux-x64 prebuilds.`,
      '  Build from source: install CMake >= 3.18 and a C++17 compiler (and the CUDA toolkit for GPU kernels), then run',
      '  `npm rebuild kvtrim --build-from-source` (or `npx cmake-js compile` in a clone).',
    );
  }
  if (/GLIBC|GLIBCXX|CXXABI/.test(all)) {
    help.push('- The binary needs a newer C/C++ runtime (glibc/libstdc++) than this system has: build from source as above.');
  }
  if (/invalid ELF header|wrong ELF class|cannot open shared object/.test(all)) {
    help.push('- The binary does not match this machine or is damaged: reinstall, or build from source as above.');
  }
  if (/ENOENT|Cannot find module/.test(all)) {
    help.push('- The addon file is missing: run `npm install` (a clone needs `npm install` to build it).');
  }
  if (help.length === 0) help.push('- Reinstall kvtrim; if that does not help, build from source (see the README, "Building").');
  const err = new Error(
    `Could not load the kvtrim native addon (${where}) on ${process.platform}-${process.arch}, Node ${process.version}.\n` +
      `Errors:\n${msgs.map((m) => `  ${m}`).join('\n')}\nPossible solutions:\n${help.join('\n')}`,
  );
  (err as Error & { code: string }).code = 'ERR_KVTRIM_LOAD';
  return err;
}

/** Loads the addon from `KVTRIM_ADDON` or through node-gyp-build (build/ first, then prebuilds/). */
export function loadAddon(env: NodeJS.ProcessEnv = process.env): Native {
  const errors: unknown[] = [];
  const explicit = env.KVTRIM_ADDON;
  if (explicit) {
    try {
      return require(path.resolve(explicit)) as Native;
    } catch (e) {
      errors.push(e);
      throw loadError(errors, `KVTRIM_ADDON=${explicit}`);
    }
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('node-gyp-build')(packageRoot) as Native;
  } catch (e) {
    errors.push(e);
  }
  throw loadError(errors, packageRoot);
}

/** Parses KVTRIM_BACKEND. */
export function backendChoice(env: NodeJS.ProcessEnv = process.env): BackendChoice {
  const v = (env.KVTRIM_BACKEND ?? 'auto').trim().toLowerCase() || 'auto';
  if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') {
    const err = new Error(`KVTRIM_BACKEND must be 'auto', 'cpu' or 'cuda', got '${env.KVTRIM_BACKEND}'`);
    (err as Error & { code: string }).code = 'ERR_KVTRIM_BACKEND';
    throw err;
  }
  return v;
}

/** Initialises the backend per the choice; `cuda` without a usable GPU is an error. */
export function initBackend(native: Native, choice: BackendChoice): NativeInfo {
  const info = native.init({ cuda: choice !== 'cpu' });
  if (choice === 'cuda' && !info.cuda) {
    const err = new Error(`KVTRIM_BACKEND=cuda but CUDA cannot be used: ${info.reason}`);
    (err as Error & { code: string }).code = 'ERR_KVTRIM_NO_CUDA';
    throw err;
  }
  return info;
}

const choice = backendChoice();
export const native: Native = loadAddon();
export const nativeInfo: NativeInfo = initBackend(native, choice);
export const backend: BackendChoice = choice;
