/**
 * The fuzzer's targets: one valid call per exported function of lib/index.ts (and, as `native.*`, the addon's own
 * exports, which reach the C ABI with raw descriptors no TypeScript check has seen). A target builds its arguments
 * through the Builder (mutator.ts), giving for each number the predicate "may this value be valid?" from the
 * documented ranges, so that a mutation that must fail is known.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as kv from '../../lib/index';
import { native } from '../../lib/binding';
import type { DType } from '../../lib/tensor';
import { Builder, TensorSpec } from './mutator';

export interface Target {
  /** 'a / b / c': the exports it calls (lib/index.ts; 'native.x / y': the addon's), unless `covers` lists them. */
  name: string;
  /** The exports it calls, when its name does not list them. */
  covers?: string[];
  /** Relative frequency (default 1). */
  weight?: number;
  /** Builds the arguments and returns the call. */
  build(b: Builder): () => unknown;
}

import { isInt, int, num, opt, bool, F32_MAX, I32, FLOATS, indexRows } from './preds';
import { batchTargets, nativeBatchTargets, nativeCall } from './batch-targets';

/** A small KV layer: H heads, N tokens, head dims d / dv, one float dtype. */
function layer(b: Builder) {
  const H = b.int(1, 3), N = b.int(2, 40), d = b.int(1, 8), dv = b.int(1, 8);
  const dtype = FLOATS[b.int(0, 2)];
  return { H, N, d, dv, dtype };
}

function keysSpec(dtype: DType, shape: number[], extra: Partial<TensorSpec> = {}): TensorSpec {
  return { dtype, shape, dtypes: FLOATS, ...extra };
}

/** A valid moment state for H heads (n > 0 counts, random means, co-moment), four separate tensors. */
function moments(b: Builder, prefix: string, H: number, d: number, dv: number, role: 'in' | 'out' = 'out') {
  return {
    n: b.tensor(`${prefix}.n`, { dtype: 'f32', shape: [H], role, fill: () => b.int(0, 5) }),
    muK: b.tensor(`${prefix}.muK`, { dtype: 'f32', shape: [H, d], role }),
    muV: b.tensor(`${prefix}.muV`, { dtype: 'f32', shape: [H, dv], role }),
    m: b.tensor(`${prefix}.m`, { dtype: 'f32', shape: [H, dv, d], role }),
  } as never;
}

/** A small temporary dump directory (one per process), for loadDump. */
let dumpDir: string | undefined;
function dump(): string {
  if (!dumpDir) {
    dumpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-fuzz-'));
    const tr = kv.generateTrace({ tokens: 96, layers: 1, kvHeads: 1, groupSize: 1, headDim: 16, window: 8, heldOut: 2, needles: 1, segments: 2 });
    kv.saveTraceAsDump(tr, path.join(dumpDir, 'npy'));
    kv.saveTraceAsDump(tr, path.join(dumpDir, 'd.safetensors'));
  }
  return dumpDir;
}
process.on('exit', () => {
  if (dumpDir) fs.rmSync(dumpDir, { recursive: true, force: true });
});

/** A corruption of a file's bytes (chosen while building): none, truncation, extension or a few flipped bytes. */
function corruption(b: Builder, name: string): (buf: Uint8Array) => Uint8Array {
  const on = b.num(name, 0, () => true) !== 0;
  const kind = b.int(0, 2), cut = b.uniform(), extra = b.int(1, 64);
  const flips = Array.from({ length: b.int(1, 8) }, () => [b.uniform(), b.int(0, 255)] as const);
  return (buf) => {
    if (!on) return buf;
    if (kind === 0) return buf.subarray(0, Math.floor(cut * buf.length));
    if (kind === 1) {
      const e = new Uint8Array(buf.length + extra);
      e.set(buf);
      return e;
    }
    const out = Uint8Array.from(buf);
    for (const [at, v] of flips) if (out.length) out[Math.floor(at * out.length)] = v;
    return out;
  };
}

