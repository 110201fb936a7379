/**
 * The one-call pipeline: score → select → (merge | compact) for one layer, with the method defaults of the
 * registry (lib/methods.ts), and `compressCache` over all layers of a cache.
 *
 *   compress({ keys, values, queries? }, { method, ratio | keep, budget?, merge?: 'grkv', correction?: 'moment' })
 *     → { keys [H, cap, d], values [H, cap, dv], counts [H], indices [H, cap], scores [H, N], moments? }
 *
 * `queries` are the observation-window queries [Hq, W, d] (post-RoPE, positions N−W..N−1), needed by the
 * query-aware methods (SnapKV, MomentKV) and by the GRKV merge. The result is ready for `decodeAttention`
 * (pass `moments` when present).
 *
 * The pipeline is written once, as a generator that yields each op call (`step`); `compress` runs the steps with the
 * sync ops, `compressAsync` awaits their async twins (worker threads; `signal` checked before every op).
 */
import { Tensor, TensorLike, asTensor, checkDtype, checkRank, sameDevice } from './tensor';
import { Stream } from './device';
import { checkBool, checkInt, checkKeys, checkNum, checkOneOf, checkOptions as checkOpts, rejectNulls, show } from './validate';
import { AsyncOptions, checkAborted, keysOf, opts, signalOf } from './ops/common';
import { keydiffScores, keydiffScoresAsync } from './ops/keydiff';
import { nestedkvScores, nestedkvScoresAsync, NestedkvOptions } from './ops/nestedkv';
import { snapkvScores, snapkvScoresAsync, SnapkvOptions } from './ops/snapkv';
import { selectTokens, selectTokensAsync, resolveKeep, Budget, Selection, SelectOptions } from './ops/select';
import { gatherKV, gatherKVAsync } from './ops/gather';
import { MomentState } from './ops/moments';
import { momentkvSelect, momentkvSelectAsync } from './ops/momentkv_select';
import { grkvMerge, grkvMergeAsync, grkvSurrogates, GrkvMergeArgs } from './ops/grkv';
import { METHODS, MERGES, CORRECTIONS, ENTRY_OPTIONS, MethodName, MergeName, CorrectionName } from './methods';
import { DEFAULTS } from './defaults';

export interface CompressInput {
  keys: Tensor | TensorLike;
  values: Tensor | TensorLike;
  /** Observation-window queries [Hq, W, d] at positions N−W..N−1 (query-aware methods, GRKV). */
  queries?: Tensor | TensorLike;
  /** GRKV stratified source: surrogate queries [Hq, Qs, d] rotated to position N−1 (docs/methods/grkv.md §5.2). */
  surrogateQueries?: Tensor | TensorLike;
}

export interface CompressOptions extends Pick<SelectOptions, 'ratio' | 'keep' | 'safeguard' | 'sinks' | 'recent'> {
  method: MethodName;
  /** Head budgets (default per method: NestedKV adaptive, others uniform; MomentKV is uniform only). */
  budget?: Budget;
  merge?: MergeName;
  correction?: CorrectionName;
  /** Precomputed scores [H, N] of this method (skips scoring, e.g. to sweep ratios). */
  scores?: Tensor;
  nestedkv?: Omit<NestedkvOptions, 'out' | 'stream'>;
  snapkv?: Omit<SnapkvOptions, 'out' | 'stream'>;
  momentkv?: { rounds?: number; r?: number; eps?: number; mi?: boolean; kernel?: number; pool?: 'avg' | 'max' };
  grkv?: Partial<Pick<GrkvMergeArgs, 'gamma' | 'lambda' | 'caps' | 'cgIters' | 'tol' | 'window' | 'acceptance'>> & {
    source?: 'window' | 'stratified';
  };
  stream?: Stream;
}

export interface Compressed {
  keys: Tensor;
  values: Tensor;
  counts: Tensor;
  indices: Tensor;
  /** the method's scores [H, N] (before selection) */
  scores: Tensor;
  /** summary of the evicted tokens (correction 'moment' or method 'momentkv') */
  moments?: MomentState;
  /** tokens kept per head (average) */
  keep: number;
}

