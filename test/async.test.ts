// The Promise-returning op forms (`<op>Async`, `compressAsync`, ...): every op has one, each returns exactly what
// the sync form returns, the event loop keeps turning while one runs (timer ticks counted while it is pending),
// many concurrent calls give the same bits as sequential ones (the CPU thread pool runs concurrent calls inline),
// inputs stay alive while in flight, errors reject with the sync form's error, and AbortSignal: aborted before the
// start (also while queued behind busy worker threads) nothing is written; aborted while running, the op's output is
// whole. On CUDA (GPU or emulator) the async forms enqueue at once, in call order.
import t from 'tap';
import type { Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import * as api from '../lib/index';
import {
  compress, compressAsync, compressCache, compressCacheAsync, decodeAttention, decodeAttentionAsync, gatherKV, gatherKVAsync,
  grkvMerge, grkvMergeAsync, keydiffScores, keydiffScoresAsync, methodScores, methodScoresAsync, MomentState, momentkvCompress,
  momentkvCompressAsync, momentkvSelect, momentkvSelectAsync, nestedkvScores, nestedkvScoresAsync, selectTokens, selectTokensAsync,
  snapkvScores, snapkvScoresAsync, spdSolve, spdSolveAsync, SpdError, tensor, Tensor, toHost,
} from '../lib/index';
import { native, NATIVE_EXPORTS } from '../lib/binding';
import { hostContiguous } from '../lib/tensor';
import { Rng } from '../lib/rng';
import { BACKENDS, EMULATED_CUDA, on, place, poisoned } from './helpers';

const root = path.join(__dirname, '..');
/** Under the CUDA emulator's addon (test/cuda-emu.test.ts) only the CUDA cases run: the run without it covers the rest. */
const cpuPart = EMULATED_CUDA ? 'CPU part: covered by the run without the emulator' : false;

/** The bytes of a tensor (host or device). */
async function bytes(x: Tensor): Promise<Buffer> {
  const a = hostContiguous(await toHost(x));
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Every tensor of a result (nested objects and arrays), by path. */
function tensorsOf(v: unknown, prefix = ''): [string, Tensor][] {
  if (v instanceof Tensor) return [[prefix || 'result', v]];
  if (v === null || typeof v !== 'object') return [];
  return Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => (typeof x === 'function' ? [] : tensorsOf(x, prefix ? `${prefix}.${k}` : k)));
}

async function sameBits(t: Test, got: unknown, want: unknown, what: string) {
  const g = tensorsOf(got), w = tensorsOf(want);
  t.same(g.map(([k]) => k), w.map(([k]) => k), `${what}: the same outputs`);
  let equal = g.length === w.length && g.length > 0;
  for (let i = 0; i < Math.min(g.length, w.length); i++) equal &&= (await bytes(g[i][1])).equals(await bytes(w[i][1]));
  t.ok(equal, `${what}: ${g.length} output tensors equal bit for bit`);
}

function layer(rng: Rng, H: number, N: number, d: number, Hq: number, W: number) {
  return {
    keys: tensor(rng.normals(H * N * d), [H, N, d]),
    values: tensor(rng.normals(H * N * d), [H, N, d]),
    queries: tensor(rng.normals(Hq * W * d), [Hq, W, d]),
  };
}

t.test('every op has an async form: the ops of docs/adding-an-op.md, and every <op>Async export of the addon', async (t) => {
  const guide = fs.readFileSync(path.join(root, 'docs', 'adding-an-op.md'), 'utf8');
  const rows = guide.split('\n').filter((l) => /^\| [a-z_]+ \| `kvt_/.test(l));
  t.ok(rows.length >= 10, `${rows.length} ops`);
  for (const row of rows) {
    const ts = row.split('|')[3].trim().replace(/`/g, '');
    const exported = (api as Record<string, unknown>)[ts];
    if (ts === 'TpSelection') {
      // The tensor-parallel protocol's rounds are one pass over a shard's scores each (a histogram, then a pivot):
      // short synchronous steps between the runtime's own collectives. Its driver over a whole layer is async.
      t.equal(Object.prototype.toString.call((api as Record<string, unknown>).tpSelectTokens), '[object AsyncFunction]', 'tpSelectTokens is async');
      continue;
    }
    if (typeof exported === 'function' && /^class\b/.test(Function.prototype.toString.call(exported))) {
      const methods = Object.getOwnPropertyNames((exported as { prototype: object }).prototype);
      t.ok(methods.filter((m) => !m.endsWith('Async')).some((m) => methods.includes(`${m}Async`)), `${ts}: has <method>Async (${methods.join(', ')})`);
    } else {
      t.equal(typeof (api as Record<string, unknown>)[`${ts}Async`], 'function', `${ts}Async is exported`);
    }
  }
  for (const n of Object.keys(api).filter((n) => n.endsWith('Batched'))) {
    t.equal(typeof (api as Record<string, unknown>)[`${n}Async`], 'function', `${n}Async is exported`);
  }
  const names = Object.keys(NATIVE_EXPORTS);
  const asyncs = names.filter((n) => n.endsWith('Async'));
  t.ok(asyncs.length >= 10, `${asyncs.length} native async exports`);
  for (const n of asyncs) t.ok(names.includes(n.slice(0, -5)), `${n} is the twin of ${n.slice(0, -5)}`);
  for (const n of ['compress', 'compressCache', 'methodScores', 'momentkvCompress']) {
    t.equal(typeof (api as Record<string, unknown>)[`${n}Async`], 'function', `${n}Async is exported`);
  }
});

