/**
 * Target-vs-CPU checks of the batched SPD solve (docs/performance.md §3): random SPD systems, a rank-8 Gram that is
 * SPD only through λ, and one system with a negative pivot (info and NaN rows compared).
 */
import { spdSolve } from '../ops/spd';
import { tensor, hostContiguous } from '../tensor';
import type { Rng } from '../rng';
import type { Check } from './types';
import { numbers } from './util';

/** B systems [B, n, n]: random SPD, a rank-8 Gram (SPD only through λ), and optionally one with a negative pivot. */
function spdBatch(rng: Rng, B: number, n: number, broken: boolean): Float32Array {
  const A = new Float32Array(B * n * n);
  for (let b = 0; b < B; b++) {
    const k = b === 1 ? 8 : n;
    const M = Float64Array.from({ length: n * k }, () => rng.normal());
    for (let i = 0; i < n; i++)
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let c = 0; c < k; c++) s += M[i * k + c] * M[j * k + c];
        const v = s / n + (i === j && b !== 1 ? 0.25 : 0);
        A[(b * n + i) * n + j] = v;
        A[(b * n + j) * n + i] = v;
      }
  }
  if (broken) A[((B - 1) * n + 5) * n + 5] = -1;
  return A;
}

function spdCheck(B: number, n: number, r: number): Check {
  return {
    op: 'spdSolve',
    config: `B=${B} n=${n} r=${r} λ=1e-3 (one rank-8 Gram, one non-SPD)`,
    async run(rng, target) {
      const A = tensor(spdBatch(rng, B, n, true), [B, n, n]);
      const Bm = tensor(new Float32Array(B * n * r).map(() => rng.normal()), [B, n, r]);
      const cpu = spdSolve({ a: A, b: Bm, lambda: 1e-3, throwOnError: false });
      const dev = spdSolve({ a: target.place(A), b: target.place(Bm), lambda: 1e-3, out: target.poisoned([B, n, r], 'f32'), info: target.poisoned([B], 'i32'), throwOnError: false });
      const ic = hostContiguous(cpu.info), id = hostContiguous(await target.fetch(dev.info));
      const xc = numbers(cpu.x), xd = numbers(await target.fetch(dev.x));
      let num = 0, den = 0, nanBad = 0;
      for (let b = 0; b < B; b++)
        for (let e = b * n * r; e < (b + 1) * n * r; e++) {
          if (ic[b] !== 0) nanBad += Number(!Number.isNaN(xd[e]));
          else {
            num += (xd[e] - xc[e]) ** 2;
            den += xc[e] ** 2;
          }
        }
      const infoBad = Array.from(ic).reduce((acc, v, i) => acc + Number(v !== id[i]), 0);
      const err = Math.sqrt(num / den);
      const pass = infoBad === 0 && nanBad === 0 && err <= 1e-4;
      return { pass, error: err, tolerance: 1e-4, detail: pass ? undefined : `info mismatches ${infoBad}, non-NaN rows of failed systems ${nanBad}` };
    },
  };
}

/** Bitwise row equality of two compacted host tensors with the plain-eviction rows. */
export const spdChecks: Check[] = [spdCheck(8, 128, 128), spdCheck(4, 256, 64)];
