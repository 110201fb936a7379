/**
 * Query positions in dumps (lib/io/dump.ts): qpos_{l}.npy / layers.{l}.qpos (i32 or i64), the conventions
 * 'last' and 'all-positions', and the errors for positions that are not integers, not strictly increasing,
 * negative, or leave a gap after N, each naming the file or tensor.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDump } from '../lib/io/dump';
import { writeNpy, readNpy } from '../lib/io/npy';
import { writeSafetensors, readSafetensors, WriteTensor } from '../lib/io/safetensors';

const H = 2, N = 10, d = 4;
const K = Float32Array.from({ length: H * N * d }, (_, i) => Math.sin(i));
const qOf = (T: number) => Float32Array.from({ length: H * T * d }, (_, i) => Math.cos(i));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-qpos-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A one-layer npy dump with T queries and, when given, qpos as raw .npy bytes. */
function npyDump(T: number, qpos?: Uint8Array, layers = 1): string {
  const dir = path.join(tmp, `d${n++}`);
  fs.mkdirSync(dir);
  for (let l = 0; l < layers; l++) {
    fs.writeFileSync(path.join(dir, `k_${l}.npy`), writeNpy(K, [H, N, d]));
    fs.writeFileSync(path.join(dir, `v_${l}.npy`), writeNpy(K, [H, N, d]));
    fs.writeFileSync(path.join(dir, `q_${l}.npy`), writeNpy(qOf(T), [H, T, d]));
    if (qpos) fs.writeFileSync(path.join(dir, `qpos_${l}.npy`), qpos);
  }
  return dir;
}

/** .npy bytes of int64 values (NumPy's default integer type). */
function npyI64(values: bigint[]): Uint8Array {
  const f = writeNpy(new Float64Array(values.length), [values.length]); // same header length as '<i8'
  const text = new TextDecoder('latin1').decode(f);
  const out = Uint8Array.from(text.replace("'<f8'", "'<i8'"), (c) => c.charCodeAt(0));
  const dv = new DataView(out.buffer, out.length - 8 * values.length);
  values.forEach((v, i) => dv.setBigInt64(i * 8, v, true));
  return out;
}

const i32 = (xs: number[]) => writeNpy(Int32Array.from(xs), [xs.length]);

t.test('qpos: i32 and i64 .npy, safetensors I32/I64, and the conventions', async (t) => {
  const a = loadDump(npyDump(4, i32([2, 5, 9, 10])));
  t.same(Array.from(a.layers[0].positions!), [2, 5, 9, 10], 'i32, with one continuation position N');
  t.equal(a.queries, 'qpos');
  const b = loadDump(npyDump(3, npyI64([0n, 9n, 10n])));
  t.same(Array.from(b.layers[0].positions!), [0, 9, 10], 'i64');
  t.same(readNpy(npyI64([3n]), { integers: true }).data, Float64Array.of(3));
  t.throws(() => readNpy(npyI64([3n])), /unsupported dtype '<i8'/, 'integers only when asked');
  t.throws(() => readNpy(npyI64([2n ** 60n]), { source: 'big.npy', integers: true }), /big\.npy: element 0 of the '<i8' array is beyond ±2\^53/);

  const last = loadDump(npyDump(3));
  t.equal(last.queries, 'last');
  t.same(Array.from(last.layers[0].positions!), [7, 8, 9], "default 'last': the last T prompt positions");
  const all = loadDump(npyDump(N + 2), { queries: 'all-positions' });
  t.same(Array.from(all.layers[0].positions!), Array.from({ length: N + 2 }, (_, i) => i), "'all-positions' with 2 continuation queries");
  t.equal(all.queries, 'all-positions');
  t.same(Array.from(loadDump(npyDump(N, i32(Array.from({ length: N }, (_, i) => i))), { queries: 'all-positions' }).layers[0].positions!).length, N, 'qpos agreeing with the declaration');

  const st = (tensors: Record<string, WriteTensor>) => {
    const f = path.join(tmp, `s${n++}.safetensors`);
    fs.writeFileSync(f, writeSafetensors(new Map(Object.entries(tensors))));
    return f;
  };
  const base = { 'layers.0.k': { shape: [H, N, d], data: K }, 'layers.0.v': { shape: [H, N, d], data: K }, 'layers.0.q': { shape: [H, 2, d], data: qOf(2) } };
  t.same(Array.from(loadDump(st({ ...base, 'layers.0.qpos': { shape: [2], data: Int32Array.of(4, 6) } })).layers[0].positions!), [4, 6], 'safetensors I32');
  // an I64 tensor, written by hand (writeSafetensors writes I32)
  const f64 = path.join(tmp, 's-i64.safetensors');
  const bytes = writeSafetensors(new Map(Object.entries({ ...base, 'layers.0.qpos': { shape: [2], data: Float64Array.of(0, 0) } })));
  const hl = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hl)));
  header['layers.0.qpos'].dtype = 'I64';
  const hb = new TextEncoder().encode(JSON.stringify(header).padEnd(hl, ' '));
  const out = Uint8Array.from(bytes);
  out.set(hb, 8);
  const off = 8 + hl + header['layers.0.qpos'].data_offsets[0];
  new DataView(out.buffer).setBigInt64(off, 3n, true);
  new DataView(out.buffer).setBigInt64(off + 8, 8n, true);
  fs.writeFileSync(f64, out);
  t.same(Array.from(readSafetensors(out).get('layers.0.qpos')!.data), [3, 8]);
  t.same(Array.from(loadDump(f64).layers[0].positions!), [3, 8], 'safetensors I64');
  // integer keys are still rejected, naming the tensor
  t.throws(() => loadDump(st({ ...base, 'layers.0.k': { shape: [H, N, d], data: new Int32Array(H * N * d) } })), /tensor 'layers\.0\.k': unsupported dtype I32 \(keys, values and queries are floating point\)/);
});