for (const b of BACKENDS) {
  t.test(`${b}: each async form returns exactly what the sync form returns`, on(b, { skip: b === 'cpu' ? cpuPart : false }), async (t) => {
    const rng = new Rng(5);
    // the CUDA emulator runs kernels ~10^4 times slower: smaller shapes there
    const [H, N] = b === 'cuda' && EMULATED_CUDA ? [2, 320] : [4, 1024];
    const d = 64, Hq = 2 * H, W = 16;
    const host = layer(rng, H, N, d, Hq, W);
    const L = { keys: place(host.keys, b), values: place(host.values, b), queries: place(host.queries, b) };
    const { keys, values, queries } = L;
    const keep = N / 4;
    const snap = snapkvScores(queries, keys);
    const sel = selectTokens(snap, { keep });
    const gq = place(tensor(rng.normals(Hq * 8 * d), [Hq, 8, d]), b);
    const qpos = place(tensor(Int32Array.from({ length: 8 }, (_, j) => N - 8 + j), [8]), b);
    const spdA = new Float32Array(2 * 8 * 8);
    for (let s = 0; s < 2; s++) for (let i = 0; i < 8; i++) spdA[s * 64 + i * 9] = 2 + i + s;
    const a = place(tensor(spdA, [2, 8, 8]), b), rhs = place(tensor(rng.normals(2 * 8 * 3), [2, 8, 3]), b);
    const decQ = place(tensor(rng.normals(Hq * d), [Hq, d]), b);

    const cases: [string, () => unknown, () => Promise<unknown>][] = [
      ['keydiffScores', () => keydiffScores(keys), () => keydiffScoresAsync(keys)],
      ['nestedkvScores', () => nestedkvScores(keys, { window: 16 }), () => nestedkvScoresAsync(keys, { window: 16 })],
      ['snapkvScores', () => snapkvScores(queries, keys, { pool: 'max' }), () => snapkvScoresAsync(queries, keys, { pool: 'max' })],
      ['selectTokens', () => selectTokens(snap, { keep, budget: 'adaptive' }), () => selectTokensAsync(snap, { keep, budget: 'adaptive' })],
      ['gatherKV + moments', () => {
        const m = MomentState.create(H, d, d, { device: b === 'cuda' ? 0 : 'cpu' });
        return { ...gatherKV({ keys, values, ...sel, moments: m }), m };
      }, async () => {
        const m = MomentState.create(H, d, d, { device: b === 'cuda' ? 0 : 'cpu' });
        return { ...(await gatherKVAsync({ keys, values, ...sel, moments: m })), m };
      }],
      ['MomentState.merge', () => MomentState.create(H, d, d, { device: b === 'cuda' ? 0 : 'cpu' }).merge(keys, values, sel.indices, sel.counts),
        () => MomentState.create(H, d, d, { device: b === 'cuda' ? 0 : 'cpu' }).mergeAsync(keys, values, sel.indices, sel.counts)],
      ['decodeAttention', () => decodeAttention({ queries: decQ, keys, values, counts: sel.counts }),
        () => decodeAttentionAsync({ queries: decQ, keys, values, counts: sel.counts })],
      ['spdSolve', () => spdSolve({ a, b: rhs, lambda: 0.5 }), () => spdSolveAsync({ a, b: rhs, lambda: 0.5 })],
      ['grkvMerge', () => grkvMerge({ keys, values, selection: sel, queries: gq, queryPositions: qpos, scores: snap, diagnostics: true }),
        () => grkvMergeAsync({ keys, values, selection: sel, queries: gq, queryPositions: qpos, scores: snap, diagnostics: true })],
    ];
    // Under the emulator (kernels ~10^4 times slower) the CUDA part stops here: the multi-round MomentKV eviction (~15 s
    // per call there) and the pipelines go through the same async path as the ops above.
    if (!(b === 'cuda' && EMULATED_CUDA)) cases.push(
      ['momentkvSelect', () => momentkvSelect({ scores: snap, keys, values, keep, evictedRound: true }),
        () => momentkvSelectAsync({ scores: snap, keys, values, keep, evictedRound: true })],
      ['momentkvCompress', () => momentkvCompress({ scores: snap, keys, values, keep }), () => momentkvCompressAsync({ scores: snap, keys, values, keep })],
      ['methodScores nestedkv', () => methodScores(L, { method: 'nestedkv' }), () => methodScoresAsync(L, { method: 'nestedkv' })],
      ['compress snapkv + grkv', () => compress(L, { method: 'snapkv', ratio: 0.7, merge: 'grkv' }), () => compressAsync(L, { method: 'snapkv', ratio: 0.7, merge: 'grkv' })],
      ['compress keydiff + moment', () => compress(L, { method: 'keydiff', keep, correction: 'moment' }), () => compressAsync(L, { method: 'keydiff', keep, correction: 'moment' })],
      ['compress momentkv', () => compress(L, { method: 'momentkv', ratio: 0.5 }), () => compressAsync(L, { method: 'momentkv', ratio: 0.5 })],
      ['compressCache nestedkv', () => compressCache([L, L], { method: 'nestedkv', ratio: 0.8 }), () => compressCacheAsync([L, L], { method: 'nestedkv', ratio: 0.8 })],
    );
    for (const [name, sync, async] of cases) {
      const want = sync();
      const p = async();
      t.ok(p instanceof Promise, `${name}Async returns a Promise`);
      await sameBits(t, await p, want, name);
    }
  });
}

