import t, { Test } from 'tap';
import { selectTokens, selectCapacity, keepFromRatio, tensor, Tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { selectRef } from './ref/select';
import { BACKENDS, on, place, poisoned, fetch, rows, Backend, QUICK } from './helpers';
import { FILLS, expectWritten } from './ref/compare';

type Opts = { keep: number; budget: 'uniform' | 'adaptive'; safeguard?: number; sinks?: number; recent?: number };

/** Scores with a controllable amount of ties, NaN and infinities. */
function scores(rng: Rng, H: number, N: number, kind: 'random' | 'ties' | 'special' | 'constant'): Float32Array {
  const s = new Float32Array(H * N);
  for (let i = 0; i < s.length; i++) {
    if (kind === 'random') s[i] = rng.normal();
    else if (kind === 'ties') s[i] = rng.int(7) / 4; // 7 distinct values: massive ties
    else if (kind === 'constant') s[i] = 0.5;
    else {
      const r = rng.int(20);
      s[i] = r === 0 ? NaN : r === 1 ? Infinity : r === 2 ? -Infinity : r === 3 ? -0 : r === 4 ? 0 : rng.normal();
    }
  }
  return s;
}

async function runBoth(t: Test, b: Backend, s: Float32Array, H: number, N: number, o: Opts, label: string): Promise<void> {
  const st = tensor(s, [H, N]);
  const cap = selectCapacity(H, N, o);
  const ref = selectRef(s, H, N, o);
  // both poisons of the integer outputs are values no index or count takes (not -1, the padding)
  for (const fill of FILLS) {
    const indices = poisoned([H, cap], 'i32', b, fill), counts = poisoned([H], 'i32', b, fill);
    const sel = selectTokens(place(st, b), { ...o, indices, counts });
    const idx = await fetch(sel.indices), cnt = await fetch(sel.counts);
    expectWritten(t, idx, `${label} (${fill} poison): indices`);
    expectWritten(t, cnt, `${label} (${fill} poison): counts`);
    const got = rows(idx, cnt);
    t.same(got, ref.indices, `${label}: indices equal the reference rule`);
    t.same(Array.from(cnt.host), ref.counts, `${label}: counts`);
    let pad = true;
    for (let h = 0; h < H; h++) for (let j = cnt.at(h); j < cap; j++) pad &&= idx.at(h, j) === -1;
    t.ok(pad, `${label}: padding is -1`);
  }
  if (o.budget === 'adaptive') {
    const total = ref.counts.reduce((a, c) => a + c, 0);
    t.equal(total, H * o.keep, `${label}: counts sum to H*keep`);
    const nSafe = Math.floor(o.keep * (o.safeguard ?? 0.2) + 1e-9);
    t.ok(ref.counts.every((c) => c >= Math.min(nSafe, o.keep)), `${label}: every head keeps >= n_safe`);
    t.ok(Math.max(...ref.counts) <= cap, `${label}: capacity bound holds`);
  }
}


for (const b of BACKENDS) {
  t.test(`select ${b}: uniform and adaptive vs the reference rule`, on(b), async (t) => {
    const rng = new Rng(11);
    const big = QUICK ? 4096 : 32768; // KVTRIM_TEST_QUICK=1: the two large layers at N = 4096
    const configs: [number, number, Opts, 'random' | 'ties' | 'special' | 'constant'][] = [
      [8, big, { keep: big / 10 | 0, budget: 'uniform' }, 'random'],
      [8, big, { keep: big / 10 | 0, budget: 'adaptive', sinks: 4 }, 'random'],
      [8, 5000, { keep: 1250, budget: 'adaptive', safeguard: 0.2, sinks: 4, recent: 64 }, 'ties'],
      [4, 4097, { keep: 1000, budget: 'uniform', sinks: 4, recent: 32 }, 'special'],
      [4, 4097, { keep: 400, budget: 'adaptive', safeguard: 0.5 }, 'special'],
      [3, 1000, { keep: 100, budget: 'adaptive', safeguard: 0 }, 'constant'],
      [3, 1000, { keep: 100, budget: 'adaptive', safeguard: 1 }, 'random'],
      [5, 64, { keep: 2, budget: 'uniform', sinks: 4 }, 'random'], // keep <= sinks: first positions
      [5, 64, { keep: 2, budget: 'adaptive', sinks: 4 }, 'random'],
      [2, 10, { keep: 10, budget: 'uniform' }, 'random'], // keep everything
      [2, 10, { keep: 10, budget: 'adaptive' }, 'ties'],
      [1, 1, { keep: 1, budget: 'adaptive' }, 'random'],
      [16, 2049, { keep: 1, budget: 'uniform' }, 'ties'],
      [7, 3001, { keep: 1500, budget: 'adaptive', recent: 3001 }, 'random'], // everything forced
      [2, 10, { keep: 3, budget: 'adaptive', safeguard: 0.5 }, 'random'], // n_safe = ⌊1.5⌋ = 1 (the rounding is a floor)
      [3, 50, { keep: 7, budget: 'adaptive', safeguard: 0.3 }, 'random'], // ⌊2.1⌋ = 2
      [4, 40, { keep: 9, budget: 'adaptive', safeguard: 0.25, sinks: 1 }, 'ties'], // ⌊2.25⌋ = 2
    ];
    for (const [H, N, o, kind] of configs) {
      await runBoth(t, b, scores(rng, H, N, kind), H, N, o, `H=${H} N=${N} ${kind} ${JSON.stringify(o)}`);
    }
  });

  t.test(`select ${b}: the adaptive safeguard is ⌊keep·safeguard⌋ (README "Selection rule"), not rounded up`, on(b), async (t) => {
    // head 0 outscores head 1 everywhere: after the safeguard every remaining slot goes to head 0
    const s = Float32Array.from({ length: 20 }, (_, k) => (k < 10 ? 10 + k : k - 10));
    for (const [keep, safeguard, want] of [
      [3, 0.5, [5, 1]], // ⌊1.5⌋ = 1 (⌈1.5⌉ = 2 would give [4, 2])
      [3, 1 / 3, [5, 1]], // ⌊1⌋ = 1: an exact product stays
      [5, 0.3, [9, 1]], // ⌊1.5⌋ = 1
      [4, 0.6, [6, 2]], // ⌊2.4⌋ = 2
      [3, 0.3, [6, 0]], // ⌊0.9⌋ = 0: head 1 may lose everything
      [4, 1, [4, 4]], // safeguard 1 = uniform
    ] as [number, number, number[]][]) {
      const sel = selectTokens(place(tensor(s, [2, 10]), b), { keep, budget: 'adaptive', safeguard, indices: poisoned([2, selectCapacity(2, 10, { keep, budget: 'adaptive', safeguard })], 'i32', b) });
      const cnt = await fetch(sel.counts);
      t.same(Array.from(cnt.host), want, `keep ${keep} safeguard ${safeguard}: counts ${want}`);
      t.same(selectRef(s, 2, 10, { keep, budget: 'adaptive', safeguard }).counts, want, `keep ${keep} safeguard ${safeguard}: the reference agrees`);
      const kept = rows(await fetch(sel.indices), cnt);
      t.same(kept[1], Array.from({ length: want[1] }, (_, i) => 10 - want[1] + i), `keep ${keep} safeguard ${safeguard}: head 1 keeps its top ${want[1]}`);
    }
  });

  t.test(`select ${b}: strided scores view`, on(b), async (t) => {
    const rng = new Rng(3);
    const H = 4, N = 3000;
    const base = scores(rng, N, H, 'random'); // stored [N, H]
    const view = tensor(base, [H, N], { strides: [1, H] });
    const flat = new Float32Array(H * N);
    for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) flat[h * N + i] = base[i * H + h];
    const sel = selectTokens(b === 'cuda' ? place(view, 'cuda') : view, { keep: 300, budget: 'adaptive' });
    t.same(rows(await fetch(sel.indices), await fetch(sel.counts)), selectRef(flat, H, N, { keep: 300, budget: 'adaptive' }).indices);
  });
}