const KEYS = ['method', 'ratio', 'keep', 'budget', 'safeguard', 'sinks', 'recent', 'merge', 'correction', 'scores', 'nestedkv', 'snapkv', 'momentkv', 'grkv', 'stream'];
const INPUT_KEYS = ['keys', 'values', 'queries', 'surrogateQueries'];

/** The fields of each per-method option object, and which configuration uses it. */
const SUB_OPTIONS = {
  nestedkv: { keys: ['window', 'block', 'prior', 'beta', 'tau', 'kappa', 'tail', 'sinks', 'scales'], usedBy: "method 'nestedkv'" },
  snapkv: { keys: ['window', 'kernel', 'pool', 'scale'], usedBy: "method 'snapkv'" },
  momentkv: { keys: ['rounds', 'r', 'eps', 'mi', 'kernel', 'pool'], usedBy: "method 'momentkv'" },
  grkv: { keys: ['gamma', 'lambda', 'caps', 'cgIters', 'tol', 'window', 'acceptance', 'source'], usedBy: "merge 'grkv'" },
} as const;
type SubName = keyof typeof SUB_OPTIONS;

/**
 * Runs the steps `steps`; an error about a field of the per-method options object `prefix` (given by the caller) is
 * re-labelled with its full name (`grkv.lambda: …` instead of `lambda: …`). The drivers throw an op's error into the
 * generator, so it passes through here.
 */
function* prefixed<T>(prefix: SubName, given: object | undefined, steps: Steps<T>): Steps<T> {
  try {
    return yield* steps;
  } catch (e) {
    const fields = Object.keys(given ?? {});
    if (e instanceof Error && fields.some((k) => e.message.startsWith(`${k}:`) || e.message.startsWith(`${k}[`) || e.message.startsWith(`${k}.`))) {
      e.message = `${prefix}.${e.message}`;
    }
    throw e;
  }
}

/**
 * The options of compress(), checked once for a whole cache (an empty layer list included): known keys, the method,
 * merge and correction names, option ranges, and option objects only where the configuration uses them.
 */
function checkOptions(options: unknown, scoring = false, async = false): CompressOptions {
  const o = opts('options', options, keysOf(KEYS, async)) as unknown as CompressOptions;
  const method = checkOneOf('method', o.method, Object.keys(METHODS) as MethodName[]);
  if (o.merge !== undefined) checkOneOf('merge', o.merge, Object.keys(MERGES) as MergeName[]);
  if (o.correction !== undefined) checkOneOf('correction', o.correction, Object.keys(CORRECTIONS) as CorrectionName[]);
  if (!scoring && (o.ratio === undefined) === (o.keep === undefined)) throw new TypeError('options: give exactly one of `ratio` or `keep`');
  if (o.ratio !== undefined && o.keep !== undefined) throw new TypeError('options: give exactly one of `ratio` or `keep`');
  if (o.ratio !== undefined) checkNum('ratio', o.ratio, 0, 1, { maxOpen: true });
  if (o.keep !== undefined) checkInt('keep', o.keep, 1, 2 ** 31 - 1);
  if (o.budget !== undefined) checkOneOf('budget', o.budget, ['uniform', 'adaptive'] as const);
  if (o.safeguard !== undefined) checkNum('safeguard', o.safeguard, 0, 1);
  for (const k of ['sinks', 'recent'] as const) {
    if (o[k] === undefined) continue;
    checkInt(k, o[k], 0, 2 ** 31 - 1);
    if (method === 'momentkv') throw new RangeError(`${k}: method 'momentkv' takes no ${k} (it protects tokens whose scores are +Infinity)`);
  }
  if (method === 'momentkv' && o.budget === 'adaptive') throw new RangeError("budget: method 'momentkv' evicts a uniform budget per head");
  for (const name of Object.keys(SUB_OPTIONS) as SubName[]) {
    const given = o[name];
    if (given === undefined) continue;
    checkKeys(name, checkOpts(name, given), SUB_OPTIONS[name].keys);
    rejectNulls(`${name}.`, given as Record<string, unknown>);
    const used = name === 'grkv' ? o.merge === 'grkv' : method === name;
    if (!used) throw new RangeError(`${name}: these options are used by ${SUB_OPTIONS[name].usedBy} only, but the configuration is method '${method}'${o.merge ? `, merge '${o.merge}'` : ''}`);
  }
  if (o.grkv?.source !== undefined) checkOneOf('grkv.source', o.grkv.source, ['window', 'stratified'] as const);
  if (o.scores !== undefined && !scoring) {
    // precomputed scores skip scoring: scoring options would have no effect
    for (const name of ['nestedkv', 'snapkv'] as const) {
      if (o[name] !== undefined) throw new RangeError(`${name}: scoring options have no effect with precomputed scores`);
    }
    for (const k of ['kernel', 'pool'] as const) {
      if (o.momentkv?.[k] !== undefined) throw new RangeError(`momentkv.${k}: a scoring option has no effect with precomputed scores`);
    }
  }
  // momentkv's selection fields (methodScores uses only kernel and pool, so they are checked here too)
  const m = o.momentkv;
  if (m?.rounds !== undefined) checkInt('momentkv.rounds', m.rounds, 1, 1 << 20);
  if (m?.r !== undefined) checkInt('momentkv.r', m.r, 0, 8);
  if (m?.eps !== undefined) checkNum('momentkv.eps', m.eps, 0, 1e30);
  if (m?.mi !== undefined) checkBool('momentkv.mi', m.mi);
  if (o.grkv?.window !== undefined && (o.grkv.source ?? 'window') === 'window') checkInt('grkv.window', o.grkv.window, 1, 2 ** 31 - 1);
  if (o.grkv?.caps !== undefined) checkKeys('grkv.caps', checkOpts('grkv.caps', o.grkv.caps), ['key', 'value']);
  if (o.stream !== undefined && !(o.stream instanceof Stream)) throw new TypeError(`stream: expected a Stream, got ${show(o.stream)}`);
  return o;
}

