/** Target-vs-CPU checks of KeyDiff scoring (docs/methods/keydiff.md §3): every dtype, contiguous and [N,H,d] strided. */
import { keydiffScores } from '../ops/keydiff';
import type { Check } from './types';
import { randomHost, numbers, maxRel, checkShapes } from './util';

const { H, N } = checkShapes, d = 128;

export const keydiffChecks: Check[] = [
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
];
