// Run by test/cuda-emu.test.ts in a child process, with KVTRIM_ADDON set to the emulated-CUDA addon (tools/cuda-emu):
// every `kvtrim check` entry on the emulated device (small shapes), the unfused benchmark baselines against the ops,
// and `kvtrim bench` on CUDA. With KVTRIM_EMU_HASHES=FILE it writes a digest of every output the checks fetch, so that
// runs under different thread / block schedules can be compared bit for bit (the kernels are deterministic: a
// difference is an order-dependent read, i.e. a race).
import t from 'tap';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { backendInfo, tensor, toDevice, toHost, keydiffScores, selectTokens, gatherKV, snapkvScores, empty, fillBytes } from '../../lib/index';
import type { Tensor } from '../../lib/index';
import { native } from '../../lib/binding';
import { runChecks } from '../../lib/check';
import { cudaTarget, randomHost, numbers, maxRel, mismatches } from '../../lib/checks/util';
import { runBench } from '../../lib/bench';
import { Rng } from '../../lib/rng';

const info = backendInfo();
const emulated = info.cuda && info.versions.cudaArchs === 'emulated';

t.test('the addon is the emulated CUDA build', async (t) => {
  t.ok(emulated, `backendInfo: cuda ${info.cuda}, archs ${info.versions.cudaArchs}, ${info.reason ?? ''}`);
  t.match(info.devices[0]?.name ?? '', /emulator/);
});

t.test('every kvtrim check entry passes on the emulated GPU', { skip: !emulated }, async (t) => {
  const base = cudaTarget(0);
  const digests: string[] = [];
  const target = {
    ...base,
    // the slot is taken when the fetch is issued: concurrent fetches (Promise.all) complete in any order
    fetch: async (x: Tensor) => {
      const slot = digests.push('') - 1;
      const h = await base.fetch(x);
      const a = h.host;
      digests[slot] = crypto.createHash('sha1').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
      return h;
    },
  };
  // each check's header follows its outputs' digests (the parent names the check of a differing digest)
  const onResult = (r: { op: string; config: string }) => digests.push(`# ${r.op} ${r.config}`);
  const rows = await runChecks({ target, seed: Number(process.env.KVTRIM_EMU_CHECK_SEED ?? 1), onResult });
  for (const r of rows) {
    t.ok(r.pass, `${r.op} ${r.config}: error ${r.error.toExponential(2)} (tolerance ${r.tolerance})${r.detail ? ` ${r.detail}` : ''}`);
  }
  if (process.env.KVTRIM_EMU_HASHES) fs.writeFileSync(process.env.KVTRIM_EMU_HASHES, digests.join('\n') + '\n');
});

// The unfused baselines timed by `kvtrim bench` (cuda/bench_baselines.cu) compute the same functions as the ops.
t.test('bench baselines agree with the ops', { skip: !emulated }, async (t) => {
  const rng = new Rng(3);
  const H = 3, N = 777, d = 64, keep = 200;
  const k = toDevice(randomHost(rng, [H, N, d], 'bf16')), v = toDevice(randomHost(rng, [H, N, d], 'bf16'));
  const poisoned = (shape: number[], dtype: 'f32' | 'i32' | 'bf16') => {
    const x = empty(shape, dtype, { kind: 'cuda', id: 0 });
    fillBytes(x, 0xff);
    return x;
  };
  const scores = keydiffScores(k);
  const base = poisoned([H, N], 'f32');
  native.baselineKeydiff(k.toNative(), base.toNative());
  t.ok(maxRel(numbers(await toHost(base)), numbers(await toHost(scores)), 1e-2) <= 1e-4, 'baselineKeydiff = keydiffScores');

  const sel = selectTokens(scores, { keep });
  const idx = poisoned([H, keep], 'i32'), cnt = poisoned([H], 'i32');
  native.baselineSelect(scores.toNative(), keep, idx.toNative(), cnt.toNative());
  t.equal(mismatches((await toHost(idx)).host, (await toHost(sel.indices)).host), 0, 'baselineSelect = selectTokens (uniform)');
  t.equal(mismatches((await toHost(cnt)).host, (await toHost(sel.counts)).host), 0, 'baselineSelect counts');

  const g = gatherKV({ keys: k, values: v, ...sel });
  const ko = poisoned([H, keep, d], 'bf16'), vo = poisoned([H, keep, d], 'bf16');
  native.baselineGather(k.toNative(), v.toNative(), sel.indices.toNative(), sel.counts.toNative(), ko.toNative(), vo.toNative());
  t.equal(mismatches((await toHost(ko)).host, (await toHost(g.keys)).host) + mismatches((await toHost(vo)).host, (await toHost(g.values)).host), 0,
    'baselineGather = gatherKV');

  // SnapKV with the SIMT f32 logit tiles forced on (bf16, d = 128: the tensor-core path otherwise)
  const Hkv = 2, G = 2, W = 24, Ns = 400;
  const q = toDevice(randomHost(rng, [Hkv * G, W, 128], 'bf16', 0.5)), kk = toDevice(randomHost(rng, [Hkv, Ns, 128], 'bf16', 0.5));
  const ref = snapkvScores(q, kk);
  const simt = poisoned([Hkv, Ns], 'f32');
  native.baselineSnapkv(q.toNative(), kk.toNative(), simt.toNative());
  const a = numbers(await toHost(simt)), b = numbers(await toHost(ref));
  const fin = (x: Float64Array) => x.map((y) => (y === Infinity ? 0 : y));
  t.ok(a.every((x, i) => (x === Infinity) === (b[i] === Infinity)) && maxRel(fin(a), fin(b), 1e-9) <= 1e-4, 'baselineSnapkv (SIMT tiles) = snapkvScores (tensor cores)');
});

t.test('kvtrim bench runs every case on the emulated GPU', { skip: !emulated }, async (t) => {
  const r = runBench({ backend: 'cuda', N: [640], H: 2, d: 64, repeats: 1, warmup: 0 });
  t.ok(r.rows.length > 0 && r.rows.every((x) => x.medianMs > 0), `${r.rows.length} cases timed`);
  t.ok(r.rows.some((x) => x.baseline), 'baselines timed');
});

void tensor;