/** Checks the input object of a layer and returns its keys and values (values: when given, unless `needValues`). */
function checkInput(input: CompressInput, needValues: boolean): { keys: Tensor; values?: Tensor } {
  if (input === null || typeof input !== 'object') throw new TypeError(`input: expected { keys, values, queries? }, got ${show(input)}`);
  checkKeys('input', input as unknown as Record<string, unknown>, INPUT_KEYS);
  const keys = checkRank('keys', asTensor('keys', input.keys), 3, '[H, N, d]');
  checkDtype('keys', keys, ['f32', 'f16', 'bf16']);
  const [H, N] = keys.shape;
  let values: Tensor | undefined;
  if (needValues || input.values !== undefined) {
    values = checkInputTensor('values', input.values, keys, '[H, N, dv]', false);
    if (values.shape[1] !== N) throw new RangeError(`values: dimension 1 must equal N of keys (${N}), got [${values.shape.join(', ')}]`);
  }
  // Queries are checked whenever they are given, used or not.
  if (input.queries !== undefined) checkInputTensor('queries', input.queries, keys, '[Hq, W, d]', true);
  if (input.surrogateQueries !== undefined) {
    const sq = checkInputTensor('surrogateQueries', input.surrogateQueries, keys, '[Hq, Qs, d]', true);
    if (sq.shape[1] < 1) throw new RangeError(`surrogateQueries: need at least one query (dimension 1), got [${sq.shape.join(', ')}]`);
  }
  void H;
  return { keys, values };
}

/** Precomputed scores: f32 [H, N] of the keys, on their device. */
function checkScores(v: unknown, keys: Tensor): Tensor {
  const [H, N] = keys.shape;
  const scores = checkDtype('scores', checkRank('scores', asTensor('scores', v), 2, '[H, N]'), ['f32']);
  if (scores.shape[0] !== H || scores.shape[1] !== N) {
    throw new RangeError(`scores: expected shape [${H}, ${N}] (H and N of keys), got [${scores.shape.join(', ')}]`);
  }
  if (!sameDevice(scores.device, keys.device)) throw new TypeError('scores: must be on the same device as keys');
  return scores;
}

