// The fuzzer's CI corpus (tools/fuzz, README "Errors"): 6,000 seeded calls of every exported function (lib/index.ts
// and the addon's own exports) with one argument mutated, in worker processes. No call may crash, hang, return
// normally although it must fail, change an input or write outside its output, or fail with an internal error; every
// error of a call that must fail names the mutated argument. With KVTRIM_ADDON set (e.g. the sanitizer build of
// tools/sanitize/run) the workers load that addon.
import t from 'tap';
import { fuzz, summary } from '../tools/fuzz/run';
import * as kv from '../lib/index';
import { NATIVE_EXPORTS } from '../lib/binding';
import { allTargets, coveredExports } from '../tools/fuzz/targets';

t.test('fuzzer: every export has a target', async (t) => {
  // a new export of lib/index.ts or of the addon (NATIVE_EXPORTS) without a fuzzer target fails here
  const covered = new Set(allTargets.flatMap(coveredExports));
  const callable = Object.keys(kv).filter((k) => typeof (kv as Record<string, unknown>)[k] === 'function');
  t.same(callable.filter((k) => !covered.has(k)), [], 'every function and class of lib/index.ts is called by a target');
  t.same(Object.keys(NATIVE_EXPORTS).filter((k) => !covered.has(`native.${k}`)), [], 'every addon export is called by a native.* target');
  const unknown = [...covered].filter((c) => (c.startsWith('native.') ? !(c.slice(7) in NATIVE_EXPORTS) : !(c in kv)));
  t.same(unknown, [], 'every name a target claims is an export');
});

t.test('fuzzer: 6,000 mutated calls over 3 seeds', async (t) => {
  const r = await fuzz({ calls: 2000, seeds: [1, 2, 3], jobs: 2, timeout: 180 });
  t.comment(summary(r));
  const shown = (k: string) => JSON.stringify(r.examples[k]?.slice(0, 3) ?? [], null, 1);
  t.equal(r.calls, 6000, 'every call was made and classified');
  t.equal(r.classes.crash, 0, `no crash ${shown('crash')}`);
  t.equal(r.classes.hang, 0, `no hang ${shown('hang')}`);
  t.equal(r.classes.silent, 0, `no silent acceptance of an invalid call ${shown('silent')}`);
  t.equal(r.classes.modified, 0, `no modified input, nothing written outside an output ${shown('modified')}`);
  t.equal(r.classes.internal, 0, `no internal error ${shown('internal')}`);
  t.equal(r.naming.no, 0, `every error of an invalid call names the argument ${shown('unnamed')}`);
  t.ok(r.naming.leading + r.naming.mentioned > 2000, `${r.naming.leading + r.naming.mentioned} errors checked for the argument name`);
  t.ok(r.classes.ok > 1000 && r.classes.error > 2000, 'both valid and invalid calls were made');
  t.same(Object.keys(r.targets).sort(), allTargets.map((x) => x.name).sort(), 'every target was called');
});
