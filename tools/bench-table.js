#!/usr/bin/env node
// Regenerates the CPU table of README.md "Performance" from a `kvtrim bench --json` report (bench/results/cpu-<isa>.json):
//   node tools/bench-table.js bench/results/cpu-avx512.json [README.md]
// The table goes between the markers <!-- cpu-bench:begin --> and <!-- cpu-bench:end -->, with the machine, date, load,
// copy bandwidth and FMA peak of the run: memory-bound rows as % of the copy bandwidth, compute-bound ones (a flop count
// in lib/benches/*.ts) as % of the FMA peak, and PyTorch's time on the same inputs when the run had the peer.
'use strict';
const fs = require('node:fs');

const [jsonPath, readme = 'README.md'] = process.argv.slice(2);
if (!jsonPath) {
  console.error('usage: node tools/bench-table.js REPORT.json [README.md]');
  process.exit(2);
}
const r = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
const f = (x, n = 1) => (x === undefined ? '-' : x.toFixed(n));
const head = [
  `${r.device}, ${r.host?.cpu ?? ''}, ISA ${r.cpuIsa ?? '?'}; ${r.host?.date?.slice(0, 10) ?? ''}; load average ${(r.host?.loadavg ?? []).join(' / ')} ` +
    `on a shared machine (timings are noisy: compare ratios within the run); copy bandwidth ${f(r.bandwidthGBs)} GB/s, ` +
    `FMA peak ${f(r.fmaPeakGFs)} GFLOP/s measured in the run; median of ${r.repeats}` +
    (r.peer ? `; peer ${r.peer} on the same inputs ([${jsonPath}](${jsonPath})).` : ` ([${jsonPath}](${jsonPath})).`),
  '',
  '| op | variant | N | median ms | % copy bw | % FMA peak | baseline | speedup |' + (r.peer ? ' torch ms | vs torch |' : ''),
  '|---|---|---|---|---|---|---|---|' + (r.peer ? '---|---|' : ''),
];
const rows = r.rows
  .filter((x) => !/Batched$|^compactInPlace$/.test(x.op))
  .map(
    (x) =>
      `| ${x.op} | ${x.variant} | ${x.N} | ${f(x.medianMs, 2)} | ${f(100 * x.solFraction)} | ${x.peakFraction === undefined ? '-' : f(100 * x.peakFraction)} | ` +
      `${x.baseline ? `${x.baseline.name} ${f(x.baseline.medianMs)} ms` : '-'} | ${x.baseline ? `${f(x.baseline.speedup)}x` : '-'} |` +
      (r.peer ? ` ${x.peer ? f(x.peer.medianMs, 2) : '-'} | ${x.peer ? `${f(x.peer.speedup, 2)}x` : '-'} |` : ''),
  );
const text = fs.readFileSync(readme, 'utf8');
const b = '<!-- cpu-bench:begin -->', e = '<!-- cpu-bench:end -->';
const i = text.indexOf(b), j = text.indexOf(e);
if (i < 0 || j < i) {
  console.error(`${readme}: no ${b} ... ${e} markers`);
  process.exit(1);
}
fs.writeFileSync(readme, text.slice(0, i + b.length) + '\n' + [...head, ...rows].join('\n') + '\n' + text.slice(j));
console.log(`${readme}: ${rows.length} rows from ${jsonPath}`);
