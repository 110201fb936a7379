/**
 * NumPy `.npy` reader and writer (format versions 1.0, 2.0 and 3.0), for KV-cache dumps.
 *
 * Supported element types (little-endian, C order only):
 *
 * | descr            | dtype  | data          | notes                                                  |
 * |------------------|--------|---------------|--------------------------------------------------------|
 * | `<f4`            | `f32`  | Float32Array  |                                                        |
 * | `<f8`            | `f64`  | Float64Array  |                                                        |
 * | `<f2`            | `f16`  | Uint16Array   | IEEE binary16 bit patterns                             |
 * | `<V2`, `\|V2`    | `bf16` | Uint16Array   | bfloat16 bit patterns (see below)                      |
 * | `<u2`, `<i2`     | —      | Uint16Array   | only with `{ u16: 'bf16' \| 'f16' }` (see below)       |
 * | `<i4`            | `i32`  | Int32Array    | only with `{ integers: true }` (query positions)       |
 * | `<i8`            | `i64`  | Float64Array  | only with `{ integers: true }`; values beyond ±2^53 are rejected |
 *
 * bfloat16: NumPy has no bfloat16 type. Arrays of `ml_dtypes.bfloat16` (the type JAX and
 * `torch.Tensor.float().numpy()`-free pipelines use) are written by `np.save` with the 2-byte void
 * descr `<V2` / `|V2`; that is the only 2-byte void float in use, so a 2-byte void array is read as
 * bfloat16. PyTorch cannot export bfloat16 to NumPy; the usual workaround
 * `t.view(torch.int16).numpy()` (or `torch.uint16`) produces `<i2` / `<u2` integers, which are
 * ambiguous (they could be real integers, or float16 bits), so they are accepted only when the
 * caller says what the 16-bit words are: `readNpy(buf, { u16: 'bf16' })`.
 *
 * Returned `data` is a view into `buf` when the payload is aligned for its element type (zero
 * copy), else an aligned copy. Big-endian data, Fortran order, object/structured arrays, bad magic,
 * malformed or truncated headers and truncated payloads are rejected with an `Error` whose message
 * names the file and says what is wrong; such errors carry `code = 'ERR_KVTRIM_FORMAT'`.
 */

export type NpyDtype = 'f32' | 'f16' | 'f64' | 'bf16' | 'i32' | 'i64';

export type NpyData = Float32Array | Uint16Array | Float64Array | Int32Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

export interface ReadNpyOptions {
  /** name used in error messages (a path, usually); default '<buffer>' */
  source?: string;
  /** how to read raw 16-bit integer arrays ('<u2', '<i2'): as bfloat16 or float16 bit patterns */
  u16?: 'bf16' | 'f16';
  /** accept 32- and 64-bit signed integer arrays ('<i4', '<i8'), e.g. query positions (default: rejected) */
  integers?: boolean;
}

