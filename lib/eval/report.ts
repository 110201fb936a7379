/**
 * The text `kvtrim eval` prints: the source and the split, one row per configuration × ratio (error overall and by
 * distance from the split, needle recall on the trace, bytes kept, time), and one row per layer (its attention
 * sink and recent mass, each configuration's median error at the ratio nearest 0.75).
 */
import { table } from '../cli/table';
import { DISTANCE_BUCKETS } from './protocol';
import type { EvalReport } from './run';

export function formatEvalReport(report: EvalReport): string {
  const out: string[] = [];
  const s = report.shape, pr = report.protocol;
  const src = report.source.kind === 'trace' ? `built-in trace (seed ${report.source.options.seed})` : `${report.source.path} (${report.source.format})`;
  out.push(`kvtrim eval on ${report.device}: ${src}; ${s.layers} layer${s.layers === 1 ? '' : 's'}, H_kv=${s.Hkv}, H_q=${s.Hq}, N=${s.N}, d=${s.d}`);
  const held = pr.heldOut.first === pr.heldOut.last ? `${s.T} queries at position ${pr.heldOut.first}` : `${s.T} queries at positions ${pr.heldOut.first}..${pr.heldOut.last}`;
  out.push(
    `split S=${pr.split}: prefix [0, ${pr.split}) compressed, window ${pr.window.from}..${pr.window.to - 1}; held out per head: ${held}` +
      `${pr.heldOut.continuation ? ` (${pr.heldOut.continuation} past N=${s.N}: they see all N keys)` : ''}; positions from ${pr.queries}`,
  );
  const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(0)}%`);
  const buckets = DISTANCE_BUCKETS.map((b) => b.label).filter((b) => report.rows.some((r) => r.errorByDistance[b] !== undefined));
  const needles = report.rows.some((r) => r.needleRecall !== undefined);
  const e4 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(4));
  out.push(
    table(
      ['config', 'ratio', 'median err', 'p90 err', ...buckets.map((b) => `err @${b}`), ...(needles ? ['needles kept', 'asked/follow-up'] : []), 'bytes kept', 'ms'],
      report.rows.map((r) => [
        r.config,
        r.ratio.toFixed(2),
        r.skipped ? 'skipped' : e4(r.medianError),
        e4(r.p90Error),
        ...buckets.map((b) => e4(r.errorByDistance[b])),
        ...(needles ? [pct(r.needleRecall), r.needleRecall === undefined ? '-' : `${pct(r.needleRecallAsked)}/${pct(r.needleRecallFollowUp)}`] : []),
        Number.isNaN(r.retainedFraction) ? '-' : pct(r.retainedFraction),
        r.ms.toFixed(0),
      ]),
    ),
  );
  for (const r of report.rows) if (r.skipped) out.push(`skipped ${r.config} at ratio ${r.ratio}: ${r.skipped}`);
  // per layer: what its attention looks like, and each config's median error at the ratio nearest 0.75
  const rl = report.ratios.reduce((a, b) => (Math.abs(b - 0.75) < Math.abs(a - 0.75) ? b : a));
  const at = report.rows.filter((r) => r.ratio === rl);
  out.push(`\nper layer (median err at ratio ${rl.toFixed(2)}; sink = attention on position 0, recent = on the 64 most recent keys):`);
  out.push(
    table(
      ['layer', 'sink', 'recent', ...at.map((r) => r.config)],
      report.layers.map((l, i) => [i, l.sinkMass.toFixed(3), l.localMass.toFixed(3), ...at.map((r) => e4(r.errorByLayer[i]))]),
    ),
  );
  out.push(
    `\nerror = ||o - o_full|| / ||o_full|| of held-out queries (causal); @a-b = at distance a..b from the split; ratio = fraction of the prefix evicted`,
  );
  return out.join('\n');
}
