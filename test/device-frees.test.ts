// Device buffers are freed stream-ordered (csrc/napi/native_buffer.h): op outputs and buffers allocated without a
// stream live on the legacy default stream and are freed there with cudaFreeAsync — no cudaFree, which synchronises
// the whole device — and a buffer used on another stream makes that stream wait for the allocation and the free wait for
// that stream. Only when a stream it was used on has been destroyed does the free fall back to cudaFree. Runs on the
// CUDA emulator (tools/cuda-emu), whose KVTRIM_EMU_API_LOG records every allocation, free and cross-stream wait, and
// which aborts on any use of a destroyed stream.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { emuSkip, emulatedAddon, run } from './emu/addon';

const root = path.join(__dirname, '..');

const script = (log: string) => `
const fs = require('fs');
const { empty, fillBytes, keydiffScores, toDevice, tensor, Stream } = require(${JSON.stringify(path.join(root, 'lib', 'index'))});
const mark = (m) => fs.appendFileSync(${JSON.stringify(log)}, '# ' + m + '\\n');
const dev = { kind: 'cuda', id: 0 };
mark('op without a stream');
const keys = toDevice(tensor(new Float32Array(2 * 300 * 64).map((_, i) => Math.sin(i)), [2, 300, 64]));
const scores = keydiffScores(keys);
mark('dispose its output');
scores.data.dispose();
mark('setup: a buffer without a stream, a created stream');
const s = Stream.create();
const x = empty([4096], 'f32', dev);
mark('first use on a created stream');
fillBytes(x, 0, s);
mark('second use on it');
fillBytes(x, 1, s);
mark('dispose after use on the created stream');
x.data.dispose();
mark('setup: used on a stream, which is destroyed');
const s2 = Stream.create();
const y = empty([4096], 'f32', dev);
fillBytes(y, 0, s2);
s2.dispose();
mark('dispose after use on a destroyed stream');
y.data.dispose();
mark('setup: allocated on the created stream');
const z = empty([4096], 'f32', dev, s);
fillBytes(z, 0, s);
mark('dispose a buffer allocated and used on the created stream');
z.data.dispose();
mark('end');
s.dispose();
keys.data.dispose();
`;

t.test('frees are stream-ordered (emulator API log)', { skip: emuSkip() }, async (t) => {
  const built = await emulatedAddon();
  if ('error' in built) {
    t.fail('the emulated addon builds', { output: built.error });
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-frees-'));
  const log = path.join(tmp, 'api.log'), file = path.join(tmp, 'frees.js');
  fs.writeFileSync(file, script(log));
  const r = await run(process.execPath, ['--import=@tapjs/typescript/import', file], { KVTRIM_ADDON: built.addon, KVTRIM_BACKEND: 'cuda', KVTRIM_EMU_API_LOG: log });
  t.equal(r.code, 0, 'the script ran (the emulator aborts on any use of a destroyed stream)', { output: r.out.slice(-2000) });
  if (r.code !== 0) return;
  // the log, cut at the markers
  const parts = new Map<string, string[]>();
  let cur = '';
  for (const l of fs.readFileSync(log, 'utf8').split('\n').filter((l) => l)) {
    if (l.startsWith('# ')) parts.set((cur = l.slice(2)), []);
    else parts.get(cur)?.push(l);
  }
  const calls = (m: string) => parts.get(m) ?? [];
  t.ok(calls('op without a stream').some((l) => l === 'cudaMallocAsync 0'), 'an op without a stream allocates its output on the legacy default stream');
  t.notOk(calls('op without a stream').some((l) => /^cudaMalloc |^cudaFree /.test(l)), 'no cudaMalloc / cudaFree in the op');
  t.same(calls('dispose its output'), ['cudaFreeAsync 0'], 'its output is freed stream-ordered on that stream');
  const first = calls('first use on a created stream');
  t.ok(first.length === 1 && /^cudaStreamWaitEvent 0x[1-9a-f]/.test(first[0]), 'first use on a created stream: that stream waits for the allocation');
  t.same(calls('second use on it'), [], 'a second use adds nothing');
  const sHandle = first[0]?.split(' ')[1];
  t.same(calls('dispose after use on the created stream'), ['cudaStreamWaitEvent 0', 'cudaFreeAsync 0'], `the free waits for stream ${sHandle}, then is stream-ordered`);
  t.same(calls('dispose after use on a destroyed stream'), ['cudaFree 0'], 'used on a stream destroyed since: cudaFree');
  t.same(calls('dispose a buffer allocated and used on the created stream'), [`cudaFreeAsync ${sHandle}`], 'allocated and used on one stream: freed on it');
  t.notOk([...parts.values()].flat().some((l) => l.startsWith('cudaMalloc ')), 'nothing allocated with cudaMalloc');
  fs.rmSync(tmp, { recursive: true, force: true });
});
