/**
 * The registry of compression methods, merges and corrections with their papers and defaults (kvpress-style).
 * `compress()` reads its defaults from here, `kvtrim methods` prints it, and the README's feature table is
 * generated from it (a test keeps the two identical).
 */

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
  /** defaults applied by compress() */
  defaults: Readonly<Record<string, unknown>>;
}

export const METHODS: Readonly<Record<MethodName, Entry>> = Object.freeze({
  keydiff: {
    title: 'KeyDiff',
    paper: 'Park et al. 2025, arXiv 2504.15364',
    summary: 'key-only: −cos(k, mean normalised key); keeps geometrically distinctive keys',
    needsQueries: false,
    ops: ['keydiffScores', 'selectTokens', 'gatherKV'],
    defaults: { budget: 'uniform', sinks: 0, recent: 0 },
  },
  nestedkv: {
    title: 'NestedKV',
    paper: 'Chen et al. 2026, arXiv 2605.26678',
    summary: 'key-only: global/block/window anchor anomalies, head-adaptive blend, surprise gate, head-adaptive budgets',
    needsQueries: false,
    ops: ['nestedkvScores', 'selectTokens', 'gatherKV'],
    defaults: { budget: 'adaptive', safeguard: 0.2, window: 64, prior: [0.4, 0.4, 0.2], beta: 3, tau: 0.6, kappa: 10, tail: 0.1, sinks: 4 },
  },
  snapkv: {
    title: 'SnapKV',
    paper: 'Li et al. 2024, arXiv 2404.14469 (kvpress variant)',
    summary: 'query-aware: mean window attention, avg-pooled (kernel 5), GQA mean; window always kept',
    needsQueries: true,
    ops: ['snapkvScores', 'selectTokens', 'gatherKV'],
    defaults: { budget: 'uniform', kernel: 5, pool: 'avg' },
  },
  momentkv: {
    title: 'MomentKV',
    paper: 'Li, Li, Lan 2026, arXiv 2606.01563',
    summary: 'SnapKV × value residual vs the evicted-set summary, 4 eviction rounds; moment state for corrected decode',
    needsQueries: true,
    ops: ['snapkvScores', 'momentkvSelect', 'gatherKV', 'decodeAttention'],
    defaults: { kernel: 7, pool: 'max', rounds: 4, r: 1, eps: 0.05, order: 1 },
  },
});

export const MERGES: Readonly<Record<MergeName, Entry>> = Object.freeze({
  grkv: {
    title: 'GRKV',
    paper: 'Peng et al. 2026, arXiv 2605.31105',
    summary: 'merge: ridge regression of retained K/V onto full-cache attention outputs (dual value step, GN key step)',
    needsQueries: true,
    ops: ['snapkvScores', 'grkvMerge'],
    defaults: { source: 'window', window: 32, gamma: 0.1, lambda: 0.01, caps: { key: 0.025, value: 0.1 }, cgIters: 16 },
  },
});

export const CORRECTIONS: Readonly<Record<CorrectionName, Entry>> = Object.freeze({
  moment: {
    title: 'Moment correction',
    paper: 'Li, Li, Lan 2026, arXiv 2606.01563 (NC)',
    summary: 'keep n, μ_k, μ_v, C of evicted tokens; decode merges them in log space (first order)',
    needsQueries: false,
    ops: ['gatherKV (moments)', 'decodeAttention'],
    defaults: { order: 1 },
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
