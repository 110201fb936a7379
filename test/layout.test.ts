// The repository layout stays as documented: the op → files table of docs/adding-an-op.md (one name per op through
// every layer) and the README's "Repository layout" folder table both match the tree.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import * as api from '../lib/index';

const root = path.join(__dirname, '..');
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');

interface OpRow {
  op: string;
  cells: Record<string, string[]>;
}

/** Rows of the first markdown table after `heading`, keyed by header cell; cell values are the backticked items. */
function tableAfter(text: string, heading: string): { header: string[]; rows: string[][] } {
  const lines = text.split('\n');
  let i = lines.findIndex((l) => l.startsWith(heading));
  if (i < 0) throw new Error(`no section '${heading}'`);
  while (i < lines.length && !lines[i].startsWith('|')) i++;
  const split = (l: string) => l.split('|').slice(1, -1).map((c) => c.trim());
  const header = split(lines[i]);
  const rows: string[][] = [];
  for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) rows.push(split(lines[i]));
  return { header, rows };
}
const ticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);

const guide = tableAfter(read('docs/adding-an-op.md'), '## The ops and their files');
const ops: OpRow[] = guide.rows.map((r) => ({
  op: r[0],
  cells: Object.fromEntries(guide.header.map((h, k) => [h, ticked(r[k])])),
}));

t.test('docs/adding-an-op.md: every op row names files that exist', async (t) => {
  t.ok(ops.length >= 10, `${ops.length} ops`);
  for (const { op, cells } of ops) {
    for (const [col, items] of Object.entries(cells)) {
      if (/C ABI|TS export|^op$/.test(col)) continue;
      for (const f of items) t.ok(fs.existsSync(path.join(root, f)), `${op}: ${col} ${f} exists`);
    }
  }
});

t.test('docs/adding-an-op.md: the C functions and TypeScript exports exist', async (t) => {
  const header = read('csrc/include/kvtrim.h');
  for (const { op, cells } of ops) {
    const [fn] = cells[guide.header.find((h) => h.startsWith('C ABI'))!];
    t.match(header, new RegExp(`KVT_API\\s+\\w+\\s+${fn}\\(`), `${op}: ${fn} is declared in kvtrim.h`);
    const [ts] = cells[guide.header.find((h) => h.startsWith('TS export'))!];
    t.ok(ts in api, `${op}: ${ts} is exported by lib/index.ts`);
  }
});

t.test('every op-named file of the layer folders is in its op row', async (t) => {
  const folders = ['csrc/abi', 'csrc/cpu', 'csrc/napi', 'csrc/math', 'cuda', 'lib/ops', 'lib/benches', 'lib/checks', 'test/ref', 'test'];
  const listed = new Map(ops.map(({ op, cells }) => [op, new Set(Object.values(cells).flat())]));
  // the longest op name that prefixes a file's stem (so momentkv_select is not taken for a 'moments' or 'select' file)
  const names = ops.map((o) => o.op).sort((a, b) => b.length - a.length);
  let seen = 0;
  for (const dir of folders) {
    for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      if (!e.isFile()) continue;
      const stem = e.name.replace(/\..*$/, '');
      const op = names.find((n) => stem === n || stem.startsWith(`${n}-`) || stem.startsWith(`${n}_`));
      if (!op) continue;
      seen++;
      const f = `${dir}/${e.name}`;
      t.ok(listed.get(op)!.has(f), `${f} is listed in the '${op}' row`);
    }
  }
  t.ok(seen > 60, `${seen} op files found`);
});

t.test("README 'Repository layout' names every folder of the tree", async (t) => {
  const layout = tableAfter(read('README.md'), '## Repository layout');
  const named = new Set(layout.rows.flatMap((r) => ticked(r[0])).map((p) => p.replace(/\/$/, '')));
  for (const p of named) t.ok(fs.existsSync(path.join(root, p)), `${p} exists`);
  const top = ['csrc', 'cuda', 'lib', 'test', 'tools', 'docs', 'examples', 'scripts', 'bench'];
  for (const d of top) {
    if (!fs.existsSync(path.join(root, d))) continue;
    t.ok(named.has(d), `${d}/ is described`);
    for (const e of fs.readdirSync(path.join(root, d), { withFileTypes: true })) {
      if (e.isDirectory() && !['fixtures'].includes(e.name)) t.ok(named.has(`${d}/${e.name}`), `${d}/${e.name}/ is described`);
    }
  }
});
