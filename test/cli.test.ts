import t from 'tap';
import { main } from '../lib/cli';
import { backendInfo } from '../lib/index';
import { runChecks, allChecks } from '../lib/check';
import { hostTarget } from '../lib/checks/util';

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

t.test('a failing check is reported as FAIL (error captured, not thrown)', async (t) => {
  const broken = { ...hostTarget(), place: () => { throw new Error('boom'); } };
  const rows = await runChecks({ target: broken, filter: 'keydiff' });
  t.ok(rows.length > 0 && rows.every((r) => !r.pass && /boom/.test(r.detail ?? '')));
});
