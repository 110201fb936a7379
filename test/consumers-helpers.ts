/**
 * Shared plumbing of the tests of kvtrim's non-Node consumers (test/native-library, test/python-client,
 * test/packaging): tools on PATH, a Python with given modules, the C example (examples/c/compress.c) with the output
 * the Node API gives for the same inputs, and the run of the Python client over every op (test/fixtures/dlpack_ops.py)
 * compared with the Node API bit for bit.
 */
import type { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  decodeAttention, f32ToBf16, f32ToF16, gatherKV, grkvMerge, keydiffScores, MomentState, momentkvSelect, nestedkvScores,
  selectTokens, snapkvScores, spdSolve, tensor, Tensor,
} from '../lib/index';
import { hostContiguous } from '../lib/tensor';
import { Rng } from '../lib/rng';

export const root = path.join(__dirname, '..');

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** A C compiler: $CC, else cc / gcc / clang. */
export const cc: string | undefined = process.env.CC || ['cc', 'gcc', 'clang'].find(have);

/**
 * The interpreters (sys.executable, not a shim script such as pyenv's) that import every module in `modules`, among
 * python3 on PATH, Debian's /usr/bin/python3 and python; distinct interpreters only.
 */
export function pythonsWith(modules: string[]): string[] {
  const found = new Set<string>();
  for (const py of ['python3', '/usr/bin/python3', 'python']) {
    if (spawnSync('sh', ['-c', `command -v ${py}`]).status !== 0) continue;
    const code = [...modules.map((m) => `import ${m}`), 'import sys', 'print(sys.executable)'].join('; ');
    const r = spawnSync(py, ['-c', code], { encoding: 'utf8', timeout: 120000 });
    if (r.status === 0) found.add(fs.realpathSync(r.stdout.trim()));
  }
  return [...found];
}

/** The first of {@link pythonsWith}. */
export function pythonWith(modules: string[]): string | undefined {
  return pythonsWith(modules)[0];
}

/** FNV-1a (32 bit) of a typed array's bytes, as examples/c/compress.c prints it. */
export function fnv1a(a: ArrayBufferView): string {
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let h = 2166136261;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 16777619) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** The inputs of examples/c/compress.c: keys then values [4, N, 64] from its LCG (multiples of 1/256, exact in f32). */
export function cExampleInputs(N: number): { keys: Tensor; values: Tensor } {
  const H = 4, d = 64;
  let lcg = 1;
  const next = () => {
    lcg = (Math.imul(lcg, 1103515245) + 12345) >>> 0;
    return (((lcg >>> 8) % 2001) - 1000) / 256;
  };
  const k = new Float32Array(H * N * d).map(next);
  const v = new Float32Array(H * N * d).map(next);
  return { keys: tensor(k, [H, N, d]), values: tensor(v, [H, N, d]) };
}

/** The two result lines examples/c/compress.c prints for N, computed with the Node API. */
export function cExampleExpected(N: number): string[] {
  const { keys, values } = cExampleInputs(N);
  const scores = nestedkvScores(keys);
  const sel = selectTokens(scores, { keep: Math.floor(N / 4), budget: 'adaptive' });
  const out = gatherKV({ keys, values, ...sel });
  const bytes = (t: Tensor) => hostContiguous(t);
  return [
    `N ${N}, cap ${sel.indices.shape[1]}, kept per head: ${Array.from(out.counts.host).join(' ')}`,
    `fnv1a scores ${fnv1a(bytes(scores))} indices ${fnv1a(bytes(sel.indices))} counts ${fnv1a(bytes(out.counts))} ` +
      `keys ${fnv1a(bytes(out.keys))} values ${fnv1a(bytes(out.values))}`,
  ];
}

/** Compiles examples/c/compress.c (or `source`) against a header folder and a library folder (with an rpath). */
export function buildCExample(out: string, include: string, libDir: string, source = path.join(root, 'examples', 'c', 'compress.c')) {
  return spawnSync(
    cc as string,
    ['-std=c99', '-Wall', '-Wextra', '-Werror', source, `-I${include}`, `-L${libDir}`, '-lkvtrim', `-Wl,-rpath,${libDir}`, '-o', out],
    { encoding: 'utf8' },
  );
}

// ---- The Python client over every op (test/fixtures/dlpack_ops.py) against the Node API --------------------------

