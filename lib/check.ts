/** `kvtrim check`: every op on CUDA vs the CPU backend on fresh random inputs (outputs poisoned first). */
import { nativeInfo } from './binding';
import { Rng } from './rng';
import type { Check, CheckResult, Target } from './checks/types';
import { cudaTarget } from './checks/util';
import { coreChecks } from './checks/core';
// ==== per-family check lists (one import each) ====
import { nestedkvChecks } from './checks/nestedkv';
import { momentkvChecks } from './checks/momentkv';
import { grkvChecks } from './checks/grkv';
import { sweepChecks } from './checks/sweep';


// ==== end of check lists ====

/** All registered checks (each op family contributes its own list). */
export function allChecks(): Check[] {
  return [
    ...coreChecks,
    // ==== add family lists here ====
    ...nestedkvChecks,
    ...momentkvChecks,
    ...grkvChecks,
    // every compiled kernel variant, on small shapes
    ...sweepChecks,


  ];
}

export interface CheckRow extends CheckResult {
  op: string;
  config: string;
  ms: number;
}

/** Runs every check (optionally filtered by op name) against `target` (default: CUDA device `device`). */
export async function runChecks(
  opts: { device?: number; target?: Target; seed?: number; filter?: string; onResult?: (r: CheckRow) => void } = {},
): Promise<CheckRow[]> {
  if (!opts.target && !nativeInfo.cuda) throw new Error(`no usable GPU: ${nativeInfo.reason}`);
  const target = opts.target ?? cudaTarget(opts.device ?? 0);
  const rows: CheckRow[] = [];
  const rng = new Rng(opts.seed ?? Date.now() % 2 ** 31);
  for (const c of allChecks()) {
    if (opts.filter && !c.op.toLowerCase().includes(opts.filter.toLowerCase())) continue;
    const t0 = performance.now();
    let r: CheckResult;
    try {
      r = await c.run(rng, target);
    } catch (e) {
      r = { pass: false, error: NaN, tolerance: 0, detail: e instanceof Error ? e.message : String(e) };
    }
    const row = { op: c.op, config: c.config, ms: performance.now() - t0, ...r };
    rows.push(row);
    opts.onResult?.(row);
  }
  return rows;
}
