#!/usr/bin/env node
// prebuildify always spawns `node-gyp rebuild ...`; this stand-in builds with cmake-js instead (incremental: an
// up-to-date build/ is reused), leaving build/Release/kvtrim.node for prebuildify to strip and copy into
// prebuilds/<platform>-<arch>/.
'use strict';
const { spawnSync } = require('child_process');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
const arch = (process.argv.find((a) => a.startsWith('--arch=')) || '').slice(7) || process.arch;
const env = { ...process.env };
if (!env.CMAKE_BUILD_PARALLEL_LEVEL) env.CMAKE_BUILD_PARALLEL_LEVEL = String(Math.max(1, os.cpus().length));
const r = spawnSync(process.execPath, [cmakeJs, 'compile', `--arch=${arch}`], { cwd: root, stdio: 'inherit', env });
process.exit(r.status === null ? 1 : r.status);