export const targets: Target[] = [
  // ---------------- tensors and memory ----------------
  {
    name: 'tensor',
    covers: ['tensor', 'Tensor'],
    build(b) {
      const n = b.int(1, 30);
      const data = b.num('data', new Float32Array(n + 2), (v) => v instanceof Float32Array);
      const A = b.int(1, n);
      const shape = [b.num('shape[0]', A, int(0, I32)), b.num('shape[1]', Math.floor(n / A), int(0, I32))];
      const o = b.options('options', { strides: [b.num('strides[0]', Math.floor(n / A), int(-(2 ** 40), 2 ** 40)), b.num('strides[1]', 1, int(-(2 ** 40), 2 ** 40))], offset: b.num('offset', 0, opt(int(0, Number.MAX_SAFE_INTEGER))) });
      return () => kv.tensor(data as Float32Array, shape as number[], o as never);
    },
  },
  {
    name: 'empty',
    build(b) {
      const shape = [b.num('shape[0]', b.int(0, 4), int(0, 1 << 20)), b.num('shape[1]', b.int(0, 4), int(0, 1 << 20))];
      const dtype = b.choice('dtype', 'f32', ['f32', 'f16', 'bf16', 'i32'], false);
      return () => kv.empty(shape as number[], dtype as DType);
    },
  },
  {
    name: 'fillBytes',
    build(b) {
      const t = b.tensor('tensor', { dtype: 'f32', shape: [b.int(0, 5)], role: 'out', ranks: [0, 1, 2, 3, 4], dtypes: ['f32', 'f16', 'bf16', 'i32'], flexible: true });
      const byte = b.num('byte', b.int(0, 255), int(0, 255));
      return () => kv.fillBytes(t as kv.Tensor, byte as number);
    },
  },
  {
    name: 'dtypeSize',
    build(b) {
      const d = b.choice('dtype', 'f16', ['f32', 'f16', 'bf16', 'i32'], false);
      return () => kv.dtypeSize(d as DType);
    },
  },
  {
    name: 'half conversions',
    covers: ['f32ToBf16', 'f32ToF16', 'bf16ToF32', 'f16ToF32'],
    build(b) {
      const x = b.num('x', b.normal(), () => true);
      const bits = b.num('bits', b.int(0, 65535), () => true);
      return () => [kv.f32ToBf16(x as number), kv.f32ToF16(x as number), kv.bf16ToF32(bits as number), kv.f16ToF32(bits as number)];
    },
  },
  {
    name: 'toDevice / toHost',
    build(b) {
      const t = b.tensor('tensor', { dtype: 'f32', shape: [2, b.int(1, 4)] });
      return async () => {
        await kv.toHost(t as kv.Tensor);
        return kv.toDevice(t as kv.Tensor);  // without a GPU: ERR_KVTRIM_NO_CUDA
      };
    },
  },
  {
    name: 'DeviceBuffer / Stream / Event / deviceSynchronize',
    build(b) {
      const bytes = b.num('bytes', 16, int(0, Number.MAX_SAFE_INTEGER));
      const ptr = b.num('ptr', 4096n, (v) => typeof v === 'bigint');
      const which = b.int(0, 4);
      return () => {
        if (which === 0) return kv.DeviceBuffer.alloc(bytes as number);
        if (which === 1) return kv.DeviceBuffer.wrap(ptr as bigint, bytes as number);
        if (which === 2) return kv.Stream.wrap(ptr as bigint);
        if (which === 3) return kv.Event.create();
        return kv.deviceSynchronize(bytes as number);
      };
    },
  },
  { name: 'backendInfo / featureTable', weight: 0.2, build: () => () => [kv.backendInfo(), kv.featureTable()] },

  // ---------------- ops ----------------
  {
    name: 'keydiffScores / keydiffScoresAsync',
    build(b) {
      const { H, N, d, dtype } = layer(b);
      const keys = b.tensor('keys', keysSpec(dtype, [H, N, d]));
      const out = b.int(0, 1) ? b.tensor('out', { dtype: 'f32', shape: [H, N], role: 'out', optional: true }) : undefined;
      const o = b.options('options', { ...(out !== undefined ? { out } : {}) });
      return twin(b, kv.keydiffScores, kv.keydiffScoresAsync, keys as never, o as never);
    },
  },
  {
    name: 'selectTokens / selectTokensAsync',
    build(b) {
      const H = b.int(1, 3), N = b.int(1, 40);
      const scores = b.tensor('scores', { dtype: 'f32', shape: [H, N] });
      const useRatio = b.int(0, 1) === 1;
      const budget = ['uniform', 'adaptive'][b.int(0, 1)];
      const keep = b.int(1, N);
      const fields: Record<string, unknown> = useRatio
        ? { ratio: b.num('ratio', b.uniform() * 0.99, num(0, 1, { hi: true })) }
        : { keep: b.num('keep', keep, int(1, N)) };
      fields.budget = b.choice('budget', budget, ['uniform', 'adaptive']);
      fields.safeguard = b.num('safeguard', 0.2, opt(num(0, 1)));
      fields.sinks = b.num('sinks', b.int(0, 4), opt(int(0, I32)));
      fields.recent = b.num('recent', b.int(0, 4), opt(int(0, I32)));
      if (!useRatio && b.int(0, 1)) {
        const cap = kv.selectCapacity(H, N, { keep, budget: budget as never });
        fields.indices = b.tensor('indices', { dtype: 'i32', shape: [H, cap], role: 'out', optional: true, flexible: true });
        fields.counts = b.tensor('counts', { dtype: 'i32', shape: [H], role: 'out', optional: true });
      }
      const o = b.options('options', fields, false);
      return twin(b, kv.selectTokens, kv.selectTokensAsync, scores as never, o as never);
    },
  },
  {
    name: 'selectCapacity / keepFromRatio',
    build(b) {
      const H = b.num('H', b.int(1, 8), int(0, I32)), N = b.num('N', b.int(1, 100), int(0, I32));
      const keep = b.num('keep', 1, int(1, I32));
      const ratio = b.num('ratio', 0.5, num(0, 1, { hi: true }));
      const o = b.options('options', { keep, budget: b.choice('budget', 'adaptive', ['uniform', 'adaptive']) }, false);
      return () => [kv.selectCapacity(H as number, N as number, o as never), kv.keepFromRatio(N as number, ratio as number)];
    },
  },
  {
    name: 'gatherKV / gatherKVAsync',
    build(b) {
      const { H, N, d, dv, dtype } = layer(b);
      const cap = b.int(1, N);
      const counts = Array.from({ length: H }, () => b.int(0, cap));
      const args: Record<string, unknown> = {
        keys: b.tensor('keys', keysSpec(dtype, [H, N, d])),
        values: b.tensor('values', keysSpec(FLOATS[b.int(0, 2)], [H, N, dv])),
        indices: b.tensor('indices', { dtype: 'i32', shape: [H, cap], fill: indexRows(b, H, N, cap, counts), check: { kind: 'ascending', range: N, counts } }),
        counts: b.tensor('counts', { dtype: 'i32', shape: [H], fill: counts, check: { kind: 'count', range: cap } }),
      };
      if (b.int(0, 2) === 0) args.moments = moments(b, 'moments', H, d, dv);
      if (b.int(0, 2) === 0) args.cap = b.num('cap', cap, opt(int(1, I32)));
      if (b.int(0, 2) === 0) {
        args.keysOut = b.tensor('keysOut', { dtype, shape: [H, cap, d], role: 'out', optional: true });
        args.countsOut = b.tensor('countsOut', { dtype: 'i32', shape: [H], role: 'out', optional: true });
      }
      const a = b.options('args', args, false);
      return twin(b, kv.gatherKV, kv.gatherKVAsync, a as never);
    },
  },
  {
    name: 'nestedkvScores / nestedkvScoresAsync',
    build(b) {
      const { H, N, d, dtype } = layer(b);
      const keys = b.tensor('keys', keysSpec(dtype, [H, N, d]));
      const o = b.options('options', {
        window: b.num('window', b.int(1, 70), opt(int(1, I32))),
        block: b.num('block', b.int(1, 50), opt(int(1, I32))),
        prior: b.num('prior', [0.4, 0.4, 0.2], (v) => v === undefined || (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && x >= 0 && x < Infinity) && v.some((x) => x > 0))),
        beta: b.num('beta', 3, opt(num(-F32_MAX, F32_MAX))),
        tau: b.num('tau', 0.6, opt(num(-F32_MAX, F32_MAX))),
        kappa: b.num('kappa', 10, opt(num(-F32_MAX, F32_MAX))),
        tail: b.num('tail', 0.1, opt(num(0, 1))),
        sinks: b.num('sinks', b.int(0, 6), opt(int(0, I32))),
        scales: b.choice('scales', ['all', 'global'][b.int(0, 1)], ['all', 'global']),
        ...(b.int(0, 2) === 0 ? { out: b.tensor('out', { dtype: 'f32', shape: [H, N], role: 'out', optional: true }) } : {}),
      });
      return twin(b, kv.nestedkvScores, kv.nestedkvScoresAsync, keys as never, o as never);
    },
  },
  {
    name: 'nestedkvBlockSize',
    build(b) {
      const N = b.num('N', b.int(0, 100000), int(0, I32));
      return () => kv.nestedkvBlockSize(N as number);
    },
  },
  {
    name: 'snapkvScores / snapkvScoresAsync',
    build(b) {
      const Hkv = b.int(1, 2), G = b.int(1, 3), N = b.int(3, 40), d = b.int(1, 8), Wq = b.int(1, Math.min(8, N - 1));
      const dtype = FLOATS[b.int(0, 2)];
      const queries = b.tensor('queries', keysSpec(FLOATS[b.int(0, 2)], [Hkv * G, Wq, d]));
      const keys = b.tensor('keys', keysSpec(dtype, [Hkv, N, d]));
      const o = b.options('options', {
        window: b.num('window', b.int(1, Wq), opt(int(1, Wq))),
        kernel: b.num('kernel', 2 * b.int(0, 3) + 1, opt((v) => isInt(v) && v >= 1 && v % 2 === 1)),
        pool: b.choice('pool', ['avg', 'max'][b.int(0, 1)], ['avg', 'max']),
        scale: b.num('scale', 0.5, opt((v) => typeof v === 'number' && v !== 0 && Math.abs(v) <= F32_MAX)),
      });
      return twin(b, kv.snapkvScores, kv.snapkvScoresAsync, queries as never, keys as never, o as never);
    },
  },
  {
    name: 'MomentState',
    build(b) {
      const { H, N, d, dv, dtype } = layer(b);
      const which = b.int(0, 3);
      if (which === 0) {
        const Hn = b.num('H', H, int(0, I32)), dn = b.num('d', d, int(1, 1 << 16)), dvn = b.num('dv', dv, int(1, 1 << 16));
        const o = b.options('options', { device: b.num('device', 'cpu', (v) => v === undefined || v === 'cpu') });
        return () => kv.MomentState.create(Hn as number, dn as number, dvn as number, o as never);
      }
      if (which === 1) {
        const parts = moments(b, 'moments', H, d, dv, 'in');
        return () => kv.MomentState.from(parts);
      }
      const st = kv.MomentState.create(H, d, dv);
      if (which === 2) return () => st.reset();
      const cap = b.int(0, N);
      const counts = Array.from({ length: H }, () => b.int(0, cap));
      const keys = b.tensor('keys', keysSpec(dtype, [H, N, d]));
      const values = b.tensor('values', keysSpec(FLOATS[b.int(0, 2)], [H, N, dv]));
      const idx = b.tensor('evictedIndices', { dtype: 'i32', shape: [H, cap], fill: indexRows(b, H, N, cap, counts), check: { kind: 'ascending', range: N, counts } });
      const cnt = b.tensor('counts', { dtype: 'i32', shape: [H], fill: counts, check: { kind: 'count', range: cap } });
      return twin(b, st.merge.bind(st), st.mergeAsync.bind(st), keys as never, values as never, idx as never, cnt as never);
    },
  },
  {
    name: 'decodeAttention / decodeAttentionAsync',
    build(b) {
      const Hkv = b.int(1, 2), G = b.int(1, 3), cap = b.int(1, 20), d = b.int(1, 8), dv = b.int(1, 8), T = b.int(0, 3);
      const dtype = FLOATS[b.int(0, 2)];
      const counts = Array.from({ length: Hkv }, () => b.int(0, cap));
      const args: Record<string, unknown> = {
        queries: b.tensor('queries', { dtype: FLOATS[b.int(0, 2)], shape: T ? [Hkv * G, T, d] : [Hkv * G, d], dtypes: FLOATS, ranks: [2, 3] }),
        keys: b.tensor('keys', { dtype, shape: [Hkv, cap, d], dtypes: FLOATS }),
        values: b.tensor('values', { dtype, shape: [Hkv, cap, dv] }),
        counts: b.tensor('counts', { dtype: 'i32', shape: [Hkv], fill: counts, check: { kind: 'count', range: cap } }),
        order: b.num('order', b.int(0, 1), opt((v) => v === 0 || v === 1)),
      };
      if (b.int(0, 1)) args.moments = moments(b, 'moments', Hkv, d, dv, 'in');
      if (b.int(0, 2) === 0) args.scale = b.num('scale', 0.3, opt(num(0, 1e30, { lo: true, hi: true })));
      const c = b.int(0, 2);
      if (c === 1) args.clip = b.num('clip', 0.5, opt(num(0, Infinity)));
      if (c === 2) args.clip = b.tensor('clip', { dtype: 'f32', shape: [Hkv], fill: 'positive', optional: true, numberOk: true });
      const a = b.options('args', args, false);
      return twin(b, kv.decodeAttention, kv.decodeAttentionAsync, a as never);
    },
  },
  {
    name: 'momentkvSelect / momentkvCompress / momentkvSelectAsync / momentkvCompressAsync',
    build(b) {
      const { H, N, d, dv, dtype } = layer(b);
      const keep = b.int(1, N);
      const args: Record<string, unknown> = {
        scores: b.tensor('scores', { dtype: 'f32', shape: [H, N], fill: (i) => (i % N >= N - 2 ? Infinity : 1 + (i % 7)) }),
        keys: b.tensor('keys', keysSpec(dtype, [H, N, d])),
        values: b.tensor('values', keysSpec(dtype, [H, N, dv])),
        keep: b.num('keep', Math.max(keep, Math.min(N, 2)), int(1, N)),
        rounds: b.num('rounds', b.int(1, 5), opt(int(1, 1 << 20))),
        r: b.num('r', b.int(0, 3), opt(int(0, 8))),
        eps: b.num('eps', 0.05, opt(num(0, 1e30))),
        mi: b.num('mi', b.int(0, 1) === 1, opt(bool)),
      };
      if (b.int(0, 2) === 0) args.moments = moments(b, 'moments', H, d, dv);
      if (b.int(0, 2) === 0) args.evictedRound = b.int(0, 1) ? true : b.tensor('evictedRound', { dtype: 'i32', shape: [H, N], role: 'out', optional: true });
      const compact = b.int(0, 1) === 1;
      const a = b.options('args', args, false);
      return compact ? twin(b, kv.momentkvCompress, kv.momentkvCompressAsync, a as never) : twin(b, kv.momentkvSelect, kv.momentkvSelectAsync, a as never);
    },
  },
  {
    name: 'spdSolve / spdSolveAsync / SpdError',
    build(b) {
      const B = b.int(0, 3), n = b.int(1, 6), r = b.int(0, 3);
      const A = new Float32Array(B * n * n);
      for (let s = 0; s < B; s++) for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) A[(s * n + i) * n + j] = A[(s * n + j) * n + i] = (i === j ? n + 1 : 0) + 0.1 * b.normal();
      const args: Record<string, unknown> = {
        a: b.tensor('a', { dtype: 'f32', shape: [B, n, n], fill: A, ranks: [3] }),
        b: b.tensor('b', { dtype: 'f32', shape: [B, n, r], ranks: [3] }),
        lambda: b.num('lambda', 0.01, opt(num(0, 1e30, { hi: true }))),
        throwOnError: b.num('throwOnError', true, opt(bool)),
      };
      if (b.int(0, 1)) args.out = b.tensor('out', { dtype: 'f32', shape: [B, n, r], role: 'out', inPlaceOf: 'b', optional: true });
      if (b.int(0, 1)) args.info = b.tensor('info', { dtype: 'i32', shape: [B], role: 'out', optional: true });
      const a = b.options('args', args, false);
      const asy = b.int(0, 1) === 1;
      return async () => {
        const s = asy ? await kv.spdSolveAsync(a as never) : kv.spdSolve(a as never);
        await s.check();
        return s;
      };
    },
  },
  {
    name: 'grkvMerge / grkvMergeAsync',
    build(b) {
      const H = b.int(1, 2), G = b.int(1, 2), N = b.int(2, 30), d = b.int(1, 6), dv = b.int(1, 6), Qs = b.int(1, 4);
      const dtype = FLOATS[b.int(0, 2)];
      const cap = b.int(1, N);
      const counts = Array.from({ length: H }, () => b.int(0, cap));
      const args: Record<string, unknown> = {
        keys: b.tensor('keys', keysSpec(dtype, [H, N, d])),
        values: b.tensor('values', { dtype, shape: [H, N, dv] }),
        selection: b.options('selection', {
          indices: b.tensor('selection.indices', { dtype: 'i32', shape: [H, cap], fill: indexRows(b, H, N, cap, counts), check: { kind: 'ascending', range: N, counts } }),
          counts: b.tensor('selection.counts', { dtype: 'i32', shape: [H], fill: counts, check: { kind: 'count', range: cap } }),
        }, false),
        queries: b.tensor('queries', keysSpec(FLOATS[b.int(0, 2)], [H * G, Qs, d])),
        queryPositions: b.tensor('queryPositions', { dtype: 'i32', shape: [Qs], fill: () => b.int(0, N - 1), check: { kind: 'position', range: N } }),
        scores: b.tensor('scores', { dtype: 'f32', shape: [H, N] }),
        window: b.num('window', b.int(0, 8), opt(int(0, I32))),
        gamma: b.num('gamma', 0.1, opt(num(0, 1))),
        lambda: b.num('lambda', 0.01, opt(num(0, 1e30, { lo: true, hi: true }))),
        cgIters: b.num('cgIters', b.int(0, 4), opt(int(0, 100000))),
        acceptance: b.choice('acceptance', 'best', ['best', 'joint']),
        diagnostics: b.num('diagnostics', b.int(0, 1) === 1, opt(bool)),
      };
      if (b.int(0, 1)) args.weights = b.int(0, 1) ? b.num('weights', 1, opt(num(0, F32_MAX))) : b.tensor('weights', { dtype: 'f32', shape: [Qs], fill: 'positive', optional: true });
      if (b.int(0, 2) === 0) args.caps = b.options('caps', { key: b.num('caps.key', 0.025, opt(num(0, Infinity))), value: b.num('caps.value', 0.1, opt(num(0, Infinity))) });
      const a = b.options('args', args, false);
      return twin(b, kv.grkvMerge, kv.grkvMergeAsync, a as never);
    },
  },
  {
    name: 'grkvSurrogates / decodeGrkvDiagnostics',
    build(b) {
      const N = b.num('N', b.int(1, 100), int(1, 2 ** 31 - 2));
      const o = b.options('options', { source: b.choice('source', ['window', 'stratified'][b.int(0, 1)], ['window', 'stratified'], false), count: b.num('count', b.int(1, 40), opt(int(1, I32))) }, false);
      const diag = b.tensor('diagnostics', { dtype: 'f32', shape: [b.int(0, 3), 14], fill: () => b.int(0, 3) });
      return async () => [kv.grkvSurrogates(N as number, o as never), await kv.decodeGrkvDiagnostics(diag as never)];
    },
  },

  // ---------------- pipeline, metrics, I/O ----------------
  {
    name: 'compress / compressCache / methodScores / compressAsync / compressCacheAsync / methodScoresAsync',
    weight: 2,
    build(b) {
      const which = b.int(0, 2);  // compress, compressCache, methodScores (which needs no ratio / keep)
      const H = b.int(1, 2), G = b.int(1, 2), N = b.int(8, 40), d = b.int(2, 8), W = b.int(1, 6);
      const dtype = FLOATS[b.int(0, 2)];
      const method = ['keydiff', 'nestedkv', 'snapkv', 'momentkv'][b.int(0, 3)];
      const merge = method !== 'momentkv' && b.int(0, 3) === 0 ? 'grkv' : undefined;
      const pre = b.int(0, 4) === 0;  // precomputed scores (then no scoring options, and scoring needs no queries)
      const needQ = ((method === 'snapkv' || method === 'momentkv') && !pre) || merge !== undefined;
      const input: Record<string, unknown> = {
        keys: b.tensor('keys', keysSpec(dtype, [H, N, d])),
        values: b.tensor('values', keysSpec(dtype, [H, N, d])),
        ...(method === 'snapkv' || method === 'momentkv' || merge || b.int(0, 1)
          ? { queries: b.tensor('queries', keysSpec(dtype, [H * G, W, d], { optional: !needQ })) }
          : {}),
      };
      const options: Record<string, unknown> = {
        method: b.choice('method', method, ['keydiff', 'nestedkv', 'snapkv', 'momentkv'], false),
        ...(b.int(0, 1)
          ? { ratio: b.num('ratio', 0.5, which === 2 ? opt(num(0, 1, { hi: true })) : num(0, 1, { hi: true })) }
          : { keep: b.num('keep', b.int(1, N), which === 2 ? opt(int(1, N)) : int(1, N)) }),
      };
      if (merge) options.merge = b.choice('merge', merge, ['grkv']);
      if (b.int(0, 3) === 0 && method !== 'momentkv') options.correction = b.choice('correction', 'moment', ['moment']);
      if (b.int(0, 3) === 0 && method !== 'momentkv') options.sinks = b.num('sinks', b.int(0, 4), opt(int(0, N)));
      if (b.int(0, 3) === 0 && method !== 'momentkv') options.recent = b.num('recent', b.int(0, 4), opt(int(0, N)));
      if (pre) options.scores = b.tensor('scores', { dtype: 'f32', shape: [H, N], optional: true });
      if (!pre && b.int(0, 3) === 0 && method === 'nestedkv') options.nestedkv = b.options('nestedkv', { window: b.num('nestedkv.window', 16, opt(int(1, I32))) });
      if (!pre && b.int(0, 3) === 0 && method === 'snapkv') options.snapkv = b.options('snapkv', { kernel: b.num('snapkv.kernel', 3, opt((v) => isInt(v) && v >= 1 && v % 2 === 1)) });
      if (!pre && b.int(0, 3) === 0 && method === 'momentkv') options.momentkv = b.options('momentkv', { rounds: b.num('momentkv.rounds', 2, opt(int(1, 1 << 20))) });
      if (merge && b.int(0, 2) === 0) options.grkv = b.options('grkv', { lambda: b.num('grkv.lambda', 0.01, opt(num(0, 1e30, { lo: true, hi: true }))), source: b.choice('grkv.source', 'window', ['window']) });
      const inp = b.options('input', input, false);
      const o = b.options('options', options, false);
      return which === 0 ? twin(b, kv.compress, kv.compressAsync, inp as never, o as never) :
        which === 1 ? twin(b, kv.compressCache, kv.compressCacheAsync, [inp] as never, o as never) : twin(b, kv.methodScores, kv.methodScoresAsync, inp as never, o as never);
    },
  },
  {
    name: 'attentionError',
    build(b) {
      const H = b.int(1, 2), G = b.int(1, 2), N = b.int(4, 30), d = b.int(1, 6), dv = b.int(1, 6), T = b.int(1, 3);
      const cap = b.int(1, N);
      const counts = Array.from({ length: H }, () => b.int(0, cap));
      const args: Record<string, unknown> = {
        queries: b.tensor('queries', { dtype: 'f32', shape: [H * G, T, d], dtypes: FLOATS, ranks: [2, 3] }),
        keys: b.tensor('keys', keysSpec('f32', [H, N, d])),
        values: b.tensor('values', keysSpec('f32', [H, N, dv])),
        compressed: b.options('compressed', {
          keys: b.tensor('compressed.keys', keysSpec('f32', [H, cap, d])),
          values: b.tensor('compressed.values', keysSpec('f32', [H, cap, dv])),
          counts: b.tensor('compressed.counts', { dtype: 'i32', shape: [H], fill: counts, check: { kind: 'count', range: cap } }),
        }, false, false),
        order: b.num('order', 1, opt((v) => v === 0 || v === 1)),
      };
      if (b.int(0, 1)) args.reference = b.tensor('reference', { dtype: 'f32', shape: [H * G, T, dv], optional: true });
      const a = b.options('args', args, false);
      return () => kv.attentionError(a as never);
    },
  },
  {
    name: 'loadDump',
    weight: 0.5,
    build(b) {
      const dir = dump();
      const p = b.num('path', path.join(dir, ['npy', 'd.safetensors'][b.int(0, 1)]), (v) => typeof v === 'string');
      const o = b.options('options', {
        layout: b.choice('layout', 'hnd', ['hnd', 'nhd']),
        u16: b.choice('u16', 'bf16', ['bf16', 'f16']),
        allowNonFinite: b.num('allowNonFinite', false, opt(bool)),
        queries: b.choice('queries', 'last', ['last', 'all-positions']),
      });
      return () => kv.loadDump(p as string, o as never);
    },
  },
  {
    name: 'readNpy / writeNpy',
    build(b) {
      const n = b.int(0, 12);
      const data = Float32Array.from({ length: n }, () => b.normal());
      const shape = b.num('shape', [n], (v) => Array.isArray(v) && v.every((x) => isInt(x) && x >= 0));
      const corrupt = corruption(b, 'fuzz');
      return () => kv.readNpy(corrupt(kv.writeNpy(data, shape as number[])), { source: 'fuzz' });
    },
  },
  {
    name: 'readSafetensors / writeSafetensors',
    build(b) {
      const n = b.int(0, 12);
      const data = Float32Array.from({ length: n }, () => b.normal());
      const shape = b.num('shape', [n], (v) => Array.isArray(v) && v.every((x) => isInt(x) && x >= 0));
      const corrupt = corruption(b, 'fuzz');
      return () => kv.readSafetensors(corrupt(kv.writeSafetensors(new Map([['t', { shape: shape as number[], data }]]))), 'fuzz');
    },
  },
  {
    name: 'generateTrace / applyRope / saveTraceAsDump',
    weight: 0.3,
    build(b) {
      const o = b.options('options', {
        tokens: b.num('tokens', 96, opt(int(72, 1 << 22))),
        layers: b.num('layers', 1, opt(int(1, 64))),
        kvHeads: b.num('kvHeads', 1, opt(int(1, 64))),
        groupSize: 1, headDim: b.num('headDim', 16, opt((v) => isInt(v) && v >= 16 && v <= 4096 && v % 2 === 0)), window: 8, heldOut: 2, needles: 1, segments: 2,
      });
      const rows = b.num('rows', 4, int(0, 1 << 20)), dd = b.num('d', 4, int(2, 1 << 20));
      const x = new Float32Array(16);  // applyRope rotates the whole array in place
      return () => {
        const tr = kv.generateTrace(o as never);
        kv.applyRope(x, rows as number, dd as number, [1, 2]);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-fuzz-save-'));
        try {
          return kv.saveTraceAsDump(tr, path.join(dir, 'x.safetensors'));
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      };
    },
  },
  {
    name: 'runEval / runBench / runChecks',
    weight: 0.1,
    build(b) {
      const which = b.int(0, 2);
      // without options (omitted, or its fields only inherited) runEval and runBench run the whole default job: minutes
      // of a correct call, which the per-call timeout would report as a hang; such a call is not made
      const defaults = (o: unknown) => o === undefined || (o !== null && typeof o === 'object' && !Array.isArray(o) && Object.keys(o).length === 0 && Object.getPrototypeOf(o) !== Object.prototype);
      if (which === 0) {
        const o = b.options('options', {
          trace: { tokens: 128, layers: 1, kvHeads: 1, groupSize: 1, headDim: 16, window: 8, heldOut: 2, needles: 1, segments: 2 },
          ratios: b.num('ratios', [0.5], (v) => Array.isArray(v)),
          configs: b.num('configs', ['keydiff'], (v) => Array.isArray(v)),
        });
        return defaults(o) ? () => undefined : () => kv.runEval(o as never);
      }
      if (which === 1) {
        const o = b.options('options', { H: 1, d: 8, N: [256], repeats: b.num('repeats', 1, opt(int(1, 1000))), warmup: 0, filter: 'keydiff' });
        return defaults(o) ? () => undefined : () => kv.runBench(o as never);
      }
      return () => kv.runChecks({ filter: 'keydiff' });  // no GPU: an error that says so
    },
  },
];

