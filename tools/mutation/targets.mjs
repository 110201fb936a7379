// What the native mutation run mutates, which test files judge each file, and the hand-written mutants of issue 17.
import fs from 'node:fs';
import path from 'node:path';

/** The ops, one name through every layer (docs/adding-an-op.md). */
export const OPS = ['keydiff', 'nestedkv', 'snapkv', 'select', 'gather', 'moments', 'decode', 'momentkv_select', 'spd', 'grkv'];

/**
 * Mutated files: the CPU backend (csrc/cpu) and the shared math (csrc/math), plus the one computation of the C ABI
 * layer that decides a selection (the adaptive safeguard n_safe of csrc/abi/select.cc). Not mutated: csrc/cpu/ops.h
 * (declarations and parameter structs whose member defaults are always overwritten) and the other csrc/abi files
 * (validation and dispatch; the bad-input tests and the fuzzer of issue 10 judge those).
 */
export function targetFiles(root) {
  const list = [];
  for (const dir of ['csrc/cpu', 'csrc/math'])
    for (const f of fs.readdirSync(path.join(root, dir)).sort())
      if (/\.(cc|h)$/.test(f) && f !== 'ops.h') list.push(`${dir}/${f}`);
  list.push('csrc/abi/select.cc');
  return list;
}

/** Lines of `file` (1-based, inclusive ranges) that may be mutated; undefined = all code lines. */
export function regionsOf(file, src) {
  if (file !== 'csrc/abi/select.cc') return undefined;
  const lines = src.split('\n');
  const start = lines.findIndex((l) => /\bselect_n_safe\(const kvt_select_opts& o\) \{/.test(l));
  if (start < 0) throw new Error('csrc/abi/select.cc: select_n_safe not found');
  let end = start;
  while (!/^}/.test(lines[end])) end++;
  return [[start + 1, end + 1]];
}

// Shared files: the ops whose CPU code includes them (by #include, checked by hand; tools/mutation/README.md).
const SHARED = {
  'csrc/cpu/cholesky.cc': ['spd', 'grkv'],
  'csrc/cpu/cholesky.h': ['spd', 'grkv'],
  'csrc/cpu/gemm.cc': ['grkv'],
  'csrc/cpu/gemm.h': ['grkv'],
  'csrc/cpu/grkv_merge.h': ['grkv'],
  'csrc/cpu/parallel.cc': ['select', 'keydiff', 'gather', 'nestedkv'],
  'csrc/cpu/rows.h': ['keydiff', 'gather', 'nestedkv', 'snapkv', 'moments', 'decode', 'momentkv_select', 'grkv', 'spd'],
  // every CPU file includes it through rows.h (math/batch.h); f32_to_f16 is used by GRKV alone (f16 caches)
  'csrc/math/common.h': ['select', 'keydiff', 'gather', 'nestedkv', 'snapkv', 'moments', 'decode', 'momentkv_select', 'grkv', 'spd'],
  'csrc/math/nestedkv.h': ['nestedkv'],
  'csrc/math/snapkv.h': ['snapkv'],
  'csrc/math/momentkv.h': ['moments', 'decode', 'momentkv_select'],
  'csrc/math/grkv.h': ['grkv', 'spd'],
  'csrc/abi/select.cc': ['select', 'nestedkv'],
  // added after the seed-17 sample was frozen (tools/mutation/sample-17.json): mapped so that a new sample can draw them
  'csrc/cpu/simd.cc': ['snapkv', 'moments', 'grkv', 'decode', 'nestedkv'],
  'csrc/cpu/simd.h': ['snapkv', 'moments', 'grkv', 'decode', 'nestedkv'],
  'csrc/cpu/simd_body.h': ['snapkv', 'moments', 'grkv', 'decode', 'nestedkv'],
  'csrc/cpu/batch.cc': ['keydiff', 'nestedkv', 'snapkv', 'select', 'gather', 'moments', 'decode', 'momentkv_select', 'grkv', 'compact'],
  'csrc/cpu/batch.h': ['keydiff', 'nestedkv', 'snapkv', 'select', 'gather', 'moments', 'decode', 'momentkv_select', 'grkv', 'compact'],
  'csrc/math/batch.h': ['keydiff', 'nestedkv', 'snapkv', 'select', 'gather', 'moments', 'decode', 'momentkv_select', 'grkv', 'compact'],
  'csrc/cpu/compact.cc': ['compact'],
  'csrc/cpu/parallel.h': ['select', 'keydiff', 'gather', 'nestedkv'],
  'csrc/cpu/tp_select.cc': ['tp_select'],
  'csrc/math/tp_select.h': ['tp_select'],
};

/** The ops whose tests judge a mutant of `file`: by name (csrc/cpu/<op>.cc, grkv_*.cc), else the table above. */
export function opsFor(file) {
  if (SHARED[file]) return SHARED[file];
  const base = path.basename(file).replace(/\.(cc|h)$/, '');
  if (OPS.includes(base)) return [base];
  if (base.startsWith('grkv_')) return ['grkv'];
  throw new Error(`${file}: no op mapping (add it to tools/mutation/targets.mjs)`);
}

/**
 * Test files of an op: test/<op>.test.ts and test/<op>-<aspect>.test.ts, except the bad-input files (validation,
 * not the CPU backend) and the -ref files that test a float64 reference alone (they never load the addon).
 */
export function testsForOp(root, op) {
  const all = fs.readdirSync(path.join(root, 'test')).filter((f) => f.endsWith('.test.ts'));
  return all
    .filter((f) => f === `${op}.test.ts` || (f.startsWith(`${op}-`) && !f.startsWith(`${op}_`)))
    .filter((f) => !/-bad-input\.test\.ts$/.test(f) && !/-ref\.test\.ts$/.test(f))
    .map((f) => `test/${f}`)
    .sort();
}

/**
 * Hand-written mutants (the three of issue 17 that survived the suite of that time): a find/replace on one line.
 * They are always part of a run, in addition to the seeded sample.
 */
export const NAMED = [
  {
    name: 'select-safeguard-ceil',
    file: 'csrc/abi/select.cc',
    find: 'return int32_t(floor(double(o.keep) * o.safeguard + 1e-9));',
    replace: 'return int32_t(ceil(double(o.keep) * o.safeguard - 1e-9));',
    operator: 'rounding',
    what: 'the adaptive safeguard rounded up: ⌈keep·safeguard⌉ instead of ⌊keep·safeguard⌋ (exact products unchanged)',
  },
  {
    name: 'keydiff-skip-zero-rows',
    file: 'csrc/cpu/keydiff.cc',
    find: 'o[i * out.stride[1]] = neg_cosine(dot8(row, a, d), sumsq8(row, d), anorm[size_t(h)]);',
    replace: 'if (sumsq8(row, d) != 0.0f) o[i * out.stride[1]] = neg_cosine(dot8(row, a, d), sumsq8(row, d), anorm[size_t(h)]);',
    operator: 'dropped-write',
    what: 'KeyDiff leaves the scores of zero-norm rows unwritten',
  },
  {
    name: 'gather-first-value-row-unwritten',
    file: 'csrc/cpu/gather.cc',
    find: 'copy_row(v, h, i, vo, j);',
    replace: 'if (h == 0 || j > 0) copy_row(v, h, i, vo, j);',
    operator: 'dropped-write',
    what: 'gatherKV leaves the first retained value row of every head h > 0 unwritten',
  },
];
