// No timed assertion anywhere in the suite (issue 17): speed lives in `kvtrim bench`, which reports ratios in the
// same run; a test that asserts a duration or a bandwidth fails on a loaded machine. Every file of test/ is read
// (comments and strings blanked) and must neither read a clock nor compare a time or bandwidth field with a number
// other than 0 ("finite and not negative" is a well-formedness check, not a speed threshold).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';

const dir = __dirname;
const self = path.basename(__filename);

/** Source with comments and string/template literals blanked (same length): only code is scanned. */
export function codeOnly(src: string): string {
  let out = '';
  for (let i = 0; i < src.length; ) {
    const c = src[i], d = src[i + 1];
    if (c === '/' && d === '/') {
      while (i < src.length && src[i] !== '\n') (out += ' '), i++;
    } else if (c === '/' && d === '*') {
      while (i < src.length && !(src[i] === '*' && src[i + 1] === '/')) (out += src[i] === '\n' ? '\n' : ' '), i++;
      out += '  ';
      i += 2;
    } else if (c === '"' || c === "'" || c === '`') {
      out += ' ';
      i++;
      while (i < src.length && src[i] !== c) {
        if (src[i] === '\\') (out += ' '), i++;
        // a template's ${…} is code: keep it
        if (c === '`' && src[i] === '$' && src[i + 1] === '{') {
          let depth = 0;
          do {
            if (src[i] === '{') depth++;
            else if (src[i] === '}') depth--;
            out += src[i];
            i++;
          } while (i < src.length && depth > 0);
          continue;
        }
        out += src[i] === '\n' ? '\n' : ' ';
        i++;
      }
      out += ' ';
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Clock reads: a test that needs one is measuring speed. */
const CLOCK = /\bperformance\s*\.\s*now\b|\bprocess\s*\.\s*hrtime\b|\bprocess\s*\.\s*cpuUsage\b|\bDate\s*\.\s*now\b|\bconsole\s*\.\s*time(End|Log)?\b|\bnew\s+Date\s*\(\s*\)/;
/** A time or bandwidth (by name, e.g. `row.medianMs`, `a.elapsedMs(b)`, `cpuMs`, `r.bandwidthGBs`) next to a comparison. */
const FIELD = String.raw`(?:[\w.]+\.)?(?:\w*(?:Ms|Seconds|GBs|GBps)|ms|gbps|bandwidth\w*|elapsed\w*|wall\w*|duration\w*)\b(?:\s*\([^()]*\))?`;
const NUM = String.raw`(\d+\.?\d*(?:e[+-]?\d+)?|\.\d+)(?![\w.])`;
const CMP = String.raw`\s*(?:<=?|>=?)\s*`, START = String.raw`(?<![\w.])`;
const THRESHOLDS = [new RegExp(START + FIELD + CMP + NUM, 'g'), new RegExp(START + NUM + CMP + FIELD, 'g')];

/** True when the code compares a time or bandwidth with a nonzero number. */
function threshold(code: string): boolean {
  return THRESHOLDS.some((re) => [...code.matchAll(re)].some((m) => Number(m[1]) !== 0));
}

/** Lines of `src` (1-based) whose code matches a rule. */
export function timedLines(src: string): { line: number; text: string; why: string }[] {
  const code = codeOnly(src).split('\n'), text = src.split('\n');
  const out: { line: number; text: string; why: string }[] = [];
  code.forEach((l, k) => {
    if (CLOCK.test(l)) out.push({ line: k + 1, text: text[k].trim(), why: 'reads a clock' });
    else if (threshold(l)) out.push({ line: k + 1, text: text[k].trim(), why: 'compares a time or bandwidth with a number' });
  });
  return out;
}

function walk(d: string): string[] {
  return fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(d, e.name);
    if (e.isDirectory()) return e.name === 'fixtures' ? [] : walk(p);
    return /\.(ts|js|mjs)$/.test(e.name) ? [p] : [];
  });
}

t.test('the scanner finds what it looks for (and not more)', async (t) => {
  const bad = [
    "t.ok(cpuMs < 3000, 'fast');",
    'const t0 = performance.now();',
    'const c0 = process.cpuUsage();',
    "t.ok(r.bandwidthGBs > 0.1, 'bandwidth');",
    "t.ok(row.medianMs <= 250, 'median');",
    "t.ok(5e3 > row.ms, 'ms');",
    "t.ok(a.elapsedMs(b) < 1.5, 'elapsed');",
    'const start = Date.now();',
    "t.ok(wall < 10, 'wall');",
  ];
  for (const l of bad) t.equal(timedLines(l).length, 1, `flags: ${l}`);
  const fine = [
    "t.ok(row.ms >= 0 && row.retainedBytes > 0, 'time and bytes');",
    "t.ok(Number.isFinite(r.bandwidthGBs) && r.bandwidthGBs > 0, 'a bandwidth');",
    "t.ok(row.medianMs > 0.0 && row.minMs <= row.medianMs, 'timing');",
    "t.comment('measured 12 ms < 30 ms');",
    '// performance.now() is not used here',
    "t.ok(err <= 1e-5, 'error');",
    "t.ok(row.p90Error < 2e-5, 'p90');",
    "const msg = `${x.ms} ms > 3 s`;",
  ];
  for (const l of fine) t.same(timedLines(l), [], `does not flag: ${l}`);
});

t.test('no file of test/ reads a clock or asserts a time', async (t) => {
  const files = walk(dir).filter((f) => path.basename(f) !== self);
  t.ok(files.length > 50, `${files.length} files scanned`);
  const found = files.flatMap((f) => timedLines(fs.readFileSync(f, 'utf8')).map((x) => `${path.relative(dir, f)}:${x.line}: ${x.why}: ${x.text}`));
  t.same(found, [], found.length ? found.join('\n') : 'none');
});
