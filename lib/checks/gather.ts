/** Target-vs-CPU check of the compaction (docs/performance.md §5.5): bf16 rows of a ragged (adaptive) selection. */
import { keydiffScores } from '../ops/keydiff';
import { selectTokens } from '../ops/select';
import { gatherKV } from '../ops/gather';
import { hostContiguous } from '../tensor';
import type { Check } from './types';
import { randomHost, mismatches, checkShapes } from './util';

const { H, N } = checkShapes, d = 128;

export const gatherChecks: Check[] = [
  {
    op: 'gatherKV',
    config: `H=${H} N=${N} d=${d} bf16 adaptive 25%`,
    async run(rng, target) {
      const k = randomHost(rng, [H, N, d], 'bf16'), v = randomHost(rng, [H, N, d], 'bf16');
      const sel = selectTokens(keydiffScores(k), { ratio: 0.75, budget: 'adaptive' });
      const cpu = gatherKV({ keys: k, values: v, ...sel });
      const cap = sel.indices.shape[1];
      const dev = gatherKV({
        keys: target.place(k),
        values: target.place(v),
        indices: target.place(sel.indices),
        counts: target.place(sel.counts),
        keysOut: target.poisoned([H, cap, d], 'bf16'),
        valuesOut: target.poisoned([H, cap, d], 'bf16'),
        countsOut: target.poisoned([H], 'i32'),
      });
      const bad =
        mismatches(hostContiguous(await target.fetch(dev.keys)), cpu.keys.host) +
        mismatches(hostContiguous(await target.fetch(dev.values)), cpu.values.host) +
        mismatches(hostContiguous(await target.fetch(dev.counts)), cpu.counts.host);
      return { pass: bad === 0, error: bad, tolerance: 0, detail: bad ? 'mismatching elements' : undefined };
    },
  },
];
