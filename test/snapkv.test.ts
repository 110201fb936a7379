import t from 'tap';
import { snapkvScores, selectTokens, keepFromRatio, tensor } from '../lib/index';
import type { DType, SnapkvOptions } from '../lib/index';
import { Rng } from '../lib/rng';
import { snapkvScoresRef } from './ref/snapkv';
import { checkSelectionValid, selectRef } from './ref/select';
import { BACKENDS, on, place, poisoned, fetch, randomTensor, rows, Layout, expectBadCalls, BadCall, QUICK_SKIP } from './helpers';
import { FILLS, expectClose } from './ref/compare';

// SnapKV scores are pooled attention probabilities (~1/N); compared relative to each value (floor 1e-12). The
// relative error of a probability is the absolute error of its logit: the CPU backend meets 1e-5; the CUDA kernels
// (tensor-core or SIMT f32 logits in another summation order) are held to 3e-5.
const tolOf = (b: string): number => (b === 'cuda' ? 3e-5 : 1e-5);

interface Case {
  Hkv: number;
  G: number;
  Wq: number;
  N: number;
  d: number;
  qd: DType;
  kd: DType;
  layout: Layout;
  opts?: SnapkvOptions;
  /** query magnitude: larger = more peaked attention */
  qs?: number;
  /** skipped under KVTRIM_TEST_QUICK=1 */
  full?: true;
}

const cases: Case[] = [
  { Hkv: 8, G: 4, Wq: 32, N: 4096, d: 128, qd: 'bf16', kd: 'bf16', layout: 'nhd', full: true },
  { Hkv: 8, G: 4, Wq: 64, N: 5000, d: 128, qd: 'bf16', kd: 'bf16', layout: 'nhd', opts: { pool: 'max' }, full: true },
  { Hkv: 4, G: 4, Wq: 64, N: 4096, d: 128, qd: 'f16', kd: 'f16', layout: 'hnd', opts: { window: 32 }, qs: 2 },
  { Hkv: 2, G: 4, Wq: 64, N: 5000, d: 128, qd: 'f32', kd: 'f32', layout: 'padded', opts: { pool: 'max', kernel: 7 } },
  { Hkv: 2, G: 3, Wq: 20, N: 3001, d: 64, qd: 'f32', kd: 'bf16', layout: 'nhd', opts: { kernel: 1, scale: 0.05 } },
  { Hkv: 1, G: 1, Wq: 16, N: 2000, d: 256, qd: 'bf16', kd: 'bf16', layout: 'hnd', opts: { kernel: 3 }, qs: 3 },
  { Hkv: 2, G: 2, Wq: 5, N: 777, d: 96, qd: 'f16', kd: 'f16', layout: 'padded', opts: { pool: 'max', kernel: 3 } },
  { Hkv: 3, G: 1, Wq: 1, N: 300, d: 40, qd: 'f32', kd: 'f32', layout: 'hnd' },
  { Hkv: 1, G: 2, Wq: 7, N: 8, d: 8, qd: 'f32', kd: 'f32', layout: 'hnd', opts: { kernel: 5 } }, // prefix of 1
  { Hkv: 1, G: 8, Wq: 300, N: 1000, d: 64, qd: 'bf16', kd: 'bf16', layout: 'hnd', opts: { window: 299 } }, // G·W > 256
];

