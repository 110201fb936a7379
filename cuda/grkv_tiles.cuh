// GRKV merge on CUDA: the device helpers of its tile kernels (cuda/grkv_*.cu): typed element access, half-warp and
// block reductions, and the 32x32 shared-memory tile products. All tile kernels use kT = 256 threads as a 16x16
// grid, each thread owning a 2x2 block of a 32x32 tile, with 32-wide chunks of the head dims staged in shared memory
// (rows padded to 33 to avoid bank conflicts).
#pragma once

#include "grkv_phases.cuh"

namespace kvt {
namespace cuda {
namespace grkv {

// ---- element access

template <int DT>
__device__ __forceinline__ float ldf(const void* p, int64_t i) {
  if constexpr (DT == kF32) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (DT == kF16) {
    return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  } else {
    return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
}

template <int DT>
__device__ __forceinline__ void stf(void* p, int64_t i, float v) {
  if constexpr (DT == kF32) {
    static_cast<float*>(p)[i] = v;
  } else {
    static_cast<uint16_t*>(p)[i] = Elem<DT>::from_f32(v);
  }
}

template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int o) {
  return __shfl_xor_sync(0xffffffffu, v, o);
}

// Sum / max over the 16 lanes that share a tile row (lanes tx = 0..15 of a half warp).
template <typename T>
__device__ __forceinline__ T half_sum(T v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v += shfl_xor(v, o);
  return v;
}
__device__ __forceinline__ float half_max(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, shfl_xor(v, o));
  return v;
}

// Block-wide sum; every thread gets the same value (summed in the same order). `sh` holds >= 32 entries.
template <typename T>
__device__ T block_sum(T v, T* sh) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += shfl_xor(v, o);
  const int lane = threadIdx.x % kWarp, w = threadIdx.x / kWarp, nw = blockDim.x / kWarp;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  T t = 0;
  for (int i = 0; i < nw; i++) t += sh[i];
  return t;
}


// ---- shared-memory tile helpers (256 threads; thread (ty, tx) = (tid / 16, tid % 16))

// acc[a][b] += sum_k X[ty + 16a][k] * Y[tx + 16b][k]
template <typename T>
__device__ __forceinline__ void tile_dot(const T (*X)[kTp], const T (*Y)[kTp], int ty, int tx, T acc[2][2]) {
#pragma unroll 8
  for (int k = 0; k < kTl; k++) {
    const T x0 = X[ty][k], x1 = X[ty + 16][k], y0 = Y[tx][k], y1 = Y[tx + 16][k];
    acc[0][0] += x0 * y0;
    acc[0][1] += x0 * y1;
    acc[1][0] += x1 * y0;
    acc[1][1] += x1 * y1;
  }
}

// acc[a][b] += sum over col < ncols of X(ty + 16a, col) * Y(tx + 16b, col), the operands' rows r < kTl given by
// x(r, col) and y(r, col) (the callers bound r), staged through the shared tiles Xs / Ys kTl columns at a time.
template <typename T, typename FX, typename FY>
__device__ __forceinline__ void tile_dot_cols(T (*Xs)[kTp], T (*Ys)[kTp], int64_t ncols, int tid, int ty, int tx,
                                              T acc[2][2], const FX& x, const FY& y) {
  for (int64_t dc = 0; dc < ncols; dc += kTl) {
    for (int e = tid; e < kTl * kTl; e += kT) {
      const int r = e / kTl, cc = e % kTl;
      const int64_t col = dc + cc;
      Xs[r][cc] = col < ncols ? x(r, col) : T(0);
      Ys[r][cc] = col < ncols ? y(r, col) : T(0);
    }
    __syncthreads();
    tile_dot<T>(Xs, Ys, ty, tx, acc);
    __syncthreads();
  }
}

// Operands of tile_dot_cols. Row r0 + r of head h of the staged f32 queries, as T (0 past the head's last row).
template <typename T>
__device__ __forceinline__ auto query_rows(const Ctx& c, int64_t h, int64_t r0) {
  const int64_t rows = c.geo[h].rows;
  return [&c, h, r0, rows](int rr, int64_t col) -> T {
    const int64_t row = r0 + rr;
    return row < rows ? T(c.Qf[(h * c.rows + row) * c.d + col]) : T(0);
  };
}
// Slot p0 + r of virtual head h of an output [.., H, cap, d] of dtype DT, as T (0 from lim on).
template <int DT, typename T>
__device__ __forceinline__ auto stored_rows(const Ctx& c, const O3& x, int64_t h, int64_t p0, int64_t lim) {
  return [&c, &x, h, p0, lim](int rr, int64_t col) -> T {
    const int64_t p = p0 + rr;
    return p < lim ? T(ldf<DT>(x.p, out_row(c, x, h, p) + col * x.s2)) : T(0);
  };
}
// Position p0 + r of virtual head h of an input (keys / values, through the batch's table), as T (0 from lim on).
template <int DT, typename T>
__device__ __forceinline__ auto input_rows(const Ctx& c, const T3& x, int64_t h, int64_t p0, int64_t lim) {
  return [&c, &x, h, p0, lim](int rr, int64_t col) -> T {
    const int64_t p = p0 + rr;
    return p < lim ? T(ldf<DT>(x.p, in_row(c, x, h, p) + col * x.s2)) : T(0);
  };
}

// acc[a][j] = 0 for a thread's 2 x M outputs.
template <typename T, int M>
__device__ __forceinline__ void tile_zero(T (&acc)[2][M]) {
#pragma unroll
  for (int a = 0; a < 2; a++)
#pragma unroll
    for (int j = 0; j < M; j++) acc[a][j] = T(0);
}

// X[r][col] = f(r, col) over the kTl x kTl tile, spread over the block's kT threads.
template <typename T, typename F>
__device__ __forceinline__ void tile_fill(T (*X)[kTp], int tid, const F& f) {
  for (int e = tid; e < kTl * kTl; e += kT) X[e / kTl][e % kTl] = f(e / kTl, e % kTl);
}

// acc[a][2cc + b] += sum_t P(ty + 16a, t) * B[t][tx + 16b] for each column chunk cc < NC of kTl columns that starts
// below ncols; load(cc) fills B with chunk cc (the whole block, between barriers). P(r, t) = P[r][t], or P[t][r]
// with PT (P stored inner-index-major).
template <bool PT, int NC, typename T, typename Load>
__device__ __forceinline__ void tile_pb(const T (*P)[kTp], const T (*B)[kTp], int64_t ncols, int ty, int tx,
                                        T (&acc)[2][2 * NC], const Load& load) {
#pragma unroll
  for (int cc = 0; cc < NC; cc++) {
    if (cc * kTl < ncols) {
      load(cc);
      __syncthreads();
#pragma unroll 8
      for (int t = 0; t < kTl; t++) {
        const T p0 = PT ? P[t][ty] : P[ty][t], p1 = PT ? P[t][ty + 16] : P[ty + 16][t];
        const T b0 = B[t][tx], b1 = B[t][tx + 16];
        acc[0][2 * cc] += p0 * b0;
        acc[0][2 * cc + 1] += p0 * b1;
        acc[1][2 * cc] += p1 * b0;
        acc[1][2 * cc + 1] += p1 * b1;
      }
      __syncthreads();
    }
  }
}

// out[col] = this thread's row a of acc, columns col = cc kTl + tx + 16b below ncols.
template <int NC, typename T, typename U>
__device__ __forceinline__ void tile_store_row(const T (&acc)[2][2 * NC], int a, int64_t ncols, int tx, U* out) {
#pragma unroll
  for (int cc = 0; cc < NC; cc++)
#pragma unroll
    for (int b = 0; b < 2; b++) {
      const int64_t col = cc * kTl + tx + 16 * b;
      if (col < ncols) out[col] = acc[a][2 * cc + b];
    }
}

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
