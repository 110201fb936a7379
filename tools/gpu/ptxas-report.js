#!/usr/bin/env node
// @ts-check
// `npm run ptxas:report`: records the ptxas resource usage of every kernel variant of a CUDA build (the reports
// tools/gpu/ptxas-log.js collected in <build>/ptxas) as bench/results/ptxas-sm80.json and ptxas-sm90.json, with the
// occupancy and budget of docs/performance.md §10. test/ptxas-budget.test.ts checks that the recorded files match the
// build under test.
//
// Usage: node tools/gpu/ptxas-report.js [--logs build/ptxas] [--out bench/results] [--archs sm_80,sm_90]
'use strict';
const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');
const px = require('./ptxas.js');

const root = path.join(__dirname, '..', '..');

/**
 * The recorded form of one architecture's budget rows.
 * @param {ReturnType<typeof px.budgetRows>} rows @param {string} arch @param {string | null} nvcc
 */
function record(rows, arch, nvcc) {
  return {
    arch,
    nvcc,
    source: 'ptxas -v of the CUDA build (tools/gpu/ptxas-log.js); budgets: docs/performance.md §10',
    kernels: rows,
  };
}

function main() {
  const { values } = parseArgs({
    options: { logs: { type: 'string' }, out: { type: 'string' }, archs: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log('Usage: node tools/gpu/ptxas-report.js [--logs build/ptxas] [--out bench/results] [--archs sm_80,sm_90]');
    return 0;
  }
  const logs = path.resolve(values.logs ?? path.join(root, 'build', 'ptxas'));
  const out = path.resolve(values.out ?? path.join(root, 'bench', 'results'));
  const archs = (values.archs ?? 'sm_80,sm_90').split(',').map((a) => a.trim());
  const entries = px.readLogs(logs);
  if (!entries.length) {
    console.error(`ptxas-report: no ptxas reports in ${logs} (build with CUDA first: npm run build:native)`);
    return 1;
  }
  const table = px.budgetTable(fs.readFileSync(path.join(root, 'docs', 'performance.md'), 'utf8'));
  const nvcc = px.nvccVersion();
  for (const arch of archs) {
    const rows = px.budgetRows(entries, table, arch);
    if (!rows.length) {
      console.error(`ptxas-report: the build in ${logs} has no ${arch} code (KVTRIM_CUDA_ARCHS)`);
      return 1;
    }
    const file = path.join(out, `ptxas-${arch.replace('_', '')}.json`);
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(file, JSON.stringify(record(rows, arch, nvcc), null, 1) + '\n');
    const spills = rows.filter((r) => r.stack || r.spillStores);
    console.log(`${file}: ${rows.length} kernel variants, ${spills.length} with local memory`);
  }
  return 0;
}

if (require.main === module) process.exitCode = main();

module.exports = { record };