/** A tensor of the input (when given): rank 3, the keys' heads (a multiple for queries) and head dim, their device. */
function checkInputTensor(name: string, v: unknown, keys: Tensor, dims: string, grouped: boolean): Tensor {
  const t = checkRank(name, asTensor(name, v), 3, dims);
  checkDtype(name, t, ['f32', 'f16', 'bf16']);
  const [H, , d] = keys.shape;
  if (grouped ? H < 1 || t.shape[0] % H !== 0 : t.shape[0] !== H) {
    throw new RangeError(`${name}: dimension 0 must be ${grouped ? 'a multiple of' : 'equal to'} the number of KV heads H = ${H}, got [${t.shape.join(', ')}]`);
  }
  if (name !== 'values' && t.shape[2] !== d) throw new RangeError(`${name}: head dim ${t.shape[2]} does not match the keys' head dim ${d}`);
  if (!sameDevice(t.device, keys.device)) throw new TypeError(`${name}: must be on the same device as keys`);
  return t;
}

// ---- Steps: the pipeline yields each op call; a driver runs it with the sync op or awaits the async twin ----------

/** One op call, bound to its arguments: the sync op, or its async twin with `signal` added to the options (the last argument). */
interface Step {
  sync(): unknown;
  async(signal: AbortSignal | undefined): Promise<unknown>;
}
type Steps<R> = Generator<Step, R, unknown>;

/** Yields one op call and returns its result (typed by the sync op). */
function* step<A extends unknown[], R>(op: (...args: A) => R, opAsync: (...args: A) => Promise<R>, ...args: A): Steps<R> {
  const withSignal = (signal: AbortSignal) => [...args.slice(0, -1), { ...(args[args.length - 1] as object), signal }] as A;
  return (yield { sync: () => op(...args), async: (signal) => opAsync(...(signal ? withSignal(signal) : args)) }) as R;
}

/** Runs the steps with the sync ops; an op's error is thrown into the generator (where `prefixed` may relabel it). */
function runSync<R>(steps: Steps<R>): R {
  for (let r = steps.next(); ; ) {
    if (r.done) return r.value;
    let value: unknown;
    try {
      value = r.value.sync();
    } catch (e) {
      r = steps.throw(e);
      continue;
    }
    r = steps.next(value);
  }
}

/** Runs the steps with the async twins, checking `signal` before each; errors go into the generator as in runSync. */
async function runSteps<R>(steps: Steps<R>, signal: AbortSignal | undefined): Promise<R> {
  for (let r = steps.next(); ; ) {
    if (r.done) return r.value;
    let value: unknown;
    try {
      checkAborted(signal);
      value = await r.value.async(signal);
    } catch (e) {
      r = steps.throw(e);
      continue;
    }
    r = steps.next(value);
  }
}

/** Method scores [H, N] (the first stage of compress; exported so callers can sweep ratios over one scoring). */
export function methodScores(input: CompressInput, options: Pick<CompressOptions, 'method' | 'nestedkv' | 'snapkv' | 'momentkv' | 'stream'>): Tensor {
  return runSync(scoreSteps(input, checkOptions(options, true)));
}

/** {@link methodScores} with the ops' async forms (worker threads; see AsyncOptions). */
export async function methodScoresAsync(
  input: CompressInput,
  options: Pick<CompressOptions, 'method' | 'nestedkv' | 'snapkv' | 'momentkv' | 'stream'> & AsyncOptions,
): Promise<Tensor> {
  const o = checkOptions(options, true, true) as CompressOptions & AsyncOptions;
  const { signal: _signal, ...rest } = o;
  return runSteps(scoreSteps(input, rest), signalOf(o as unknown as Record<string, unknown>));
}

/** Scoring (compress()'s options accepted and checked already: callers sweep ratios over one scoring with the same options). */
function* scoreSteps(input: CompressInput, o: CompressOptions): Steps<Tensor> {
  const { keys } = checkInput(input, false);
  if (o.scores !== undefined) checkScores(o.scores, keys);
  for (const k of ['sinks', 'recent'] as const) if (o[k] !== undefined) checkInt(k, o[k], 0, keys.shape[1]);
  return o.method === 'keydiff' ? yield* scoresOf(input, o) : yield* prefixed(o.method, o[o.method], scoresOf(input, o));
}