// ---------------- the addon's exports, with raw descriptors (what a caller of the binding could pass) ----------------
const raw = (b: Builder, name: string, spec: TensorSpec): unknown => b.raw(name, spec);

export const nativeTargets: Target[] = [
  {
    name: 'native.keydiffScores / keydiffScoresAsync',
    build(b) {
      const { H, N, d, dtype } = layer(b);
      const k = raw(b, 'keys', keysSpec(dtype, [H, N, d]));
      const o = raw(b, 'out', { dtype: 'f32', shape: [H, N], role: 'out' });
      return nativeTwin(b, 'keydiffScores', [k, o]);
    },
  },
  {
    name: 'native.selectTokens / selectCapacity / selectTokensAsync',
    build(b) {
      const H = b.int(1, 3), N = b.int(1, 30), keep = b.int(1, N);
      const s = raw(b, 'scores', { dtype: 'f32', shape: [H, N] });
      const o = b.options('opts', {
        keep: b.num('keep', keep, opt(int(1, N))), budget: b.num('budget', 0, opt(int(0, 1))), safeguard: b.num('safeguard', 0.2, opt(num(0, 1))),
        sinks: b.num('sinks', 1, opt(int(0, I32))), recent: b.num('recent', 1, opt(int(0, I32))),
      }, false, false);
      const idx = raw(b, 'indices', { dtype: 'i32', shape: [H, N], role: 'out', flexible: true });
      const cnt = raw(b, 'counts', { dtype: 'i32', shape: [H], role: 'out' });
      const Hc = b.num('H', H, int(-(2 ** 53), 2 ** 53));
      const sel = nativeTwin(b, 'selectTokens', [s, o, idx, cnt]);
      return async () => [await sel(), native.selectCapacity(Hc as never, N, o as never)];
    },
  },
  {
    name: 'native.gatherKV / gatherKVAsync',
    build(b) {
      const { H, N, d, dv, dtype } = layer(b);
      const cap = b.int(1, N);
      const counts = Array.from({ length: H }, () => b.int(0, cap));
      const args = [
        raw(b, 'keys', keysSpec(dtype, [H, N, d])), raw(b, 'values', keysSpec(dtype, [H, N, dv])),
        raw(b, 'indices', { dtype: 'i32', shape: [H, cap], fill: indexRows(b, H, N, cap, counts), check: { kind: 'ascending', range: N, counts } }),
        raw(b, 'counts', { dtype: 'i32', shape: [H], fill: counts, check: { kind: 'count', range: cap } }),
        raw(b, 'keysOut', { dtype, shape: [H, cap, d], role: 'out' }), raw(b, 'valuesOut', { dtype, shape: [H, cap, dv], role: 'out' }),
        raw(b, 'countsOut', { dtype: 'i32', shape: [H], role: 'out' }),
        b.int(0, 1) ? {
          n: raw(b, 'moments.n', { dtype: 'f32', shape: [H], role: 'out', fill: 'zero' }), muK: raw(b, 'moments.muK', { dtype: 'f32', shape: [H, d], role: 'out' }),
          muV: raw(b, 'moments.muV', { dtype: 'f32', shape: [H, dv], role: 'out' }), m: raw(b, 'moments.m', { dtype: 'f32', shape: [H, dv, d], role: 'out' }),
        } : undefined,
      ];
      return nativeTwin(b, 'gatherKV', args);
    },
  },
  {
    name: 'native.nestedkvScores / nestedkvBlockSize / nestedkvScoresAsync',
    build(b) {
      const { H, N, d, dtype } = layer(b);
      const k = raw(b, 'keys', keysSpec(dtype, [H, N, d]));
      const o = b.options('opts', {
        window: b.num('window', 8, opt(int(1, I32))), block: b.num('block', 0, opt(int(0, I32))), prior: [0.4, 0.4, 0.2],
        beta: b.num('beta', 3, opt(num(-F32_MAX, F32_MAX))), tau: 0.6, kappa: b.num('kappa', 10, opt(num(-F32_MAX, F32_MAX))),
        tail: b.num('tail', 0.1, opt(num(0, 1))), sinks: b.num('sinks', 4, opt(int(0, I32))), scales: b.num('scales', 0, opt(int(0, 1))),
      }, false, false);
      const out = raw(b, 'out', { dtype: 'f32', shape: [H, N], role: 'out' });
      const Nb = b.num('N', N, int(-(2 ** 53), 2 ** 53));
      const sc = nativeTwin(b, 'nestedkvScores', [k, o, out]);
      return async () => [await sc(), native.nestedkvBlockSize(Nb as number)];
    },
  },
  {
    name: 'native.snapkvScores / snapkvScoresAsync',
    build(b) {
      const Hkv = b.int(1, 2), G = b.int(1, 2), N = b.int(3, 30), d = b.int(1, 8), W = b.int(1, Math.min(6, N - 1));
      const q = raw(b, 'queries', keysSpec('f32', [Hkv * G, W, d]));
      const k = raw(b, 'keys', keysSpec('bf16', [Hkv, N, d]));
      const o = b.options('opts', { window: b.num('window', 0, opt(int(0, W))), kernel: b.num('kernel', 3, opt((v) => isInt(v) && v >= 1 && v % 2 === 1)), pool: b.num('pool', 0, opt(int(0, 1))), scale: b.num('scale', 0, opt(num(-F32_MAX, F32_MAX))) }, false, false);
      const out = raw(b, 'out', { dtype: 'f32', shape: [Hkv, N], role: 'out' });
      return nativeTwin(b, 'snapkvScores', [q, k, o, out]);
    },
  },
  {
    name: 'native.momentsMerge / decodeAttention / momentsMergeAsync / decodeAttentionAsync',
    build(b) {
      const H = b.int(1, 2), N = b.int(1, 20), d = b.int(1, 6), dv = b.int(1, 6);
      const cap = b.int(0, N);
      const counts = Array.from({ length: H }, () => b.int(0, cap));
      const st = {
        n: raw(b, 'moments.n', { dtype: 'f32', shape: [H], role: 'out', fill: () => 2 }), muK: raw(b, 'moments.muK', { dtype: 'f32', shape: [H, d], role: 'out' }),
        muV: raw(b, 'moments.muV', { dtype: 'f32', shape: [H, dv], role: 'out' }), m: raw(b, 'moments.m', { dtype: 'f32', shape: [H, dv, d], role: 'out' }),
      };
      const k = raw(b, 'keys', keysSpec('f32', [H, N, d])), v = raw(b, 'values', keysSpec('f32', [H, N, dv]));
      if (b.int(0, 1)) {
        const idx = raw(b, 'evictedIndices', { dtype: 'i32', shape: [H, cap], fill: indexRows(b, H, N, cap, counts), check: { kind: 'ascending', range: N, counts } });
        const cnt = raw(b, 'counts', { dtype: 'i32', shape: [H], fill: counts, check: { kind: 'count', range: cap } });
        return nativeTwin(b, 'momentsMerge', [k, v, idx, cnt, st]);
      }
      const q = raw(b, 'queries', keysSpec('f32', [H, 2, d], { ranks: [2, 3] }));
      const cnt = raw(b, 'counts', { dtype: 'i32', shape: [H], fill: () => b.int(0, N), check: { kind: 'count', range: N } });
      const o = b.options('opts', { order: b.num('order', 1, opt(int(0, 1))), scale: b.num('scale', 0, opt(num(0, 1e30, { hi: true }))), useClip: b.num('useClip', 0, opt(int(-I32, I32))), clip: b.num('clip', 1, () => true) }, false, false);
      const out = raw(b, 'out', { dtype: 'f32', shape: [H, 2, dv], role: 'out', ranks: [2, 3] });
      return nativeTwin(b, 'decodeAttention', [q, k, v, cnt, st, undefined, o, out]);
    },
  },
  {
    name: 'native.momentkvSelect / momentkvSelectAsync',
    build(b) {
      const H = b.int(1, 2), N = b.int(2, 24), d = b.int(1, 6), dv = b.int(1, 6), keep = b.int(1, N);
      const s = raw(b, 'scores', { dtype: 'f32', shape: [H, N], fill: 'positive' });
      const k = raw(b, 'keys', keysSpec('f32', [H, N, d])), v = raw(b, 'values', keysSpec('f16', [H, N, dv]));
      const o = b.options('opts', { keep: b.num('keep', keep, opt(int(1, N))), rounds: b.num('rounds', 3, opt(int(1, 1 << 20))), r: b.num('r', 1, opt(int(0, 8))), mi: b.num('mi', 1, opt(int(0, 1))), eps: b.num('eps', 0.05, opt(num(0, 1e30))) }, false, false);
      const idx = raw(b, 'indices', { dtype: 'i32', shape: [H, keep], role: 'out' }), cnt = raw(b, 'counts', { dtype: 'i32', shape: [H], role: 'out' });
      const st = {
        n: raw(b, 'moments.n', { dtype: 'f32', shape: [H], role: 'out', fill: 'zero' }), muK: raw(b, 'moments.muK', { dtype: 'f32', shape: [H, d], role: 'out' }),
        muV: raw(b, 'moments.muV', { dtype: 'f32', shape: [H, dv], role: 'out' }), m: raw(b, 'moments.m', { dtype: 'f32', shape: [H, dv, d], role: 'out' }),
      };
      return nativeTwin(b, 'momentkvSelect', [s, k, v, o, idx, cnt, st, undefined]);
    },
  },
  {
    name: 'native.spdSolve / spdSolveAsync',
    build(b) {
      const B = b.int(1, 3), n = b.int(1, 5), r = b.int(1, 3);
      const A = new Float32Array(B * n * n);
      for (let s = 0; s < B; s++) for (let i = 0; i < n; i++) A[(s * n + i) * n + i] = n;
      const a = raw(b, 'a', { dtype: 'f32', shape: [B, n, n], fill: A }), bb = raw(b, 'b', { dtype: 'f32', shape: [B, n, r] });
      const x = raw(b, 'out', { dtype: 'f32', shape: [B, n, r], role: 'out', inPlaceOf: 'b' }), info = raw(b, 'info', { dtype: 'i32', shape: [B], role: 'out', optional: true });
      const o = b.options('opts', { lambda: b.num('lambda', 0, opt(num(0, 1e30, { hi: true }))), check: b.num('check', 1, opt(int(-I32, I32))) }, false, false);
      return nativeTwin(b, 'spdSolve', [a, bb, x, info, o]);
    },
  },
  {
    name: 'native.grkvMerge / grkvMergeAsync',
    build(b) {
      const H = 1, G = b.int(1, 2), N = b.int(2, 16), d = b.int(1, 4), Qs = b.int(1, 3), cap = b.int(1, N);
      const counts = [b.int(0, cap)];
      const args = [
        raw(b, 'keys', keysSpec('f32', [H, N, d])), raw(b, 'values', keysSpec('f32', [H, N, d])),
        raw(b, 'indices', { dtype: 'i32', shape: [H, cap], fill: indexRows(b, H, N, cap, counts), check: { kind: 'ascending', range: N, counts } }),
        raw(b, 'counts', { dtype: 'i32', shape: [H], fill: counts, check: { kind: 'count', range: cap } }),
        raw(b, 'queries', keysSpec('f32', [G, Qs, d])),
        raw(b, 'queryPositions', { dtype: 'i32', shape: [Qs], fill: () => N - 1, check: { kind: 'position', range: N } }),
        undefined, raw(b, 'scores', { dtype: 'f32', shape: [H, N] }),
        b.options('opts', { window: 4, gamma: 0.1, lambda: b.num('lambda', 0.01, opt(num(0, 1e30, { lo: true, hi: true }))), capKey: 0.025, capValue: 0.1, cgIters: b.num('cgIters', 2, opt(int(0, 100000))), tol: 1e-6, scale: 0, accept: b.num('accept', 0, opt(int(0, 1))) }, false, false),
        raw(b, 'keysOut', { dtype: 'f32', shape: [H, cap, d], role: 'out' }), raw(b, 'valuesOut', { dtype: 'f32', shape: [H, cap, d], role: 'out' }),
        raw(b, 'countsOut', { dtype: 'i32', shape: [H], role: 'out' }), undefined,
      ];
      return nativeTwin(b, 'grkvMerge', args);
    },
  },
  {
    name: 'native.hostCopy / fillBytes / copyToDevice',
    build(b) {
      // plain arrays (hostCopy writes the whole destination array): not watched
      const dst = b.num('dst', new Float32Array(b.int(0, 8)), (v) => v instanceof Float32Array);
      const src = b.num('src', new Float32Array(b.int(0, 8)), (v) => v instanceof Float32Array);
      const which = b.int(0, 2);
      return () => {
        if (which === 0) return native.hostCopy(dst as never, src as never);
        if (which === 1) return native.fillBytes(dst as never, 0, 1, 4);  // device buffers only: no CUDA -> error
        return native.copyToDevice(dst as never, 0, src as never, 0, 4);
      };
    },
  },
];

