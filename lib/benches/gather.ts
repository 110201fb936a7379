/** Bench case of the compaction (docs/performance.md §5.5) and its element-wise baselines. */
import { gatherKV } from '../ops/gather';
import { keepFromRatio } from '../ops/select';
import type { Tensor } from '../tensor';
import { dtypeSize, hostContiguous } from '../tensor';
import { native } from '../binding';
import type { BenchCase } from './types';
import { KEEP, compactionSetup } from './shared';

/** Compaction with element-wise copies. */
export function gatherNaive(keys: Tensor, values: Tensor, indices: Tensor, counts: Tensor): { k: Float32Array; v: Float32Array } {
  const [H, N, d] = keys.shape;
  const dv = values.shape[2];
  const cap = indices.shape[1];
  const k = hostContiguous(keys), v = hostContiguous(values), idx = hostContiguous(indices), cnt = hostContiguous(counts);
  const ko = new Float32Array(H * cap * d), vo = new Float32Array(H * cap * dv);
  for (let h = 0; h < H; h++) {
    for (let j = 0; j < cnt[h]; j++) {
      const i = idx[h * cap + j];
      for (let c = 0; c < d; c++) ko[(h * cap + j) * d + c] = k[(h * N + i) * d + c];
      for (let c = 0; c < dv; c++) vo[(h * cap + j) * dv + c] = v[(h * N + i) * dv + c];
    }
  }
  return { k: ko, v: vo };
}

export const gatherBenches: BenchCase[] = [
  {
    op: 'gatherKV',
    variant: `keep ${KEEP * 100}%`,
    solBytes: ({ H, N, d, dtype }) => 2 * 2 * H * keepFromRatio(N, 1 - KEEP) * d * dtypeSize(dtype),
    prepare(s, ctx) {
      const { kh, vh, sel, keys, values, indices, counts, keysOut, valuesOut, countsOut } = compactionSetup(s, ctx, KEEP);
      return {
        run: () => void gatherKV({ keys, values, indices, counts, keysOut, valuesOut, countsOut, stream: ctx.stream }),
        baseline:
          ctx.backend === 'cuda'
            ? {
                name: 'thread per element',
                run: () => native.baselineGather(keys.toNative(), values.toNative(), indices.toNative(), counts.toNative(), keysOut.toNative(), valuesOut.toNative(), ctx.stream?.handle),
              }
            : s.dtype === 'f32'
              ? { name: 'plain JS', run: () => void gatherNaive(kh, vh, sel.indices, sel.counts) }
              : undefined,
        peer: { inputs: { keys: kh, values: vh, indices: sel.indices } },
      };
    },
  },
];
