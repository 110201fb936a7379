#!/usr/bin/env node
// `npm install` hook. In an installed package: use the prebuilt binary when it loads on this machine, otherwise
// build from source. In a git checkout: always (re)build from source with cmake-js (incremental), so the addon
// matches the sources. Honour `npm install --build-from-source` / KVTRIM_BUILD_FROM_SOURCE=1.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const fromSource =
  process.env.npm_config_build_from_source === 'true' ||
  process.env.KVTRIM_BUILD_FROM_SOURCE === '1' ||
  fs.existsSync(path.join(root, '.git'));

function prebuildLoads() {
  // Load in a child process so a crashing dlopen cannot take npm down.
  const r = spawnSync(process.execPath, ['-e', `require('node-gyp-build')(${JSON.stringify(root)})`], {
    stdio: 'pipe',
    env: { ...process.env, PREBUILDS_ONLY: '1' },
  });
  if (r.status !== 0) process.stderr.write(`kvtrim: no usable prebuilt binary: ${String(r.stderr).split('\n')[0]}\n`);
  return r.status === 0;
}

function build() {
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  } catch {
    console.error(
      'kvtrim: no prebuilt binary for this platform and cmake-js is not installed.\n' +
        'Install the build tools (CMake >= 3.18, a C++17 compiler; the CUDA toolkit for GPU kernels) and run:\n' +
        '  npm install --no-save cmake-js node-addon-api && npm rebuild kvtrim --build-from-source',
    );
    process.exit(1);
  }
  const env = { ...process.env };
  if (!env.CMAKE_BUILD_PARALLEL_LEVEL) env.CMAKE_BUILD_PARALLEL_LEVEL = String(Math.max(1, os.cpus().length));
  const args = [cmakeJs, 'compile'];
  if (process.env.KVTRIM_CUDA === '0' || process.env.KVTRIM_CUDA === 'OFF') args.push('--CDKVTRIM_CUDA=OFF');
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
  process.exit(r.status === null ? 1 : r.status);
}

if (!fromSource && prebuildLoads()) process.exit(0);
build();
