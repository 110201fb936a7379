/**
 * Target-vs-CPU check of the multi-round moment-informed eviction (docs/methods/momentkv.md §5.3): bf16, keep 10 %, 4 rounds,
 * the observation window protected; kept indices, eviction rounds and the merged state.
 */
import { momentkvSelect } from '../ops/momentkv_select';
import { tensor, hostContiguous } from '../tensor';
import type { Check } from './types';
import { randomHost, mismatches, checkShapes } from './util';
import { stateOn, stateNumbers, stateError } from './moments';

const { H, N } = checkShapes, d = 128, dv = 128;

export const momentkvSelectChecks: Check[] = [
  {
    op: 'momentkvSelect',
    config: `H=${H} N=${N} d=dv=${d} bf16 keep 10 % rounds 4 r 1, window 32 protected`,
    async run(rng, target) {
      const k = randomHost(rng, [H, N, d], 'bf16'), v = randomHost(rng, [H, N, dv], 'bf16');
      const sc = new Float32Array(H * N);
      for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) sc[h * N + i] = i >= N - 32 ? Infinity : Math.exp(2 * rng.normal());
      const scores = tensor(sc, [H, N]);
      const cpu = momentkvSelect({ scores, keys: k, values: v, ratio: 0.9, evictedRound: true });
      const keep = cpu.indices.shape[1];
      const devSt = stateOn(target);
      const dev = momentkvSelect({
        scores: target.place(scores), keys: target.place(k), values: target.place(v), ratio: 0.9, moments: devSt,
        indices: target.poisoned([H, keep], 'i32'), counts: target.poisoned([H], 'i32'), evictedRound: target.poisoned([H, N], 'i32'),
      });
      const badIdx = mismatches(hostContiguous(await target.fetch(dev.indices)), cpu.indices.host);
      const badRound = mismatches(hostContiguous(await target.fetch(dev.evictedRound!)), cpu.evictedRound!.host);
      const badCnt = mismatches(hostContiguous(await target.fetch(dev.counts)), cpu.counts.host);
      // f32 rounding differs between backends: a near-tie may swap a few tokens (then the states differ slightly).
      const tol = Math.max(2, Math.ceil(0.002 * H * keep));
      const err = stateError(await stateNumbers(devSt, (t) => target.fetch(t)), await stateNumbers(cpu.moments, async (t) => t));
      const pass = badCnt === 0 && badIdx <= tol && (badIdx > 0 || badRound > 0 || err <= 1e-5);
      return {
        pass, error: badIdx, tolerance: tol,
        detail: `kept-index mismatches (rounds differ at ${badRound} tokens; state rel. error ${err.toExponential(1)})`,
      };
    },
  },
];
