/**
 * examples/python/dump_kv.py on a small LLaMA-style model in plain PyTorch with random weights
 * (test/fixtures/tiny_llama.py, no download): the hooks capture post-RoPE keys, values and queries that reproduce
 * the model's attention output (the script's capture check), and kvtrim loads and evaluates the dump. Needs a
 * python3 with torch; without one the tests are skipped with the reason.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadDump } from '../lib/io/dump';
import { runEval } from '../lib/eval/run';
import { main } from '../lib/cli';
import { captureConsole } from './helpers';

const root = path.join(__dirname, '..');
const script = path.join(root, 'examples', 'python', 'dump_kv.py');
const model = path.join(root, 'test', 'fixtures', 'tiny_llama.py');

/**
 * The first of python3 (PATH) and /usr/bin/python3 (Debian's python3-torch) that can import torch and numpy, or
 * why none can. KVTRIM_PYTHON (a comma-separated list) replaces the candidates.
 */
function findPython(): { python?: string; why: string } {
  const tried: string[] = [];
  for (const py of process.env.KVTRIM_PYTHON ? process.env.KVTRIM_PYTHON.split(',') : ['python3', '/usr/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8', timeout: 120000 });
    if (r.status === 0) return { python: py, why: `${py}: torch ${r.stdout.trim()}` };
    tried.push(`${py}: ${r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`);
  }
  return { why: `no python3 with torch and numpy (${tried.join('; ')})` };
}

const { python, why } = findPython();
const skip = python ? false : why;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-capture-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

function capture(out: string, ...extra: string[]): string {
  const r = spawnSync(python as string, [script, '--model-file', model, '--random-tokens', '--prompt-tokens', '448', '--out', out, '--device', 'cpu', ...extra], {
    encoding: 'utf8',
    timeout: 300000,
  });
  if (r.status !== 0) throw new Error(`dump_kv.py exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

t.test('dump_kv.py: prompt + continuation, keys of every position, loaded and evaluated by kvtrim', { skip }, async (t) => {
  t.comment(why);
  const file = path.join(tmp, 'tiny.safetensors');
  const stdout = capture(file);
  // the capture check recomputes causal attention from the captured q, k, v and compares with the model's output
  const check = [...stdout.matchAll(/layer (\d) (\d\.\d\de[+-]\d+)/g)].map((m) => Number(m[2]));
  t.equal(check.length, 2, 'both layers checked');
  for (const e of check) t.ok(e < 1e-4, `capture check ${e}`);
  t.match(stdout, /keys of positions 0\.\.511, queries of positions 0\.\.511 \(prompt 448, continuation 64\)/);
  t.match(stdout, /next: npx kvtrim eval --dump .*tiny\.safetensors --split 448/);

  const dump = loadDump(file);
  t.equal(dump.format, 'safetensors');
  t.equal(dump.queries, 'qpos');
  t.equal(dump.layers.length, 2);
  const L = dump.layers[0];
  t.same([L.Hkv, L.Hq, L.N, L.d, L.dv, L.T], [2, 4, 512, 32, 32, 512]);
  t.same(Array.from(L.positions!), Array.from({ length: 512 }, (_, i) => i));
  t.ok(L.keys.some((x) => x !== 0) && L.queries!.every(Number.isFinite), 'non-trivial, finite tensors');

  const r = await runEval({ dump: file, ratios: [0, 0.75], configs: ['keydiff', 'snapkv', 'snapkv+moment'] });
  t.same(r.protocol, { split: 448, window: { from: 416, to: 448 }, heldOut: { first: 448, last: 511, count: 64, continuation: 0 }, queries: 'qpos' }, 'the default split is the prompt length');
  for (const row of r.rows) {
    if (row.ratio === 0 && !row.correction) t.ok(row.p90Error < 1e-5, `${row.config}: ratio 0 reproduces the full cache (${row.p90Error})`);
    if (row.ratio > 0) t.ok(row.medianError > 1e-3 && Number.isFinite(row.p90Error), `${row.config} r=${row.ratio}: median ${row.medianError}`);
  }
  t.equal(r.layers.length, 2);

  const { out } = await captureConsole(async () => {
    t.equal(await main(['eval', '--dump', file, '--ratios', '0.5', '--configs', 'keydiff', '--out', path.join(tmp, 'eval'), '--quiet']), 0);
  });
  t.match(out, /split S=448: prefix \[0, 448\) compressed, window 416\.\.447; held out per head: 64 queries at positions 448\.\.511/);
});

t.test('dump_kv.py --prompt-cache-only: continuation queries past N see all N keys; bf16 output', { skip }, async (t) => {
  const file = path.join(tmp, 'tiny-prompt.safetensors');
  const stdout = capture(file, '--prompt-cache-only', '--dtype', 'bf16', '--queries-from', '300');
  t.match(stdout, /keys of positions 0\.\.447, queries of positions 300\.\.511/);
  const dump = loadDump(file);
  const L = dump.layers[1];
  t.same([L.N, L.T, L.positions![0], L.positions![L.positions!.length - 1]], [448, 212, 300, 511]);
  const r = await runEval({ dump: file, ratios: [0.5], configs: ['snapkv'] });
  // default split N − N/8 = 392; the 64 continuation queries at 448..511 see the 448 prompt keys
  t.same(r.protocol.heldOut, { first: 392, last: 511, count: 120, continuation: 64 });
  t.ok(r.rows[0].medianError > 1e-3 && r.rows[0].medianError < 10);
});

t.test('dump_kv.py: a capture that does not reproduce the attention output fails the check', { skip }, async (t) => {
  // the same model with its keys shifted by one position after RoPE: the captured keys are not what it attends with
  const bad = path.join(tmp, 'tiny_shifted.py');
  const src = fs.readFileSync(model, 'utf8');
  const patched = src.replace('        q, k = apply_rotary_pos_emb(q, k, cos, sin)\n', '        q, k = apply_rotary_pos_emb(q, k, cos, sin)\n        k = k.roll(1, dims=2)\n');
  t.not(patched, src);
  fs.writeFileSync(bad, patched);
  const r = spawnSync(python as string, [script, '--model-file', bad, '--random-tokens', '--prompt-tokens', '200', '--out', path.join(tmp, 'bad.safetensors'), '--device', 'cpu'], { encoding: 'utf8', timeout: 300000 });
  t.equal(r.status, 3);
  t.match(r.stderr, /capture check .* the captured tensors do not reproduce the attention output/);
});