/** Device memory, streams and events of the addon (CPU builds: every call is ERR_KVTRIM_NO_CUDA; the handles are trusted). */
nativeTargets.push(
  {
    name: 'native.fmaPeak',
    weight: 0.05,
    build(b) {
      // no arguments: extra ones are ignored
      const extra = b.num('extra', undefined, () => true);
      return () => (native.fmaPeak as (...a: unknown[]) => number)(extra);
    },
  },
  {
    name: 'native.init / defaultOptions',
    weight: 0.2,
    build(b) {
      const o = b.num('opts', { cuda: false }, () => true);  // `cuda` is read as a boolean when opts is an object: any value is accepted
      return () => [native.init(o as never), native.defaultOptions()];
    },
  },
  {
    name: 'native.NativeBuffer / streamCreate / streamDestroy / streamSynchronize / eventCreate / eventRecord / eventElapsed / eventDestroy / copyToHost / copyDevice / deviceSynchronize',
    weight: 0.3,
    build(b) {
      const which = b.int(0, 10);
      const dev = b.num('device', 0, () => true), bytes = b.num('bytes', 16, () => true);
      const host = new Float32Array(4);
      const n = native as unknown as Record<string, (...a: unknown[]) => unknown> & { NativeBuffer: new (...a: unknown[]) => unknown };
      return () => {
        switch (which) {
          case 0: return new n.NativeBuffer('alloc', bytes, dev);
          case 1: return n.streamCreate(dev);
          case 2: return n.streamDestroy(undefined);
          case 3: return n.streamSynchronize(undefined, dev);
          case 4: return n.eventCreate(dev);
          case 5: return n.eventRecord(0n, undefined);
          case 6: return n.eventElapsed(0n, 0n);
          case 7: return n.eventDestroy(0n);
          case 8: return n.copyToHost(host, 0, undefined, 0, bytes);
          case 9: return n.copyDevice(undefined, 0, undefined, 0, bytes);
          default: return n.deviceSynchronize(dev);
        }
      };
    },
  },
  {
    name: 'native.baselineKeydiff / baselineSelect / baselineGather / baselineSnapkv',
    weight: 0.1,
    build(b) {
      // CUDA builds only (NATIVE_EXPORTS 'cuda'): absent from a CPU build, where this target has nothing to call
      if (!(native as unknown as Record<string, unknown>).baselineKeydiff) return () => undefined;
      const k = raw(b, 'keys', { dtype: 'f32', shape: [1, 4, 2] }), o = raw(b, 'out', { dtype: 'f32', shape: [1, 4], role: 'out' });
      const n = native as unknown as Record<string, ((...a: unknown[]) => unknown) | undefined>;
      return () => n.baselineKeydiff?.(k, o);
    },
  },
);

export const allTargets: Target[] = [...targets, ...batchTargets, ...nativeTargets, ...nativeBatchTargets];

/** The exports a target calls: `covers`, else the names of its name ('native.a / b': native.a, native.b). */
export function coveredExports(t: Target): string[] {
  if (t.covers) return t.covers;
  const parts = t.name.split(' / ').map((x) => x.trim().split(' ')[0]);
  const native = parts[0].startsWith('native.');
  return parts.map((x) => (native && !x.startsWith('native.') ? `native.${x}` : x));
}

/** Runs the sync form or (drawn last, after every argument slot) the async twin, awaited. */
function twin<A extends unknown[]>(b: Builder, f: (...a: A) => unknown, fa: (...a: A) => Promise<unknown>, ...a: A): () => unknown {
  return b.int(0, 1) ? async () => fa(...a) : () => f(...a);
}

/** The addon export `name` or (drawn last) its `<name>Async` twin with an abort cell, awaited. */
function nativeTwin(b: Builder, name: string, args: unknown[]): () => unknown {
  return nativeCall(b, name, b.int(0, 1) === 1, args);
}
