// Every citation in the repository resolves inside it: `docs/<file>.md §n` (and markdown links to docs files)
// must name an existing file and, with a section, a heading numbered n in that file; nothing cites the method
// specs the project was written from (they are not shipped). Bare `§n` follows the rule of docs/README.md
// "Citations": in a docs file it refers to that file (or to the doc named just before it on the line); anywhere
// else it refers to the docs file named earlier on the same line.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const root = path.join(__dirname, '..');

function trackedTextFiles(): string[] {
  let out: string;
  try {
    out = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: root, encoding: 'utf8' });
  } catch {
    // not a git checkout (e.g. an unpacked tarball): walk the source folders
    const walk = (dir: string): string[] =>
      fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
        const rel = path.join(dir, e.name);
        if (e.isDirectory()) return e.name === 'node_modules' ? [] : walk(rel);
        return [rel];
      });
    out = ['csrc', 'cuda', 'lib', 'test', 'docs', 'tools', 'examples', 'scripts', 'bench']
      .filter((d) => fs.existsSync(path.join(root, d)))
      .flatMap(walk)
      .concat(['README.md'])
      .join('\n');
  }
  return out
    .split('\n')
    .filter((f) => f && /\.(ts|js|mjs|cjs|cc|h|cu|cuh|md|py|c|cmake|txt|json|sh)$|^[^.]*$/.test(f))
    .filter((f) => !f.startsWith('node_modules/') && !f.endsWith('package-lock.json'))
    .filter((f) => fs.existsSync(path.join(root, f)) && fs.statSync(path.join(root, f)).isFile());
}

/** Section numbers present in a markdown file: headings like `## 7. Title`, `### 7.2 Title`, `## 4.1. Title`. */
const sectionCache = new Map<string, Set<string>>();
function sections(docRel: string): Set<string> | undefined {
  const abs = path.join(root, docRel);
  if (!fs.existsSync(abs)) return undefined;
  let s = sectionCache.get(docRel);
  if (!s) {
    s = new Set();
    for (const line of fs.readFileSync(abs, 'utf8').split('\n')) {
      const m = /^#{1,6}\s+(\d+(?:\.\d+)*)\.?(?:\s|$)/.exec(line);
      if (m) s.add(m[1]);
    }
    sectionCache.set(docRel, s);
  }
  return s;
}

const files = trackedTextFiles();
const self = path.relative(root, __filename);

t.test('nothing cites the unshipped method specs', async (t) => {
  const bad: string[] = [];
  for (const f of files) {
    if (f === self) continue;
    const lines = fs.readFileSync(path.join(root, f), 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (/(^|[^\w/.-])spec\/[a-z]+\.md|\.\.\/shared\/spec|\bspec §|\bspec [a-z]+ §/.test(line)) bad.push(`${f}:${i + 1}: ${line.trim()}`);
    });
  }
  t.same(bad, [], 'citations of spec/ (not in the package) must point into docs/');
});