t.test('qpos errors name the file or tensor', async (t) => {
  const q = (xs: number[]) => npyDump(xs.length, i32(xs));
  t.throws(() => loadDump(q([1, 3, 3])), /qpos_0\.npy: query positions must be strictly increasing, but query 2 is at 3 after 3/);
  t.throws(() => loadDump(q([4, 2])), /qpos_0\.npy: query positions must be strictly increasing, but query 1 is at 2 after 4/);
  t.throws(() => loadDump(q([-1, 2])), /qpos_0\.npy: position -1 of query 0 is outside \[0, 10\)/);
  t.throws(() => loadDump(q([8, 9, 11])), /qpos_0\.npy: position 11 of query 2 is outside \[0, 11\): .*continue it without gaps \(1 continuation query/);
  t.throws(() => loadDump(npyDump(2, writeNpy(Float32Array.of(1, 2), [2]))), /qpos_0\.npy: query positions must be integers \(i32 or i64\), got dtype f32/);
  t.throws(() => loadDump(npyDump(2, i32([1, 2, 3]))), /qpos_0\.npy: query positions must have shape \[T\] = \[2\] \(one per query of .*q_0\.npy\), got \[3\]/);
  t.throws(() => loadDump(npyDump(2, writeNpy(Int32Array.of(1, 2), [1, 2]))), /must have shape \[T\] = \[2\].*got \[1, 2\]/);
  t.throws(() => loadDump(q([0, 5]), { queries: 'all-positions' }), /qpos_0\.npy: query 1 is at position 5, but queries 'all-positions' puts it at 1/);
  t.throws(() => loadDump(npyDump(3), { queries: 'all-positions' }), /queries 'all-positions' needs q to hold every position 0\.\.N−1 = 0\.\.9, but .*q_0\.npy holds 3 queries/);
  t.throws(() => loadDump(npyDump(N + 1)), /11 queries in .*q_0\.npy but only 10 cached tokens: .*give qpos \(.*qpos_0\.npy\)/);
  t.throws(() => loadDump(npyDump(3), { queries: 'first' as never }), /queries must be 'last' or 'all-positions', got "first"/);
  // qpos without queries, and for some layers only
  const noQ = npyDump(2, i32([1, 2]));
  fs.rmSync(path.join(noQ, 'q_0.npy'));
  t.throws(() => loadDump(noQ), /qpos_0\.npy gives query positions but the dump has no queries \(q_0\.npy\)/);
  const partial = npyDump(2, i32([1, 2]), 2);
  fs.rmSync(path.join(partial, 'qpos_1.npy'));
  t.throws(() => loadDump(partial), /query positions are given for some layers but qpos_1\.npy is missing/);
  const stray = npyDump(2, i32([1, 2]));
  fs.writeFileSync(path.join(stray, 'qpos_4.npy'), i32([1, 2]));
  t.throws(() => loadDump(stray), /qpos_4\.npy without k_4\.npy/);
});
