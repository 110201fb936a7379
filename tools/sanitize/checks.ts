// Every `kvtrim check` entry (lib/checks) with the CPU backend as its target, at the small sizes
// (KVTRIM_CHECK_SIZE=small): each op with every dtype, layout and code path the checks cover, the non-finite cases
// included. Run by tools/sanitize/run against the sanitizer build; the test suite covers the same entries through
// test/cli.test.ts.
import t from 'tap';
import { runChecks } from '../../lib/check';
import { hostTarget } from '../../lib/checks/util';

t.test('every kvtrim check entry, CPU vs CPU', async (t) => {
  const rows = await runChecks({ target: hostTarget(), seed: 7 });
  t.ok(rows.length > 40, `${rows.length} checks`);
  for (const r of rows) t.ok(r.pass, `${r.op} ${r.config}: ${r.error} <= ${r.tolerance}${r.detail ? ` (${r.detail})` : ''}`);
});