const H = 4, N = 1536, d = 64, Hq = 8, W = 16, Qs = 8, B = 3, n = 16, r = 4;
const rng = new Rng(12);
const f32 = (len: number) => rng.normals(len);

// ---- inputs (written for Python as raw little-endian files + a manifest)
const keysData = f32(H * N * d);
const nhdData = f32(N * H * d);
const decodeQ = f32(Hq * d);
const evicted = new Int32Array(H * 400).fill(-1);
const evictedCounts = new Int32Array(H);
for (let h = 0; h < H; h++) {
  let c = 0;
  for (let i = 0; i < N && c < 400; i++) if ((i * 7 + h) % 5 === 0) evicted[h * 400 + c++] = i;
  evictedCounts[h] = c - 3 * h; // ragged
}
const spdA = new Float32Array(B * n * n);
for (let b = 0; b < B; b++) {
  const m = f32(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = i === j ? n : 0;
      for (let k = 0; k < n; k++) s += m[i * n + k] * m[j * n + k];
      spdA[b * n * n + i * n + j] = s;
    }
  }
}
const inputs: Record<string, { data: Float32Array | Int32Array | Uint16Array; dtype: string; shape: number[] }> = {
  keys: { data: keysData, dtype: 'f32', shape: [H, N, d] },
  values: { data: f32(H * N * d), dtype: 'f32', shape: [H, N, d] },
  queries: { data: f32(Hq * W * d), dtype: 'f32', shape: [Hq, W, d] },
  keys_f16: { data: Uint16Array.from(keysData, f32ToF16), dtype: 'f16', shape: [H, N, d] },
  keys_bf16: { data: Uint16Array.from(keysData, f32ToBf16), dtype: 'u16', shape: [H, N, d] },
  keys_nhd: { data: nhdData, dtype: 'f32', shape: [N, H, d] },
  evicted: { data: evicted, dtype: 'i32', shape: [H, 400] },
  evicted_counts: { data: evictedCounts, dtype: 'i32', shape: [H] },
  decode_queries: { data: decodeQ, dtype: 'f32', shape: [Hq, d] },
  spd_a: { data: spdA, dtype: 'f32', shape: [B, n, n] },
  spd_b: { data: f32(B * n * r), dtype: 'f32', shape: [B, n, r] },
  grkv_queries: { data: f32(Hq * Qs * d), dtype: 'f32', shape: [Hq, Qs, d] },
  grkv_positions: { data: Int32Array.from({ length: Qs }, (_, j) => N - Qs + j), dtype: 'i32', shape: [Qs] },
  grkv_weights: { data: Float32Array.from({ length: Qs }, (_, j) => 0.5 + j / Qs), dtype: 'f32', shape: [Qs] },
};
const T = (name: string, dtype?: 'f16' | 'bf16') => tensor(inputs[name].data, inputs[name].shape, dtype ? { dtype } : {});

