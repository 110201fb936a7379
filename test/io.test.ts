import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FormatError, parsePyLiteral, readNpy, writeNpy } from '../lib/io/npy';
import { openSafetensors, readSafetensors, readSafetensorsFile, writeSafetensors, WriteTensor } from '../lib/io/safetensors';
import { loadDump, saveTraceAsDump } from '../lib/io/dump';
import { bf16ArrayToF32, bf16ToF32, f16ArrayToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../lib/half';
import { generateTrace } from '../lib/trace';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-io-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirCount = 0;
const newDir = (): string => {
  const d = path.join(tmp, `d${dirCount++}`);
  fs.mkdirSync(d);
  return d;
};

/** Build a .npy by hand: magic, version, header (padded to 64 like NumPy unless pad=false), payload. */
function makeNpy(header: string, payload: Uint8Array, version = 1, pad = true): Uint8Array {
  const pre = version === 1 ? 10 : 12;
  let h = header;
  if (pad) h = h + ' '.repeat((64 - ((pre + h.length + 1) % 64)) % 64) + '\n';
  const hb = version === 3 ? new TextEncoder().encode(h) : Uint8Array.from(h, (c) => c.charCodeAt(0));
  const out = new Uint8Array(pre + hb.length + payload.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0], 0);
  if (version === 1) new DataView(out.buffer).setUint16(8, hb.length, true);
  else new DataView(out.buffer).setUint32(8, hb.length, true);
  out.set(hb, pre);
  out.set(payload, pre + hb.length);
  return out;
}
const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

// ------------------------------------------------------------------------------------------
// .npy
// ------------------------------------------------------------------------------------------

t.test('npy: round trips for every dtype and shape', async (t) => {
  const f32 = Float32Array.from({ length: 24 }, (_, i) => i * 0.5 - 3);
  const a = readNpy(writeNpy(f32, [2, 3, 4]));
  t.equal(a.dtype, 'f32');
  t.same(a.shape, [2, 3, 4]);
  t.same(Array.from(a.data), Array.from(f32));
  const f64 = Float64Array.from([Math.PI, -1e300, 5e-324]);
  const b = readNpy(writeNpy(f64, [3]));
  t.equal(b.dtype, 'f64');
  t.same(Array.from(b.data), Array.from(f64));
  const u = Uint16Array.from([0x3c00, 0xc000, 0x7c00, 0x0001]);
  const c = readNpy(writeNpy(u, [2, 2], { dtype: 'f16' }));
  t.equal(c.dtype, 'f16');
  t.same(Array.from(c.data), Array.from(u));
  const d = readNpy(writeNpy(u, [4], { dtype: 'bf16' }));
  t.equal(d.dtype, 'bf16');
  t.same(Array.from(d.data), Array.from(u));
  // scalar and empty arrays
  t.same(readNpy(writeNpy(Float32Array.of(7), [])).shape, []);
  const e = readNpy(writeNpy(new Float32Array(0), [0, 5]));
  t.same(e.shape, [0, 5]);
  t.equal(e.data.length, 0);
  // the data starts on a 64-byte boundary, as NumPy writes it
  const buf = writeNpy(f32, [24]);
  const hl = buf[8] | (buf[9] << 8);
  t.equal((10 + hl) % 64, 0);
  t.equal(buf[10 + hl - 1], 0x0a, 'header ends with a newline');
  // aligned payload: a zero-copy view; unaligned: a copy with the same values
  t.equal(a.data.buffer, (writeNpy(f32, [2, 3, 4]), a.data.buffer));
  const shifted = new Uint8Array(buf.length + 1);
  shifted.set(buf, 1);
  const s = readNpy(shifted.subarray(1));
  t.same(Array.from(s.data), Array.from(f32));
  // a header longer than 65535 bytes switches to version 2.0
  const many = new Array(30000).fill(1);
  const big = writeNpy(Float32Array.of(1), many);
  t.equal(big[6], 2);
  t.same(readNpy(big).shape.length, 30000);
  t.throws(() => writeNpy(new Uint16Array(2), [2]), /needs opts.dtype/);
  t.throws(() => writeNpy(new Float32Array(3), [2]), /holds 2 elements, data has 3/);
});

