// Error measures shared by the tests (float64). NaN anywhere, or a length mismatch, counts as an infinite error.

/** max_i |a_i| */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i]);
    if (!(x <= m)) m = Number.isNaN(x) ? Infinity : x;
  }
  return m;
}

/** max_i |a_i − b_i| (equal entries, infinities included, differ by 0). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** max over rows of ‖a − b‖ / ‖b‖ (rows of length w; ‖b‖ floored at 1e-15). */
export function maxRowRel(a: ArrayLike<number>, b: ArrayLike<number>, w: number): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let r = 0; r * w < b.length; r++) {
    let num = 0, den = 0;
    for (let c = 0; c < w; c++) {
      num += (a[r * w + c] - b[r * w + c]) ** 2;
      den += b[r * w + c] ** 2;
    }
    const e = Math.sqrt(num / Math.max(den, 1e-30));
    if (!(e <= m)) m = Number.isNaN(e) ? Infinity : e;
  }
  return m;
}
