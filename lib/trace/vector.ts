/** Small float64 vector helpers (length d) and the random vectors of the head model. */
import type { Rng } from '../rng';
import { fillNormals } from './normal';

export function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function norm(a: Float64Array): number {
  return Math.sqrt(dot(a, a));
}

export function scaleTo(a: Float64Array, len: number): Float64Array {
  const n = norm(a);
  const f = n > 0 ? len / n : 0;
  for (let i = 0; i < a.length; i++) a[i] *= f;
  return a;
}

/** Remove from `a` its components along the (unit) vectors in `basis`. */
export function orthogonalize(a: Float64Array, basis: Float64Array[]): void {
  for (const b of basis) {
    const p = dot(a, b);
    for (let i = 0; i < a.length; i++) a[i] -= p * b[i];
  }
}

export function gaussianVec(rng: Rng, T: Float64Array, d: number, profile?: Float64Array): Float64Array {
  const v = new Float64Array(d);
  fillNormals(rng, T, v, 0, d);
  if (profile) for (let i = 0; i < d; i++) v[i] *= profile[i];
  return v;
}

export function uniform(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.uniform();
}
