// The README's examples run as written (through the package's own name, like a user's code).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { backendInfo } from '../lib/index';

const root = path.join(__dirname, '..');

for (const ex of ['host.js', 'pipeline.js', 'device.js', 'runtime.js']) {
  t.test(`examples/${ex}`, async (t) => {
    const r = spawnSync(process.execPath, [path.join(root, 'examples', ex)], { cwd: root, encoding: 'utf8', timeout: 300000 });
    t.equal(r.status, 0, r.stderr);
    if (ex === 'host.js') {
      t.match(r.stdout, /kept per head: (\d+ ){7}\d+ \(of 4096\)/);
      const counts = r.stdout.match(/kept per head: ([\d ]+) \(/)![1].trim().split(' ').map(Number);
      t.equal(counts.reduce((a, b) => a + b, 0), 8 * 1024, 'adaptive budget keeps H*keep tokens');
      t.match(r.stdout, /strided scores: 8x4096/);
    } else if (ex === 'pipeline.js') {
      t.match(r.stdout, /nestedkv \(adaptive budgets\)\s+kept 409\/4096 per head, median error 0\.\d+/);
      t.match(r.stdout, /snapkv \+ GRKV merge/);
      t.match(r.stdout, /momentkv \(\+ moment summary\)/);
    } else if (ex === 'runtime.js') {
      t.match(r.stdout, /pages: 19\+2\+12 -> \d+\+1\+\d+; \d+ freed, \d+ free/);
      t.match(r.stdout, /after the append: rows per head (\d+ ){11}\d+; decode output \[3, 4, 64\]/);
    } else if (backendInfo().cuda) {
      t.match(r.stdout, /kept per head: /);
    } else {
      t.match(r.stdout, /no usable GPU: /);
    }
  });
}

t.test('the README embeds the examples verbatim', async (t) => {
  const fs = await import('node:fs');
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  for (const ex of ['host.js', 'device.js', 'runtime.js']) {
    t.ok(readme.includes('```js\n' + fs.readFileSync(path.join(root, 'examples', ex), 'utf8') + '```'), `examples/${ex}`);
  }
});