/** An error about the content of a file; `code` is `'ERR_KVTRIM_FORMAT'`. */
export class FormatError extends Error {
  readonly code = 'ERR_KVTRIM_FORMAT';
  constructor(message: string) {
    super(message);
    this.name = 'FormatError';
  }
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const ITEMSIZE: Record<NpyDtype, number> = { f32: 4, f16: 2, f64: 8, bf16: 2, i32: 4, i64: 8 };

/** Parse a `.npy` buffer. Accepts a string as the second argument for `{ source }`. */
export function readNpy(buf: Uint8Array, opts: ReadNpyOptions | string = {}): NpyArray {
  const o: ReadNpyOptions = typeof opts === 'string' ? { source: opts } : opts;
  const src = o.source ?? '<buffer>';
  const fail = (msg: string): never => {
    throw new FormatError(`${src}: ${msg}`);
  };
  if (!(buf instanceof Uint8Array)) throw new TypeError(`readNpy: buf must be a Uint8Array (or Buffer), got ${typeof buf}`);
  if (buf.length < 10) fail(`not a .npy file: only ${buf.length} bytes, a .npy header needs at least 10`);
  for (let i = 0; i < MAGIC.length; i++) {
    if (buf[i] !== MAGIC[i]) {
      const got = Array.from(buf.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(' ');
      fail(`not a .npy file: bad magic (expected 93 4e 55 4d 50 59 = "\\x93NUMPY", found ${got})`);
    }
  }
  const major = buf[6], minor = buf[7];
  let headerLen: number, headerStart: number;
  if (major === 1) {
    headerLen = buf[8] | (buf[9] << 8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) fail(`truncated header: version ${major}.${minor} needs 12 bytes before the header, file has ${buf.length}`);
    headerLen = (buf[8] | (buf[9] << 8) | (buf[10] << 16)) + buf[11] * 0x1000000;
    headerStart = 12;
  } else {
    return fail(`unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`);
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > buf.length) {
    fail(`truncated header: the header claims ${headerLen} bytes but only ${buf.length - headerStart} follow`);
  }
  const hbytes = buf.subarray(headerStart, dataStart);
  const text = major === 3 ? new TextDecoder('utf-8').decode(hbytes) : latin1(hbytes);
  let header: unknown;
  try {
    header = parsePyLiteral(text.trim());
  } catch (e) {
    return fail(`malformed header (${(e as Error).message}): ${JSON.stringify(text.slice(0, 120))}`);
  }
  if (!isDict(header)) return fail(`malformed header: expected a dict, got ${JSON.stringify(text.slice(0, 120))}`);
  for (const k of ['descr', 'fortran_order', 'shape']) {
    if (!(k in header)) fail(`malformed header: missing key '${k}' in ${JSON.stringify(text.trim())}`);
  }
  const descr = header.descr;
  if (Array.isArray(descr)) {
    fail(`structured (record) arrays are not supported (descr is a field list); save each field as its own array`);
  }
  if (typeof descr !== 'string') return fail(`malformed header: 'descr' must be a string, got ${JSON.stringify(descr)}`);
  if (typeof header.fortran_order !== 'boolean') fail(`malformed header: 'fortran_order' must be True or False`);
  if (header.fortran_order) {
    fail(`Fortran-order (column-major) arrays are not supported; save with np.save(path, np.ascontiguousarray(a))`);
  }
  const shapeV = header.shape;
  if (!Array.isArray(shapeV) || !shapeV.every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) {
    return fail(`malformed header: 'shape' must be a tuple of non-negative integers, got ${JSON.stringify(shapeV)}`);
  }
  const shape = shapeV as number[];
  const dtype = dtypeOf(descr, o.u16, o.integers ?? false, fail);
  const count = shape.reduce((a, b) => a * b, 1);
  const nbytes = count * ITEMSIZE[dtype];
  const avail = buf.length - dataStart;
  if (avail < nbytes) {
    fail(`truncated data: shape [${shape.join(', ')}] of ${descr} needs ${nbytes} bytes, only ${avail} present`);
  }
  if (avail > nbytes) {
    fail(`${avail - nbytes} unexpected bytes after the data (shape [${shape.join(', ')}] of ${descr} is ${nbytes} bytes); is the header's shape or dtype wrong?`);
  }
  const data = typedView(buf, dataStart, count, dtype);
  if (dtype === 'i64') {
    const t = (data as Float64Array).findIndex((x) => !Number.isSafeInteger(x));
    if (t >= 0) fail(`element ${t} of the '<i8' array is beyond ±2^53`);
  }
  return { dtype, shape, data };
}

function dtypeOf(descr: string, u16: 'bf16' | 'f16' | undefined, integers: boolean, fail: (m: string) => never): NpyDtype {
  const order = descr[0];
  const code = descr.slice(1);
  if (order === '>' || order === '!') {
    return fail(`big-endian data ('${descr}') is not supported; convert with a.astype(a.dtype.newbyteorder('<'))`);
  }
  if (code === 'O' || descr === 'O') return fail(`object arrays ('${descr}') are not supported: they hold pickled Python objects, not numbers`);
  if (!['<', '|', '='].includes(order)) return fail(`unsupported dtype descr '${descr}'`);
  if (order === '=' && !LITTLE_ENDIAN_HOST) return fail(`native-order data ('${descr}') from a big-endian host is not supported`);
  const unsupported =
    `unsupported dtype '${descr}' (supported: <f4, <f8, <f2, <V2/|V2 as bfloat16, and <u2/<i2 with the u16 option` +
    `${integers ? ', <i4, <i8' : ''})`;
  switch (code) {
    case 'f4':
      if (order === '|') break;
      return 'f32';
    case 'f8':
      if (order === '|') break;
      return 'f64';
    case 'f2':
      if (order === '|') break;
      return 'f16';
    case 'V2':
      return 'bf16';
    case 'u2':
    case 'i2':
      if (order === '|') break;
      if (u16) return u16;
      return fail(
        `'${descr}' holds raw 16-bit integers; if they are bfloat16 or float16 bit patterns (e.g. from ` +
          `tensor.view(torch.int16).numpy()), pass { u16: 'bf16' } or { u16: 'f16' }`,
      );
    case 'i4':
    case 'i8':
      if (order === '|') break;
      if (integers) return code === 'i4' ? 'i32' : 'i64';
      return fail(unsupported);
    default:
      return fail(unsupported);
  }
  return fail(`unsupported dtype descr '${descr}'`);
}

function typedView(buf: Uint8Array, start: number, count: number, dtype: NpyDtype): NpyData {
  const size = ITEMSIZE[dtype];
  const off = buf.byteOffset + start;
  if (dtype === 'i64') return int64ToNumbers(new DataView(buf.buffer, off, count * 8), count);
  const make = (ab: ArrayBufferLike, o: number, n: number): NpyData =>
    dtype === 'f32' ? new Float32Array(ab, o, n) : dtype === 'f64' ? new Float64Array(ab, o, n) : dtype === 'i32' ? new Int32Array(ab, o, n) : new Uint16Array(ab, o, n);
  if (LITTLE_ENDIAN_HOST) {
    if (off % size === 0) return make(buf.buffer, off, count);
    const copy = new Uint8Array(count * size);
    copy.set(buf.subarray(start, start + count * size));
    return make(copy.buffer, 0, count);
  }
  // big-endian host: decode element by element
  const dv = new DataView(buf.buffer, off, count * size);
  const out = make(new ArrayBuffer(count * size), 0, count);
  for (let i = 0; i < count; i++) {
    if (out instanceof Int32Array) out[i] = dv.getInt32(i * 4, true);
    else out[i] = size === 4 ? dv.getFloat32(i * 4, true) : size === 8 ? dv.getFloat64(i * 8, true) : dv.getUint16(i * 2, true);
  }
  return out;
}

/** Little-endian int64 elements as numbers (exact within ±2^53; callers reject the rest with `Number.isSafeInteger`). */
export function int64ToNumbers(dv: DataView, count: number): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = Number(dv.getBigInt64(i * 8, true));
  return out;
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

function isDict(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parse the Python literal of a .npy header: dicts, str, int, True/False/None, tuples and lists
 * (tuples and lists become arrays). Throws on anything else.
 */
export function parsePyLiteral(text: string): unknown {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const err = (what: string): never => {
    throw new Error(`${what} at offset ${i}`);
  };
  const value = (): unknown => {
    ws();
    const ch = text[i];
    if (ch === '{') {
      i++;
      const out: Record<string, unknown> = {};
      ws();
      while (text[i] !== '}') {
        const k = value();
        if (typeof k !== 'string') err('dict key must be a string');
        ws();
        if (text[i] !== ':') err("expected ':'");
        i++;
        out[k as string] = value();
        ws();
        if (text[i] === ',') {
          i++;
          ws();
        } else if (text[i] !== '}') err("expected ',' or '}'");
      }
      i++;
      return out;
    }
    if (ch === '(' || ch === '[') {
      const close = ch === '(' ? ')' : ']';
      i++;
      const out: unknown[] = [];
      ws();
      while (text[i] !== close) {
        if (i >= text.length) err(`unterminated '${ch}'`);
        out.push(value());
        ws();
        if (text[i] === ',') {
          i++;
          ws();
        } else if (text[i] !== close) err(`expected ',' or '${close}'`);
      }
      i++;
      return out;
    }
    if (ch === "'" || ch === '"') {
      const q = ch;
      i++;
      let s = '';
      while (i < text.length && text[i] !== q) {
        if (text[i] === '\\') {
          i++;
          if (i >= text.length) break;
        }
        s += text[i++];
      }
      if (text[i] !== q) err('unterminated string');
      i++;
      return s;
    }
    const m = /^(True|False|None|-?\d+L?)/.exec(text.slice(i));
    if (!m) return err(`unexpected ${ch === undefined ? 'end of header' : JSON.stringify(ch)}`);
    i += m[1].length;
    if (m[1] === 'True') return true;
    if (m[1] === 'False') return false;
    if (m[1] === 'None') return null;
    return Number(m[1].replace('L', ''));
  };
  const v = value();
  ws();
  if (i !== text.length) err('trailing characters');
  return v;
}

export interface WriteNpyOptions {
  /** element type for Uint16Array data (required then): float16 ('<f2') or bfloat16 ('<V2') */
  dtype?: 'f16' | 'bf16';
}

/**
 * Serialise an array as `.npy` (version 1.0, or 2.0 when the header needs more than 65535 bytes),
 * little-endian, C order, header padded so the data starts on a 64-byte boundary (as NumPy does).
 * Float32Array → '<f4', Float64Array → '<f8', Int32Array → '<i4', Uint16Array → '<f2' or '<V2' (bfloat16) per
 * `dtype`.
 */
export function writeNpy(
  data: Float32Array | Float64Array | Uint16Array | Int32Array,
  shape: readonly number[],
  opts: WriteNpyOptions = {},
): Uint8Array {
  let descr: string;
  if (data instanceof Float32Array) descr = '<f4';
  else if (data instanceof Float64Array) descr = '<f8';
  else if (data instanceof Int32Array) descr = '<i4';
  else if (data instanceof Uint16Array) {
    if (opts.dtype === 'f16') descr = '<f2';
    else if (opts.dtype === 'bf16') descr = '<V2';
    else throw new TypeError(`writeNpy: Uint16Array data needs opts.dtype 'f16' or 'bf16'`);
  } else throw new TypeError('writeNpy: data must be a Float32Array, Float64Array, Int32Array or Uint16Array');
  if (!Array.isArray(shape)) throw new TypeError(`writeNpy: shape must be an array, got ${typeof shape}`);
  if (!shape.every((v) => Number.isSafeInteger(v) && v >= 0)) throw new RangeError(`writeNpy: bad shape [${shape.join(', ')}]`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`writeNpy: shape [${shape.join(', ')}] holds ${count} elements, data has ${data.length}`);
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  let version = 1;
  let pre = 10;
  if (header.length + 1 + pre > 65535) {
    version = 2;
    pre = 12;
  }
  const total = Math.ceil((pre + header.length + 1) / 64) * 64;
  header = header + ' '.repeat(total - pre - header.length - 1) + '\n';
  const hlen = header.length;
  const out = new Uint8Array(total + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  if (version === 1) {
    out[8] = hlen & 0xff;
    out[9] = hlen >>> 8;
  } else {
    out[8] = hlen & 0xff;
    out[9] = (hlen >>> 8) & 0xff;
    out[10] = (hlen >>> 16) & 0xff;
    out[11] = (hlen >>> 24) & 0xff;
  }
  for (let i = 0; i < hlen; i++) out[pre + i] = header.charCodeAt(i);
  if (LITTLE_ENDIAN_HOST) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  } else {
    const dv = new DataView(out.buffer, total);
    const size = data.BYTES_PER_ELEMENT;
    for (let i = 0; i < data.length; i++) {
      if (data instanceof Int32Array) dv.setInt32(i * 4, data[i], true);
      else if (size === 4) dv.setFloat32(i * 4, data[i], true);
      else if (size === 8) dv.setFloat64(i * 8, data[i], true);
      else dv.setUint16(i * 2, data[i], true);
    }
  }
  return out;
}