t.test('the event loop keeps turning while an async op runs (timer ticks counted while it is pending)', { skip: cpuPart }, async (t) => {
  const rng = new Rng(9);
  const { keys, values, queries } = layer(rng, 8, 16384, 128, 32, 32);
  const ticking = async <T>(start: () => T | Promise<T>) => {
    let pending = true, ticks = 0;
    const timer = setInterval(() => pending && ticks++, 1);
    try {
      const p = Promise.resolve(start());
      p.finally(() => (pending = false)).catch(() => {});
      return { result: await p, ticks };
    } finally {
      clearInterval(timer);
    }
  };
  // the control: the sync op holds the event loop for its whole run, so no tick happens while it runs
  const sync = await ticking(() => snapkvScores(queries, keys));
  t.equal(sync.ticks, 0, 'snapkvScores (sync, N = 16384): 0 ticks while it runs');
  const op = await ticking(() => snapkvScoresAsync(queries, keys));
  t.ok(op.ticks >= 3, `snapkvScoresAsync (N = 16384): ${op.ticks} timer ticks while it was pending`);
  await sameBits(t, op.result, sync.result, 'snapkvScoresAsync');
  const L = { keys, values, queries };
  const pipe = await ticking(() => compressAsync(L, { method: 'snapkv', ratio: 0.75, merge: 'grkv', scores: sync.result }));
  t.ok(pipe.ticks >= 3, `compressAsync (select + GRKV merge, N = 16384): ${pipe.ticks} timer ticks while it was pending`);
  await sameBits(t, pipe.result, compress(L, { method: 'snapkv', ratio: 0.75, merge: 'grkv', scores: sync.result }), 'compressAsync');
});

