/**
 * The registry of compression methods, merges and corrections with their papers and defaults (kvpress-style).
 * An entry's defaults are the defaults of the ops it runs (lib/defaults.ts) with its own overrides. `compress()`
 * reads them from here, `kvtrim methods` prints it, and the README's feature table is generated from it (a test
 * keeps the two identical).
 */

import { DEFAULTS, Defaults, deepFreeze } from './defaults';
import type { Budget } from './ops/select';
import type { SnapkvPool } from './ops/snapkv';
import type { GrkvSource } from './ops/grkv';

export type MethodName = 'keydiff' | 'nestedkv' | 'snapkv' | 'momentkv';
export type MergeName = 'grkv';
export type CorrectionName = 'moment';

export interface Entry {
  title: string;
  /** paper, venue/arXiv id */
  paper: string;
  /** what it does, one line */
  summary: string;
  /** needs observation-window queries [Hq, W, d] (query-aware) */
  needsQueries: boolean;
  /** the ops it runs, in order */
  ops: string[];
  /** defaults applied by compress(): the fields of {@link ENTRY_OPTIONS} in one record (what the table lists) */
  defaults: Readonly<Record<string, unknown>>;
}

/** `fields` of an op's DEFAULTS. */
function uses<Op extends keyof Defaults, F extends keyof Defaults[Op]>(op: Op, ...fields: F[]): Pick<Defaults[Op], F> {
  const d = DEFAULTS[op] as Defaults[Op];
  return Object.fromEntries(fields.map((f) => [f, d[f]])) as Pick<Defaults[Op], F>;
}

/**
 * The options compress() runs each entry with, per op: the op's DEFAULTS, then the entry's own overrides (the
 * literals below). The registry's `defaults` are these records merged into one (their field names do not collide).
 */
export const ENTRY_OPTIONS = deepFreeze({
  methods: {
    keydiff: { select: uses('select', 'budget', 'sinks', 'recent') },
    nestedkv: {
      select: { ...uses('select', 'budget', 'safeguard'), budget: 'adaptive' as Budget },
      nestedkv: uses('nestedkv', 'window', 'prior', 'beta', 'tau', 'kappa', 'tail', 'sinks'),
    },
    snapkv: { select: uses('select', 'budget'), snapkv: uses('snapkv', 'kernel', 'pool') },
    momentkv: {
      snapkv: { kernel: 7, pool: 'max' as SnapkvPool },
      momentkvSelect: uses('momentkvSelect', 'rounds', 'r', 'eps'),
      decode: uses('decode', 'order'),
    },
  },
  merges: {
    grkv: { grkv: { source: 'window' as GrkvSource, ...uses('grkv', 'window', 'gamma', 'lambda', 'caps', 'cgIters') } },
  },
  corrections: {
    moment: { decode: uses('decode', 'order') },
  },
});

/** One record of an entry's per-op options, in op order. */
function flat(options: object): Readonly<Record<string, unknown>> {
  return Object.freeze(Object.assign({}, ...Object.values(options)));
}

export const METHODS: Readonly<Record<MethodName, Entry>> = Object.freeze({
  keydiff: {
    title: 'KeyDiff',
    paper: 'Park et al. 2025, arXiv 2504.15364',
    summary: 'key-only: −cos(k, mean normalised key); keeps geometrically distinctive keys',
    needsQueries: false,
    ops: ['keydiffScores', 'selectTokens', 'gatherKV'],
    defaults: flat(ENTRY_OPTIONS.methods.keydiff),
  },
  nestedkv: {
    title: 'NestedKV',
    paper: 'Chen et al. 2026, arXiv 2605.26678',
    summary: 'key-only: global/block/window anchor anomalies, head-adaptive blend, surprise gate, head-adaptive budgets',
    needsQueries: false,
    ops: ['nestedkvScores', 'selectTokens', 'gatherKV'],
    defaults: flat(ENTRY_OPTIONS.methods.nestedkv),
  },
  snapkv: {
    title: 'SnapKV',
    paper: 'Li et al. 2024, arXiv 2404.14469 (kvpress variant)',
    summary: 'query-aware: mean window attention, avg-pooled (kernel 5), GQA mean; window always kept',
    needsQueries: true,
    ops: ['snapkvScores', 'selectTokens', 'gatherKV'],
    defaults: flat(ENTRY_OPTIONS.methods.snapkv),
  },
  momentkv: {
    title: 'MomentKV',
    paper: 'Li, Li, Lan 2026, arXiv 2606.01563',
    summary: 'SnapKV × value residual vs the evicted-set summary, 4 eviction rounds; moment state for corrected decode',
    needsQueries: true,
    ops: ['snapkvScores', 'momentkvSelect', 'gatherKV', 'decodeAttention'],
    defaults: flat(ENTRY_OPTIONS.methods.momentkv),
  },
});

export const MERGES: Readonly<Record<MergeName, Entry>> = Object.freeze({
  grkv: {
    title: 'GRKV',
    paper: 'Peng et al. 2026, arXiv 2605.31105',
    summary: 'merge: ridge regression of retained K/V onto full-cache attention outputs (dual value step, GN key step)',
    needsQueries: true,
    ops: ['snapkvScores', 'grkvMerge'],
    defaults: flat(ENTRY_OPTIONS.merges.grkv),
  },
});

export const CORRECTIONS: Readonly<Record<CorrectionName, Entry>> = Object.freeze({
  moment: {
    title: 'Moment correction',
    paper: 'Li, Li, Lan 2026, arXiv 2606.01563 (NC)',
    summary: 'keep n, μ_k, μ_v, C of evicted tokens; decode merges them in log space (first order)',
    needsQueries: false,
    ops: ['gatherKV (moments)', 'decodeAttention'],
    defaults: flat(ENTRY_OPTIONS.corrections.moment),
  },
});

function showDefaults(d: Readonly<Record<string, unknown>>): string {
  return Object.entries(d)
    .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v).replace(/"/g, '') : String(v)}`)
    .join(', ');
}

/** The README feature table (markdown), generated from the registry. */
export function featureTable(): string {
  const rows: string[] = [
    '| name | `compress()` option | paper | what it does | needs queries | defaults |',
    '|---|---|---|---|---|---|',
  ];
  const add = (opt: string, e: Entry) =>
    rows.push(`| ${e.title} | \`${opt}\` | ${e.paper} | ${e.summary} | ${e.needsQueries ? 'yes' : 'no'} | ${showDefaults(e.defaults)} |`);
  for (const [k, e] of Object.entries(METHODS)) add(`method: '${k}'`, e);
  for (const [k, e] of Object.entries(MERGES)) add(`merge: '${k}'`, e);
  for (const [k, e] of Object.entries(CORRECTIONS)) add(`correction: '${k}'`, e);
  return rows.join('\n');
}
