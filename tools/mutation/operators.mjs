// Mutation operators for the C++ sources of the CPU backend and the shared math (tools/mutation/README.md).
// Line-based: each operator rewrites one site of one line of code. Comments, string and character literals,
// preprocessor lines and the CUDA-only branches of `#if defined(__CUDA_ARCH__)` / `__CUDACC__` are never mutated
// (the CPU-only build does not compile the latter, so their mutants could not be killed by any test).

/** Source with comments and literals blanked (same length, same line breaks), so regexes only see code. */
export function maskCode(src) {
  let out = '';
  let i = 0;
  const n = src.length;
  while (i < n) {
    const c = src[i], d = src[i + 1];
    if (c === '/' && d === '/') {
      while (i < n && src[i] !== '\n') { out += ' '; i++; }
    } else if (c === '/' && d === '*') {
      while (i < n && !(src[i] === '*' && src[i + 1] === '/')) { out += src[i] === '\n' ? '\n' : ' '; i++; }
      out += '  ';
      i += 2;
    } else if (c === '"' || c === "'") {
      const q = c;
      out += ' ';
      i++;
      while (i < n && src[i] !== q) {
        if (src[i] === '\\') { out += ' '; i++; }
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

/** Per line: true when the line is code a CPU-only build compiles (not a preprocessor line, not a CUDA-only branch). */
export function liveLines(masked) {
  const lines = masked.split('\n');
  const live = new Array(lines.length).fill(true);
  // stack of { cuda: this #if tests a CUDA macro, inElse }
  const stack = [];
  const dead = () => stack.some((s) => (s.cuda === 'if-true' && !s.inElse) || (s.cuda === 'if-false' && s.inElse));
  for (let k = 0; k < lines.length; k++) {
    const l = lines[k].trim();
    if (l.startsWith('#')) {
      live[k] = false;
      const m = /^#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$/.exec(l);
      if (!m) continue;
      const [, dir, rest] = m;
      const cudaMacro = /__CUDA_ARCH__|__CUDACC__/.test(rest);
      if (dir === 'if' || dir === 'ifdef' || dir === 'ifndef') {
        const negated = dir === 'ifndef' || /^\s*!\s*defined/.test(rest);
        stack.push({ cuda: cudaMacro ? (negated ? 'if-false' : 'if-true') : 'other', inElse: false });
      } else if (dir === 'else' || dir === 'elif') {
        if (stack.length) stack[stack.length - 1].inElse = true;
      } else if (dir === 'endif') {
        stack.pop();
      }
      continue;
    }
    if (dead()) live[k] = false;
    if (/^\s*$/.test(lines[k])) live[k] = false;
    if (/\bstatic_assert\b|^\s*(template|using|namespace|struct|enum|class|typedef)\b|^\s*}\s*(\/\/.*)?$/.test(lines[k])) live[k] = false;
  }
  return live;
}

/** Regex-driven site generator: every match of `re` in the masked line yields the replacement `fn(match)` (or none). */
function sites(re, fn) {
  return (masked) => {
    const out = [];
    const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g');
    for (let m = g.exec(masked); m; m = g.exec(masked)) {
      const r = fn(m, masked);
      if (r !== null && r !== undefined) {
        for (const rr of Array.isArray(r) ? r : [r]) out.push({ col: m.index + (rr.offset ?? 0), len: rr.len ?? m[0].length, text: rr.text });
      }
      if (m[0].length === 0) g.lastIndex++;
    }
    return out;
  };
}

// Binary operators are written with spaces on both sides in this code base (clang-format), which separates
// them from unary minus, dereference, pointer declarations and template brackets.
const SWAP = { ' + ': ' - ', ' - ': ' + ', ' * ': ' / ', ' / ': ' * ', ' % ': ' * ' };
const REL = { ' < ': ' <= ', ' <= ': ' < ', ' > ': ' >= ', ' >= ': ' > ', ' == ': ' != ', ' != ': ' == ' };
const ASSIGN = { ' += ': ' -= ', ' -= ': ' += ', ' *= ': ' /= ', ' /= ': ' *= ' };
const ROUND = {
  'floor(': 'ceil(', 'ceil(': 'floor(', 'floorf(': 'ceilf(', 'ceilf(': 'floorf(',
  'round(': 'floor(', 'roundf(': 'floorf(', 'lrint(': 'lround(', 'nearbyint(': 'floor(', 'rintf(': 'floorf(',
};
const MINMAX = { 'min(': 'max(', 'max(': 'min(', 'fminf(': 'fmaxf(', 'fmaxf(': 'fminf(', 'fmin(': 'fmax(', 'fmax(': 'fmin(' };

// Argument names that hold indices or extents in this code base (views are k, v, q, s, ...: swapping those would
// mostly not compile).
const INDEX_NAMES = new Set(['h', 'i', 'j', 'c', 'r', 't', 'a', 'b', 'g', 'p', 'e', 'x', 'y', 'n', 'm', 'u', 'd', 'dv',
  'N', 'H', 'W', 'G', 'T', 'r0', 'r1', 'h0', 'h1', 'u0', 'u1', 'blk', 'seg', 'row', 'col', 'lo', 'hi']);

/** Depth of parentheses at column `col` of a line (0 outside any call or condition). */
function parenDepth(line, col) {
  let d = 0;
  for (let i = 0; i < col; i++) d += line[i] === '(' ? 1 : line[i] === ')' ? -1 : 0;
  return d;
}

/** The operators: name -> (masked line) -> [{ col, len, text }]. */
export const OPERATORS = {
  // + <-> -, * <-> /, % -> *
  arithmetic: sites(/ [+\-*/%] (?!=)/, (m, line) => {
    // skip `x - 1` style bounds? no: every binary arithmetic site counts. Skip pointer arithmetic on `this`.
    if (/^\s*#/.test(line)) return null;
    return { text: SWAP[m[0]] };
  }),
  // += <-> -=, *= <-> /=, and += -> = (the accumulation dropped)
  'compound-assignment': sites(/ [+\-*/]= /, (m) => [{ text: ASSIGN[m[0]] }, ...(m[0] === ' += ' ? [{ text: ' = ' }] : [])]),
  // < <-> <=, > <-> >= (boundaries), == <-> !=
  relational: sites(/ (<=|>=|==|!=|<|>) /, (m, line) => {
    // `template <` / `std::vector<T> x` are never spaced on both sides; `a > b` is.
    const before = line.slice(0, m.index);
    if (/\b(template|static_cast|reinterpret_cast|const_cast)\s*$/.test(before)) return null;
    return { text: REL[m[0]] };
  }),
  logical: sites(/ (&&|\|\|) /, (m) => ({ text: m[0] === ' && ' ? ' || ' : ' && ' })),
  // off-by-one loop bounds: `for (init; i < B; step)` -> `i < (B) - 1` and `i < (B) + 1`; init `= 0` -> `= 1`
  'loop-bound': (line) => {
    const out = [];
    const re = /\bfor \(([^;]*); ([^;]*?) (<=|<|>=|>) ([^;]+); /g;
    for (let m = re.exec(line); m; m = re.exec(line)) {
      const boundStart = m.index + 'for ('.length + m[1].length + 2 + m[2].length + 1 + m[3].length + 1;
      const bound = m[4];
      out.push({ col: boundStart, len: bound.length, text: `(${bound}) - 1` });
      out.push({ col: boundStart, len: bound.length, text: `(${bound}) + 1` });
      const init = /= 0$/.exec(m[1]);
      if (init) out.push({ col: m.index + 'for ('.length + init.index, len: 3, text: '= 1' });
    }
    return out;
  },
  // floor <-> ceil, round -> floor
  rounding: sites(/\b(?:std::)?(floorf?|ceilf?|roundf?|lrint|nearbyint|rintf)\(/, (m) => {
    const name = m[1] + '(';
    const off = m[0].length - name.length;
    return ROUND[name] ? { offset: off, len: name.length, text: ROUND[name] } : null;
  }),
  // min <-> max (std::min, fminf, ...)
  'min-max': sites(/\b(?:std::)?(min|max|fminf|fmaxf|fmin|fmax)\(/, (m) => {
    const name = m[1] + '(';
    return { offset: m[0].length - name.length, len: name.length, text: MINMAX[name] };
  }),
  // a store to memory (an element or a dereferenced pointer) removed: `out[i] = x;` -> `;`
  'dropped-write': sites(/(?<=^\s*|[;{)]\s*|\belse\s+)(\*?[A-Za-z_][\w.\->]*(?:<[\w:]+>\(\))?(?:\[[^=;]*\])+|\*[A-Za-z_][\w.\->]*) (=|\+=|-=|\*=|\/=) [^;]*;/, (m) => {
    return { text: ';' };
  }),
  // a call statement that writes memory removed: `std::memcpy(o, s, n);` / `copy_row(...);` -> `;`
  'dropped-call': sites(/(?<=^\s*|[;{)]\s*|\belse\s+)(?:std::)?(memcpy|memset|fill|fill_n|copy|copy_n|[a-z_]*(?:row|store|write|merge|zero|copy|fill|scatter|finish|finalize)[a-z_]*)\((?:[^;()]|\([^;()]*\))*\);/, (m, line) => {
    if (/^\s*(return|if|for|while)\b/.test(line.slice(m.index))) return null;
    return { text: ';' };
  }),
  // swapped indices: `a * S + b` -> `b * S + a` (row-major index of two loop variables), and adjacent call
  // arguments `f(x, h, i)` -> `f(x, i, h)`
  'swapped-index': (line) => {
    const out = [];
    const re = /\b([a-z_]\w{0,5}) \* ([\w.\[\]]+) \+ ([a-z_]\w{0,5})\b(?!\s*[\[(])/g;
    for (let m = re.exec(line); m; m = re.exec(line)) {
      if (m[1] === m[3] || /^\d/.test(m[1]) || /^\d/.test(m[3])) continue;
      out.push({ col: m.index, len: m[0].length, text: `${m[3]} * ${m[2]} + ${m[1]}` });
    }
    const re2 = /(?<=[(,] ?)(\w{1,3}), (\w{1,3})(?=[,)])/g;
    for (let m = re2.exec(line); m; m = re2.exec(line)) {
      if (m[1] === m[2] || parenDepth(line, m.index) < 1 || !INDEX_NAMES.has(m[1]) || !INDEX_NAMES.has(m[2])) continue;
      out.push({ col: m.index, len: m[0].length, text: `${m[2]}, ${m[1]}` });
      re2.lastIndex = m.index + m[1].length + 1;
    }
    return out;
  },
  // numeric constants: an integer k -> k + 1 (0 -> 1, 1 -> 2) and 1 -> 0; a floating literal x -> (x + 1)
  constant: (line) => {
    const out = [];
    // skip array extents of declarations (`float acc[8]`) and template arguments
    const re = /(?<![\w.])(0x[0-9a-fA-F]+u?|\d+\.\d*(?:e[+-]?\d+)?f?|\d+e[+-]?\d+f?|\d+u?)(?![\w.])/g;
    for (let m = re.exec(line); m; m = re.exec(line)) {
      const before = line.slice(0, m.index);
      if (/\b\w+ \w+\[$/.test(before) || /<$/.test(before)) continue;
      // the grain of parallel_for only changes how rows are split between threads (row results do not depend on it)
      if (/\bparallel_for\([^,()]*(?:\([^()]*\))?[^,()]*, $/.test(before)) continue;
      const lit = m[1];
      if (/^0x/.test(lit)) {
        const u = lit.endsWith('u') ? 'u' : '';
        const v = BigInt(lit.replace(/u$/, '')) + 1n;
        out.push({ col: m.index, len: lit.length, text: `0x${v.toString(16)}${u}` });
      } else if (/[.e]/.test(lit)) {
        out.push({ col: m.index, len: lit.length, text: `(${lit} + 1)` });
      } else {
        const u = lit.endsWith('u') ? 'u' : '';
        const v = Number(lit.replace(/u$/, ''));
        out.push({ col: m.index, len: lit.length, text: `${v + 1}${u}` });
        if (v === 1) out.push({ col: m.index, len: lit.length, text: `0${u}` });
      }
    }
    return out;
  },
  // unary minus removed: `-x` -> `x`
  negation: sites(/(?<=[(=,?:]\s*|\breturn\s+)-(?=[A-Za-z_(])/, () => ({ text: '' })),
  // true <-> false
  boolean: sites(/\b(true|false)\b/, (m) => ({ text: m[1] === 'true' ? 'false' : 'true' })),
};

/** Every mutant of one source file: { line (1-based), col, len, operator, original, replacement, before, after }. */
export function mutantsOf(src) {
  const masked = maskCode(src);
  const mlines = masked.split('\n');
  const lines = src.split('\n');
  const live = liveLines(masked);
  const out = [];
  for (let k = 0; k < lines.length; k++) {
    if (!live[k]) continue;
    const seen = new Set();
    for (const [op, gen] of Object.entries(OPERATORS)) {
      for (const s of gen(mlines[k])) {
        const original = lines[k].slice(s.col, s.col + s.len);
        const after = lines[k].slice(0, s.col) + s.text + lines[k].slice(s.col + s.len);
        if (after === lines[k] || seen.has(after)) continue;
        seen.add(after);
        out.push({ line: k + 1, col: s.col + 1, operator: op, original, replacement: s.text, before: lines[k], after });
      }
    }
  }
  return out;
}
