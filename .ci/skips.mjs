#!/usr/bin/env node
// Skipped cases of the last tap run, with their reasons: every `ok`/`not ok` line marked `# SKIP` in the raw TAP
// tap keeps per test file (.tap/test-results/). Reasons are grouped with their numbers blanked (a measured spread
// differs per case), each group with one example. Prints "N skipped" last.
import fs from 'node:fs';
import path from 'node:path';

const dir = path.resolve(process.argv[2] ?? '.tap/test-results');
function walk(d) {
  if (!fs.existsSync(d)) return [];
  return fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith('.tap') ? [path.join(d, e.name)] : []));
}
const groups = new Map();
let n = 0;
for (const f of walk(dir)) {
  for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
    const m = /^\s*(?:not )?ok \d+ - (.*?) # SKIP(?:\s+(.*))?$/.exec(line);
    if (!m) continue;
    n++;
    const reason = (m[2] ?? '(no reason given)').trim();
    const key = reason.replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/g, '#');
    const g = groups.get(key) ?? { count: 0, files: new Set(), example: `${path.basename(f, '.tap')}: ${m[1]} — ${reason}` };
    g.count++;
    g.files.add(path.basename(f, '.tap'));
    groups.set(key, g);
  }
}
for (const [key, g] of [...groups.entries()].sort((a, b) => b[1].count - a[1].count)) {
  console.log(`${String(g.count).padStart(5)}  ${key}`);
  console.log(`       in ${[...g.files].sort().join(', ')}`);
  console.log(`       e.g. ${g.example}`);
}
const noReason = groups.get('(no reason given)')?.count ?? 0;
console.log(`${n} skipped${noReason ? ` (${noReason} without a reason)` : ''}`);
process.exitCode = noReason ? 1 : 0;
