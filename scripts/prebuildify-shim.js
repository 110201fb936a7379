#!/usr/bin/env node
// prebuildify always spawns `node-gyp rebuild ...`; this stand-in builds with cmake-js instead (incremental: an
// up-to-date build/ is reused), leaving build/Release/kvtrim.node for prebuildify to strip and move into
// prebuilds/<platform>-<arch>/.
//
// The C library build/Release/lib/libkvtrim.so is copied to prebuilds/<platform>-<arch>/lib/ here (stripped when
// prebuildify strips). It lives in lib/ because prebuildify strips the shared libraries it finds beside the addon in
// place and overwrites their copies in place, which crashes a process that has the file loaded (a test running a
// native consumer meanwhile); here the copy is stripped under a temporary name and renamed into place, so no loaded
// file is ever rewritten.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
const arch = (process.argv.find((a) => a.startsWith('--arch=')) || '').slice(7) || process.arch;
const env = { ...process.env };
if (!env.CMAKE_BUILD_PARALLEL_LEVEL) env.CMAKE_BUILD_PARALLEL_LEVEL = String(Math.max(1, os.cpus().length));
const r = spawnSync(process.execPath, [cmakeJs, 'compile', `--arch=${arch}`], { cwd: root, stdio: 'inherit', env });
if (r.status !== 0) process.exit(r.status === null ? 1 : r.status);

// prebuildify strips build/Release/kvtrim.node in place before moving it: give it a fresh inode first, so processes
// that loaded the built addon (tests running meanwhile) keep an intact file.
const addon = path.join(root, 'build', 'Release', 'kvtrim.node');
if (fs.existsSync(addon)) {
  const fresh = `${addon}.${process.pid}`;
  fs.copyFileSync(addon, fresh);
  fs.renameSync(fresh, addon);
}

const lib = path.join(root, 'build', 'Release', 'lib', 'libkvtrim.so');
if (fs.existsSync(lib)) {
  const tuple = `${process.env.PREBUILD_PLATFORM || os.platform()}-${process.env.PREBUILD_ARCH || arch}`;
  const dir = path.join(root, 'prebuilds', tuple, 'lib');
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.libkvtrim.so.${process.pid}`);
  fs.copyFileSync(lib, tmp);
  if (process.env.PREBUILD_STRIP === '1') {
    const s = spawnSync(process.env.PREBUILD_STRIP_BIN || 'strip', ['--strip-all', tmp], { stdio: 'inherit' });
    if (s.status !== 0) {
      fs.rmSync(tmp, { force: true });
      process.exit(1);
    }
  }
  fs.renameSync(tmp, path.join(dir, 'libkvtrim.so'));
}
