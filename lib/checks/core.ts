/** CUDA-vs-CPU checks of the foundation ops: KeyDiff scoring, selection, compaction. */
import { keydiffScores } from '../ops/keydiff';
import { selectTokens } from '../ops/select';
import { gatherKV } from '../ops/gather';
import type { Check } from './types';
import { randomHost, poisonedDevice, toDevice, toHost, numbers, maxRel, mismatches } from './util';
import { tensor } from '../tensor';

const H = 8, N = 4099, d = 128;

export const coreChecks: Check[] = [
  ...(['f32', 'bf16', 'f16'] as const).flatMap((dtype) =>
    [false, true].map((strided): Check => ({
      op: 'keydiffScores',
      config: `H=${H} N=${N} d=${d} ${dtype}${strided ? ' [N,H,d] strided' : ''}`,
      async run(rng, device) {
        const host = randomHost(rng, strided ? [N, H, d] : [H, N, d], dtype);
        const keys = strided ? host.view([H, N, d], [d, H * d, 1]) : host;
        const cpu = keydiffScores(keys);
        const devIn = toDevice(host, { device });
        const dev = keydiffScores(strided ? devIn.view([H, N, d], [d, H * d, 1]) : devIn, { out: poisonedDevice([H, N], 'f32', device) });
        const err = maxRel(numbers(await toHost(dev)), numbers(cpu), 1e-2);
        return { pass: err <= 1e-4, error: err, tolerance: 1e-4 };
      },
    })),
  ),
  ...(['uniform', 'adaptive'] as const).map((budget): Check => ({
    op: 'selectTokens',
    config: `H=${H} N=${N} keep 25% ${budget} sinks 4 recent 16`,
    async run(rng, device) {
      const scores = tensor(new Float32Array(H * N).map(() => rng.normal()), [H, N]);
      const o = { ratio: 0.75, budget, sinks: 4, recent: 16 };
      const cpu = selectTokens(scores, o);
      const cap = cpu.indices.shape[1];
      const dev = selectTokens(toDevice(scores, { device }), {
        ...o,
        indices: poisonedDevice([H, cap], 'i32', device),
        counts: poisonedDevice([H], 'i32', device),
      });
      const bad = mismatches((await toHost(dev.indices)).host, cpu.indices.host) + mismatches((await toHost(dev.counts)).host, cpu.counts.host);
      return { pass: bad === 0, error: bad, tolerance: 0, detail: 'mismatching entries' };
    },
  })),
  {
    op: 'gatherKV',
    config: `H=${H} N=${N} d=${d} bf16 adaptive 25%`,
    async run(rng, device) {
      const k = randomHost(rng, [H, N, d], 'bf16'), v = randomHost(rng, [H, N, d], 'bf16');
      const sel = selectTokens(keydiffScores(k), { ratio: 0.75, budget: 'adaptive' });
      const cpu = gatherKV({ keys: k, values: v, ...sel });
      const cap = sel.indices.shape[1];
      const dev = gatherKV({
        keys: toDevice(k, { device }),
        values: toDevice(v, { device }),
        indices: toDevice(sel.indices, { device }),
        counts: toDevice(sel.counts, { device }),
        keysOut: poisonedDevice([H, cap, d], 'bf16', device),
        valuesOut: poisonedDevice([H, cap, d], 'bf16', device),
        countsOut: poisonedDevice([H], 'i32', device),
      });
      const bad =
        mismatches((await toHost(dev.keys)).host, cpu.keys.host) +
        mismatches((await toHost(dev.values)).host, cpu.values.host) +
        mismatches((await toHost(dev.counts)).host, cpu.counts.host);
      return { pass: bad === 0, error: bad, tolerance: 0, detail: 'mismatching elements' };
    },
  },
];
