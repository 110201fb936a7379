// @ts-check
// Static kernel budgets: reads ptxas's resource reports (the *.ptxas.txt files tools/gpu/ptxas-log.js writes during a
// CUDA build), demangles the kernel names, and computes each kernel variant's occupancy from its registers, shared
// memory and the block size documented in docs/performance.md §10 (which also holds the occupancy floor of every
// kernel). Used by tools/gpu/ptxas-report.js (bench/results/ptxas-sm80.json, -sm90.json) and
// test/ptxas-budget.test.ts.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

/**
 * @typedef {{ object: string, file: string, mangled: string, arch: string, regs: number, barriers: number,
 *   smem: number, cmem: number, stack: number, spillStores: number, spillLoads: number, lmem: number,
 *   entry: boolean }} PtxasEntry
 */

/**
 * Parses one ptxas -v report. `object` is the object file it came from ("nestedkv.cu.o").
 * @param {string} text
 * @param {string} object
 * @returns {PtxasEntry[]}
 */
function parseReport(text, object) {
  /** @type {PtxasEntry[]} */
  const out = [];
  /** @type {Map<string, PtxasEntry>} */
  const byKey = new Map();
  let arch = '';
  let entryName = '';
  /** @type {PtxasEntry | null} */
  let props = null;
  const file = object.replace(/\.o(bj)?$/, '');
  const get = (/** @type {string} */ name, /** @type {boolean} */ entry) => {
    const key = `${arch}:${name}`;
    let e = byKey.get(key);
    if (!e) {
      e = { object, file, mangled: name, arch, regs: 0, barriers: 0, smem: 0, cmem: 0, stack: 0, spillStores: 0, spillLoads: 0, lmem: 0, entry };
      byKey.set(key, e);
      out.push(e);
    }
    if (entry) e.entry = true;
    return e;
  };
  for (const line of text.split('\n')) {
    let m;
    if ((m = /Compiling entry function '([^']+)' for '(sm_\d+[a-z]?)'/.exec(line))) {
      arch = m[2];
      entryName = m[1];
      get(entryName, true);
    } else if ((m = /Function properties for (\S+)/.exec(line))) {
      props = get(m[1], m[1] === entryName);
    } else if ((m = /^\s+(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line))) {
      if (props) {
        props.stack = Number(m[1]);
        props.spillStores = Number(m[2]);
        props.spillLoads = Number(m[3]);
      }
    } else if ((m = /Used (\d+) registers/.exec(line)) && entryName) {
      const e = get(entryName, true);
      e.regs = Number(m[1]);
      const num = (/** @type {RegExp} */ re) => Number((re.exec(line) || [])[1] || 0);
      e.barriers = num(/used (\d+) barriers/);
      e.smem = num(/(\d+) bytes smem/);
      e.cmem = num(/(\d+) bytes cmem\[0\]/);
      e.lmem = num(/(\d+) bytes lmem/);
    }
  }
  return out;
}

/**
 * Demangles names with c++filt (one process for all); names it cannot demangle stay as they are.
 * @param {string[]} names
 * @returns {Map<string, string>}
 */
function demangle(names) {
  const uniq = [...new Set(names)];
  const r = spawnSync('c++filt', [], { input: uniq.join('\n') + '\n', encoding: 'utf8' });
  const lines = r.status === 0 ? r.stdout.split('\n') : [];
  return new Map(uniq.map((n, i) => [n, lines[i] && lines[i].trim() ? lines[i].trim() : n]));
}

/**
 * "void kvt::cuda::(anonymous namespace)::pass2_kernel<2, 8, 1>(kvt::cuda::(anonymous namespace)::Ctx)" ->
 * { kernel: "pass2_kernel", args: ["2", "8", "1"] }.
 * @param {string} demangled
 */