for (const b of BACKENDS) {
  const TOL = tolOf(b);
  for (const c of cases) {
    const label = `snapkv ${b} Hkv=${c.Hkv} G=${c.G} W=${c.opts?.window ?? c.Wq}/${c.Wq} N=${c.N} d=${c.d} q ${c.qd} k ${c.kd} ${c.layout} ${JSON.stringify(c.opts ?? {})}`;
    t.test(label, on(b, { skip: c.full && QUICK_SKIP }), async (t) => {
      const rng = new Rng(c.N + c.Wq * 7 + c.d);
      const dir = Array.from({ length: c.d }, () => rng.normal());
      const qs = c.qs ?? 1;
      const { t: q, v: qv } = randomTensor(rng, c.Hkv * c.G, c.Wq, c.d, c.qd, c.layout, (_a, _b, x) => qs * (dir[x] + rng.normal()));
      const { t: k, v: kv } = randomTensor(rng, c.Hkv, c.N, c.d, c.kd, c.layout, (_a, _b, x) => 0.5 * dir[x] + rng.normal());
      const W = c.opts?.window ?? c.Wq;
      const qw = lastRows(qv, c.Hkv * c.G, c.Wq, c.d, W);
      const ref = snapkvScoresRef(qw, c.Hkv * c.G, W, kv, c.Hkv, c.N, c.d, c.opts);
      for (const fill of FILLS) {
        const out = poisoned([c.Hkv, c.N], 'f32', b, fill);
        const res = snapkvScores(place(q, b), place(k, b), { ...c.opts, out });
        t.equal(res, out, `${fill} poison: writes into the given output`);
        const host = await fetch(res);
        const got = host.host as Float32Array;
        let infOk = true, finOk = true;
        for (let h = 0; h < c.Hkv; h++)
          for (let i = 0; i < c.N; i++) {
            const v = got[h * c.N + i];
            if (i >= c.N - W) infOk &&= v === Infinity;
            else finOk &&= v >= 0 && v <= 1;
          }
        t.ok(infOk, `${fill} poison: window positions are +Infinity`);
        t.ok(finOk, `${fill} poison: prefix scores in [0, 1], no NaN`);
        expectClose(t, host, ref, { tol: TOL, floor: 1e-12 }, `${fill} poison`);
      }
    });
  }

  t.test(`snapkv ${b}: selection from the scores keeps the window and a valid top-k`, on(b), async (t) => {
    const rng = new Rng(9);
    const Hkv = 4, G = 4, W = 32, N = 4096, d = 128;
    const { t: q, v: qv } = randomTensor(rng, Hkv * G, W, d, 'bf16', 'hnd');
    const { t: k, v: kv } = randomTensor(rng, Hkv, N, d, 'bf16', 'nhd');
    const ref = snapkvScoresRef(qv, Hkv * G, W, kv, Hkv, N, d);
    const s = snapkvScores(place(q, b), place(k, b));
    const got = (await fetch(s)).host as Float32Array;
    for (const budget of ['uniform', 'adaptive'] as const) {
      const keep = keepFromRatio(N, 0.75);
      const sel = selectTokens(s, { keep, budget });
      const kept = rows(await fetch(sel.indices), await fetch(sel.counts));
      t.ok(kept.every((r) => r.slice(-W).join() === Array.from({ length: W }, (_, i) => N - W + i).join()), `${budget}: window kept in every head`);
      t.same(kept, selectRef(got, Hkv, N, { keep, budget }).indices, `${budget}: reference rule on the f32 scores`);
      const refFinite = Float64Array.from(ref, (x) => (x === Infinity ? 1e30 : x));
      t.equal(checkSelectionValid(refFinite, Hkv, N, { indices: kept }, { keep, budget }, 1e-9), null, `${budget}: valid top-k of the float64 scores`);
    }
  });
}

/** The last W of Wq rows of [Hq, Wq, d] values. */
function lastRows(v: Float64Array, Hq: number, Wq: number, d: number, W: number): Float64Array {
  if (W === Wq) return v;
  const out = new Float64Array(Hq * W * d);
  for (let j = 0; j < Hq; j++) out.set(v.subarray((j * Wq + Wq - W) * d, (j + 1) * Wq * d), j * W * d);
  return out;
}

t.test('snapkv: the window option uses the last rows of the queries', async (t) => {
  const rng = new Rng(4);
  const { t: q, v: qv } = randomTensor(rng, 2, 10, 16, 'f32', 'hnd');
  const { t: k } = randomTensor(rng, 1, 100, 16, 'f32', 'hnd');
  const a = snapkvScores(q, k, { window: 4 }).host;
  const tail = tensor(Float32Array.from(lastRows(qv, 2, 10, 16, 4)), [2, 4, 16]);
  t.same(Array.from(a), Array.from(snapkvScores(tail, k).host), 'window 4 of 10 rows == the last 4 rows alone');
  t.same(Array.from(snapkvScores(q, k).host), Array.from(snapkvScores(q, k, { window: 10, kernel: 5, pool: 'avg', scale: 0.25 }).host), 'defaults: window = rows, kernel 5, avg, 1/√d');
});