/** The scores of the method (options already checked). */
function* scoresOf(input: CompressInput, options: CompressOptions): Steps<Tensor> {
  const method = options.method;
  const keys = checkRank('keys', asTensor('keys', input.keys), 3, '[H, N, d]');
  const stream = options.stream;
  const q = () => {
    if (input.queries === undefined) throw new TypeError(`queries: method '${method}' needs the observation-window queries [Hq, W, d]`);
    return asTensor('queries', input.queries);
  };
  const M = ENTRY_OPTIONS.methods;
  switch (method) {
    case 'keydiff':
      return yield* step(keydiffScores, keydiffScoresAsync, keys, { stream });
    case 'nestedkv':
      return yield* step(nestedkvScores, nestedkvScoresAsync, keys, { ...M.nestedkv.nestedkv, ...options.nestedkv, stream } as NestedkvOptions);
    case 'snapkv':
      return yield* step(snapkvScores, snapkvScoresAsync, q(), keys, { ...M.snapkv.snapkv, ...options.snapkv, stream });
    default: {
      const m = options.momentkv ?? {};
      const d = M.momentkv.snapkv;
      return yield* step(snapkvScores, snapkvScoresAsync, q(), keys, { kernel: m.kernel ?? d.kernel, pool: m.pool ?? d.pool, stream });
    }
  }
}

export function compress(input: CompressInput, options: CompressOptions): Compressed {
  return runSync(compressSteps(input, checkOptions(options)));
}

/**
 * {@link compress} with every op on a worker thread: the event loop keeps turning while a layer is compressed.
 * `signal` is checked before each op (see AsyncOptions). Inputs must not be modified until the promise settles.
 */
export async function compressAsync(input: CompressInput, options: CompressOptions & AsyncOptions): Promise<Compressed> {
  const o = checkOptions(options, false, true) as CompressOptions & AsyncOptions;
  const { signal: _signal, ...rest } = o;
  return runSteps(compressSteps(input, rest), signalOf(o as unknown as Record<string, unknown>));
}

