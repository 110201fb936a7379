/**
 * safetensors reader and writer (https://github.com/huggingface/safetensors, format as of v0.4).
 *
 * Layout: 8 bytes little-endian u64 `n` (header size) | `n` bytes of UTF-8 JSON | byte buffer.
 * The JSON maps tensor names to `{ dtype, shape, data_offsets: [begin, end] }` (offsets relative to
 * the byte buffer) plus an optional `"__metadata__"` map of string to string. Validation follows the
 * reference implementation: the header must fit in the file (and in 100 MB), every tensor's byte
 * range must lie inside the buffer, match `prod(shape) × itemsize`, and the ranges must tile the
 * buffer exactly: no overlaps, no holes, no trailing bytes. Supported dtypes: F32, F16, BF16, F64
 * (F16/BF16 are returned as raw bit patterns in a Uint16Array), and I32, I64 (as Int32Array and
 * Float64Array; I64 values beyond ±2^53 are rejected): integer tensors such as query positions. Errors are `FormatError`s
 * (`code = 'ERR_KVTRIM_FORMAT'`) naming the file and the tensor.
 */
import * as fs from 'node:fs';
import { FormatError, int64ToNumbers } from './npy';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64';

export type SafetensorsData = Float32Array | Uint16Array | Float64Array | Int32Array;

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: SafetensorsData;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

const ITEMSIZE: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8 };
/** dtypes of the format that exist but that kvtrim does not read */
const KNOWN_OTHER = ['BOOL', 'U8', 'I8', 'I16', 'U16', 'U32', 'U64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64'];
const MAX_HEADER = 100_000_000;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Parse a safetensors buffer; returns the tensors in header order. */
export function readSafetensors(buf: Uint8Array, source?: string): Map<string, SafetensorsTensor> {
  return readSafetensorsFile(buf, source).tensors;
}

/** Like `readSafetensors`, also returning `__metadata__`. */
export function readSafetensorsFile(buf: Uint8Array, source = '<buffer>'): SafetensorsFile {
  if (!(buf instanceof Uint8Array)) throw new TypeError(`readSafetensors: buf must be a Uint8Array (or Buffer), got ${typeof buf}`);
  const h = parseSafetensorsHeader(buf, buf.length, source);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of h.entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: view(buf, h.dataStart + e.begin, e.end - e.begin, e.dtype, `${source}: tensor '${e.name}': `) });
  }
  return { tensors, metadata: h.metadata };
}

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** byte range inside the data buffer (which starts at `dataStart` in the file) */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** file offset of the data buffer: 8 + header length */
  dataStart: number;
}

