// libkvtrim.so, the C ABI for native runtimes (README "From PyTorch and C"): where nativeLibrary() finds it, its
// exported symbols (exactly the KVT_API functions of kvtrim.h) and ABI version, the C example built against it
// (from the build folder, and from a source install through pkg-config and CMake's find_package), with results
// equal to the Node API's bit for bit.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeLibrary } from '../lib/index';
import { addonPath } from '../lib/binding';
import { buildCExample, cc, cExampleExpected, have, root } from './consumers-helpers';

const header = fs.readFileSync(path.join(root, 'csrc', 'include', 'kvtrim.h'), 'utf8');
const headerAbi = Number(/#define KVT_ABI_VERSION (\d+)/.exec(header)![1]);
/** The functions kvtrim.h declares KVT_API (comments stripped). */
const declared = [...header.replace(/\/\*[\s\S]*?\*\//g, '').matchAll(/KVT_API\b[^;(]*?\b(kvt_\w+)\s*\(/g)].map((m) => m[1]).sort();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-lib-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

t.test('nativeLibrary(): the library in lib/ beside the addon, the header, the ABI version', async (t) => {
  const lib = nativeLibrary();
  t.equal(lib.library, path.join(path.dirname(addonPath), 'lib', 'libkvtrim.so'), 'libkvtrim.so sits in lib/ beside the loaded addon');
  t.ok(fs.statSync(lib.library).isFile(), lib.library);
  t.ok(fs.existsSync(path.join(lib.include, 'kvtrim.h')), 'include/kvtrim.h');
  t.equal(lib.abiVersion, headerAbi, `abiVersion ${lib.abiVersion} = KVT_ABI_VERSION of kvtrim.h`);
  t.ok(declared.length >= 20, `${declared.length} KVT_API functions in kvtrim.h`);
});

t.test('nativeLibrary() without the library beside the addon: ERR_KVTRIM_NO_LIBRARY', async (t) => {
  const lone = path.join(tmp, 'lone');
  fs.mkdirSync(lone);
  fs.symlinkSync(addonPath, path.join(lone, 'kvtrim.node'));
  const r = spawnSync(process.execPath, ['-e', "try { require('./dist/index.js').nativeLibrary() } catch (e) { console.log(e.code, e.message) }"], {
    cwd: root, encoding: 'utf8', env: { ...process.env, KVTRIM_ADDON: path.join(lone, 'kvtrim.node') },
  });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^ERR_KVTRIM_NO_LIBRARY kvtrim: libkvtrim\.so is not beside the loaded addon/, r.stdout);
});

t.test('exported symbols: exactly the KVT_API functions of kvtrim.h; no dynamic CUDA runtime', { skip: have('nm') && have('readelf') ? false : 'nm/readelf (binutils) not installed' }, async (t) => {
  const lib = nativeLibrary().library;
  const nm = spawnSync('nm', ['-D', '--defined-only', lib], { encoding: 'utf8' });
  t.equal(nm.status, 0, nm.stderr);
  const syms = nm.stdout.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/));
  const globals = syms.filter(([, kind]) => /[A-Z]/.test(kind ?? '')).map((s) => s[2].replace(/@.*$/, '')).sort();
  t.same(globals, declared, 'nm -D: the dynamic symbol table defines the header functions and nothing else');
  const dyn = spawnSync('readelf', ['-d', lib], { encoding: 'utf8' }).stdout;
  t.match(dyn, /\(SONAME\)\s+Library soname: \[libkvtrim\.so\]/, 'SONAME libkvtrim.so');
  const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  t.notOk(needed.some((n) => /cudart|libcuda\b|nvrtc/.test(n)), `no dynamic CUDA library needed (${needed.join(', ')})`);
});

