// Planted NestedKV geometry (docs/methods/nestedkv.md §11), shared by the reference's own test and the op tests.
import { Rng } from '../../lib/rng';

export interface Planted {
  K: Float64Array;
  /** per head: the block-only anomaly A and the window-only anomaly Aw (positions) */
  plants: { A: number; Aw: number }[];
  H: number;
  N: number;
  d: number;
  /** the block size nestedkvBlockSize(N) the geometry is built for */
  B: number;
}

/**
 * Geometry (d = 128, b = 128, W = 64). Every key is
 *     k_i = u0 + 0.5·v_B + σ_i·w_B + 0.03·noise
 * with u0, v_0..v_31, w_0..w_31 orthonormal (Gram–Schmidt), so that norms and global alignments
 * do not depend on the block or the sign. u0: shared bias (every key is "typical" globally);
 * v_B: direction of the 128-token block B; w_B: a second block direction with a sign σ_i = ±1.
 * In most blocks σ alternates every token, so w_B cancels in every window mean and in the block
 * mean. In "split" blocks (the planted one and blocks ≡ 3 mod 11) σ = +1 in the first half and −1
 * in the second: w_B still cancels in the block mean, but windows inside a half carry ±w_B.
 *  (a) block-only token A = first token of block B, built as if it were the next token of block
 *      B−1 (v_{B−1}, w_{B−1} with the alternating sign). Its window (the tail of B−1) predicts it
 *      as well as any window predicts its token; globally it is typical; but block B's mean
 *      ∝ u0 + 0.5·v_B has no v_{B−1}: it is the unique block-scale anomaly.
 *  (b) window-only token A' = last token of a split block, with the first-half sign (+w_B). The
 *      block mean has no w component, so it is as typical as any token at the block scale and
 *      globally; its window (the second half, −w_B) predicts the opposite: the strongest window
 *      anomaly (tied only with the first token of each split block's second half).
 * KeyDiff (global anchor only) sees only the noise in A and A', so it keeps each with a chance of
 * about 10 %. Tried on 8 seeds while designing: NestedKV kept all four planted tokens every time
 * (ranks ≤ 45 for budgets ≥ 218); KeyDiff kept one of them 3 times in 32, never both of a head.
 */
export function plantedKeys(): Planted {
  const N = 4096, d = 128, H = 2, B = 128;
  const K = new Float64Array(H * N * d);
  const plants: Array<{ A: number; Aw: number }> = [{ A: 20 * B, Aw: 10 * B + B - 1 }, { A: 7 * B, Aw: 25 * B + B - 1 }];
  for (let h = 0; h < H; h++) {
    const rng = new Rng(100 + h);
    const dirs: Float64Array[] = []; // Gram–Schmidt of random normals
    while (dirs.length < 1 + 2 * (N / B)) {
      const x = rng.normals64(d);
      for (const u of dirs) {
        let p = 0;
        for (let c = 0; c < d; c++) p += x[c] * u[c];
        for (let c = 0; c < d; c++) x[c] -= p * u[c];
      }
      const nrm = Math.hypot(...x);
      dirs.push(x.map((e) => e / nrm));
    }
    const u0 = dirs[0], v = dirs.slice(1, 1 + N / B), w = dirs.slice(1 + N / B);
    const { A, Aw } = plants[h];
    for (let i = 0; i < N; i++) {
      let blk = Math.floor(i / B);
      const split = blk === Math.floor(Aw / B) || blk % 11 === 3;
      let sgn = split ? (i % B < B / 2 ? 1 : -1) : i % 2 === 0 ? 1 : -1;
      if (i === A) {
        blk -= 1;
        sgn = (i - 1) % 2 === 0 ? -1 : 1; // continues the alternation of block B−1
      }
      if (i === Aw) sgn = 1;
      for (let c = 0; c < d; c++) K[(h * N + i) * d + c] = u0[c] + 0.5 * v[blk][c] + sgn * w[blk][c] + 0.03 * rng.normal();
    }
  }
  return { K, plants, H, N, d, B };
}
