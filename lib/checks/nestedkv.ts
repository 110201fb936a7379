/** Target-vs-CPU checks of the NestedKV scorer (docs/methods/nestedkv.md §3): dtypes, strides, options, determinism. */
import { nestedkvScores } from '../ops/nestedkv';
import type { NestedkvOptions } from '../ops/nestedkv';
import type { FloatDType } from '../tensor';
import type { Check } from './types';
import { randomHost, numbers, mismatches, relErrWithInf, checkShapes } from './util';

const { H, N } = checkShapes, d = 128;

const nestedkvCase = (dtype: FloatDType, strided: boolean, o: NestedkvOptions, label = ''): Check => ({
  op: 'nestedkvScores',
  config: `H=${H} N=${N} d=${d} ${dtype}${strided ? ' [N,H,d] strided' : ''}${label}`,
  async run(rng, target) {
    const host = randomHost(rng, strided ? [N, H, d] : [H, N, d], dtype);
    const view = (x: typeof host) => (strided ? x.view([H, N, d], [d, H * d, 1]) : x);
    const cpu = nestedkvScores(view(host), o);
    const dev = nestedkvScores(view(target.place(host)), { ...o, out: target.poisoned([H, N], 'f32') });
    const err = relErrWithInf(numbers(await target.fetch(dev)), numbers(cpu), 1e-2);
    return { pass: err <= 1e-4, error: err, tolerance: 1e-4 };
  },
});

export const nestedkvChecks: Check[] = [
  ...(['f32', 'bf16', 'f16'] as const).flatMap((dtype) => [false, true].map((strided) => nestedkvCase(dtype, strided, {}))),
  nestedkvCase('bf16', true, { scales: 'global', sinks: 0 }, " scales 'global'"),
  nestedkvCase('bf16', false, { window: 7, block: 50, tail: 0.25, prior: [1, 2, 3], beta: 1.5 }, ' window 7 block 50'),
  nestedkvCase('f16', false, { window: 1000 }, ' window 1000'),
];

/**
 * Runs after the SnapKV checks (lib/check.ts): the order of the lists fixes the inputs each check draws from the
 * seeded Rng, and the table order of `kvtrim check`.
 */
export const nestedkvDeterminismChecks: Check[] = [
  {
    op: 'nestedkvScores',
    config: `H=${H} N=${N} d=${d} bf16: two calls give identical bits (deterministic)`,
    async run(rng, target) {
      const k = target.place(randomHost(rng, [H, N, d], 'bf16'));
      const a = numbers(await target.fetch(nestedkvScores(k)));
      const b = numbers(await target.fetch(nestedkvScores(k)));
      const bad = mismatches(a, b);
      return { pass: bad === 0, error: bad, tolerance: 0, detail: bad ? 'results differ between runs' : undefined };
    },
  },
];