t.test('the C example against the build folder: same results as the Node API', { skip: cc ? false : 'no C compiler (cc/gcc/clang)' }, async (t) => {
  const lib = nativeLibrary();
  const exe = path.join(tmp, 'compress');
  const b = buildCExample(exe, lib.include, path.dirname(lib.library));
  t.equal(b.status, 0, `compiles warning-free: ${b.stderr}`);
  for (const N of [2048, 1001]) {
    const r = spawnSync(exe, [String(N)], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n');
    t.equal(lines[0].split(',')[0], `abi ${headerAbi} (header ${headerAbi})`, 'kvt_abi_version() = KVT_ABI_VERSION');
    t.same(lines.slice(1, 3), cExampleExpected(N), `N = ${N}: kept counts and every output's bytes equal the Node API's`);
    t.match(lines[3], /^bad call: status 2, out: dimension 1 must equal N/, 'a bad call: KVT_ERR_RANGE, kvt_last_error() names the argument');
  }
});

// The CMake build folder of the clone (build/, as `npm install` / cmake-js make it): its install rules.
const buildDir = path.join(root, 'build');
const installSkip = !have('cmake') ? 'cmake not installed' : !cc ? 'no C compiler' :
  !fs.existsSync(path.join(buildDir, 'CMakeCache.txt')) || !fs.existsSync(path.join(buildDir, 'Release', 'lib', 'libkvtrim.so')) ? 'no CMake build in build/ (npm install builds one)' : false;

t.test('source install: pkg-config and find_package(kvtrim) consumers', { skip: installSkip }, async (t) => {
  const prefix = path.join(tmp, 'prefix');
  const inst = spawnSync('cmake', ['--install', buildDir, '--prefix', prefix], { encoding: 'utf8' });
  t.equal(inst.status, 0, `cmake --install: ${inst.stderr}`);
  const cmakeDir = ['lib', 'cmake', 'kvtrim'];
  for (const f of [['lib', 'libkvtrim.so'], ['include', 'kvtrim.h'], [...cmakeDir, 'kvtrimConfig.cmake'], [...cmakeDir, 'kvtrimConfigVersion.cmake'], ['lib', 'pkgconfig', 'kvtrim.pc']]) {
    t.ok(fs.existsSync(path.join(prefix, ...f)), `installs PREFIX/${f.join('/')}`);
  }
  const expect = cExampleExpected(777);
  const check = (exe: string, what: string) => {
    const r = spawnSync(exe, ['777'], { encoding: 'utf8' });
    t.equal(r.status, 0, `${what}: ${r.stderr}`);
    t.same(r.stdout.split('\n').slice(1, 3), expect, `${what}: results equal the Node API's`);
  };

  if (have('pkg-config')) {
    const env = { ...process.env, PKG_CONFIG_PATH: path.join(prefix, 'lib', 'pkgconfig') };
    const flags = spawnSync('pkg-config', ['--cflags', '--libs', 'kvtrim'], { encoding: 'utf8', env });
    t.equal(flags.status, 0, flags.stderr);
    const exe = path.join(tmp, 'compress-pc');
    const libDir = path.join(prefix, 'lib');
    const b = spawnSync(cc!, ['-std=c99', path.join(root, 'examples', 'c', 'compress.c'), ...flags.stdout.trim().split(/\s+/), `-Wl,-rpath,${libDir}`, '-o', exe], { encoding: 'utf8' });
    t.equal(b.status, 0, `cc $(pkg-config --cflags --libs kvtrim): ${b.stderr}`);
    if (b.status === 0) check(exe, 'pkg-config build');
  } else {
    t.test('pkg-config consumer', { skip: 'pkg-config not installed' }, async () => {});
  }

  const bdir = path.join(tmp, 'cmake-example');
  const conf = spawnSync('cmake', ['-S', path.join(root, 'examples', 'c'), '-B', bdir, `-DCMAKE_PREFIX_PATH=${prefix}`], { encoding: 'utf8' });
  t.equal(conf.status, 0, `find_package(kvtrim): ${conf.stderr}`);
  const build = spawnSync('cmake', ['--build', bdir], { encoding: 'utf8' });
  t.equal(build.status, 0, build.stderr);
  if (build.status === 0) check(path.join(bdir, 'compress'), 'CMake kvtrim::kvtrim build');
});
