// Loading and backend choice: backendInfo, KVTRIM_BACKEND, KVTRIM_ADDON and the single explanatory load error.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { backendInfo } from '../lib/index';
import { loadError, backendChoice, loadAddon, initBackend, native, nativeExportNames, NATIVE_EXPORTS } from '../lib/binding';

const indexTs = path.join(__dirname, '..', 'lib', 'index.ts');

function child(env: Record<string, string>, code: string): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [...process.execArgv, '-e', `const kv=require(${JSON.stringify(indexTs)}); ${code}`], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

t.test('backendInfo reports backend, devices, threads and versions', async (t) => {
  const info = backendInfo();
  t.type(info.cuda, 'boolean');
  t.ok(Array.isArray(info.devices));
  t.ok(info.threads >= 1, 'CPU threads');
  t.equal(info.versions.kvtrim, require('../package.json').version);
  t.equal(info.versions.napi, 8);
  t.type(info.versions.compiledWithCuda, 'boolean');
  if (info.cuda) {
    t.notOk(info.reason);
    t.ok(info.devices.some((d) => d.supported));
  } else {
    t.match(info.reason, /CUDA|without CUDA|disabled/, `reason: ${info.reason}`);
  }
});

t.test('the addon exports exactly the names of NATIVE_EXPORTS (the CUDA-only ones when compiled with CUDA)', async (t) => {
  const cuda = backendInfo().versions.compiledWithCuda === true;
  t.same(Object.keys(native).sort(), nativeExportNames(cuda), `exports of a ${cuda ? 'CUDA' : 'CPU-only'} build`);
  for (const [name, fn] of Object.entries(native)) t.equal(typeof fn, 'function', `${name} is a function`);
  const cpuOnly = nativeExportNames(false), all = nativeExportNames(true);
  t.same(all, Object.keys(NATIVE_EXPORTS).sort(), 'a CUDA build exports every listed name');
  t.ok(cpuOnly.length < all.length && cpuOnly.every((n) => all.includes(n)), 'a CPU-only build exports a proper subset');
});

t.test('KVTRIM_BACKEND=cpu turns CUDA off and says why', async (t) => {
  const r = child({ KVTRIM_BACKEND: 'cpu' }, 'console.log(JSON.stringify(kv.backendInfo()))');
  t.equal(r.status, 0, r.err);
  const info = JSON.parse(r.out);
  t.equal(info.cuda, false);
  t.equal(info.backend, 'cpu');
  t.match(info.reason, /disabled by KVTRIM_BACKEND=cpu/, 'the reason names KVTRIM_BACKEND', { skip: !info.versions.compiledWithCuda && 'a CPU-only build gives its own reason' });
});

t.test('KVTRIM_BACKEND=cuda without a usable GPU fails loading with ERR_KVTRIM_NO_CUDA', { skip: backendInfo().cuda && 'a GPU is present' }, async (t) => {
  const r = child({ KVTRIM_BACKEND: 'cuda' }, '');
  t.not(r.status, 0);
  t.match(r.err, /KVTRIM_BACKEND=cuda but CUDA cannot be used/);
});

t.test('KVTRIM_BACKEND with a bad value is rejected', async (t) => {
  t.throws(() => backendChoice({ KVTRIM_BACKEND: 'gpu' }), { code: 'ERR_KVTRIM_BACKEND', message: /must be 'auto', 'cpu' or 'cuda', got 'gpu'/ });
  t.equal(backendChoice({}), 'auto');
  t.equal(backendChoice({ KVTRIM_BACKEND: ' CPU ' }), 'cpu');
  t.equal(backendChoice({ KVTRIM_BACKEND: '' }), 'auto');
});

t.test('initBackend with cuda requested and unavailable throws', async (t) => {
  const fake = { init: () => ({ cuda: false, reason: 'no CUDA device found', devices: [], threads: 1, versions: {} }) };
  t.throws(() => initBackend(fake as never, 'cuda'), { code: 'ERR_KVTRIM_NO_CUDA', message: /no CUDA device found/ });
  t.equal(initBackend(fake as never, 'auto').cuda, false);
  t.equal(initBackend(native, 'cpu').cuda, false, 'the real addon honours cpu');
});

t.test('KVTRIM_ADDON pointing at a missing file gives one aggregated error', async (t) => {
  t.throws(() => loadAddon({ KVTRIM_ADDON: '/nonexistent/kvtrim.node' }), {
    code: 'ERR_KVTRIM_LOAD',
    message: /Could not load the kvtrim native addon \(KVTRIM_ADDON=\/nonexistent\/kvtrim.node\)[\s\S]*Possible solutions:[\s\S]*npm install/,
  });
  const r = child({ KVTRIM_ADDON: __filename + '.node' }, '');
  t.not(r.status, 0, 'a child process with a bad addon path fails to load');
  t.match(r.err, /Could not load the kvtrim native addon/);
});

t.test('loadError explains each failure class', async (t) => {
  const noBuild = loadError([new Error('No native build was found for platform=linux arch=arm64 runtime=node abi=115')], 'x');
  t.match(noBuild.message, /No prebuilt binary matches this platform[\s\S]*--build-from-source/);
  const glibc = loadError([new Error("/lib/libc.so.6: version `GLIBC_2.34' not found")], 'x');
  t.match(glibc.message, /newer C\/C\+\+ runtime/);
  const elf = loadError([new Error('invalid ELF header')], 'x');
  t.match(elf.message, /does not match this machine/);
  const other = loadError(['weird'], 'x');
  t.match(other.message, /Reinstall kvtrim/);
  t.equal((other as Error & { code: string }).code, 'ERR_KVTRIM_LOAD');
});
