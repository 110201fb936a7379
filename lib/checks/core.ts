/** Target-vs-CPU checks of the foundation ops: KeyDiff scoring, selection, compaction. */
import { keydiffScores } from '../ops/keydiff';
import { selectTokens } from '../ops/select';
import { gatherKV } from '../ops/gather';
import { tensor, hostContiguous } from '../tensor';
import type { Check } from './types';
import { randomHost, numbers, maxRel, mismatches, checkShapes } from './util';

const { H, N } = checkShapes, d = 128;

export const coreChecks: Check[] = [
  ...(['f32', 'bf16', 'f16'] as const).flatMap((dtype) =>
    [false, true].map((strided): Check => ({
      op: 'keydiffScores',
      config: `H=${H} N=${N} d=${d} ${dtype}${strided ? ' [N,H,d] strided' : ''}`,
      async run(rng, target) {
        const host = randomHost(rng, strided ? [N, H, d] : [H, N, d], dtype);
        const view = (x: typeof host) => (strided ? x.view([H, N, d], [d, H * d, 1]) : x);
        const cpu = keydiffScores(view(host));
        const dev = keydiffScores(view(target.place(host)), { out: target.poisoned([H, N], 'f32') });
        const err = maxRel(numbers(await target.fetch(dev)), numbers(cpu), 1e-2);
        return { pass: err <= 1e-4, error: err, tolerance: 1e-4 };
      },
    })),
  ),
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
