// Instruction-set dispatch of the CPU backend (docs/performance.md §12): backendInfo reports the level in use,
// KVTRIM_CPU_ISA forces a lower one, and the op suites whose kernels are dispatched (SnapKV's register-tiled logits
// and vectorised exponentials, GRKV's products, the moment updates, decode's row loops, NestedKV's row kernels) pass at
// every level this machine runs, against the same references and tolerances as at the default level.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { backendInfo } from '../lib/index';

const indexTs = path.join(__dirname, '..', 'lib', 'index.ts');

function child(env: Record<string, string>, args: string[]): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [...process.execArgv, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 1_200_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}
const isaOf = (env: Record<string, string>) =>
  JSON.parse(child(env, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(indexTs)}).backendInfo()))`]).out) as { cpuIsa: string; cpuIsaLevels: string[] };

const info = backendInfo();
const levels = info.cpuIsaLevels;

t.test('backendInfo reports the level in use and the levels this CPU runs', async (t) => {
  t.ok(levels.length >= 1 && levels[levels.length - 1] === 'baseline', `levels ${levels.join(', ')}`);
  t.ok(levels.every((l) => ['avx512', 'avx2', 'baseline'].includes(l)));
  const forced = process.env.KVTRIM_CPU_ISA;
  t.equal(info.cpuIsa, forced && levels.includes(forced) ? forced : levels[0], 'the best level unless KVTRIM_CPU_ISA names one');
  t.equal(isaOf({ KVTRIM_CPU_ISA: '' }).cpuIsa, levels[0], 'unset: the best level');
  t.equal(isaOf({ KVTRIM_CPU_ISA: 'sse9' }).cpuIsa, levels[0], 'an unknown name: the best level');
  for (const l of levels) t.equal(isaOf({ KVTRIM_CPU_ISA: l }).cpuIsa, l, `KVTRIM_CPU_ISA=${l} is used`);
});

// The suites run by this file at the levels other than this process's (which the whole suite covers).
const suites = ['snapkv.test.ts', 'snapkv-batched.test.ts', 'grkv.test.ts', 'moments.test.ts', 'momentkv_select.test.ts', 'decode.test.ts', 'nestedkv.test.ts'];
for (const l of levels.filter((x) => x !== info.cpuIsa)) {
  t.test(`KVTRIM_CPU_ISA=${l}: the dispatched ops' suites pass`, async (t) => {
    for (const f of suites) {
      const r = child({ KVTRIM_CPU_ISA: l }, [path.join(__dirname, f)]);
      const failed = (r.out.match(/^\s*not ok .*/gm) ?? []).slice(0, 5);
      const passed = (r.out.match(/^\s*ok /gm) ?? []).length;
      t.equal(r.status, 0, `${f} at ${l}: exit 0 (${passed} ok)`, { failed, err: r.err.slice(-2000) });
      t.ok(passed > 0, `${f} at ${l} ran its assertions`);
    }
  });
}