// ---- bad input ----
const f32 = (n: number) => new Float32Array(n);
const q = tensor(f32(4 * 2 * 8), [4, 2, 8]);
const k = tensor(f32(2 * 16 * 8), [2, 16, 8]);
const bad: BadCall[] = [
  ['queries not a tensor', () => snapkvScores(1 as never, k), 'TypeError', /queries: expected a tensor/],
  ['keys missing', () => snapkvScores(q, undefined as never), 'TypeError', /keys: expected a tensor/],
  ['queries rank 2', () => snapkvScores(tensor(f32(8), [1, 8]), k), 'TypeError', /queries: expected a 3-D tensor \[Hq, W, d\]/],
  ['keys i32', () => snapkvScores(q, tensor(new Int32Array(2 * 16 * 8), [2, 16, 8])), 'TypeError', /keys: expected dtype f32 \| f16 \| bf16, got i32/],
  ['head dim mismatch', () => snapkvScores(tensor(f32(4 * 2 * 4), [4, 2, 4]), k), 'RangeError', /queries: head dim 4 does not match keys' head dim 8/],
  ['Hq not a multiple of Hkv', () => snapkvScores(tensor(f32(3 * 2 * 8), [3, 2, 8]), k), 'RangeError', /queries: the number of query heads \(3\) must be a positive multiple of the number of KV heads \(2\)/],
  ['W >= N', () => snapkvScores(tensor(f32(4 * 16 * 8), [4, 16, 8]), k), 'RangeError', /window: must be smaller than N = 16/],
  ['window > rows', () => snapkvScores(q, k, { window: 3 }), 'RangeError', /window: must be in \[1, 2\], got 3/],
  ['window 0', () => snapkvScores(q, k, { window: 0 }), 'RangeError', /window: must be in \[1, 2\], got 0/],
  ['no window rows', () => snapkvScores(tensor(f32(0), [4, 0, 8]), k), 'RangeError', /queries: need at least one window query/],
  ['kernel even', () => snapkvScores(q, k, { kernel: 4 }), 'RangeError', /kernel: must be a positive odd integer, got 4/],
  ['kernel 0', () => snapkvScores(q, k, { kernel: 0 }), 'RangeError', /kernel: must be a positive odd integer, got 0/],
  ['kernel negative', () => snapkvScores(q, k, { kernel: -3 }), 'RangeError', /kernel: must be a positive odd integer, got -3/],
  ['kernel fractional', () => snapkvScores(q, k, { kernel: 2.5 }), 'TypeError', /kernel: expected an integer/],
  ['pool unknown', () => snapkvScores(q, k, { pool: 'sum' as never }), 'RangeError', /pool: expected one of 'avg', 'max'/],
  ['scale NaN', () => snapkvScores(q, k, { scale: NaN }), 'TypeError', /scale: expected a number/],
  ['scale 0', () => snapkvScores(q, k, { scale: 0 }), 'RangeError', /scale: must be finite and nonzero/],
  ['scale Infinity', () => snapkvScores(q, k, { scale: Infinity }), 'RangeError', /scale: must be finite and nonzero/],
  ['unknown option', () => snapkvScores(q, k, { windows: 2 } as never), 'TypeError', /options: unknown option 'windows'/],
  ['out wrong shape', () => snapkvScores(q, k, { out: tensor(f32(16), [1, 16]) }), 'RangeError', /out: expected shape \[2, 16\], got \[1, 16\]/],
  ['out i32', () => snapkvScores(q, k, { out: tensor(new Int32Array(32), [2, 16]) }), 'TypeError', /out: expected dtype f32, got i32/],
  ['out aliases keys', () => snapkvScores(q, k, { out: tensor(k.data, [2, 16]) }), 'RangeError', /out: must not overlap keys/],
  ['out aliases queries', () => snapkvScores(q, tensor(f32(2 * 16 * 8), [2, 16, 8]), { out: tensor(q.data, [2, 16]) }), 'RangeError', /out: must not overlap queries/],
  ['queries view too large', () => snapkvScores({ data: f32(8), shape: [4, 2, 8] }, k), 'RangeError', /queries: view .* holds 8 f32 elements/],
];
expectBadCalls(t, bad, 'snapkv bad input: ');