t.test('many concurrent async calls give the same bits as sequential sync calls', { skip: cpuPart }, async (t) => {
  const rng = new Rng(21);
  const layers = Array.from({ length: 4 }, () => layer(rng, 4, 4096, 64, 8, 16));
  const calls: [string, () => unknown, () => Promise<unknown>][] = layers.flatMap((L, i) => [
    [`nestedkvScores #${i}`, () => nestedkvScores(L.keys), () => nestedkvScoresAsync(L.keys)],
    [`snapkvScores #${i}`, () => snapkvScores(L.queries, L.keys), () => snapkvScoresAsync(L.queries, L.keys)],
    [`keydiffScores #${i}`, () => keydiffScores(L.keys), () => keydiffScoresAsync(L.keys)],
    [`compress snapkv + grkv #${i}`, () => compress(L, { method: 'snapkv', ratio: 0.8, merge: 'grkv' }), () => compressAsync(L, { method: 'snapkv', ratio: 0.8, merge: 'grkv' })],
  ] as [string, () => unknown, () => Promise<unknown>][]);
  const sequential = calls.map(([, sync]) => sync());
  const concurrent = await Promise.all(calls.map(([, , async]) => async()));
  t.equal(concurrent.length, 16, '16 calls in flight at once (more than the 4 libuv worker threads)');
  for (let i = 0; i < calls.length; i++) await sameBits(t, concurrent[i], sequential[i], calls[i][0]);
});

t.test('inputs stay alive while in flight: the addon holds them, not only the caller', { skip: cpuPart }, async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const rng = new Rng(4);
  const H = 4, N = 8192, d = 128;
  const data = rng.normals(H * N * d);
  const want = await bytes(nestedkvScores(tensor(data, [H, N, d])));
  const out = new Float32Array(H * N).fill(NaN);
  // the keys are referenced by nothing but the native call: a copy, in a descriptor object dropped at once
  const p = native.nestedkvScoresAsync(
    { data: data.slice(), dtype: 'f32', shape: [H, N, d], strides: [N * d, d, 1], offset: 0 },
    { window: 64, block: 0, prior: [0.4, 0.4, 0.2], beta: 3, tau: 0.6, kappa: 10, tail: 0.1, sinks: 4, scales: 0 },
    { data: out, dtype: 'f32', shape: [H, N], strides: [N, 1], offset: 0 },
  );
  for (let i = 0; i < 5; i++) {
    gc();
    new Float32Array(H * N * d).fill(-1e30); // reuse freed memory if the keys were collected
    await new Promise((r) => setImmediate(r));
  }
  await p;
  t.ok(Buffer.from(out.buffer).equals(want), 'the scores equal the sync result after collections during the call');
});

t.test('errors: argument errors throw at once (native) or reject (TS); C ABI errors reject with the sync error', { skip: cpuPart }, async (t) => {
  const k = tensor(new Float32Array(2 * 8 * 4).fill(1), [2, 8, 4]);
  const badOut = tensor(new Float32Array(2 * 7), [2, 7]);
  let syncErr: unknown;
  try {
    native.keydiffScores(k.toNative(), badOut.toNative());
  } catch (e) {
    syncErr = e;
  }
  t.type(syncErr, RangeError, 'the sync export throws a RangeError');
  await t.rejects(native.keydiffScoresAsync(k.toNative(), badOut.toNative()), { name: 'RangeError', message: (syncErr as Error).message }, 'the async export rejects with the same RangeError (the C check runs on the worker)');
  t.throws(() => native.keydiffScoresAsync({ data: 1 } as never, badOut.toNative()), TypeError, 'a malformed tensor throws synchronously, as in the sync export');
  t.throws(() => native.keydiffScoresAsync(k.toNative(), tensor(new Float32Array(16), [2, 8]).toNative(), undefined, new Float32Array(1) as never), { name: 'TypeError', message: /abort: expected an Int32Array/ }, 'a bad abort cell is a TypeError');
  const p = keydiffScoresAsync(k, { out: badOut });
  t.ok(p instanceof Promise, 'TS validation errors of an async form come as a rejection');
  await t.rejects(p, { name: 'RangeError', message: /out: expected shape \[2, 8\]/ });
  await t.rejects(spdSolveAsync({ a: tensor(new Float32Array([1, 0, 0, -1]), [2, 2]), b: tensor(new Float32Array([1, 1]), [2, 1]) }), SpdError, 'a non-SPD system rejects with the SpdError');
  t.throws(() => keydiffScores(k, { signal: new AbortController().signal } as never), { name: 'TypeError', message: /unknown option 'signal'/ }, 'the sync forms take no signal');
  await t.rejects(keydiffScoresAsync(k, { signal: 'stop' as never }), { name: 'TypeError', message: /signal: expected an AbortSignal/ });
});

