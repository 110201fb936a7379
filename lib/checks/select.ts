/** Target-vs-CPU checks of token selection (docs/methods/selection.md §4): uniform and adaptive budgets, sinks, recent. */
import { selectTokens } from '../ops/select';
import { tensor, hostContiguous } from '../tensor';
import type { Check } from './types';
import { mismatches, checkShapes } from './util';

const { H, N } = checkShapes;

export const selectChecks: Check[] = [
  ...(['uniform', 'adaptive'] as const).map((budget): Check => ({
    op: 'selectTokens',
    config: `H=${H} N=${N} keep 25% ${budget} sinks 4 recent 16`,
    async run(rng, target) {
      const scores = tensor(new Float32Array(H * N).map(() => rng.normal()), [H, N]);
      const o = { ratio: 0.75, budget, sinks: 4, recent: 16 };
      const cpu = selectTokens(scores, o);
      const cap = cpu.indices.shape[1];
      const dev = selectTokens(target.place(scores), { ...o, indices: target.poisoned([H, cap], 'i32'), counts: target.poisoned([H], 'i32') });
      const bad = mismatches(hostContiguous(await target.fetch(dev.indices)), cpu.indices.host) + mismatches(hostContiguous(await target.fetch(dev.counts)), cpu.counts.host);
      return { pass: bad === 0, error: bad, tolerance: 0, detail: bad ? 'mismatching entries' : undefined };
    },
  })),
];