/**
 * Parse and validate the header of a safetensors file of `fileSize` bytes, given (at least) its
 * first 8 + n bytes in `prefix`. Used by `readSafetensors` and by `openSafetensors`, which reads the
 * tensors one by one from disk (files larger than a Buffer).
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number, source = '<buffer>'): SafetensorsHeader {
  const fail = (msg: string): never => {
    throw new FormatError(`${source}: ${msg}`);
  };
  if (fileSize < 8 || prefix.length < 8) fail(`not a safetensors file: ${fileSize} bytes, the 8-byte header length is missing`);
  const dv = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER)) fail(`header length ${n64} is larger than the 100 MB limit (corrupt file or not safetensors)`);
  const n = Number(n64);
  if (8 + n > fileSize) fail(`truncated header: the header length is ${n} bytes but only ${fileSize - 8} follow`);
  if (8 + n > prefix.length) throw new RangeError(`parseSafetensorsHeader: prefix holds ${prefix.length} bytes, the header needs ${8 + n}`);
  if (n < 2) fail(`header length ${n} is too small for a JSON object`);
  const text = new TextDecoder('utf-8').decode(prefix.subarray(8, 8 + n));
  if (text[0] !== '{') fail(`header does not start with '{' (not safetensors, or a corrupt header length): ${JSON.stringify(text.slice(0, 40))}`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return fail('header JSON must be an object');
  const dataStart = 8 + n;
  const bufferLen = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`'__metadata__' must be an object of strings`);
      for (const [k, mv] of Object.entries(v as Record<string, unknown>)) {
        if (typeof mv !== 'string') fail(`'__metadata__.${k}' must be a string, got ${JSON.stringify(mv)}`);
        metadata[k] = mv as string;
      }
      continue;
    }
    const where = `tensor '${name}'`;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(`${where}: entry must be an object`);
    const e = v as Record<string, unknown>;
    const dtype = e.dtype;
    if (typeof dtype !== 'string') return fail(`${where}: missing or non-string 'dtype'`);
    if (!(dtype in ITEMSIZE)) {
      fail(
        KNOWN_OTHER.includes(dtype)
          ? `${where}: unsupported dtype ${dtype} (supported: F32, F16, BF16, F64, I32, I64)`
          : `${where}: unknown dtype ${JSON.stringify(dtype)}`,
      );
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      return fail(`${where}: 'shape' must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      return fail(`${where}: 'data_offsets' must be [begin, end] with non-negative integers, got ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as number[];
    if (end < begin) fail(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > bufferLen) fail(`${where}: data_offsets [${begin}, ${end}] run past the end of the data (${bufferLen} bytes)`);
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const want = count * ITEMSIZE[dtype as SafetensorsDtype];
    if (end - begin !== want) {
      fail(`${where}: shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${want} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    entries.push({ name, dtype: dtype as SafetensorsDtype, shape: shape as number[], begin, end });
  }
  // the ranges must tile the buffer: sorted by begin, each starts where the previous ended
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev = '';
  for (const e of sorted) {
    if (e.begin < pos) fail(`tensor '${e.name}' [${e.begin}, ${e.end}] overlaps tensor '${prev}' (which ends at ${pos})`);
    if (e.begin > pos) fail(`hole in the data: bytes [${pos}, ${e.begin}) before tensor '${e.name}' belong to no tensor`);
    pos = e.end;
    prev = e.name;
  }
  if (pos !== bufferLen) fail(`${bufferLen - pos} bytes after the last tensor belong to no tensor (file truncated, padded or corrupt)`);
  return { entries, metadata, dataStart };
}

/**
 * Open a safetensors file without reading it whole: validates the header, then `read(name)` loads
 * one tensor from disk. Close with `close()` (or a `using` declaration).
 */
export function openSafetensors(file: string): {
  header: SafetensorsHeader;
  read(name: string): SafetensorsTensor;
  close(): void;
  [Symbol.dispose](): void;
} {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const first = Buffer.alloc(Math.min(8, size));
    readFully(fd, first, 0);
    let prefix: Uint8Array = first;
    if (size >= 8) {
      const n = first.readBigUInt64LE(0);
      const need = n > BigInt(MAX_HEADER) ? 8 : Math.min(size, 8 + Number(n));
      prefix = Buffer.alloc(need);
      readFully(fd, prefix, 0);
    }
    const header = parseSafetensorsHeader(prefix, size, file);
    const byName = new Map(header.entries.map((e) => [e.name, e]));
    let open = true;
    const close = (): void => {
      if (open) fs.closeSync(fd);
      open = false;
    };
    return {
      header,
      read(name: string): SafetensorsTensor {
        const e = byName.get(name);
        if (!e) throw new Error(`${file}: no tensor '${name}'`);
        if (!open) throw new Error(`${file}: file is closed`);
        const buf = new Uint8Array(e.end - e.begin);
        readFully(fd, buf, header.dataStart + e.begin);
        return { dtype: e.dtype, shape: e.shape, data: view(buf, 0, buf.length, e.dtype, `${file}: tensor '${name}': `) };
      },
      close,
      [Symbol.dispose]: close,
    };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

function readFully(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, Math.min(buf.length - done, 0x40000000), position + done);
    if (n <= 0) throw new FormatError(`unexpected end of file while reading ${buf.length} bytes at offset ${position}`);
    done += n;
  }
}

