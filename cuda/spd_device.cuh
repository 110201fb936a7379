// One-CTA SPD solve (docs/performance.md §3): Cholesky of (A + lambda I) on the packed lower triangle (shared memory,
// or global scratch when the device's shared memory is too small), then forward and back substitution on tiles of
// TW right-hand-side columns held in shared memory. fp32 throughout, like the CPU backend (csrc/cpu/cholesky.cc), which
// factors by rows instead of right-looking: the two agree up to summation order.
//
// Used by the spdSolve op (cuda/spd.cu) and the GRKV value step (cuda/grkv_value.cu); header-only so both translation
// units inline it (no relocatable device code).
#pragma once

#include <float.h>

#include "common.cuh"

namespace kvt {
namespace cuda {
// Internal linkage: each translation unit that includes this header gets its own kernel and launch helpers.
namespace {

constexpr int kSpdThreads = 256;

// Packed lower-triangle index of (i, j), j <= i.
__device__ __forceinline__ int64_t spd_pk(int i, int j) { return int64_t(i) * (i + 1) / 2 + j; }

// Accessors of one system: A (lower triangle read), B (read), X (written; may be B itself).
struct SpdSys {
  const float* a;
  int64_t as1, as2;
  const float* b;
  int64_t bs1, bs2;
  float* x;
  int64_t xs1, xs2;
};

// Solves one system with the whole CTA (blockDim.x == kSpdThreads). L: n(n+1)/2 floats, inv: n floats, Y: n*TW
// floats (TW divides kSpdThreads). Returns 0, or k > 0 when the leading minor of order k is not positive definite
// (then every row of X is NaN). Every thread returns the same value.
__device__ inline int spd_solve_block(const SpdSys& s, int n, int r, float lambda, float* L, float* inv, float* Y,
                                      int TW) {
  const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp;
  constexpr int kWarps = kSpdThreads / kWarp;
  // load A + lambda I (lower triangle)
  for (int i = warp; i < n; i += kWarps)
    for (int j = lane; j <= i; j += kWarp) L[spd_pk(i, j)] = s.a[i * s.as1 + j * s.as2] + (i == j ? lambda : 0.0f);
  __syncthreads();
  // right-looking Cholesky, one column per step
  int failed = 0;
  for (int j = 0; j < n; j++) {
    const float p = L[spd_pk(j, j)];
    if (!(p > 0.0f) || !(p <= FLT_MAX)) {  // same smem value in every thread: a uniform branch
      failed = j + 1;
      break;
    }
    const float ljj = sqrtf(p), iv = 1.0f / ljj;
    __syncthreads();  // every thread has read the pivot before it is overwritten
    if (tid == 0) {
      L[spd_pk(j, j)] = ljj;
      inv[j] = iv;
    }
    for (int i = j + 1 + tid; i < n; i += kSpdThreads) L[spd_pk(i, j)] *= iv;
    __syncthreads();
    for (int i = j + 1 + warp; i < n; i += kWarps) {
      const float lij = L[spd_pk(i, j)];
      for (int k = j + 1 + lane; k <= i; k += kWarp) L[spd_pk(i, k)] -= lij * L[spd_pk(k, j)];
    }
    __syncthreads();
  }
  if (failed) {
    for (int64_t e = tid; e < int64_t(n) * r; e += kSpdThreads) {
      const int64_t i = e / r, c = e % r;
      s.x[i * s.xs1 + c * s.xs2] = __int_as_float(0x7fc00000);
    }
    return failed;
  }
  // triangular solves, TW columns at a time; thread (grp, col) owns rows i = grp (mod G) of column col
  const int G = kSpdThreads / TW, col = tid % TW, grp = tid / TW;
  for (int c0 = 0; c0 < r; c0 += TW) {
    const int cw = min(TW, r - c0);
    for (int e = tid; e < n * TW; e += kSpdThreads) {
      const int i = e / TW, c = e % TW;
      Y[e] = c < cw ? s.b[int64_t(i) * s.bs1 + int64_t(c0 + c) * s.bs2] : 0.0f;
    }
    __syncthreads();
    // forward: L z = y. Row k is final at step k (its last update came at step k-1, before the barrier).
    for (int k = 0; k < n; k++) {
      const float yk = Y[k * TW + col] * inv[k];
      int i = k + 1 + ((grp - (k + 1)) % G + G) % G;
      for (; i < n; i += G) Y[i * TW + col] -= L[spd_pk(i, k)] * yk;
      __syncthreads();
    }
    for (int i = grp; i < n; i += G) Y[i * TW + col] *= inv[i];
    __syncthreads();
    // back: L^T x = z
    for (int k = n - 1; k >= 0; k--) {
      const float xk = Y[k * TW + col] * inv[k];
      for (int i = grp; i < k; i += G) Y[i * TW + col] -= L[spd_pk(k, i)] * xk;
      __syncthreads();
    }
    for (int i = grp; i < n; i += G) Y[i * TW + col] *= inv[i];
    __syncthreads();
    // a non-finite entry (a non-finite right-hand side reaches its whole column) is written as NaN, as on the CPU
    for (int e = tid; e < n * TW; e += kSpdThreads) {
      const int i = e / TW, c = e % TW;
      if (c < cw) s.x[int64_t(i) * s.xs1 + int64_t(c0 + c) * s.xs2] = finite_f(Y[e]) ? Y[e] : __int_as_float(0x7fc00000);
    }
    __syncthreads();
  }
  return 0;
}

// Batched kernel: system b = blockIdx.x of F3 tensors a [B, n, n], b/x [B, n, r]. gL: global scratch for the packed
// factors (B * n(n+1)/2 floats) when they do not fit in shared memory, else NULL. info: i32 per system or NULL.
// orders: i32 per system (stride orders_s) or NULL: system b has order min(orders[b], n) (its leading block).
__global__ void __launch_bounds__(kSpdThreads)
    spd_solve_kernel(F3 a, F3 b, F3 x, float lambda, int32_t* info, int64_t info_s, int TW, float* gL,
                     const int32_t* orders, int64_t orders_s) {
  extern __shared__ float sm[];
  const int64_t sys = blockIdx.x;
  const int r = int(b.n2), n = orders ? int(imax(0, imin(orders[sys * orders_s], a.n1))) : int(a.n1);
  const int64_t packed = int64_t(n) * (n + 1) / 2, stride = a.n1 * (a.n1 + 1) / 2;
  float* L = gL ? gL + sys * stride : sm;
  float* inv = gL ? sm : sm + packed;
  float* Y = inv + n;
  SpdSys s{a.p + sys * a.s0, a.s1, a.s2, b.p + sys * b.s0, b.s1, b.s2, x.p + sys * x.s0, x.s1, x.s2};
  const int k = spd_solve_block(s, n, r, lambda, L, inv, Y, TW);
  if (info && threadIdx.x == 0) info[sys * info_s] = k;
}

// Launch plan for n x n systems with r right-hand sides on the current device: tile width TW and whether the packed
// factor lives in shared memory. Sets the kernel's dynamic shared memory limit when above 48 KB.
struct SpdPlan {
  int TW;
  bool global_factor;
  size_t smem;
};

inline cudaError_t spd_plan(int64_t n, SpdPlan* plan) {
  int dev = 0, optin = 0;
  KVT_CU_TRY(cudaGetDevice(&dev));
  KVT_CU_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const size_t packed = size_t(n * (n + 1) / 2) * sizeof(float), vec = size_t(n) * sizeof(float);
  const size_t cands[4][3] = {{64, 0, packed + vec + vec * 64},
                              {32, 0, packed + vec + vec * 32},
                              {64, 1, vec + vec * 64},
                              {32, 1, vec + vec * 32}};
  for (const auto& c : cands) {
    if (c[2] <= size_t(optin)) {
      *plan = SpdPlan{int(c[0]), c[1] != 0, c[2]};
      if (c[2] > 48 * 1024)
        KVT_CU_TRY(cudaFuncSetAttribute(spd_solve_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(c[2])));
      return cudaSuccess;
    }
  }
  return cudaErrorInvalidValue;
}

// Enqueues the batched solve. `scratch_factor` must hold B * n(n+1)/2 floats when plan.global_factor. With `orders`,
// system b solves its leading orders[b] x orders[b] block (the plan is for the largest order n).
inline cudaError_t spd_launch(const F3& a, const F3& b, float lambda, const F3& x, int32_t* info, int64_t info_s,
                              const SpdPlan& plan, float* scratch_factor, cudaStream_t stream,
                              const int32_t* orders = nullptr, int64_t orders_s = 0) {
  if (a.n0 == 0) return cudaSuccess;
  if (a.n0 > 0x7fffffff) return cudaErrorInvalidConfiguration;
  spd_solve_kernel<<<unsigned(a.n0), kSpdThreads, plan.smem, stream>>>(a, b, x, lambda, info, info_s, plan.TW,
                                                                       plan.global_factor ? scratch_factor : nullptr,
                                                                       orders, orders_s);
  return cudaGetLastError();
}

}  // namespace
}  // namespace cuda
}  // namespace kvt