// ---- the same calls through the Node API: case -> output -> tensor
function nodeResults(): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const put = (c: string, o: Record<string, Tensor>) => Object.entries(o).forEach(([k, v]) => out.set(`${c}.${k}`, v));
  const keys = T('keys'), values = T('values'), queries = T('queries');
  put('keydiff', { scores: keydiffScores(keys) });
  put('keydiff_f16', { scores: keydiffScores(T('keys_f16', 'f16')) });
  put('keydiff_nhd', { scores: keydiffScores(tensor(nhdData, [H, N, d], { strides: [d, H * d, 1] })) });
  put('keydiff_bf16', { scores: keydiffScores(T('keys_bf16', 'bf16')) });
  const nested = nestedkvScores(keys, { window: 32, sinks: 2, prior: [0.5, 0.3, 0.2] });
  put('nestedkv', { scores: nested });
  const snap = snapkvScores(queries, keys, { kernel: 7, pool: 'max' });
  put('snapkv', { scores: snap });
  const sel = selectTokens(nested, { keep: Math.floor(N / 4), budget: 'adaptive', sinks: 4, recent: 16 });
  put('select', { indices: sel.indices, counts: sel.counts });
  const mom = MomentState.create(H, d, d);
  const g = gatherKV({ keys, values, ...sel, moments: mom });
  put('gather', { keys: g.keys, values: g.values, counts: g.counts, n: mom.n, mu_k: mom.muK, mu_v: mom.muV, m: mom.m });
  const merged = MomentState.create(H, d, d).merge(keys, values, T('evicted'), T('evicted_counts'));
  put('moments', { n: merged.n, mu_k: merged.muK, mu_v: merged.muV, m: merged.m });
  put('decode', { out: decodeAttention({ queries: T('decode_queries'), keys: g.keys, values: g.values, counts: g.counts, moments: mom, clip: 2.5 }) });
  const mk = momentkvSelect({ scores: snap, keys, values, keep: Math.floor(N / 4), rounds: 3, evictedRound: true });
  put('momentkv_select', { indices: mk.indices, counts: mk.counts, evicted_round: mk.evictedRound!, n: mk.moments.n, mu_k: mk.moments.muK, mu_v: mk.moments.muV, m: mk.moments.m });
  const spd = spdSolve({ a: T('spd_a'), b: T('spd_b'), lambda: 0.1 });
  put('spd', { x: spd.x, info: spd.info });
  const us = selectTokens(snap, { keep: Math.floor(N / 4) });
  const gr = grkvMerge({
    keys, values, selection: us, queries: T('grkv_queries'), queryPositions: T('grkv_positions'), scores: snap,
    weights: T('grkv_weights'), lambda: 0.02, acceptance: 'joint', diagnostics: true,
  });
  put('grkv', { keys: gr.keys, values: gr.values, counts: gr.counts, diagnostics: gr.diagnostics! });
  return out;
}

const bytesOf = (x: Tensor) => {
  const a = hostContiguous(x);
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
};

/**
 * Runs every op of the Python client (`clientDir`/kvtrim_dlpack.py over `library`) on numpy arrays or torch CPU
 * tensors and checks each output against the Node API's, bit for bit, plus the error classes and the ABI version.
 */
export function checkPythonClient(t: Test, python: string, backend: 'numpy' | 'torch', clientDir: string, library: string, abi: number): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kvtrim-py-${backend}-`));
  try {
    const manifest: Record<string, { dtype: string; shape: number[] }> = {};
    for (const [name, x] of Object.entries(inputs)) {
      fs.writeFileSync(path.join(dir, `${name}.bin`), Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength));
      manifest[name] = { dtype: x.dtype, shape: x.shape };
    }
    fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
    const driver = path.join(root, 'test', 'fixtures', 'dlpack_ops.py');
    const r = spawnSync(python, [driver, clientDir, library, dir, backend], { encoding: 'utf8', timeout: 300000 });
    t.equal(r.status, 0, `${python} test/fixtures/dlpack_ops.py (${backend}): ${r.stderr}`);
    if (r.status !== 0) return;
    let compared = 0;
    for (const [key, want] of nodeResults()) {
      if (key.startsWith('keydiff_bf16') && backend !== 'torch') continue; // numpy has no bfloat16
      const file = path.join(dir, 'out', `${key}.bin`);
      if (!fs.existsSync(file)) {
        t.fail(`${key}: no output written`);
        continue;
      }
      const w = bytesOf(want);
      t.ok(fs.readFileSync(file).equals(w), `${key}: ${w.length} bytes equal`);
      compared++;
    }
    t.ok(compared >= 30, `${compared} outputs compared`);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'meta.json'), 'utf8'));
    t.equal(meta.abi, abi, `kvt_abi_version() through ctypes = ${abi}`);
    t.ok(['versioned', 'legacy'].includes(meta.dlpack), `${backend} gave ${meta.dlpack} DLPack capsules`);
    const kinds = ['range', 'type', ...(meta.dlpack === 'versioned' && backend === 'numpy' ? ['readonly'] : [])];
    t.same(meta.errors.map((e: string[]) => e[0]), kinds, 'KVT_ERR_RANGE -> KvtrimRangeError (ValueError), KVT_ERR_TYPE -> KvtrimTypeError (TypeError)' +
      (kinds.length > 2 ? ', a read-only output refused (versioned capsule flag)' : ''));
    t.match(meta.errors[0][1], /kvt_keydiff_scores: out: dimension 1 must equal N/, 'the message of kvt_last_error()');
    t.match(meta.errors[1][1], /keys/, 'an i32 array as keys: the error names keys');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
