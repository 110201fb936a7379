#!/usr/bin/env node
// @ts-check
// CUDA compiler launcher (CMake CUDA_COMPILER_LAUNCHER, set by CMakeLists.txt when this file exists): runs the real
// nvcc command line, which carries `-Xptxas=-v`, and moves ptxas's resource report (registers, spills, stack frame,
// shared memory per kernel and architecture) out of the build log into LOGDIR/<object>.ptxas.txt. The static-budget
// test (test/ptxas-budget.test.ts) and tools/gpu/ptxas-report.js read those files: the resource usage of the CUDA
// build that `npm install` does anyway, with no second compilation.
//
// Usage: node ptxas-log.js LOGDIR COMPILER ARGS...
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const [logDir, compiler, ...args] = process.argv.slice(2);
if (!logDir || !compiler) {
  process.stderr.write('usage: ptxas-log.js LOGDIR COMPILER ARGS...\n');
  process.exit(2);
}
const r = spawnSync(compiler, args, { stdio: ['inherit', 'pipe', 'pipe'], maxBuffer: 1 << 30 });
if (r.error) {
  process.stderr.write(`ptxas-log.js: cannot run ${compiler}: ${r.error.message}\n`);
  process.exit(1);
}
// ptxas -v lines: "ptxas info    : ..." and the indented "N bytes stack frame, ..." line under "Function properties".
const isReport = (/** @type {string} */ l) => /^ptxas info\s*:/.test(l) || /^\s+\d+ bytes stack frame/.test(l);
/** @type {string[]} */
const report = [];
for (const [stream, out] of /** @type {const} */ ([[process.stdout, r.stdout], [process.stderr, r.stderr]])) {
  /** @type {string[]} */
  const keep = [];
  for (const l of String(out).split('\n')) (isReport(l) ? report : keep).push(l);
  const text = keep.join('\n');
  if (text.trim()) stream.write(text.endsWith('\n') ? text : text + '\n');
}
const o = args.indexOf('-o');
if (o >= 0 && o + 1 < args.length && report.length) {
  fs.mkdirSync(logDir, { recursive: true });
  fs.writeFileSync(path.join(logDir, `${path.basename(args[o + 1])}.ptxas.txt`), report.join('\n') + '\n');
}
process.exit(r.status === null ? 1 : r.status);
