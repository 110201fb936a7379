/** Target-vs-CPU checks of the NestedKV and SnapKV scorers (spec/nestedkv.md §3, spec/grkv.md §3.1). */
import { nestedkvScores } from '../ops/nestedkv';
import type { NestedkvOptions } from '../ops/nestedkv';
import { snapkvScores } from '../ops/snapkv';
import type { SnapkvOptions } from '../ops/snapkv';
import type { FloatDType } from '../tensor';
import type { Check } from './types';
import { randomHost, numbers, maxRel, mismatches, checkShapes } from './util';

const { H, N } = checkShapes, d = 128;

/** Max relative error with +Infinity entries required to match exactly (sinks / window positions). */
function relErrWithInf(a: Float64Array, b: Float64Array, floor: number): number {
  let bad = 0;
  const fa = new Float64Array(a.length), fb = new Float64Array(b.length);
  for (let i = 0; i < a.length; i++) {
    if ((a[i] === Infinity) !== (b[i] === Infinity)) bad++;
    fa[i] = a[i] === Infinity ? 0 : a[i];
    fb[i] = b[i] === Infinity ? 0 : b[i];
  }
  return bad ? Infinity : maxRel(fa, fb, floor);
}

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

const Hkv = checkShapes.Hkv, G = 4;
const snapkvCase = (qd: FloatDType, kd: FloatDType, W: number, strided: boolean, o: SnapkvOptions, label = '', d = 128): Check => ({
  op: 'snapkvScores',
  config: `Hkv=${Hkv} G=${G} W=${W} N=${N} d=${d} q ${qd} k ${kd}${strided ? ' [N,H,d] strided' : ''}${label}`,
  async run(rng, target) {
    const q = randomHost(rng, [Hkv * G, W, d], qd, 0.5);
    const k = randomHost(rng, strided ? [N, Hkv, d] : [Hkv, N, d], kd, 0.5);
    const view = (x: typeof k) => (strided ? x.view([Hkv, N, d], [d, Hkv * d, 1]) : x);
    const cpu = snapkvScores(q, view(k), o);
    const dev = snapkvScores(target.place(q), view(target.place(k)), { ...o, out: target.poisoned([Hkv, N], 'f32') });
    const err = relErrWithInf(numbers(await target.fetch(dev)), numbers(cpu), 1e-9);
    return { pass: err <= 1e-4, error: err, tolerance: 1e-4 };
  },
});

export const nestedkvChecks: Check[] = [
  ...(['f32', 'bf16', 'f16'] as const).flatMap((dtype) => [false, true].map((strided) => nestedkvCase(dtype, strided, {}))),
  nestedkvCase('bf16', true, { scales: 'global', sinks: 0 }, " scales 'global'"),
  nestedkvCase('bf16', false, { window: 7, block: 50, tail: 0.25, prior: [1, 2, 3], beta: 1.5 }, ' window 7 block 50'),
  nestedkvCase('f16', false, { window: 1000 }, ' window 1000'),
  snapkvCase('bf16', 'bf16', 32, true, {}, ' avg'),
  snapkvCase('bf16', 'bf16', 64, false, { pool: 'max' }, ' max'),
  snapkvCase('f16', 'f16', 32, false, { kernel: 7 }, ' kernel 7'),
  snapkvCase('f32', 'f32', 32, false, {}, ' avg'),
  snapkvCase('f32', 'bf16', 24, true, { pool: 'max' }, ' max'),
  snapkvCase('bf16', 'bf16', 80, false, { window: 72 }, ' window 72 of 80 (G·W > 256)'),
  snapkvCase('bf16', 'bf16', 64, true, { pool: 'max' }, ' max', 256),
  snapkvCase('f16', 'f16', 32, false, {}, ' avg', 96),
  snapkvCase('bf16', 'bf16', 300, false, {}, ' W > 256 rows per head', 64),
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