t.test('keepFromRatio and capacity', async (t) => {
  t.equal(keepFromRatio(10, 0.9), 1, 'N=10 r=0.9 keeps 1 (no float round-off to 0)');
  t.equal(keepFromRatio(4096, 0.75), 1024);
  t.equal(keepFromRatio(4096, 0), 4096);
  t.equal(keepFromRatio(5, 0.99), 1, 'at least one token');
  t.equal(keepFromRatio(1000, 0.7), 300);
  t.equal(selectCapacity(8, 1000, { keep: 100 }), 100);
  t.equal(selectCapacity(8, 1000, { keep: 100, budget: 'adaptive' }), 8 * 100 - 7 * 20);
  t.equal(selectCapacity(8, 300, { keep: 100, budget: 'adaptive', safeguard: 0 }), 300);
  const s = selectTokens(tensor(new Float32Array(20).map((_, i) => i % 10), [2, 10]), { ratio: 0.5 });
  t.same(Array.from(s.counts.host), [5, 5]);
  t.same(rows(s.indices, s.counts), [[5, 6, 7, 8, 9], [5, 6, 7, 8, 9]]);
  const big = selectTokens(tensor(new Float32Array(20), [2, 10]), { keep: 3, cap: 6 });
  t.same(big.indices.shape, [2, 6], 'explicit larger cap');
  t.ok(big.indices instanceof Tensor);
});