function kernelName(demangled) {
  let s = demangled.replace(/^void\s+/, '');
  // drop the parameter list: the last top-level parenthesised group
  let depth = 0;
  for (let i = s.length - 1; i >= 0; i--) {
    if (s[i] === ')') depth++;
    else if (s[i] === '(') {
      depth--;
      if (depth === 0) {
        s = s.slice(0, i);
        break;
      }
    }
  }
  s = s.replace(/\(anonymous namespace\)::/g, '').replace(/^(kvt::)?(cuda::)?/, '').replace(/^\w+::(?=\w+[<(]|\w+$)/, (x) => (x === 'grkv::' || x === 'spd::' ? '' : x));
  const lt = s.indexOf('<');
  if (lt < 0) return { kernel: s.replace(/^.*::/, ''), args: [] };
  const name = s.slice(0, lt).replace(/^.*::/, '');
  const inner = s.slice(lt + 1, s.lastIndexOf('>'));
  /** @type {string[]} */
  const args = [];
  let cur = '';
  depth = 0;
  for (const ch of inner) {
    if (ch === '<' || ch === '(') depth++;
    if (ch === '>' || ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      args.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) args.push(cur.trim());
  return { kernel: name, args: args.map((a) => a.replace(/^\((?:int|unsigned int|bool)\)/, '')) };
}

/** Per-architecture limits of the occupancy calculation (CUDA C++ Programming Guide, compute capabilities table). */
const ARCH = {
  sm_80: { maxWarps: 64, maxBlocks: 32, regsPerSM: 65536, smemPerSM: 167936, smemPerBlockMax: 166912, reservedPerBlock: 1024 },
  sm_86: { maxWarps: 48, maxBlocks: 16, regsPerSM: 65536, smemPerSM: 102400, smemPerBlockMax: 101376, reservedPerBlock: 1024 },
  sm_89: { maxWarps: 48, maxBlocks: 24, regsPerSM: 65536, smemPerSM: 102400, smemPerBlockMax: 101376, reservedPerBlock: 1024 },
  sm_90: { maxWarps: 64, maxBlocks: 32, regsPerSM: 65536, smemPerSM: 233472, smemPerBlockMax: 232448, reservedPerBlock: 1024 },
};

/**
 * Resident blocks per SM and occupancy (resident warps / the architecture's maximum) of a kernel variant, and which
 * resource limits it. Registers are allocated per warp in units of 256; shared memory per block is the static plus
 * dynamic amount plus the 1 KB the system reserves per block (rounded to 128 bytes).
 * @param {{ arch: string, regs: number, smem: number, threads: number, dynSmem?: number }} k
 */
function occupancy(k) {
  const a = /** @type {Record<string, typeof ARCH.sm_80>} */ (ARCH)[k.arch.replace(/[a-z]$/, '')];
  if (!a) throw new Error(`no occupancy limits for ${k.arch}`);
  const warpsPerBlock = Math.ceil(k.threads / 32);
  const byWarps = Math.floor(a.maxWarps / warpsPerBlock);
  const regsPerWarp = Math.ceil((Math.max(k.regs, 1) * 32) / 256) * 256;
  const byRegs = Math.floor(Math.floor(a.regsPerSM / regsPerWarp) / warpsPerBlock);
  const smemBlock = Math.ceil((k.smem + (k.dynSmem || 0) + a.reservedPerBlock) / 128) * 128;
  const bySmem = k.smem + (k.dynSmem || 0) > a.smemPerBlockMax ? 0 : Math.floor(a.smemPerSM / smemBlock);
  const blocks = Math.min(a.maxBlocks, byWarps, byRegs, bySmem);
  const limiter = blocks === byRegs ? 'registers' : blocks === bySmem ? 'shared memory' : blocks === byWarps ? 'threads' : 'blocks';
  return { blocksPerSM: blocks, warps: blocks * warpsPerBlock, occupancy: (blocks * warpsPerBlock) / a.maxWarps, limiter };
}

/**
 * Every *.ptxas.txt of a log directory, parsed, demangled and named.
 * @param {string} dir
 */
function readLogs(dir) {
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.ptxas.txt')).sort() : [];
  /** @type {PtxasEntry[]} */
  const all = [];
  for (const f of files) all.push(...parseReport(fs.readFileSync(path.join(dir, f), 'utf8'), f.replace(/\.ptxas\.txt$/, '')));
  const names = demangle(all.map((e) => e.mangled));
  return all.map((e) => {
    const demangled = names.get(e.mangled) || e.mangled;
    return { ...e, demangled, ...kernelName(demangled) };
  });
}

/**
 * The budget table of docs/performance.md §10: one row per kernel (file, kernel, threads, dynamic shared memory at
 * the bench shape, occupancy floor, local-memory allowance of the default variants, the template-argument patterns
 * of its d > 256 variants).
 * @param {string} markdown
 */
function budgetTable(markdown) {
  const lines = markdown.split('\n');
  let i = lines.findIndex((l) => /^## 10\./.test(l));
  if (i < 0) throw new Error('docs/performance.md: no section 10');
  while (i < lines.length && !lines[i].startsWith('| file')) i++;
  const split = (/** @type {string} */ l) => l.split('|').slice(1, -1).map((c) => c.trim());
  const header = split(lines[i]);
  const col = (/** @type {RegExp} */ re) => {
    const k = header.findIndex((h) => re.test(h));
    if (k < 0) throw new Error(`docs/performance.md §10: no column ${re}`);
    return k;
  };
  const cFile = col(/^file/), cKernel = col(/^kernel/), cThreads = col(/^threads/), cDyn = col(/^dynamic/),
    cFloor = col(/floor/), cLocal = col(/^local bytes/), cLarge = col(/d > 256/);
  const cBatched = header.findIndex((h) => /^batched/.test(h));  // optional
  const tick = (/** @type {string} */ c) => [...c.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
  // "`<true, *, *>` 12.5 % / 16": the batched (BATCH = true) variants matching the patterns have their own occupancy
  // floor and local-memory allowance (the reason is in the note column)
  const batchedCell = (/** @type {string | undefined} */ c) => {
    const patterns = c ? tick(c) : [];
    if (!c || !patterns.length) return null;
    const rest = c.replace(/`[^`]+`/g, '');
    const f = /([\d.]+)\s*%/.exec(rest), l = /\/\s*(\d+)/.exec(rest);
    if (!f || !l) throw new Error(`docs/performance.md §10: batched cell "${c}" needs "floor % / local bytes"`);
    return { patterns, floor: Number(f[1]) / 100, localBytes: Number(l[1]) };
  };
  const rows = [];
  for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) {
    const r = split(lines[i]);
    rows.push({
      file: tick(r[cFile])[0],
      kernel: tick(r[cKernel])[0],
      threads: Number(r[cThreads]),
      dynSmem: Number(r[cDyn].replace(/[^\d]/g, '') || 0),
      floor: Number(r[cFloor].replace(/[^\d.]/g, '')) / 100,
      localBytes: Number(r[cLocal]),
      large: tick(r[cLarge]),
      batched: cBatched >= 0 ? batchedCell(r[cBatched]) : null,
    });
  }
  return rows;
}

/**
 * Whether template arguments match a pattern like "<*, 1, 32>" ('*' matches any argument).
 * @param {string[]} args
 * @param {string} pattern
 */
function matchArgs(args, pattern) {
  const p = pattern.replace(/^</, '').replace(/>$/, '').split(',').map((x) => x.trim());
  return p.length === args.length && p.every((x, i) => x === '*' || x === args[i]);
}

/**
 * Budget rows for one architecture: every entry kernel with its documented block size, occupancy and whether it is a
 * default (d <= 256) variant.
 * @param {ReturnType<typeof readLogs>} entries
 * @param {ReturnType<typeof budgetTable>} table
 * @param {string} arch
 */
function budgetRows(entries, table, arch) {
  return entries
    .filter((e) => e.entry && e.arch === arch)
    .map((e) => {
      const doc = table.find((r) => r.file === e.file && r.kernel === e.kernel);
      const bat = doc && doc.batched && doc.batched.patterns.some((p) => matchArgs(e.args, p)) ? doc.batched : null;
      const occ = doc ? occupancy({ arch, regs: e.regs, smem: e.smem, threads: doc.threads, dynSmem: doc.dynSmem }) : null;
      return {
        file: e.file,
        kernel: e.kernel,
        args: e.args,
        regs: e.regs,
        spillStores: e.spillStores,
        spillLoads: e.spillLoads,
        stack: e.stack,
        lmem: e.lmem,
        smem: e.smem,
        barriers: e.barriers,
        threads: doc ? doc.threads : null,
        dynSmem: doc ? doc.dynSmem : null,
        blocksPerSM: occ ? occ.blocksPerSM : null,
        occupancy: occ ? Math.round(occ.occupancy * 1000) / 1000 : null,
        limiter: occ ? occ.limiter : null,
        floor: bat ? bat.floor : doc ? doc.floor : null,
        localBytes: bat ? bat.localBytes : doc ? doc.localBytes : null,
        batched: !!bat,
        largeD: doc ? doc.large.some((p) => matchArgs(e.args, p)) : false,
      };
    })
    .sort((a, b) => (a.file + a.kernel + a.args.join()).localeCompare(b.file + b.kernel + b.args.join()));
}

/** nvcc's version string ("13.0.88"), or null. */
function nvccVersion() {
  const r = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
  const m = r.status === 0 ? /release [\d.]+, V([\d.]+)/.exec(r.stdout) : null;
  return m ? m[1] : null;
}

module.exports = { parseReport, demangle, kernelName, occupancy, readLogs, budgetTable, budgetRows, matchArgs, nvccVersion, ARCH };
