/** `kvtrim check`: every op on CUDA vs the CPU backend on fresh random inputs (outputs poisoned first). */
import { nativeInfo } from './binding';
import { Rng } from './rng';
import type { Check, CheckResult, Target } from './checks/types';
import { cudaTarget } from './checks/util';
// ==== one check list per op (one import each) ====
import { keydiffChecks } from './checks/keydiff';
import { selectChecks } from './checks/select';
import { gatherChecks } from './checks/gather';
import { nestedkvChecks, nestedkvDeterminismChecks } from './checks/nestedkv';
import { snapkvChecks } from './checks/snapkv';
import { momentsChecks } from './checks/moments';
import { decodeChecks } from './checks/decode';
import { momentkvSelectChecks } from './checks/momentkv_select';
import { spdChecks } from './checks/spd';
import { grkvChecks } from './checks/grkv';
import { sweepChecks } from './checks/sweep';
import { nonfiniteChecks } from './checks/nonfinite';
// ==== end of check lists ====

/**
 * All registered checks, one list per op. The order is the table's, and it fixes the inputs each check draws from
 * the seeded Rng.
 */
export function allChecks(): Check[] {
  return [
    ...keydiffChecks,
    ...selectChecks,
    ...gatherChecks,
    ...nestedkvChecks,
    ...snapkvChecks,
    ...nestedkvDeterminismChecks,
    ...momentsChecks,
    ...decodeChecks,
    ...momentkvSelectChecks,
    ...spdChecks,
    ...grkvChecks,
    // ==== add op lists here ====
    // NaN / ±Infinity inputs: the same outputs on both backends
    ...nonfiniteChecks,
    // every compiled kernel variant, on small shapes
    ...sweepChecks,
  ];
}

/** Whether an op name contains (case-insensitively) the filter or any of the filters; no filter matches all. */
/** Case-insensitive substring of the op name; one ending in `$` must be the whole name (`keydiffScores$`). */
export function matchesFilter(op: string, filter?: string | string[]): boolean {
  const fs = (typeof filter === 'string' ? [filter] : filter ?? []).map((f) => f.trim().toLowerCase()).filter((f) => f);
  const o = op.toLowerCase();
  return !fs.length || fs.some((f) => (f.endsWith('$') ? o === f.slice(0, -1) : o.includes(f)));
}

export interface CheckRow extends CheckResult {
  op: string;
  config: string;
  ms: number;
}

/** Runs every check (optionally filtered: op names containing any of the filter strings) against `target` (default: CUDA device `device`). */
export async function runChecks(
  opts: { device?: number; target?: Target; seed?: number; filter?: string | string[]; onResult?: (r: CheckRow) => void } = {},
): Promise<CheckRow[]> {
  if (!opts.target && !nativeInfo.cuda) throw new Error(`no usable GPU: ${nativeInfo.reason}`);
  const target = opts.target ?? cudaTarget(opts.device ?? 0);
  const rows: CheckRow[] = [];
  const rng = new Rng(opts.seed ?? Date.now() % 2 ** 31);
  for (const c of allChecks()) {
    if (!matchesFilter(c.op, opts.filter)) continue;
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
