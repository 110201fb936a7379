// The option defaults have one source, the C ABI's kvt_<op>_default_opts, read by the TypeScript layer through the
// addon's defaultOptions(): they equal the values the method references document, and the ops apply them.
import t from 'tap';
import { DEFAULTS } from '../lib/defaults';
import { native } from '../lib/binding';
import { METHODS, MERGES } from '../lib/methods';
import { nestedkvScores, snapkvScores, tensor } from '../lib/index';
import { Rng } from '../lib/rng';

t.test('the defaults are the documented ones (docs/methods/*.md)', async (t) => {
  // docs/methods/selection.md §4, nestedkv.md §6, snapkv.md, momentkv.md §7, grkv.md §8
  t.same(DEFAULTS, {
    select: { budget: 'uniform', safeguard: 0.2, sinks: 0, recent: 0 },
    nestedkv: { window: 64, block: 0, prior: [0.4, 0.4, 0.2], beta: 3, tau: 0.6, kappa: 10, tail: 0.1, sinks: 4, scales: 'all' },
    snapkv: { window: 0, kernel: 5, pool: 'avg', scale: 0 },
    decode: { order: 1, scale: 0, clip: null },
    momentkvSelect: { rounds: 4, r: 1, eps: 0.05, mi: true },
    spd: { lambda: 0, throwOnError: true },
    grkv: { window: 32, gamma: 0.1, lambda: 0.01, caps: { key: 0.025, value: 0.1 }, cgIters: 16, tol: 1e-6, scale: 0, acceptance: 'best' },
  });
  t.ok(Object.isFrozen(DEFAULTS) && Object.isFrozen(DEFAULTS.nestedkv.prior), 'deeply frozen');
  t.not(native.defaultOptions(), native.defaultOptions(), 'each call builds a fresh object (nothing shared to mutate)');
});

t.test('the registry builds on the op defaults', async (t) => {
  t.equal(METHODS.nestedkv.defaults.tau, DEFAULTS.nestedkv.tau);
  t.equal(METHODS.snapkv.defaults.kernel, DEFAULTS.snapkv.kernel);
  t.equal(METHODS.momentkv.defaults.kernel, 7, 'MomentKV overrides the SnapKV pooling kernel');
  t.equal(MERGES.grkv.defaults.cgIters, DEFAULTS.grkv.cgIters);
});

t.test('ops apply the defaults when an option is left out', async (t) => {
  const rng = new Rng(3);
  const H = 2, N = 700, d = 16;
  const keys = tensor(Float32Array.from({ length: H * N * d }, () => rng.normal()), [H, N, d]);
  const queries = tensor(Float32Array.from({ length: 2 * H * 8 * d }, () => rng.normal()), [2 * H, 8, d]);
  // every default passed explicitly (block 0 means 'derived from N' only when the option is left out)
  const { block: _auto, ...explicit } = DEFAULTS.nestedkv;
  const a = nestedkvScores(keys), b = nestedkvScores(keys, { ...explicit, prior: [...explicit.prior] });
  t.same(Array.from(a.data as Float32Array), Array.from(b.data as Float32Array), 'nestedkvScores');
  const c = nestedkvScores(keys, { tau: 0.3 });
  t.notSame(Array.from(a.data as Float32Array), Array.from(c.data as Float32Array), 'a changed option changes the scores');
  const s1 = snapkvScores(queries, keys), s2 = snapkvScores(queries, keys, { kernel: DEFAULTS.snapkv.kernel, pool: DEFAULTS.snapkv.pool });
  t.same(Array.from(s1.data as Float32Array), Array.from(s2.data as Float32Array), 'snapkvScores');
});