/** The docs file a citation's path names, or undefined when it is not a path into this repository's docs/. */
function docOf(raw: string, from: string): string | undefined {
  if (/^[a-z]+:\/\//.test(raw) || raw.startsWith('#')) return undefined;
  const target = raw.split('#')[0];
  if (!target.endsWith('.md')) return undefined;
  let doc: string;
  if (target.startsWith('docs/')) doc = path.normalize(target);
  else if (from.startsWith('docs/') || from === 'README.md') doc = path.normalize(path.join(path.dirname(from), target));
  else return undefined;
  return doc.startsWith('docs/') ? doc : undefined;
}

t.test('every docs citation names an existing file and section', async (t) => {
  const bad: string[] = [];
  let checked = 0;
  for (const f of files) {
    if (f === self) continue;
    const inDocs = f.startsWith('docs/') && f.endsWith('.md');
    let external = false; // inside a docs "Sources" / "References" section: paths there name other repositories
    fs.readFileSync(path.join(root, f), 'utf8').split('\n').forEach((line, i) => {
      const where = `${f}:${i + 1}`;
      if (inDocs && /^#{1,6}\s/.test(line)) external = /sources|references/i.test(line);
      if (external) return;
      // the docs file each position on the line refers to, with the section cited right there (if any)
      const refs: { at: number; doc: string }[] = [];
      const cite = (doc: string, at: number, sec: string | undefined) => {
        checked++;
        const secs = sections(doc);
        if (!secs) return void bad.push(`${where}: ${doc} does not exist`);
        refs.push({ at, doc });
        if (sec !== undefined) {
          checked++;
          if (!secs.has(sec)) bad.push(`${where}: ${doc} has no section ${sec}`);
        }
      };
      const linkSpans: [number, number][] = [];
      // markdown links [label](target): the label may carry the section (`[grkv.md §7.2](grkv.md)`)
      for (const m of line.matchAll(/\[([^\]]*)\]\(([^)\s]+)\)/g)) {
        const doc = docOf(m[2], f);
        linkSpans.push([m.index!, m.index! + m[0].length]);
        if (!doc) continue;
        const inLabel = /§\s?(\d+(?:\.\d+)*)/.exec(m[1]);
        const after = /^\s*§\s?(\d+(?:\.\d+)*)/.exec(line.slice(m.index! + m[0].length));
        cite(doc, m.index!, inLabel?.[1] ?? after?.[1]);
      }
      // plain repository paths `docs/<file>.md` (not a suffix of another path), optionally followed by `§n`
      for (const m of line.matchAll(/(?<![\w/.-])(docs\/[\w./-]*\.md)`?(?:[:,]?\s*§\s?(\d+(?:\.\d+)*))?/g)) {
        if (linkSpans.some(([a, b]) => m.index! >= a && m.index! < b)) continue;
        cite(path.normalize(m[1]), m.index!, m[2]);
      }
      // bare §n: the docs file named before it on the line, else (inside docs/) this file
      for (const m of line.matchAll(/§\s?(\d+(?:\.\d+)*)/g)) {
        const at = m.index!;
        if (linkSpans.some(([a, b]) => at >= a && at < b)) continue;
        const before = refs.filter((r) => r.at < at);
        const doc = before.length ? before[before.length - 1].doc : inDocs ? f : undefined;
        if (!doc) {
          bad.push(`${where}: '§${m[1]}' without a docs file before it on the line`);
          continue;
        }
        checked++;
        if (!sections(doc)?.has(m[1])) bad.push(`${where}: ${doc} has no section ${m[1]}`);
      }
    });
  }
  t.ok(checked > 300, `resolved ${checked} citations`);
  t.same(bad, [], 'unresolved citations');
});

t.test('every repository path the code and docs mention exists', async (t) => {
  const bad: string[] = [];
  let checked = 0;
  const known = /(?<![\w/.@-])((?:csrc|cuda|lib|test|tools|examples|scripts|bench|docs)\/[\w./-]*[\w-]\.(?:cc|h|cu|cuh|ts|md|js|mjs|py|json|cmake|sh|svg))\b/g;
  for (const f of files) {
    if (f === self) continue;
    const inDocs = f.endsWith('.md');
    let external = false;
    fs.readFileSync(path.join(root, f), 'utf8').split('\n').forEach((line, i) => {
      if (inDocs && /^#{1,6}\s/.test(line)) external = /sources|references/i.test(line);
      if (external) return;
      for (const m of line.matchAll(known)) {
        const p = m[1];
        checked++;
        // a path of the repository, or of the compiled package (dist/ mirrors lib/)
        if (!fs.existsSync(path.join(root, p))) bad.push(`${f}:${i + 1}: ${p}`);
      }
    });
  }
  t.ok(checked > 100, `checked ${checked} paths`);
  t.same(bad, [], 'paths that do not exist');
});