t.test('npy: headers as NumPy writes them, versions 1.0, 2.0 and 3.0', async (t) => {
  const payload = bytesOf(Float32Array.from([1, 2, 3, 4, 5, 6]));
  for (const v of [1, 2, 3]) {
    const a = readNpy(makeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", payload, v));
    t.same(a.shape, [2, 3], `version ${v}.0`);
    t.same(Array.from(a.data), [1, 2, 3, 4, 5, 6]);
  }
  // double quotes, no trailing comma, 1-tuple, Python 2 long suffix
  t.same(readNpy(makeNpy('{"descr": "<f4", "fortran_order": False, "shape": (6L,)}', payload)).shape, [6]);
  // '|V2' (ml_dtypes bfloat16 via np.save) and native '=' order
  t.equal(readNpy(makeNpy("{'descr': '|V2', 'fortran_order': False, 'shape': (2,), }", bytesOf(Uint16Array.of(0x3f80, 0)))).dtype, 'bf16');
  t.equal(readNpy(makeNpy("{'descr': '=f4', 'fortran_order': False, 'shape': (6,), }", payload)).dtype, 'f32');
  // raw 16-bit integers need the caller to say what they are
  const u2 = makeNpy("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }", bytesOf(Uint16Array.of(0x3f80, 0x4000)));
  t.throws(() => readNpy(u2, 'dump/k_0.npy'), /dump\/k_0\.npy: '<u2' holds raw 16-bit integers.*u16: 'bf16'/);
  t.equal(readNpy(u2, { u16: 'bf16' }).dtype, 'bf16');
  t.equal(readNpy(u2, { u16: 'f16' }).dtype, 'f16');
  t.same(parsePyLiteral("{'a': (1, 2), 'b': [True, None], 'c': 'x\\'y'}"), { a: [1, 2], b: [true, null], c: "x'y" });
});

t.test('npy: every malformed file is rejected with a clear message naming the file', async (t) => {
  const src = '/data/k_3.npy';
  const ok = (h: string, payload = bytesOf(new Float32Array(6))): Uint8Array => makeNpy(h, payload);
  const cases: [string, Uint8Array, RegExp][] = [
    ['too short', Uint8Array.of(0x93, 0x4e, 0x55), /only 3 bytes/],
    ['bad magic', Uint8Array.from(Buffer.from('PK\x03\x04 this is a zip file')), /bad magic \(expected 93 4e 55 4d 50 59.*found 50 4b 03 04/],
    ['unsupported version', (() => { const b = ok("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }"); b[6] = 4; return b; })(), /unsupported \.npy format version 4\.0/],
    ['truncated header', ok("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }").subarray(0, 40), /truncated header: the header claims \d+ bytes but only 30 follow/],
    ['header not a literal', ok("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), "), /malformed header/],
    ['header not a dict', ok("['<f4', False, (6,)]"), /malformed header: expected a dict/],
    ['missing shape', ok("{'descr': '<f4', 'fortran_order': False}"), /missing key 'shape'/],
    ['bad shape', ok("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }"), /'shape' must be a tuple of non-negative integers/],
    ['fortran order', ok("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }"), /Fortran-order \(column-major\) arrays are not supported.*ascontiguousarray/],
    ['big endian', ok("{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }"), /big-endian data \('>f4'\) is not supported/],
    ['object array', ok("{'descr': '|O', 'fortran_order': False, 'shape': (6,), }"), /object arrays \('\|O'\) are not supported/],
    ['structured array', ok("{'descr': [('k', '<f4'), ('v', '<f4')], 'fortran_order': False, 'shape': (3,), }"), /structured \(record\) arrays are not supported/],
    ['int32', ok("{'descr': '<i4', 'fortran_order': False, 'shape': (6,), }"), /unsupported dtype '<i4'/],
    // '|' (byte order not applicable) is only valid for one-byte types: a multi-byte code with it is malformed
    ['|f4', ok("{'descr': '|f4', 'fortran_order': False, 'shape': (6,), }"), /unsupported dtype descr '\|f4'/],
    ['|u2', ok("{'descr': '|u2', 'fortran_order': False, 'shape': (12,), }"), /unsupported dtype descr '\|u2'/],
    ['truncated data', ok("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new Uint8Array(20)), /truncated data: shape \[2, 3\] of <f4 needs 24 bytes, only 20 present/],
    ['extra data', ok("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"), /4 unexpected bytes after the data/],
    ['wrong dtype for size', ok("{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }"), /truncated data: shape \[6\] of <f8 needs 48 bytes, only 24 present/],
  ];
  for (const [what, buf, re] of cases) {
    let err: unknown;
    try {
      readNpy(buf, src);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof FormatError, `${what}: throws a FormatError`);
    t.equal((err as FormatError).code, 'ERR_KVTRIM_FORMAT');
    t.match((err as Error).message, /^\/data\/k_3\.npy: /, `${what}: the message names the file`);
    t.match((err as Error).message, re, `${what}: ${(err as Error).message}`);
  }
  t.throws(() => readNpy('nope' as never), TypeError);
});

// ------------------------------------------------------------------------------------------
// safetensors
// ------------------------------------------------------------------------------------------

/** Build a safetensors file by hand from a header object (or raw header text) and a data buffer. */
function makeSt(header: unknown, data: Uint8Array, rawHeader?: string): Uint8Array {
  const hb = new TextEncoder().encode(rawHeader ?? JSON.stringify(header));
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

t.test('safetensors: round trip, metadata, alignment, reading from disk', async (t) => {
  const m = new Map<string, WriteTensor>([
    ['a.f16', { dtype: 'F16', shape: [3], data: Uint16Array.of(0x3c00, 0xc000, 0x0001) }],
    ['b.f32', { shape: [2, 2], data: Float32Array.of(1, -2, 3.5, 1e-20) }],
    ['c.bf16', { dtype: 'BF16', shape: [1, 1], data: Uint16Array.of(0x3f80) }],
    ['d.f64', { shape: [2], data: Float64Array.of(Math.E, -0) }],
    ['e.empty', { shape: [0, 4], data: new Float32Array(0) }],
  ]);
  const buf = writeSafetensors(m, { format: 'pt', note: 'kvtrim' });
  const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
  t.equal(n % 8, 0, 'header padded to 8 bytes');
  const f = readSafetensorsFile(buf);
  t.same(f.metadata, { format: 'pt', note: 'kvtrim' });
  t.same([...f.tensors.keys()], ['a.f16', 'b.f32', 'c.bf16', 'd.f64', 'e.empty'], 'header order is the map order');
  for (const [name, w] of m) {
    const r = f.tensors.get(name)!;
    t.same(r.shape, w.shape, `${name} shape`);
    t.same(Array.from(r.data), Array.from(w.data), `${name} data`);
    t.equal(r.data.buffer, buf.buffer, `${name} is a zero-copy view`);
  }
  t.equal(f.tensors.get('a.f16')!.dtype, 'F16');
  t.equal(f.tensors.get('c.bf16')!.dtype, 'BF16');
  t.equal(f.tensors.get('d.f64')!.dtype, 'F64');
  t.same([...readSafetensors(buf).keys()], [...f.tensors.keys()]);
  // the same through the file-backed reader
  const file = path.join(tmp, 'rt.safetensors');
  fs.writeFileSync(file, buf);
  const st = openSafetensors(file);
  t.same(Array.from(st.read('d.f64').data), [Math.E, -0]);
  t.same(Array.from(st.read('b.f32').data), [1, -2, 3.5, Math.fround(1e-20)]);
  t.throws(() => st.read('nope'), /no tensor 'nope'/);
  st.close();
  t.throws(() => writeSafetensors(new Map([['x', { shape: [2], data: new Uint16Array(2) }]])), /needs dtype 'F16' or 'BF16'/);
  t.throws(() => writeSafetensors(new Map([['x', { shape: [3], data: new Float32Array(2) }]])), /does not hold 2 elements/);
  t.throws(() => writeSafetensors(new Map([['__metadata__', { shape: [1], data: new Float32Array(1) }]])), /reserved/);
});

t.test('safetensors: every malformed file is rejected with a clear message', async (t) => {
  const src = '/dumps/model.safetensors';
  const d8 = new Uint8Array(8);
  const ten = (dtype: string, shape: number[], off: number[]): unknown => ({ dtype, shape, data_offsets: off });
  const hugeLen = new Uint8Array(16);
  new DataView(hugeLen.buffer).setBigUint64(0, 2n ** 40n, true);
  const cases: [string, Uint8Array, RegExp][] = [
    ['too short', Uint8Array.of(1, 2, 3), /the 8-byte header length is missing/],
    ['header longer than the file', makeSt({ x: ten('F32', [2], [0, 8]) }, d8).subarray(0, 20), /truncated header: the header length is \d+ bytes but only 12 follow/],
    ['absurd header length', hugeLen, /larger than the 100 MB limit/],
    ['bad JSON', makeSt(null, d8, '{"x": {"dtype": "F32",'), /header is not valid JSON/],
    ['not an object', makeSt(null, d8, '{"x": 1}'), /tensor 'x': entry must be an object/],
    ['not starting with {', makeSt(null, d8, '  ["x"]'), /does not start with '\{'/],
    ['metadata not strings', makeSt({ __metadata__: { n: 3 }, x: ten('F32', [2], [0, 8]) }, d8), /'__metadata__\.n' must be a string/],
    ['unsupported dtype', makeSt({ x: ten('U32', [2], [0, 8]) }, d8), /tensor 'x': unsupported dtype U32 \(supported: F32, F16, BF16, F64, I32, I64\)/],
    ['unknown dtype', makeSt({ x: ten('Q4', [2], [0, 8]) }, d8), /tensor 'x': unknown dtype "Q4"/],
    ['bad shape', makeSt({ x: ten('F32', [2.5], [0, 8]) }, d8), /'shape' must be an array of non-negative integers/],
    ['bad offsets', makeSt({ x: ten('F32', [2], [0]) }, d8), /'data_offsets' must be \[begin, end\]/],
    ['reversed offsets', makeSt({ x: ten('F32', [0], [8, 0]) }, d8), /end before they begin/],
    ['offsets out of range', makeSt({ x: ten('F32', [4], [0, 16]) }, d8), /tensor 'x': data_offsets \[0, 16\] run past the end of the data \(8 bytes\)/],
    ['shape/byte mismatch', makeSt({ x: ten('F32', [3], [0, 8]) }, d8), /tensor 'x': shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] span 8/],
    ['overlap', makeSt({ x: ten('F32', [2], [0, 8]), y: ten('F16', [2], [4, 8]) }, d8), /tensor 'y' \[4, 8\] overlaps tensor 'x'/],
    ['hole', makeSt({ x: ten('F32', [1], [0, 4]), y: ten('F16', [1], [6, 8]) }, d8), /hole in the data: bytes \[4, 6\)/],
    ['trailing bytes', makeSt({ x: ten('F32', [1], [0, 4]) }, d8), /4 bytes after the last tensor belong to no tensor/],
  ];
  for (const [what, buf, re] of cases) {
    let err: unknown;
    try {
      readSafetensors(buf, src);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof FormatError, `${what}: throws a FormatError`);
    t.match((err as Error).message, /^\/dumps\/model\.safetensors: /, `${what}: names the file`);
    t.match((err as Error).message, re, `${what}: ${(err as Error).message}`);
  }
  // the file-backed reader applies the same validation
  const bad = path.join(tmp, 'bad.safetensors');
  fs.writeFileSync(bad, makeSt({ x: ten('F32', [3], [0, 8]) }, d8));
  t.throws(() => openSafetensors(bad), /bad\.safetensors: tensor 'x': shape \[3\] of F32 needs 12 bytes/);
});

// ------------------------------------------------------------------------------------------
// 16-bit float conversions
// ------------------------------------------------------------------------------------------

t.test('f16 and bf16 to f32: known bit patterns, exhaustively consistent', async (t) => {
  const f16: [number, number][] = [
    [0x3c00, 1], [0xc000, -2], [0x3555, 0.333251953125], [0x7bff, 65504], [0x0400, 2 ** -14],
    [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x8001, -(2 ** -24)], [0x7c00, Infinity], [0xfc00, -Infinity],
  ];
  for (const [b, v] of f16) t.equal(f16ToF32(b), v, `f16 0x${b.toString(16)} -> ${v}`);
  t.ok(Object.is(f16ToF32(0x8000), -0), 'f16 0x8000 -> -0');
  t.ok(Number.isNaN(f16ToF32(0x7e00)) && Number.isNaN(f16ToF32(0x7c01)) && Number.isNaN(f16ToF32(0xfe00)), 'f16 NaNs');
  const bf16: [number, number][] = [
    [0x3f80, 1], [0xc000, -2], [0x4049, 3.140625], [0x7f7f, 3.3895313892515355e38], [0x0080, 2 ** -126],
    [0x0001, 2 ** -133], [0x7f80, Infinity], [0xff80, -Infinity], [0x0000, 0],
  ];
  for (const [b, v] of bf16) t.equal(bf16ToF32(b), v, `bf16 0x${b.toString(16)} -> ${v}`);
  t.ok(Object.is(bf16ToF32(0x8000), -0));
  t.ok(Number.isNaN(bf16ToF32(0x7fc0)) && Number.isNaN(bf16ToF32(0xffc1)), 'bf16 NaNs');
  // array converters agree with the scalar ones on all 65536 patterns
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const a16 = f16ArrayToF32(all), ab16 = bf16ArrayToF32(all);
  let bad = 0;
  for (let i = 0; i < 65536; i++) {
    if (!Object.is(a16[i], Math.fround(f16ToF32(i)))) bad++;
    if (!Object.is(ab16[i], bf16ToF32(i))) bad++;
  }
  t.equal(bad, 0, 'array and scalar converters agree everywhere');
  // NaN payloads survive bf16 -> f32
  t.equal(new Uint32Array(bf16ArrayToF32(Uint16Array.of(0x7fc3)).buffer)[0], 0x7fc30000);
});

t.test('f32 to f16 / bf16: round to nearest even, exact on representable values', async (t) => {
  let bad = 0;
  for (let i = 0; i < 65536; i++) {
    const v = f16ToF32(i);
    if (Number.isNaN(v)) {
      if (!Number.isNaN(f16ToF32(f32ToF16(v)))) bad++;
    } else if (f32ToF16(v) !== i) bad++;
    const w = bf16ToF32(i);
    if (Number.isNaN(w)) {
      if (!Number.isNaN(bf16ToF32(f32ToBf16(w)))) bad++;
    } else if (f32ToBf16(w) !== i) bad++;
  }
  t.equal(bad, 0, 'every representable f16 / bf16 value round-trips');
  t.equal(f32ToF16(1 + 2 ** -11), 0x3c00, 'tie rounds to even (down)');
  t.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02, 'tie rounds to even (up)');
  t.equal(f32ToF16(65519), 0x7bff);
  t.equal(f32ToF16(65520), 0x7c00, 'overflow to +Inf');
  t.equal(f32ToF16(-1e10), 0xfc00);
  t.equal(f32ToF16(2 ** -25), 0x0000, 'half the smallest subnormal ties to zero');
  t.equal(f32ToF16(3 * 2 ** -25), 0x0002, 'subnormal tie to even');
  t.equal(f32ToF16(2 ** -30), 0);
  t.equal(f32ToBf16(1 + 2 ** -8), 0x3f80, 'bf16 tie to even (down)');
  t.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82, 'bf16 tie to even (up)');
  t.equal(f32ToBf16(3.4e38), 0x7f80, 'bf16 overflow to +Inf');
  t.equal(f32ToBf16(-3.14159), 0xc049);
});

// ------------------------------------------------------------------------------------------
// dumps
// ------------------------------------------------------------------------------------------

const trace = generateTrace({ seed: 5, tokens: 256, window: 16, kvHeads: 2, groupSize: 3, layers: 2, heldOut: 6, needles: 2, segments: 4, headDim: 32 });

/** [ok, message]: same length and max relative difference within tol */
function close(a: Float32Array, b: Float32Array, tol: number, what: string): [boolean, string] {
  if (a.length !== b.length) return [false, `${what}: length ${a.length} vs ${b.length}`];
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  return [worst <= tol, `${what}: max rel. diff ${worst.toExponential(2)} <= ${tol}`];
}

t.test('dump: saveTraceAsDump -> loadDump, npy directory and safetensors, f32/f16/bf16, both layouts', async (t) => {
  const { Hkv, Hq, N, d, W } = trace;
  const configs: { target: string; dtype: 'f32' | 'f16' | 'bf16'; layout: 'hnd' | 'nhd'; tol: number }[] = [
    { target: 'npy-f32', dtype: 'f32', layout: 'hnd', tol: 0 },
    { target: 'npy-f16', dtype: 'f16', layout: 'hnd', tol: 2 ** -11 },
    { target: 'npy-bf16-nhd', dtype: 'bf16', layout: 'nhd', tol: 2 ** -8 },
    { target: 'npy-f32-nhd', dtype: 'f32', layout: 'nhd', tol: 0 },
    { target: 'st-f32.safetensors', dtype: 'f32', layout: 'hnd', tol: 0 },
    { target: 'st-bf16-nhd.safetensors', dtype: 'bf16', layout: 'nhd', tol: 2 ** -8 },
    { target: 'st-f16.safetensors', dtype: 'f16', layout: 'hnd', tol: 2 ** -11 },
  ];
  for (const c of configs) {
    const target = path.join(tmp, c.target);
    const written = saveTraceAsDump(trace, target, { dtype: c.dtype, layout: c.layout });
    t.ok(written.length > 0);
    const dump = loadDump(target, { layout: c.layout });
    t.equal(dump.format, c.target.endsWith('.safetensors') ? 'safetensors' : 'npy');
    t.equal(dump.layers.length, 2, `${c.target}: 2 layers`);
    for (let l = 0; l < 2; l++) {
      const L = dump.layers[l];
      t.same([L.Hkv, L.N, L.d, L.dv, L.Hq, L.T], [Hkv, N, d, d, Hq, W], `${c.target} layer ${l}: dims`);
      t.ok(...close(L.keys, trace.layers[l].keys, c.tol, `${c.target} layer ${l} keys`));
      t.ok(...close(L.values, trace.layers[l].values, c.tol, `${c.target} layer ${l} values`));
      t.ok(...close(L.queries!, trace.layers[l].windowQueries, c.tol, `${c.target} layer ${l} queries`));
    }
  }
  // the npy files are plain NumPy arrays of the documented shapes
  const k0 = readNpy(fs.readFileSync(path.join(tmp, 'npy-f32-nhd', 'k_0.npy')));
  t.same(k0.shape, [N, Hkv, d]);
  t.equal(readNpy(fs.readFileSync(path.join(tmp, 'npy-f16', 'q_1.npy'))).dtype, 'f16');
  // f64 and raw u16 (bf16 bits) inputs, queries absent
  const dir = newDir();
  const k = trace.layers[0].keys, v = trace.layers[0].values;
  fs.writeFileSync(path.join(dir, 'k_0.npy'), writeNpy(Float64Array.from(k), [Hkv, N, d]));
  const vb = Uint16Array.from(v, f32ToBf16);
  fs.writeFileSync(path.join(dir, 'v_0.npy'), makeNpy(`{'descr': '<u2', 'fortran_order': False, 'shape': (${Hkv}, ${N}, ${d}), }`, bytesOf(vb)));
  t.throws(() => loadDump(dir), /v_0\.npy: '<u2' holds raw 16-bit integers/);
  const dd = loadDump(dir, { u16: 'bf16' });
  t.equal(dd.layers[0].queries, undefined);
  t.equal(dd.layers[0].Hq, undefined);
  t.ok(...close(dd.layers[0].keys, k, 0, 'f64 keys'));
  t.ok(...close(dd.layers[0].values, v, 2 ** -8, 'u16-as-bf16 values'));
});

t.test('dump: errors for missing files, gaps, shape mismatches and bad values', async (t) => {
  const { Hkv, Hq, N, d, W } = trace;
  const L = trace.layers[0];
  const put = (dir: string, name: string, data: Float32Array, shape: number[]): void => fs.writeFileSync(path.join(dir, name), writeNpy(data, shape));
  const kv = (dir: string, l: number): void => {
    put(dir, `k_${l}.npy`, L.keys, [Hkv, N, d]);
    put(dir, `v_${l}.npy`, L.values, [Hkv, N, d]);
  };
  t.throws(() => loadDump(path.join(tmp, 'does-not-exist')), /does-not-exist: no such file or directory/);
  const empty = newDir();
  fs.writeFileSync(path.join(empty, 'keys.npy'), writeNpy(L.keys, [Hkv, N, d]));
  t.throws(() => loadDump(empty), /no k_0\.npy; a dump directory holds k_\{l\}\.npy and v_\{l\}\.npy.*found: keys\.npy/);
  t.throws(() => loadDump(path.join(empty, 'keys.npy')), /is a single \.npy file; pass the directory/);
  const noV = newDir();
  kv(noV, 0);
  put(noV, 'k_1.npy', L.keys, [Hkv, N, d]);
  t.throws(() => loadDump(noV), /missing v_1\.npy/);
  const gap = newDir();
  kv(gap, 0);
  kv(gap, 2);
  t.throws(() => loadDump(gap), /layers are not contiguous: found k_0\.npy, k_2\.npy but not k_1\.npy/);
  const strayV = newDir();
  kv(strayV, 0);
  put(strayV, 'v_3.npy', L.values, [Hkv, N, d]);
  t.throws(() => loadDump(strayV), /v_3\.npy without k_3\.npy/);
  const partialQ = newDir();
  kv(partialQ, 0);
  kv(partialQ, 1);
  put(partialQ, 'q_0.npy', L.windowQueries, [Hq, W, d]);
  t.throws(() => loadDump(partialQ), /queries are given for some layers but q_1\.npy is missing/);
  const mism = newDir();
  put(mism, 'k_0.npy', L.keys, [Hkv, N, d]);
  put(mism, 'v_0.npy', L.values.subarray(0, Hkv * (N - 1) * d), [Hkv, N - 1, d]);
  t.throws(() => loadDump(mism), new RegExp(`layer 0: keys .*k_0\\.npy are \\[${Hkv}, ${N}, ${d}\\] but values .*v_0\\.npy are \\[${Hkv}, ${N - 1}, ${d}\\]`));
  const rank = newDir();
  put(rank, 'k_0.npy', L.keys, [Hkv * N, d]);
  put(rank, 'v_0.npy', L.values, [Hkv, N, d]);
  t.throws(() => loadDump(rank), /k_0\.npy: keys must have 3 dimensions \[Hkv, N, d\], got \[\d+, 32\]/);
  const gqa = newDir();
  kv(gqa, 0);
  put(gqa, 'q_0.npy', L.windowQueries.subarray(0, 5 * W * d), [5, W, d]);
  t.throws(() => loadDump(gqa), /5 query heads in .*q_0\.npy is not a multiple of the 2 KV heads/);
  const qd = newDir();
  kv(qd, 0);
  put(qd, 'q_0.npy', L.windowQueries.subarray(0, Hq * W * 16), [Hq, W, 16]);
  t.throws(() => loadDump(qd), /queries .* have head dimension 16 but keys have 32/);
  const longQ = newDir();
  kv(longQ, 0);
  put(longQ, 'q_0.npy', new Float32Array(Hq * (N + 1) * d), [Hq, N + 1, d]);
  t.throws(() => loadDump(longQ), /257 queries .* but only 256 cached tokens/);
  const nan = newDir();
  const kn = Float32Array.from(L.keys);
  kn[(1 * N + 7) * d + 3] = NaN;
  put(nan, 'k_0.npy', kn, [Hkv, N, d]);
  put(nan, 'v_0.npy', L.values, [Hkv, N, d]);
  t.throws(() => loadDump(nan), /k_0\.npy: non-finite value NaN at \[head 1, position 7, channel 3\]/);
  t.ok(Number.isNaN(loadDump(nan, { allowNonFinite: true }).layers[0].keys[(1 * N + 7) * d + 3]));
  const i4 = newDir();
  fs.writeFileSync(path.join(i4, 'k_0.npy'), makeNpy(`{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }`, new Uint8Array(8)));
  put(i4, 'v_0.npy', L.values, [Hkv, N, d]);
  t.throws(() => loadDump(i4), /k_0\.npy: unsupported dtype '<i4'/);
  const fort = newDir();
  fs.writeFileSync(path.join(fort, 'k_0.npy'), makeNpy(`{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }`, new Uint8Array(8)));
  put(fort, 'v_0.npy', L.values, [Hkv, N, d]);
  t.throws(() => loadDump(fort), /k_0\.npy: Fortran-order/);
  t.throws(() => loadDump(noV, { layout: 'xyz' as never }), /layout must be 'hnd' or 'nhd'/);
  // safetensors dumps
  const st = (name: string, m: Map<string, WriteTensor>): string => {
    const f = path.join(tmp, name);
    fs.writeFileSync(f, writeSafetensors(m));
    return f;
  };
  const k3 = { shape: [Hkv, N, d], data: L.keys };
  const v3 = { shape: [Hkv, N, d], data: L.values };
  t.throws(() => loadDump(st('none.safetensors', new Map([['model.embed', k3]]))), /no tensor 'layers\.0\.k'.*found: model\.embed/);
  t.throws(() => loadDump(st('nov.safetensors', new Map([['layers.0.k', k3], ['layers.0.v', v3], ['layers.1.k', k3]]))), /missing layers\.1\.v/);
  t.throws(() => loadDump(st('gap.safetensors', new Map([['layers.1.k', k3], ['layers.1.v', v3]]))), /not layers\.0\.k/);
  const ok = loadDump(st('extra.safetensors', new Map([['layers.0.k', k3], ['layers.0.v', v3], ['lm_head', { shape: [2], data: Float32Array.of(1, 2) }]])));
  t.equal(ok.layers.length, 1, 'unrelated tensors are ignored');
  t.equal(ok.layers[0].queries, undefined);
  const badSt = path.join(tmp, 'i32.safetensors');
  fs.writeFileSync(badSt, makeSt({ 'layers.0.k': { dtype: 'U8', shape: [8], data_offsets: [0, 8] } }, new Uint8Array(8)));
  t.throws(() => loadDump(badSt), /i32\.safetensors: tensor 'layers\.0\.k': unsupported dtype U8/);
});
