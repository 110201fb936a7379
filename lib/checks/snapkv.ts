/** Target-vs-CPU checks of the SnapKV scorer (docs/methods/snapkv.md §3.1): dtypes, pools, kernels, windows, head dims. */
import { snapkvScores } from '../ops/snapkv';
import type { SnapkvOptions } from '../ops/snapkv';
import type { FloatDType } from '../tensor';
import type { Check } from './types';
import { randomHost, numbers, relErrWithInf, checkShapes } from './util';

const { Hkv, N } = checkShapes, G = 4;

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

export const snapkvChecks: Check[] = [
  snapkvCase('bf16', 'bf16', 32, true, {}, ' avg'),
  snapkvCase('bf16', 'bf16', 64, false, { pool: 'max' }, ' max'),
  snapkvCase('f16', 'f16', 32, false, { kernel: 7 }, ' kernel 7'),
  snapkvCase('f32', 'f32', 32, false, {}, ' avg'),
  snapkvCase('f32', 'bf16', 24, true, { pool: 'max' }, ' max'),
  snapkvCase('bf16', 'bf16', 80, false, { window: 72 }, ' window 72 of 80 (G·W > 256)'),
  snapkvCase('bf16', 'bf16', 64, true, { pool: 'max' }, ' max', 256),
  snapkvCase('f16', 'f16', 32, false, {}, ' avg', 96),
  snapkvCase('bf16', 'bf16', 300, false, {}, ' W > 256 rows per head', 64),
];
