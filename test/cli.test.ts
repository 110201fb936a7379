import t from 'tap';
import { main } from '../lib/cli';
import { backendInfo } from '../lib/index';
import { runChecks, allChecks } from '../lib/check';
import * as realCheck from '../lib/check';
import * as realIndex from '../lib/index';
import { hostTarget } from '../lib/checks/util';
import type { Target } from '../lib/checks/types';
import { tensor, hostContiguous, bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../lib/tensor';
import type { Tensor } from '../lib/tensor';

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const code = await main(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

t.test('kvtrim help / unknown command', async (t) => {
  const h = await run([]);
  t.equal(h.code, 0);
  t.match(h.out, /Usage: kvtrim <command>/);
  t.match((await run(['help'])).out, /Commands:/);
  const u = await run(['frobnicate']);
  t.equal(u.code, 2);
  t.match(u.err, /unknown command 'frobnicate'/);
});

t.test('kvtrim info', async (t) => {
  const r = await run(['info']);
  t.equal(r.code, 0);
  t.match(r.out, /kvtrim \d+\.\d+\.\d+/);
  t.match(r.out, /CPU threads\s+: \d+/);
  t.match(r.out, /CUDA\s+: no — /, 'says why CUDA is off', { skip: backendInfo().cuda && 'a GPU is present' });
  const j = await run(['info', '--json']);
  t.equal(JSON.parse(j.out).threads, backendInfo().threads);
  t.match((await run(['info', '--help'])).out, /Usage: kvtrim info/);
  const bad = await run(['info', '--bogus']);
  t.equal(bad.code, 1);
  t.match(bad.err, /kvtrim info: Unknown option '--bogus'/);
});

t.test('kvtrim check', async (t) => {
  t.match((await run(['check', '--help'])).out, /Usage: kvtrim check/);
  const r = await run(['check', '--seed', '1']);
  if (backendInfo().cuda) {
    t.match(r.out, /passed, \d+ failed/);
    t.equal(r.code, 0, 'every op agrees with the CPU backend');
  } else {
    t.equal(r.code, 0, 'no GPU: exits 0');
    t.match(r.out, /no usable GPU on this machine/);
  }
});

t.test('every kvtrim check entry runs and passes CPU-vs-CPU (the check code itself is tested without a GPU)', async (t) => {
  const seen: string[] = [];
  const rows = await runChecks({ target: hostTarget(), seed: 3, onResult: (r) => seen.push(r.op) });
  t.equal(rows.length, allChecks().length, 'one row per check');
  t.same(seen, rows.map((r) => r.op), 'progress callback per row');
  for (const r of rows) t.ok(r.pass, `${r.op} ${r.config}: error ${r.error} (${r.detail ?? ''})`);
  const some = await runChecks({ target: hostTarget(), filter: 'GATHER' });
  t.ok(some.length >= 1 && some.every((r) => r.op === 'gatherKV'), 'filter by op name');
  await t.rejects(runChecks({}), /no usable GPU/, 'without a GPU the CUDA target says why', { skip: backendInfo().cuda && 'a GPU is present' });
});

/**
 * A target whose results are slightly wrong: each fetched float tensor comes back with its largest finite element v
 * replaced by 2v + 1 + (a count of fetches); an i32 tensor with one non-negative element in each eighth raised by
 * 1 + that count (more than the two mismatching indices a tie-tolerant check allows). Two fetches never agree
 * either (the determinism checks compare the target with itself).
 */
function faultyTarget(): Target {
  const base = hostTarget();
  let calls = 0;
  return {
    ...base,
    name: 'faulty',
    async fetch(x: Tensor) {
      const t = await base.fetch(x);
      const a = hostContiguous(t).slice();
      const k = ++calls;
      if (t.dtype === 'i32') {
        for (let j = 0; j < 8; j++) {
          let i = Math.floor((j * a.length) / 8);
          while (i < a.length && a[i] < 0) i++;
          if (i < a.length) a[i] += 1 + k;
        }
      } else {
        const dec = t.dtype === 'bf16' ? bf16ToF32 : t.dtype === 'f16' ? f16ToF32 : (z: number) => z;
        const enc = t.dtype === 'bf16' ? f32ToBf16 : t.dtype === 'f16' ? f32ToF16 : (z: number) => z;
        let best = -1;
        for (let i = 0; i < a.length; i++) {
          const v = dec(a[i]);
          if (Number.isFinite(v) && (best < 0 || Math.abs(v) > Math.abs(dec(a[best])))) best = i;
        }
        if (best >= 0) a[best] = enc(2 * dec(a[best]) + 1 + k);
      }
      return tensor(a, t.shape, { dtype: t.dtype });
    },
  };
}

t.test('every kvtrim check entry fails on a target that gets a few elements wrong (the checks compare what they fetch)', async (t) => {
  const rows = await runChecks({ target: faultyTarget(), seed: 3 });
  t.equal(rows.length, allChecks().length, 'one row per check');
  for (const r of rows) t.notOk(r.pass, `${r.op} ${r.config}: FAIL (error ${r.error}, tolerance ${r.tolerance})`);
});

t.test('a failing check is reported as FAIL (error captured, not thrown)', async (t) => {
  const broken = { ...hostTarget(), place: () => { throw new Error('boom'); } };
  const rows = await runChecks({ target: broken, filter: 'keydiff' });
  t.ok(rows.length > 0 && rows.every((r) => !r.pass && /boom/.test(r.detail ?? '')));
});

t.test('kvtrim check --json / --jsonl: the report formats gpu:verify reads (a stand-in GPU: the CPU backend against itself)', async (t) => {
  // With a GPU the command compares the CUDA target with the CPU backend; here index.backendInfo says a device exists
  // and runChecks runs the host target (the same check code), so the CLI's output formats are tested on any machine.
  const seen: unknown[] = [];
  const cli = t.mockRequire<typeof import('../lib/cli')>('../lib/cli', {
    '../lib/index': { ...realIndex, backendInfo: () => ({ ...realIndex.backendInfo(), cuda: true, devices: [{ id: 0, name: 'stand-in GPU' }] }) },
    '../lib/check': {
      ...realCheck,
      runChecks: (o: Parameters<typeof realCheck.runChecks>[0]) => {
        seen.push(o?.filter);
        return realCheck.runChecks({ ...o, target: hostTarget() });
      },
    },
  });
  const capture = async (argv: string[]) => {
    const out: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => void out.push(a.join(' '));
    try {
      return { code: await cli.main(argv), lines: out };
    } finally {
      console.log = log;
    }
  };
  const l = await capture(['check', '--jsonl', '--seed', '4', '--op', 'gatherKV']);
  t.equal(l.code, 0);
  const recs = l.lines.map((x) => JSON.parse(x));
  t.same(recs[0], { device: { id: 0, name: 'stand-in GPU' }, seed: 4, size: recs[0].size }, 'a header line: device, seed, size');
  t.match(recs[0].size, /^(small|full)$/);
  const rows = recs.slice(1, -1);
  t.ok(rows.length >= 1 && rows.every((r) => r.row?.op === 'gatherKV' && r.row.pass === true), `one line per check as it completes (${rows.length})`);
  t.same(recs[recs.length - 1], { done: true, passed: rows.length, failed: 0 }, 'a summary line');
  const j = await capture(['check', '--json', '--seed', '4', '--op', 'gatherKV']);
  t.equal(j.code, 0);
  const rep = JSON.parse(j.lines.join('\n'));
  t.same({ device: rep.device, seed: rep.seed, failed: rep.failed }, { device: { id: 0, name: 'stand-in GPU' }, seed: 4, failed: 0 }, 'one JSON report');
  t.same(rep.rows.map((r: { op: string; config: string }) => `${r.op} ${r.config}`), rows.map((r) => `${r.row.op} ${r.row.config}`), 'the same rows');
  const plain = await capture(['check', '--seed', '4', '--op', 'gatherKV']);
  t.equal(plain.code, 0);
  t.equal(plain.lines[0], 'kvtrim check on stand-in GPU (seed 4)', 'the table form: a title line');
  t.match(plain.lines.join('\n'), /gatherKV .* PASS/, 'a table row per check');
  t.equal(plain.lines[plain.lines.length - 1], `\n${rows.length} passed, 0 failed`, 'and the count');
  t.same(seen, [['gatherKV'], ['gatherKV'], ['gatherKV']], '--op reaches runChecks');
});
