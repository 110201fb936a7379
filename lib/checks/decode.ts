/**
 * Target-vs-CPU checks of the corrected decode attention (docs/methods/momentkv.md §4.4): GQA G = 4, ragged counts with one
 * empty head, T = 1 and T = 6 tokens, orders 1 and 0, a per-head clip.
 */
import { MomentState } from '../ops/moments';
import { decodeAttention } from '../ops/decode';
import { tensor } from '../tensor';
import type { Check } from './types';
import { randomHost, numbers, rowRel, checkShapes } from './util';
import { stateOn } from './moments';

const { H } = checkShapes, G = 4, d = 128, dv = 128;

export const decodeChecks: Check[] = [
  ...([
    ['bf16', 1, 'none'],
    ['f32', 6, 'per-head'],
    ['f16', 6, 'order 0'],
  ] as const).map(([dtype, T, mode]): Check => ({
    op: 'decodeAttention',
    config: `Hkv=${H} G=${G} cap=${checkShapes.cap} (ragged, one empty head) d=dv=${d} ${dtype} T=${T} ${mode === 'per-head' ? 'clip per head' : mode === 'order 0' ? 'order 0' : 'order 1'}`,
    async run(rng, target) {
      const cap = checkShapes.cap, Hq = H * G;
      const k = randomHost(rng, [H, cap, d], dtype), v = randomHost(rng, [H, cap, dv], dtype);
      const counts = tensor(Int32Array.from({ length: H }, (_, h) => (h === Math.min(3, H - 1) ? 0 : cap - 97 * h)), [H]);
      const q = randomHost(rng, T === 1 ? [Hq, d] : [Hq, T, d], dtype, 0.3);
      // a summary from random evicted rows
      const ek = randomHost(rng, [H, 600, d], dtype), evv = randomHost(rng, [H, 600, dv], dtype);
      const all = tensor(Int32Array.from({ length: H * 600 }, (_, i) => i % 600), [H, 600]);
      const allC = tensor(new Int32Array(H).fill(600), [H]);
      const cpuSt = MomentState.create(H, d, dv).merge(ek, evv, all, allC);
      const devSt = stateOn(target).merge(target.place(ek), target.place(evv), target.place(all), target.place(allC));
      const clipH = tensor(Float32Array.from({ length: H }, (_, h) => 0.05 * (h + 1)), [H]);
      const order = mode === 'order 0' ? 0 : 1;
      const cpu = decodeAttention({ queries: q, keys: k, values: v, counts, moments: cpuSt, order, ...(mode === 'per-head' ? { clip: clipH } : {}) });
      const dev = decodeAttention({
        queries: target.place(q), keys: target.place(k), values: target.place(v), counts: target.place(counts), moments: devSt, order,
        ...(mode === 'per-head' ? { clip: target.place(clipH) } : {}), out: target.poisoned([...cpu.shape], 'f32'),
      });
      const err = rowRel(numbers(await target.fetch(dev)), numbers(cpu), dv);
      return { pass: err <= 2e-5, error: err, tolerance: 2e-5, detail: 'max over rows of ‖Δo‖/‖o‖' };
    },
  })),
];
