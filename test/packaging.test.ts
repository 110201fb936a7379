// Packaging: prebuild through the cmake-js shim, `npm pack`, install the tarball into a fresh project with no
// compiler on PATH, load it and run one op there; then, from that project, build and run the C example against the
// shipped libkvtrim.so and run the Python client on numpy (both compared with the Node API).
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.join(__dirname, '..');
const npmCli = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');

function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(process.execPath, [npmCli, ...args], { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

t.test('npm pack -> install elsewhere -> works without a compiler', { timeout: 900000 }, async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-pack-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

  // 1. prebuild (prebuildify -> scripts/prebuildify-shim.js -> cmake-js; incremental over build/)
  npm(['run', 'prebuild'], root);
  const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'kvtrim.node');
  t.ok(fs.existsSync(prebuilt), `prebuild written: ${path.relative(root, prebuilt)}`);
  // the published binary carries SASS for sm_80/86/89/90 and PTX in a compressed fatbin: at most 30 MB (it was 101 MB)
  const archs = spawnSync(process.execPath, ['-p', "require('./dist/index.js').backendInfo().versions.cudaArchs"], {
    cwd: root, env: { ...process.env, KVTRIM_ADDON: prebuilt, KVTRIM_BACKEND: 'cpu' }, encoding: 'utf8',
  }).stdout.trim();
  const mb = fs.statSync(prebuilt).size / 2 ** 20;
  if (archs === '80-real,86-real,89-real,90-real,90-virtual') t.ok(mb <= 30, `the prebuilt .node with the default CUDA targets is ${mb.toFixed(1)} MB (<= 30 MB)`);
  else t.comment(`prebuilt .node: ${mb.toFixed(1)} MB, CUDA targets '${archs}' (the 30 MB budget applies to the default targets)`);

  // 2. pack
  // --ignore-scripts: dist/ and types/ come from `npm install` (prepare); rebuilding them here would race with
  // other test files that load dist/.
  t.ok(fs.existsSync(path.join(root, 'dist', 'index.js')), 'dist/ built by npm install');
  const packOut = npm(['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], root);
  const info = JSON.parse(packOut.slice(packOut.indexOf('[')))[0];
  const files: string[] = info.files.map((f: { path: string }) => f.path);
  t.ok(files.includes(`prebuilds/${process.platform}-${process.arch}/kvtrim.node`), 'tarball holds the prebuild');
  t.ok(files.includes(`prebuilds/${process.platform}-${process.arch}/lib/libkvtrim.so`), 'tarball holds lib/libkvtrim.so beside it');
  for (const f of ['csrc/include/kvtrim.h', 'examples/c/compress.c', 'examples/c/CMakeLists.txt', 'examples/python/kvtrim_dlpack.py']) {
    t.ok(files.includes(f), `tarball holds ${f}`);
  }
  t.ok(files.includes('dist/index.js') && files.includes('types/index.d.ts') && files.includes('dist/cli.js'), 'tarball holds JS, types and the CLI');
  t.notOk(files.some((f) => f.startsWith('build/') || f.startsWith('test/') || f.startsWith('node_modules/')), 'no build dir, tests or node_modules');
  const tarball = path.join(tmp, info.filename);

  // 3. a PATH with node, npm and sh only: no cc, c++, cmake, nvcc
  const bin = path.join(tmp, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  fs.symlinkSync('/bin/sh', path.join(bin, 'sh')); // npm runs lifecycle scripts through sh
  fs.writeFileSync(path.join(bin, 'npm'), `#!/bin/sh\nexec "${process.execPath}" "${npmCli}" "$@"\n`, { mode: 0o755 });
  const env = { ...process.env, PATH: bin, npm_config_build_from_source: '' };
  for (const tool of ['cc', 'c++', 'g++', 'cmake', 'nvcc', 'make']) {
    t.not(spawnSync('sh', ['-c', `command -v ${tool}`], { env }).status, 0, `${tool} is not on PATH`);
  }

  // 4. install into a fresh project
  const proj = path.join(tmp, 'app');
  fs.mkdirSync(proj);
  fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  npm(['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], proj, env);
  t.ok(fs.existsSync(path.join(proj, 'node_modules', 'kvtrim', 'prebuilds')), 'installed');
  t.notOk(fs.existsSync(path.join(proj, 'node_modules', 'kvtrim', 'build')), 'nothing was compiled');

  // 5. load and run one op
  const script = `
    const kv = require('kvtrim');
    const s = kv.keydiffScores(kv.tensor(new Float32Array([1, 0, 0, 1, 1, 1, -1, 0]), [1, 4, 2]));
    console.log(JSON.stringify({ info: kv.backendInfo(), scores: Array.from(s.data) }));`;
  const r = spawnSync(process.execPath, ['-e', script], { cwd: proj, env, encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  // anchor = mean of unit keys = (1/sqrt2 - 1, 1 + 1/sqrt2)/4 direction; check against a direct computation
  const keys = [[1, 0], [0, 1], [1, 1], [-1, 0]].map(([x, y]) => [x / Math.hypot(x, y), y / Math.hypot(x, y)]);
  const a = [0, 1].map((c) => keys.reduce((s, k) => s + k[c], 0) / 4);
  const expect = keys.map((k) => -(k[0] * a[0] + k[1] * a[1]) / Math.hypot(a[0], a[1]));
  out.scores.forEach((v: number, i: number) => t.ok(Math.abs(v - expect[i]) < 1e-6, `score ${i}: ${v} vs ${expect[i]}`));
  t.equal(out.info.versions.kvtrim, require('../package.json').version);
  const cli = spawnSync(path.join(proj, 'node_modules', '.bin', 'kvtrim'), ['info'], { cwd: proj, env, encoding: 'utf8' });
  t.equal(cli.status, 0, cli.stderr);
  t.match(cli.stdout, /kvtrim \d+\.\d+\.\d+/, 'npx kvtrim info works from the installed package');

  // 6. the C library of the installed package, where nativeLibrary() says it is. (The helpers load the addon: only
  // now, after the prebuild, which rewrites the built addon.)
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { buildCExample, cc, cExampleExpected, checkPythonClient, pythonWith } = require('./consumers-helpers') as typeof import('./consumers-helpers');
  const libInfo = spawnSync(process.execPath, ['-p', "JSON.stringify(require('kvtrim').nativeLibrary())"], { cwd: proj, env, encoding: 'utf8' });
  t.equal(libInfo.status, 0, libInfo.stderr);
  const lib = JSON.parse(libInfo.stdout);
  const installed = path.join(proj, 'node_modules', 'kvtrim');
  t.equal(lib.library, path.join(installed, 'prebuilds', `${process.platform}-${process.arch}`, 'lib', 'libkvtrim.so'), 'nativeLibrary().library: the shipped libkvtrim.so');
  t.equal(lib.include, path.join(installed, 'csrc', 'include'), 'nativeLibrary().include: the shipped kvtrim.h');
  t.equal(lib.abiVersion, out.info.versions.abi, 'nativeLibrary().abiVersion');

  // 7. the C example, compiled in the project against the shipped header and library (a compiler is needed now)
  t.test('C example against the installed libkvtrim.so', { skip: cc ? false : 'no C compiler' }, async (t) => {
    const exe = path.join(proj, 'compress');
    const b = buildCExample(exe, lib.include, path.dirname(lib.library), path.join(installed, 'examples', 'c', 'compress.c'));
    t.equal(b.status, 0, `cc examples/c/compress.c -I<include> -lkvtrim: ${b.stderr}`);
    const r = spawnSync(exe, ['1500'], { cwd: proj, env, encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stdout.split('\n')[0].split(',')[0], `abi ${lib.abiVersion} (header ${lib.abiVersion})`, 'ABI of the library = ABI of the header');
    t.same(r.stdout.split('\n').slice(1, 3), cExampleExpected(1500), 'results equal the Node API bit for bit');
  });

  // 8. the Python client shipped in the package, on numpy, over the shipped library (found through node on PATH)
  const python = pythonWith(['numpy']);
  t.test('Python client from the installed package on numpy', { skip: python ? false : 'no Python with numpy' }, async (t) => {
    const client = path.join(installed, 'examples', 'python');
    const r = spawnSync(python!, [path.join(client, 'kvtrim_dlpack.py')], { cwd: proj, env, encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, `${lib.library}: ABI ${lib.abiVersion}`, 'found the shipped library through require(\'kvtrim\').nativeLibrary()');
    const kept = /kept per head: ([\d ]+) \(of 4096\)/.exec(r.stdout);
    t.equal(kept?.[1].split(' ').map(Number).reduce((a, b) => a + b, 0), 4 * 1024, 'the adaptive budget kept H·keep tokens');
    checkPythonClient(t, python!, 'numpy', client, lib.library, lib.abiVersion);
  });
});
