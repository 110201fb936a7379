/** Rotary position embedding (rotate-half convention), float64 angles and trigonometry. */

/** Inverse frequencies θ_c = base^(−2c/d), c = 0..d/2−1 (float64). */
export function ropeInvFreq(d: number, base = 10000): Float64Array {
  const h = d >> 1;
  const f = new Float64Array(h);
  for (let c = 0; c < h; c++) f[c] = Math.pow(base, (-2 * c) / d);
  return f;
}

/**
 * Rotary position embedding, applied in place, rotate-half convention (GPT-NeoX, Hugging Face
 * `rotate_half`, Llama/Qwen/Mistral checkpoints): channel c < d/2 is paired with channel c + d/2,
 * and with θ_c = base^(−2c/d), angle a = pos·θ_c:
 *
 *     x'[c]       = x[c]·cos a − x[c+d/2]·sin a
 *     x'[c+d/2]   = x[c+d/2]·cos a + x[c]·sin a
 *
 * (The interleaved GPT-J/Meta convention pairs (2c, 2c+1) instead; it is a fixed permutation of
 * channels away from this one.) `x` holds `rows` contiguous rows of `d` values; row r uses
 * `positions[r % positions.length]`, so `positions` may hold one position per row, or the N
 * positions of one head repeated for every head of an `[H, N, d]` tensor (`rows` must be a
 * multiple of `positions.length`). Negative positions rotate backwards: `applyRope(x, …, −p)`
 * undoes `applyRope(x, …, p)`. Angles and trigonometry are computed in float64.
 */
export function applyRope(
  x: Float32Array | Float64Array,
  rows: number,
  d: number,
  positions: ArrayLike<number>,
  base = 10000,
): void {
  if (!Number.isInteger(d) || d <= 0 || d % 2 !== 0) throw new RangeError(`applyRope: d must be a positive even integer, got ${d}`);
  if (!Number.isInteger(rows) || rows < 0) throw new RangeError(`applyRope: rows must be a non-negative integer, got ${rows}`);
  if (x.length < rows * d) throw new RangeError(`applyRope: x holds ${x.length} values, expected at least rows*d = ${rows * d}`);
  const P = positions.length;
  if (rows === 0) return;
  if (P === 0 || rows % P !== 0) throw new RangeError(`applyRope: rows (${rows}) must be a multiple of positions.length (${P})`);
  if (!(base > 1)) throw new RangeError(`applyRope: base must be > 1, got ${base}`);
  const h = d >> 1;
  const inv = ropeInvFreq(d, base);
  if (rows >= 2 * P) {
    const { cos, sin } = ropeTable(positions, inv);
    for (let r = 0; r < rows; r++) rotateRow(x, r * d, h, cos, sin, (r % P) * h);
  } else {
    const cos = new Float64Array(h);
    const sin = new Float64Array(h);
    for (let r = 0; r < rows; r++) {
      const p = positions[r];
      for (let c = 0; c < h; c++) {
        const a = p * inv[c];
        cos[c] = Math.cos(a);
        sin[c] = Math.sin(a);
      }
      rotateRow(x, r * d, h, cos, sin, 0);
    }
  }
}

export function ropeTable(positions: ArrayLike<number>, inv: Float64Array): { cos: Float64Array; sin: Float64Array } {
  const P = positions.length;
  const h = inv.length;
  const cos = new Float64Array(P * h);
  const sin = new Float64Array(P * h);
  for (let i = 0; i < P; i++) {
    const p = positions[i];
    const o = i * h;
    for (let c = 0; c < h; c++) {
      const a = p * inv[c];
      cos[o + c] = Math.cos(a);
      sin[o + c] = Math.sin(a);
    }
  }
  return { cos, sin };
}

function rotateRow(
  x: Float32Array | Float64Array,
  o: number,
  h: number,
  cos: Float64Array,
  sin: Float64Array,
  t: number,
): void {
  for (let c = 0; c < h; c++) {
    const a = x[o + c];
    const b = x[o + c + h];
    const cs = cos[t + c];
    const sn = sin[t + c];
    x[o + c] = a * cs - b * sn;
    x[o + c + h] = b * cs + a * sn;
  }
}

/** Rotate a float64 vector by one position (fresh trig), writing into `out` (may alias `x`). */
export function rotateVec(x: Float64Array, out: Float64Array, inv: Float64Array, pos: number): void {
  const h = inv.length;
  for (let c = 0; c < h; c++) {
    const a = pos * inv[c];
    const cs = Math.cos(a);
    const sn = Math.sin(a);
    const u = x[c];
    const v = x[c + h];
    out[c] = u * cs - v * sn;
    out[c + h] = v * cs + u * sn;
  }
}
