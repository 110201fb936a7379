import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { featureTable, METHODS, MERGES } from '../lib/methods';
import { tensor, nestedkvScores, grkvMerge } from '../lib/index';
import { Rng } from '../lib/rng';

t.test('the README feature table is the one generated from the registry', async (t) => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const m = readme.match(/<!-- METHODS_TABLE_START -->\n([\s\S]*?)\n<!-- METHODS_TABLE_END -->/);
  t.ok(m, 'README has the table markers');
  t.equal(m![1], featureTable(), 'regenerate with `npx kvtrim methods --markdown`');
});

t.test('registry defaults are the ops defaults', async (t) => {
  const rng = new Rng(2);
  const H = 2, N = 700, d = 16;
  const keys = tensor(rng.normals(H * N * d), [H, N, d]);
  const dflt = nestedkvScores(keys).host;
  const { window, prior, beta, tau, kappa, tail, sinks } = METHODS.nestedkv.defaults as never as Record<string, never>;
  const explicit = nestedkvScores(keys, { window, prior, beta, tau, kappa, tail, sinks }).host;
  t.same(Array.from(explicit), Array.from(dflt), 'nestedkv');
  t.equal(typeof grkvMerge, 'function');
  t.same(MERGES.grkv.defaults.caps, { key: 0.025, value: 0.1 });
});