function view(buf: Uint8Array, start: number, nbytes: number, dtype: SafetensorsDtype, where = ''): SafetensorsData {
  const size = ITEMSIZE[dtype];
  const count = nbytes / size;
  const off = buf.byteOffset + start;
  if (dtype === 'I64') {
    const out = int64ToNumbers(new DataView(buf.buffer, off, nbytes), count);
    const t = out.findIndex((x) => !Number.isSafeInteger(x));
    if (t >= 0) throw new FormatError(`${where}element ${t} of the I64 tensor is beyond ±2^53`);
    return out;
  }
  const make = (ab: ArrayBufferLike, o: number): SafetensorsData =>
    dtype === 'F32' ? new Float32Array(ab, o, count) : dtype === 'F64' ? new Float64Array(ab, o, count) : dtype === 'I32' ? new Int32Array(ab, o, count) : new Uint16Array(ab, o, count);
  if (LITTLE_ENDIAN_HOST) {
    if (off % size === 0) return make(buf.buffer, off);
    const copy = new Uint8Array(nbytes);
    copy.set(buf.subarray(start, start + nbytes));
    return make(copy.buffer, 0);
  }
  const dv = new DataView(buf.buffer, off, nbytes);
  const out = make(new ArrayBuffer(nbytes), 0);
  for (let i = 0; i < count; i++) {
    if (out instanceof Int32Array) out[i] = dv.getInt32(i * 4, true);
    else out[i] = size === 4 ? dv.getFloat32(i * 4, true) : size === 8 ? dv.getFloat64(i * 8, true) : dv.getUint16(i * 2, true);
  }
  return out;
}

export interface WriteTensor {
  /** required for Uint16Array data ('F16' or 'BF16'); inferred otherwise */
  dtype?: SafetensorsDtype;
  shape: readonly number[];
  data: Float32Array | Uint16Array | Float64Array | Int32Array;
}

/**
 * Serialise tensors to safetensors bytes. The header (tensors in map order, `__metadata__` first
 * when given) is padded with spaces to a multiple of 8 bytes; the data are packed contiguously,
 * largest element size first (as the reference writer does), so every tensor starts at a multiple
 * of its element size and reads back as a zero-copy view.
 */
export function writeSafetensors(tensors: Map<string, WriteTensor>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  // largest element size first keeps every tensor aligned to its own element size
  const items = [...tensors.entries()].map(([name, t]) => {
    if (name === '__metadata__') throw new TypeError(`writeSafetensors: '__metadata__' is reserved and cannot name a tensor`);
    let dtype: SafetensorsDtype;
    if (t.data instanceof Float32Array) dtype = 'F32';
    else if (t.data instanceof Float64Array) dtype = 'F64';
    else if (t.data instanceof Int32Array) dtype = 'I32';
    else if (t.data instanceof Uint16Array) {
      if (t.dtype !== 'F16' && t.dtype !== 'BF16') throw new TypeError(`writeSafetensors: tensor '${name}': Uint16Array data needs dtype 'F16' or 'BF16'`);
      dtype = t.dtype;
    } else throw new TypeError(`writeSafetensors: tensor '${name}': data must be a Float32Array, Float64Array, Int32Array or Uint16Array`);
    if (t.dtype !== undefined && t.dtype !== dtype) throw new TypeError(`writeSafetensors: tensor '${name}': dtype ${t.dtype} does not match its ${t.data.constructor.name}`);
    if (!Array.isArray(t.shape)) throw new TypeError(`writeSafetensors: tensor '${name}': shape must be an array, got ${typeof t.shape}`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (!t.shape.every((v) => Number.isSafeInteger(v) && v >= 0) || count !== t.data.length) {
      throw new RangeError(`writeSafetensors: tensor '${name}': shape [${t.shape.join(', ')}] does not hold ${t.data.length} elements`);
    }
    return { name, dtype, t };
  });
  for (const it of items) header[it.name] = null; // header keys in map order
  const order = [...items].sort((a, b) => ITEMSIZE[b.dtype] - ITEMSIZE[a.dtype]);
  let pos = 0;
  for (const it of order) {
    const nb = it.t.data.byteLength;
    header[it.name] = { dtype: it.dtype, shape: [...it.t.shape], data_offsets: [pos, pos + nb] };
    pos += nb;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let hb = enc.encode(json);
  const pad = (8 - (hb.length % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    hb = enc.encode(json);
  }
  const out = new Uint8Array(8 + hb.length + pos);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const it of order) {
    const d = it.t.data;
    if (LITTLE_ENDIAN_HOST) out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), p);
    else {
      const dv = new DataView(out.buffer, p, d.byteLength);
      for (let i = 0; i < d.length; i++) {
        if (d instanceof Int32Array) dv.setInt32(i * 4, d[i], true);
        else if (d instanceof Float32Array) dv.setFloat32(i * 4, d[i], true);
        else if (d instanceof Float64Array) dv.setFloat64(i * 8, d[i], true);
        else dv.setUint16(i * 2, d[i], true);
      }
    }
    p += d.byteLength;
  }
  return out;
}