function* compressSteps(input: CompressInput, o: CompressOptions): Steps<Compressed> {
  const method = o.method;
  const { keys, values: v } = checkInput(input, true);
  const values = v as Tensor;
  const [H, N] = keys.shape;
  const stratified = o.merge === 'grkv' && o.grkv?.source === 'stratified';
  if (input.surrogateQueries !== undefined && !stratified) {
    throw new RangeError("surrogateQueries: only merge 'grkv' with grkv.source 'stratified' uses them");
  }
  for (const k of ['sinks', 'recent'] as const) if (o[k] !== undefined) checkInt(k, o[k], 0, N);
  const stream = o.stream;
  const keep = resolveKeep(N, o);
  let scores: Tensor;
  if (o.scores !== undefined) {
    scores = checkScores(o.scores, keys);
  } else {
    scores = method === 'keydiff' ? yield* scoresOf(input, o) : yield* prefixed(method, o[method], scoresOf(input, o));
  }

  // Selection.
  let sel: Selection;
  let moments: MomentState | undefined;
  if (method === 'momentkv') {
    if (o.budget === 'adaptive') throw new RangeError("budget: method 'momentkv' evicts a uniform budget per head");
    const m = o.momentkv ?? {};
    const d = ENTRY_OPTIONS.methods.momentkv.momentkvSelect;
    const r = yield* prefixed(
      'momentkv',
      o.momentkv,
      step(momentkvSelect, momentkvSelectAsync, { scores, keys, values, keep, rounds: m.rounds ?? d.rounds, r: m.r ?? d.r, eps: m.eps ?? d.eps, mi: m.mi, stream }),
    );
    sel = { indices: r.indices, counts: r.counts };
    moments = r.moments;
  } else {
    const d: { budget: Budget; safeguard?: number; sinks?: number; recent?: number } = ENTRY_OPTIONS.methods[method].select;
    const D = DEFAULTS.select;
    sel = yield* step(selectTokens, selectTokensAsync, scores, {
      keep,
      budget: o.budget ?? d.budget,
      safeguard: o.safeguard ?? d.safeguard ?? D.safeguard,
      // NestedKV pins its sinks inside the scores (+Infinity); other methods take sinks/recent here.
      sinks: o.sinks ?? d.sinks ?? D.sinks,
      recent: o.recent ?? d.recent ?? D.recent,
      stream,
    });
  }

  // Moment correction for eviction methods: the fused gather merges every evicted row into the state.
  let compact: { keys: Tensor; values: Tensor; counts: Tensor };
  if (o.correction === 'moment' && !moments) {
    const device = keys.device.kind === 'cuda' ? keys.device.id : undefined;
    moments = MomentState.create(H, keys.shape[2], values.shape[2], { device, stream });
    compact = yield* step(gatherKV, gatherKVAsync, { keys, values, ...sel, moments, stream });
  }

  if (o.merge === 'grkv') {
    if (input.queries === undefined) throw new TypeError("queries: merge 'grkv' needs the observation-window queries [Hq, W, d]");
    const g = { ...ENTRY_OPTIONS.merges.grkv.grkv, ...o.grkv };
    const queries = asTensor('queries', input.queries);
    // the anchor ranking: raw SnapKV scores with the SnapKV method's options
    const raw = method === 'snapkv' && o.scores === undefined ? scores : yield* step(snapkvScores, snapkvScoresAsync, queries, keys, { ...ENTRY_OPTIONS.methods.snapkv.snapkv, stream });
    const device = keys.onCuda ? (keys.device as { id: number }).id : undefined;
    let surrogate: Tensor;
    let plan;
    if (g.source === 'stratified') {
      if (input.surrogateQueries === undefined) throw new TypeError("surrogateQueries: grkv source 'stratified' needs the surrogate queries [Hq, Qs, d]");
      surrogate = asTensor('surrogateQueries', input.surrogateQueries);
      plan = grkvSurrogates(N, { source: 'stratified', count: surrogate.shape[1], device });
    } else {
      const W = Math.min(queries.shape[1], g.window ?? DEFAULTS.grkv.window);
      surrogate = queries.view([queries.shape[0], W, queries.shape[2]], [queries.strides[0], queries.strides[1], queries.strides[2]], queries.offset + (queries.shape[1] - W) * queries.strides[1], 'queries');
      plan = grkvSurrogates(N, { source: 'window', count: W, device });
    }
    compact = yield* prefixed('grkv', o.grkv, step(grkvMerge, grkvMergeAsync, {
      keys,
      values,
      selection: sel,
      queries: surrogate,
      queryPositions: plan.queryPositions,
      weights: plan.weights,
      scores: raw,
      window: g.window,
      gamma: g.gamma,
      lambda: g.lambda,
      caps: g.caps,
      cgIters: g.cgIters,
      tol: g.tol,
      acceptance: g.acceptance,
      stream,
    }));
  } else if (!(o.correction === 'moment' && method !== 'momentkv')) {
    compact = yield* step(gatherKV, gatherKVAsync, { keys, values, ...sel, stream });
  }
  return { keys: compact!.keys, values: compact!.values, counts: compact!.counts, indices: sel.indices, scores, ...(moments ? { moments } : {}), keep };
}

/** compress() over every layer of a cache (the options are checked first, also for an empty list). */
export function compressCache(layers: readonly CompressInput[], options: CompressOptions): Compressed[] {
  const o = checkOptions(options);
  checkLayers(layers);
  return layers.map((l, i) => {
    try {
      return runSync(compressSteps(l, o));
    } catch (e) {
      throw layerError(e, i);
    }
  });
}

/** {@link compressCache} with {@link compressAsync}, one layer after the other (each op already uses every CPU thread). */
export async function compressCacheAsync(layers: readonly CompressInput[], options: CompressOptions & AsyncOptions): Promise<Compressed[]> {
  const o = checkOptions(options, false, true) as CompressOptions & AsyncOptions;
  checkLayers(layers);
  const { signal: _signal, ...rest } = o;
  const signal = signalOf(o as unknown as Record<string, unknown>);
  const out: Compressed[] = [];
  for (let i = 0; i < layers.length; i++) {
    try {
      out.push(await runSteps(compressSteps(layers[i], rest), signal));
    } catch (e) {
      throw layerError(e, i);
    }
  }
  return out;
}

function checkLayers(layers: unknown): void {
  if (!Array.isArray(layers)) throw new TypeError(`layers: expected an array of { keys, values, queries? }, got ${show(layers)}`);
}

function layerError(e: unknown, i: number): unknown {
  if (e instanceof Error && (e as { code?: unknown }).code !== 'ABORT_ERR') e.message = `layer ${i}: ${e.message}`;
  return e;
}