t.test('AbortSignal', { skip: cpuPart }, async (t) => {
  const rng = new Rng(33);
  const { keys } = layer(rng, 4, 8192, 128, 4, 4);
  const H = 4, N = 8192;
  // still exactly the poison it was filled with (test/helpers.ts `poisoned`)
  const isPoison = async (x: Tensor) => (await bytes(x)).equals(await bytes(poisoned([...x.shape], x.dtype, 'cpu')));

  const ac = new AbortController();
  ac.abort(new Error('no longer needed'));
  const out = poisoned([H, N], 'f32', 'cpu');
  await t.rejects(nestedkvScoresAsync(keys, { out, signal: ac.signal }), { name: 'AbortError', code: 'ABORT_ERR', cause: ac.signal.reason }, 'aborted before the call: AbortError with the reason as cause');
  t.ok(await isPoison(out), 'nothing was written');

  // Queued behind busy workers: fill every libuv worker thread, queue one more, abort it before any worker frees up.
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const blockers = Array.from({ length: pool }, () => nestedkvScoresAsync(keys));
  const queued = new AbortController();
  const victimOut = poisoned([H, N], 'f32', 'cpu');
  const victim = nestedkvScoresAsync(keys, { out: victimOut, signal: queued.signal });
  queued.abort();
  await t.rejects(victim, { name: 'AbortError' }, `aborted while queued behind ${pool} busy workers: AbortError`);
  t.ok(await isPoison(victimOut), 'the queued call never ran: its output is untouched');
  const done = await Promise.all(blockers);
  t.equal(done.length, pool, 'the other calls completed');

  // Aborted while running (or about to): the C kernels have no cancellation points; the output is never torn.
  const late = new AbortController();
  const lateOut = poisoned([H, N], 'f32', 'cpu');
  const running = nestedkvScoresAsync(keys, { out: lateOut, signal: late.signal });
  setTimeout(() => late.abort(), 5);
  await t.rejects(running, { name: 'AbortError' }, 'aborted during the run: AbortError when it returns');
  const whole = (await bytes(lateOut)).equals(await bytes(done[0]));
  t.ok(whole || (await isPoison(lateOut)), `the output is either complete (${whole}) or untouched, never partial`);

  // A pipeline stops before its next op: compressAsync aborted from the start rejects and runs nothing.
  const stop = new AbortController();
  stop.abort();
  await t.rejects(compressAsync({ keys, values: keys }, { method: 'keydiff', ratio: 0.5, signal: stop.signal }), { name: 'AbortError' });
  await t.rejects(compressCacheAsync([{ keys, values: keys }], { method: 'keydiff', ratio: 0.5, signal: stop.signal }), { name: 'AbortError', message: 'The operation was aborted' }, 'compressCacheAsync: no layer prefix on an AbortError');
});

t.test('CUDA tensors: async forms enqueue at once, in call order', on('cuda'), async (t) => {
  const rng = new Rng(8);
  const keys = place(tensor(rng.normals(4 * 2048 * 64), [4, 2048, 64]), 'cuda');
  const scores = poisoned([4, 2048], 'f32', 'cuda');
  const p = keydiffScoresAsync(keys, { out: scores });
  // not awaited: the selection must see the scores because the async form already enqueued them on the stream
  const sel = selectTokens(scores, { keep: 300 });
  await p;
  const ref = selectTokens(keydiffScores(keys), { keep: 300 });
  await sameBits(t, sel, ref, 'selection enqueued right after keydiffScoresAsync');
});
