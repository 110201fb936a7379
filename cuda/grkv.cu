// GRKV merge on CUDA (spec/grkv.md §4-§7; spec/performance.md §3). The same phases as the CPU backend
// (csrc/grkv.cc), batched over KV heads, with the per-head decisions taken by the shared code of grkv_math.h:
//
//   prep        queries -> f32 rows [H, G*Qs, d]                  partition  fixed/mutable slots, anchors (radix)
//   gather      plain eviction into the outputs (cuda/gather.cu)
//   target      o* by split-K flash attention over all N keys     base       A = softmax(Q K_S^T), o = A V_S, L0
//   value step  Gram (SIMT fp32) + one-CTA SPD solve per head (spd_device.cuh), dV = Aw^T X, cap/recheck/round,
//               o1 = A V1, L1
//   key step    CG in fp64 on (J_w J_w^T + lambda I) x = b: per iteration VJP (T = J^T p), JVP (split-K + reduce),
//               update; dK = J^T x, cap/recheck/round; attention at K1, L2
//   finalize    choice per head, diagnostics, restore the rows of rejected candidates from the inputs
//
// All tile kernels use 256 threads as a 16x16 grid, each thread owning a 2x2 block of a 32x32 tile, with 32-wide
// chunks of the head dims staged in shared memory (padded to 33 to avoid bank conflicts). fp32 SIMT everywhere
// except the key step, which runs in fp64 (fp32 recurrences drift from the Krylov iterate; see grkv.cc). The Gram
// product is SIMT fp32, not tensor cores: its operands are fp32 attention weights and TF32 would break parity with
// the CPU backend (the release disables TF32 too, spec §8).
//
// Limits (checked by the C ABI layer): G*Qs <= 256 query rows per KV head, d, dv <= 256.
#include <stddef.h>

#include <type_traits>

#include "../csrc/grkv_math.h"
#include "common.cuh"
#include "spd_device.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kT = 256;           // threads of every tile kernel
constexpr int kTl = 32;           // tile edge (rows, slots, dims)
constexpr int kTp = kTl + 1;      // padded shared-memory row
constexpr int64_t kChunkSlots = 512;  // retained slots per CTA in the split-K kernels
constexpr int kRedThreads = 256;  // per-head reduction kernels
constexpr int kStepThreads = 1024;  // per-head capped-step kernel (several passes over all mutable rows)

// ---------------------------------------------------------------------------------------------------------------
// element access

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

// ---------------------------------------------------------------------------------------------------------------
// context passed by value to every kernel

struct Ctx {
  GrkvParams p;
  int64_t H, N, d, dv, Qs, G, rows, cap_in, cap;
  int64_t ncht, cht;  // target: chunks, keys per chunk
  int64_t nchs;       // retained split-K chunks (kChunkSlots each)
  float* Qf;          // [H, rows, d]
  int32_t* spos;      // [H, cap] position or -1
  uint64_t* skey;     // [H, cap] anchor keys (partition)
  uint8_t* smut;      // [H, cap] 1 = mutable
  GrkvHead* st;       // [H]
  float *ostar, *o, *o1, *X, *A, *Gm, *Dv, *part;
  double *x, *res, *pv, *Y, *uo, *T, *partd;
};

__device__ __forceinline__ int32_t qpos_of(const Ctx& c, int64_t i) {
  return c.p.qpos[(i % c.Qs) * c.p.qpos_s];
}
__device__ __forceinline__ float w_of(const Ctx& c, int64_t i) {
  return c.p.weights ? c.p.weights[(i % c.Qs) * c.p.weights_s] : 1.0f;
}
__device__ __forceinline__ float sw_of(const Ctx& c, int64_t i) { return sqrtf(w_of(c, i)); }

// Which heads a phase runs on.
enum HeadSel : int { kAllHeads = 0, kFitHeads = 1, kCgHeads = 2 };
__device__ __forceinline__ bool head_on(const Ctx& c, int64_t h, int sel) {
  if (sel == kAllHeads) return true;
  if (sel == kFitHeads) return c.st[h].active != 0;
  return c.st[h].active && c.st[h].cg_active;
}

// ---------------------------------------------------------------------------------------------------------------
// prep and partition

__global__ void prep_kernel(Ctx c) {
  const int64_t n = c.H * c.rows * c.d;
  const T3& q = c.p.queries;
  const int es = dtype_size(q.dtype);
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = e % c.d, i = (e / c.d) % c.rows, h = e / (c.d * c.rows);
    const int64_t g = i / c.Qs, j = i % c.Qs;
    const char* base = static_cast<const char*>(q.p) + ((h * c.G + g) * q.s0 + j * q.s1 + col * q.s2) * es;
    c.Qf[e] = load_as_f32(base, q.dtype, 0);
  }
}

// One CTA per head: retained slots, prefix count, anchors (the `anchors` largest anchor keys, found by a bitwise
// search for the k-th largest 64-bit key over keys built once into scratch), mutable flags, and the head state.
__global__ void __launch_bounds__(kRedThreads) partition_kernel(Ctx c) {
  __shared__ int64_t sh[32];
  const int64_t h = blockIdx.x;
  const GrkvParams& p = c.p;
  int64_t S = static_cast<const int32_t*>(p.counts.p)[h * p.counts.s0];
  S = imax(0, imin(S, imin(c.cap_in, c.cap)));
  const int64_t W = p.window;
  uint64_t* key = c.skey + h * c.cap;  // anchor key of each retained prefix slot; 0 = not a candidate
  int64_t np = 0;
  for (int64_t s = threadIdx.x; s < c.cap; s += blockDim.x) {
    int64_t pos = -1;
    if (s < S) {
      const int64_t i = static_cast<const int32_t*>(p.indices.p)[h * p.indices.s0 + s * p.indices.s1];
      pos = i >= 0 && i < c.N ? i : -1;
    }
    c.spos[h * c.cap + s] = int32_t(pos);
    const bool pre = pos >= 0 && pos < c.N - W;
    key[s] = pre ? grkv_anchor_key(static_cast<const float*>(p.scores.p)[h * p.scores.s0 + pos * p.scores.s1], pos) : 0;
    np += pre;
  }
  const int64_t P = block_sum<int64_t>(np, sh);  // (its barriers also publish key[] to the block)
  const int64_t k = grkv_anchor_count(P, p.gamma);
  uint64_t kth = ~uint64_t(0);
  if (k > 0) {  // real keys are > 0 (the low word is ~pos), so the zero placeholders never count
    uint64_t prefix = 0;
    for (int bit = 63; bit >= 0; bit--) {
      const uint64_t cand = prefix | (uint64_t(1) << bit);
      int64_t cnt = 0;
      for (int64_t s = threadIdx.x; s < S; s += blockDim.x) cnt += key[s] >= cand;
      if (block_sum<int64_t>(cnt, sh) >= k) prefix = cand;
    }
    kth = prefix;
  }
  int64_t nm = 0;
  for (int64_t s = threadIdx.x; s < c.cap; s += blockDim.x) {
    const bool m = key[s] != 0 && !(k > 0 && key[s] >= kth);
    c.smut[h * c.cap + s] = m;
    nm += m;
  }
  const int64_t R = block_sum<int64_t>(nm, sh);
  if (threadIdx.x == 0) {
    GrkvHead st{};
    st.count = int32_t(S);
    st.prefix = int32_t(P);
    st.anchors = int32_t(k);
    st.mut = int32_t(R);
    st.active = R > 0 && c.rows > 0;
    st.flags = st.active ? 0 : kGrkvSkipped;
    st.cg_stop = kCgNotRun;
    c.st[h] = st;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// shared-memory tile helpers (256 threads; thread (ty, tx) = (tid / 16, tid % 16))

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

// Operands of tile_dot_cols. Row r0 + r of head h of the staged f32 queries, as T (0 past the last row).
template <typename T>
__device__ __forceinline__ auto query_rows(const Ctx& c, int64_t h, int64_t r0) {
  return [&c, h, r0](int rr, int64_t col) -> T {
    const int64_t row = r0 + rr;
    return row < c.rows ? T(c.Qf[(h * c.rows + row) * c.d + col]) : T(0);
  };
}
// Position p0 + r of head h of a stored [H, N, d] tensor of dtype DT (an input or an output), as T (0 from lim on).
template <int DT, typename T, typename X>
__device__ __forceinline__ auto stored_rows(const X& x, int64_t h, int64_t p0, int64_t lim) {
  return [&x, h, p0, lim](int rr, int64_t col) -> T {
    const int64_t p = p0 + rr;
    return p < lim ? T(ldf<DT>(x.p, h * x.s0 + p * x.s1 + col * x.s2)) : T(0);
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

// ---------------------------------------------------------------------------------------------------------------
// target: o* = full causal attention (split-K online softmax); partial m, l, acc per (head, chunk, row)

template <int DT, int DVMAX>
__global__ void __launch_bounds__(kT) target_kernel(Ctx c) {
  __shared__ float Qs[kTl][kTp], Ks[kTl][kTp], Ps[kTl][kTp], Vs[kTl][kTp];
  __shared__ int32_t qmax[kTl];
  constexpr int NC = DVMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.z, r0 = int64_t(blockIdx.y) * kTl, chunk = blockIdx.x;
  const int64_t n0 = chunk * c.cht, n1 = imin(c.N, n0 + c.cht);
  const T3& K = c.p.keys;
  const T3& V = c.p.values;
  int32_t qp[2];
#pragma unroll
  for (int a = 0; a < 2; a++) qp[a] = r0 + ty + 16 * a < c.rows ? qpos_of(c, r0 + ty + 16 * a) : -1;
  if (tid < kTl) qmax[tid] = r0 + tid < c.rows ? qpos_of(c, r0 + tid) : -1;
  __syncthreads();
  int32_t maxq = -1;
  for (int i = 0; i < kTl; i++) maxq = max(maxq, qmax[i]);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, acc[2][2 * NC];
  tile_zero(acc);
  for (int64_t t0 = n0; t0 < n1 && t0 <= maxq; t0 += kTl) {
    float dot[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    tile_dot_cols(Qs, Ks, c.d, tid, ty, tx, dot, query_rows<float>(c, h, r0), stored_rows<DT, float>(K, h, t0, n1));
#pragma unroll
    for (int a = 0; a < 2; a++) {
      float lg[2];
#pragma unroll
      for (int b = 0; b < 2; b++) {
        const int64_t key = t0 + tx + 16 * b;
        lg[b] = key < n1 && key <= qp[a] ? dot[a][b] * c.p.scale : -INFINITY;
      }
      const float mnew = fmaxf(m[a], half_max(fmaxf(lg[0], lg[1])));
      float pr[2] = {0.f, 0.f}, corr = 1.f;
      if (mnew != -INFINITY) {
        corr = m[a] == -INFINITY ? 0.f : expf(m[a] - mnew);
        pr[0] = expf(lg[0] - mnew);
        pr[1] = expf(lg[1] - mnew);
      }
      l[a] = l[a] * corr + half_sum(pr[0] + pr[1]);
      m[a] = mnew;
#pragma unroll
      for (int j = 0; j < 2 * NC; j++) acc[a][j] *= corr;
      Ps[ty + 16 * a][tx] = pr[0];
      Ps[ty + 16 * a][tx + 16] = pr[1];
    }
    tile_pb<false, NC>(Ps, Vs, c.dv, ty, tx, acc, [&](int cc) {
      tile_fill(Vs, tid, [&](int tt, int col) {
        const int64_t key = t0 + tt, cv = cc * kTl + col;
        return key < n1 && cv < c.dv ? ldf<DT>(V.p, h * V.s0 + key * V.s1 + cv * V.s2) : 0.f;
      });
    });
  }
  const int64_t stride = c.dv + 2;
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t row = r0 + ty + 16 * a;
    if (row >= c.rows) continue;
    float* out = c.part + ((h * c.ncht + chunk) * c.rows + row) * stride;
    if (tx == 0) {
      out[0] = m[a];
      out[1] = l[a];
    }
    tile_store_row<NC>(acc, a, c.dv, tx, out + 2);
  }
}

// LSE merge of the target partials: one warp per (head, row).
__global__ void target_merge_kernel(Ctx c) {
  const int64_t wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (wid >= c.H * c.rows) return;
  const int64_t h = wid / c.rows, i = wid % c.rows, stride = c.dv + 2;
  const float* base = c.part + (h * c.ncht * c.rows + i) * stride;
  const int64_t cs = c.rows * stride;  // chunk stride
  float M = -INFINITY;
  for (int64_t k = lane; k < c.ncht; k += kWarp) M = fmaxf(M, base[k * cs]);
  M = warp_max(M);
  float* o = c.ostar + (h * c.rows + i) * c.dv;
  if (M == -INFINITY) {
    for (int64_t col = lane; col < c.dv; col += kWarp) o[col] = 0.f;
    return;
  }
  float L = 0.f;
  for (int64_t k = lane; k < c.ncht; k += kWarp) {
    const float mk = base[k * cs];
    if (mk != -INFINITY) L += base[k * cs + 1] * expf(mk - M);
  }
  L = warp_sum(L);
  const float inv = 1.0f / L;
  for (int64_t col = lane; col < c.dv; col += kWarp) {
    float s = 0.f;
    for (int64_t k = 0; k < c.ncht; k++) {
      const float mk = base[k * cs];
      if (mk != -INFINITY) s += base[k * cs + 2 + col] * expf(mk - M);
    }
    o[col] = s * inv;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// attention over the retained slots (rows of keys_out / values_out, which hold the current candidate)

// A[h, i, s] = scale q_i . k_s for visible slots (spos[s] <= qpos_i), -inf otherwise (s < count only).
template <int DT>
__global__ void __launch_bounds__(kT) logits_kernel(Ctx c, int sel) {
  __shared__ float Qs[kTl][kTp], Ks[kTl][kTp];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.z, r0 = int64_t(blockIdx.y) * kTl, s0 = int64_t(blockIdx.x) * kTl;
  if (!head_on(c, h, sel)) return;
  const int64_t S = c.st[h].count;
  if (s0 >= S) return;
  const O3& K = c.p.keys_out;
  float dot[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
  tile_dot_cols(Qs, Ks, c.d, tid, ty, tx, dot, query_rows<float>(c, h, r0), stored_rows<DT, float>(K, h, s0, S));
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t row = r0 + ty + 16 * a;
    if (row >= c.rows) continue;
    const int32_t qp = qpos_of(c, row);
#pragma unroll
    for (int b = 0; b < 2; b++) {
      const int64_t slot = s0 + tx + 16 * b;
      if (slot >= S) continue;
      const int32_t pos = c.spos[h * c.cap + slot];
      c.A[(h * c.rows + row) * c.cap + slot] = pos >= 0 && pos <= qp ? dot[a][b] * c.p.scale : -INFINITY;
    }
  }
}

// Softmax of each row of A over its count slots, in place (a row with no visible slot becomes 0). Warp per row.
__global__ void softmax_kernel(Ctx c, int sel) {
  const int64_t wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (wid >= c.H * c.rows) return;
  const int64_t h = wid / c.rows, i = wid % c.rows;
  if (!head_on(c, h, sel)) return;
  const int64_t S = c.st[h].count;
  float* a = c.A + (h * c.rows + i) * c.cap;
  float mx = -INFINITY;
  for (int64_t s = lane; s < S; s += kWarp) mx = fmaxf(mx, a[s]);
  mx = warp_max(mx);
  if (mx == -INFINITY) {
    for (int64_t s = lane; s < S; s += kWarp) a[s] = 0.f;
    return;
  }
  float sum = 0.f;
  for (int64_t s = lane; s < S; s += kWarp) {
    const float e = expf(a[s] - mx);
    a[s] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  const float inv = 1.0f / sum;
  for (int64_t s = lane; s < S; s += kWarp) a[s] *= inv;
}

// Split-K o = A V over the retained slots: partial sums per (head, slot chunk, row).
template <int DT, int DVMAX>
__global__ void __launch_bounds__(kT) av_kernel(Ctx c, int sel) {
  __shared__ float Ps[kTl][kTp], Vs[kTl][kTp];
  constexpr int NC = DVMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.z, r0 = int64_t(blockIdx.y) * kTl, chunk = blockIdx.x;
  if (!head_on(c, h, sel)) return;
  const int64_t S = c.st[h].count;
  const int64_t t1 = imin(S, (chunk + 1) * kChunkSlots);
  const O3& V = c.p.values_out;
  float acc[2][2 * NC];
  tile_zero(acc);
  for (int64_t t0 = chunk * kChunkSlots; t0 < t1; t0 += kTl) {
    for (int e = tid; e < kTl * kTl; e += kT) {
      const int rr = e / kTl, tt = e % kTl;
      const int64_t row = r0 + rr, slot = t0 + tt;
      Ps[rr][tt] = row < c.rows && slot < t1 ? c.A[(h * c.rows + row) * c.cap + slot] : 0.f;
    }
    tile_pb<false, NC>(Ps, Vs, c.dv, ty, tx, acc, [&](int cc) {
      tile_fill(Vs, tid, [&](int tt, int col) {
        const int64_t slot = t0 + tt, cv = cc * kTl + col;
        return slot < t1 && cv < c.dv ? ldf<DT>(V.p, h * V.s0 + slot * V.s1 + cv * V.s2) : 0.f;
      });
    });
  }
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t row = r0 + ty + 16 * a;
    if (row >= c.rows) continue;
    float* out = c.part + ((h * c.nchs + chunk) * c.rows + row) * c.dv;
    tile_store_row<NC>(acc, a, c.dv, tx, out);
  }
}

// out[h, i, :] = sum over chunks of the av partials.
__global__ void av_reduce_kernel(Ctx c, float* out, int sel) {
  const int64_t n = c.H * c.rows * c.dv;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = e / (c.rows * c.dv), r = e % (c.rows * c.dv);
    if (!head_on(c, h, sel)) continue;
    float s = 0.f;
    for (int64_t k = 0; k < c.nchs; k++) s += c.part[(h * c.nchs + k) * c.rows * c.dv + r];
    out[e] = s;
  }
}

// Loss of candidate k (spec §6): sum_i w_i ||o_i - o*_i||^2, plus lambda times the ridge of the steps taken.
__global__ void __launch_bounds__(kRedThreads) loss_kernel(Ctx c, const float* o, int k, int sel) {
  __shared__ double sh[32];
  const int64_t h = blockIdx.x;
  if (!head_on(c, h, sel)) return;
  double acc = 0;
  for (int64_t i = 0; i < c.rows; i++) {
    double e = 0;
    for (int64_t col = threadIdx.x; col < c.dv; col += blockDim.x) {
      const double x = double(o[(h * c.rows + i) * c.dv + col]) - double(c.ostar[(h * c.rows + i) * c.dv + col]);
      e += x * x;
    }
    acc += double(w_of(c, i)) * e;
  }
  const double L = block_sum<double>(acc, sh);
  if (threadIdx.x == 0) {
    GrkvHead& st = c.st[h];
    st.loss[k] = L;
    const double ridge = k == 0 ? 0.0 : k == 1 ? st.dist2[0] : st.dist2[0] + st.dist2[1];
    st.L[k] = L + c.p.lambda * ridge;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// value step

// Gram of Aw = sqrt(w) * A restricted to the mutable slots, plus lambda on the diagonal: lower 32x32 blocks.
__global__ void __launch_bounds__(kT) gram_kernel(Ctx c) {
  __shared__ float Xi[kTl][kTp], Xj[kTl][kTp];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.y;
  int bi = 0;
  while ((bi + 1) * (bi + 2) / 2 <= int(blockIdx.x)) bi++;
  const int bj = int(blockIdx.x) - bi * (bi + 1) / 2;
  const int64_t i0 = int64_t(bi) * kTl, j0 = int64_t(bj) * kTl;
  const int64_t S = c.st[h].count;
  float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
  for (int64_t t0 = 0; t0 < S; t0 += kTl) {
    for (int e = tid; e < kTl * kTl; e += kT) {
      const int rr = e / kTl, tt = e % kTl;
      const int64_t slot = t0 + tt;
      const bool mut = slot < S && c.smut[h * c.cap + slot];
      const int64_t ri = i0 + rr, rj = j0 + rr;
      Xi[rr][tt] = mut && ri < c.rows ? sw_of(c, ri) * c.A[(h * c.rows + ri) * c.cap + slot] : 0.f;
      Xj[rr][tt] = mut && rj < c.rows ? sw_of(c, rj) * c.A[(h * c.rows + rj) * c.cap + slot] : 0.f;
    }
    __syncthreads();
    tile_dot<float>(Xi, Xj, ty, tx, acc);
    __syncthreads();
  }
#pragma unroll
  for (int a = 0; a < 2; a++)
#pragma unroll
    for (int b = 0; b < 2; b++) {
      const int64_t i = i0 + ty + 16 * a, j = j0 + tx + 16 * b;
      if (i < c.rows && j < c.rows)
        c.Gm[(h * c.rows + i) * c.rows + j] = acc[a][b] + (i == j ? float(c.p.lambda) : 0.f);
    }
}

// Right-hand sides of the value step: X = sqrt(w) (o* - o).
__global__ void rhs_kernel(Ctx c) {
  const int64_t n = c.H * c.rows * c.dv;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = (e / c.dv) % c.rows;
    c.X[e] = sw_of(c, i) * (c.ostar[e] - c.o[e]);
  }
}

// dV_s = mut_s * sum_i sqrt(w_i) A_is X_i (slot-major accumulation over row blocks). One CTA per 32 slots.
template <int DVMAX>
__global__ void __launch_bounds__(kT) dv_kernel(Ctx c) {
  __shared__ float Ps[kTl][kTp], Xs[kTl][kTp];
  constexpr int NC = DVMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.y, s0 = int64_t(blockIdx.x) * kTl;
  if (!c.st[h].active) return;
  const int64_t S = c.st[h].count;
  if (s0 >= S) return;
  float acc[2][2 * NC];
  tile_zero(acc);
  for (int64_t r0 = 0; r0 < c.rows; r0 += kTl) {
    for (int e = tid; e < kTl * kTl; e += kT) {
      const int rr = e / kTl, tt = e % kTl;
      const int64_t row = r0 + rr, slot = s0 + tt;
      const bool ok = row < c.rows && slot < S && c.smut[h * c.cap + slot];
      Ps[rr][tt] = ok ? sw_of(c, row) * c.A[(h * c.rows + row) * c.cap + slot] : 0.f;
    }
    tile_pb<true, NC>(Ps, Xs, c.dv, ty, tx, acc, [&](int cc) {
      tile_fill(Xs, tid, [&](int rr, int col) {
        const int64_t row = r0 + rr, cv = cc * kTl + col;
        return row < c.rows && cv < c.dv ? c.X[(h * c.rows + row) * c.dv + cv] : 0.f;
      });
    });
  }
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t slot = s0 + ty + 16 * a;
    if (slot >= S) continue;
    tile_store_row<NC>(acc, a, c.dv, tx, c.Dv + (h * c.cap + slot) * c.dv);
  }
}

// Capped step of one head (§7.3): norms, first-cut scale, storage-rounding recheck, then the candidate rows
// round(X0 + s D) written into the output rows of the mutable slots. X0 is read from the original input rows.
// which = 0: values (D = dV, f32 [H, cap, dv]); which = 1: keys (D = dK, f64 [H, cap, d]).
template <int DT, typename DTy>
__global__ void __launch_bounds__(kStepThreads) step_kernel(Ctx c, int which, const DTy* D, double cap) {
  __shared__ double sh[32];
  const int64_t h = blockIdx.x;
  GrkvHead& st = c.st[h];
  if (!st.active) return;
  const T3& in = which ? c.p.keys : c.p.values;
  const O3& out = which ? c.p.keys_out : c.p.values_out;
  const int64_t w = which ? c.d : c.dv;
  const int64_t S = st.count;
  const int32_t* spos = c.spos + h * c.cap;
  const uint8_t* smut = c.smut + h * c.cap;
  auto x0_at = [&](int64_t s, int64_t col) { return ldf<DT>(in.p, h * in.s0 + int64_t(spos[s]) * in.s1 + col * in.s2); };
  auto d_at = [&](int64_t s, int64_t col) { return float(D[(h * c.cap + s) * w + col]); };
  double n0 = 0, nd = 0;
  for (int64_t e = threadIdx.x; e < S * w; e += blockDim.x) {
    const int64_t s = e / w, col = e % w;
    if (!smut[s]) continue;
    const double x = x0_at(s, col), dd = d_at(s, col);
    n0 += x * x;
    nd += dd * dd;
  }
  n0 = sqrt(block_sum<double>(n0, sh));
  nd = sqrt(block_sum<double>(nd, sh));
  auto dist2 = [&](double s) {
    double acc = 0;
    for (int64_t e = threadIdx.x; e < S * w; e += blockDim.x) {
      const int64_t sl = e / w, col = e % w;
      if (!smut[sl]) continue;
      const float x = x0_at(sl, col);
      const double diff = double(grkv_candidate(x, s, d_at(sl, col), DT)) - double(x);
      acc += diff * diff;
    }
    return block_sum<double>(acc, sh);
  };
  int32_t shrinks = 0;
  bool dropped = false;
  double d2 = 0;
  const double s = grkv_step_scale(cap, n0, nd, DT, dist2, &shrinks, &dropped, &d2);
  double bad = 0;
  for (int64_t e = threadIdx.x; e < S * w; e += blockDim.x) {
    const int64_t sl = e / w, col = e % w;
    if (!smut[sl]) continue;
    const float v = grkv_candidate(x0_at(sl, col), s, d_at(sl, col), DT);
    bad += finite_f(v) ? 0.0 : 1.0;
    stf<DT>(out.p, h * out.s0 + sl * out.s1 + col * out.s2, v);
  }
  bad = block_sum<double>(bad, sh);
  if (threadIdx.x == 0) {
    st.n0[which] = n0;
    st.nd[which] = nd;
    st.scale[which] = s;
    st.shrinks[which] = shrinks;
    st.dist2[which] = d2;
    st.nonfinite[which] = bad > 0;
    if (dropped) st.flags |= which ? kGrkvDroppedK : kGrkvDroppedV;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// key step (fp64)

// b = sqrt(w) (o* - o1); res = p = b; x = 0; CG start.
__global__ void __launch_bounds__(kRedThreads) cg_init_kernel(Ctx c) {
  __shared__ double sh[32];
  const int64_t h = blockIdx.x;
  if (!c.st[h].active) return;
  const int64_t n = c.rows * c.dv, off = h * n;
  double rr = 0;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    const double b = double(sw_of(c, e / c.dv)) * (double(c.ostar[off + e]) - double(c.o1[off + e]));
    c.res[off + e] = b;
    c.pv[off + e] = b;
    c.x[off + e] = 0.0;
    rr += b * b;
  }
  rr = block_sum<double>(rr, sh);
  if (threadIdx.x == 0) grkv_cg_start(c.st[h], rr, c.p.tol, c.p.cg_iters);
}

// uo_i = sum_c sqrt(w_i) U_ic o1_ic (U = p or x). One warp per (head, row).
__global__ void rowdot_kernel(Ctx c, const double* U, int sel) {
  const int64_t wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (wid >= c.H * c.rows) return;
  const int64_t h = wid / c.rows, i = wid % c.rows;
  if (!head_on(c, h, sel)) return;
  const double sw = sw_of(c, i);
  double acc = 0;
  for (int64_t col = lane; col < c.dv; col += kWarp)
    acc += sw * U[wid * c.dv + col] * double(c.o1[wid * c.dv + col]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += shfl_xor(acc, o);
  if (lane == 0) c.uo[wid] = acc;
}

// VJP: T_s = scale * sum_i A_is mut_s (U'_i . v1_s - uo_i) q_i with U' = sqrt(w) U. One CTA per 32 slots.
template <int DT, int DMAX>
__global__ void __launch_bounds__(kT) vjp_kernel(Ctx c, const double* U, int sel) {
  __shared__ double Us[kTl][kTp], Vs[kTl][kTp], Ps[kTl][kTp], Qs[kTl][kTp];
  constexpr int NC = DMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.y, s0 = int64_t(blockIdx.x) * kTl;
  if (!head_on(c, h, sel)) return;
  const int64_t S = c.st[h].count;
  if (s0 >= S) return;
  const O3& V = c.p.values_out;
  const double scale = c.p.scale;
  double acc[2][2 * NC];
  tile_zero(acc);
  for (int64_t r0 = 0; r0 < c.rows; r0 += kTl) {
    double cd[2][2] = {{0.0, 0.0}, {0.0, 0.0}};
    tile_dot_cols(Us, Vs, c.dv, tid, ty, tx, cd,
        [&](int rr, int64_t col) {
          const int64_t row = r0 + rr;
          return row < c.rows ? double(sw_of(c, row)) * U[(h * c.rows + row) * c.dv + col] : 0.0;
        },
        stored_rows<DT, double>(V, h, s0, S));
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
      for (int b = 0; b < 2; b++) {
        const int64_t row = r0 + ty + 16 * a, slot = s0 + tx + 16 * b;
        const bool ok = row < c.rows && slot < S && c.smut[h * c.cap + slot];
        Ps[ty + 16 * a][tx + 16 * b] =
            ok ? scale * double(c.A[(h * c.rows + row) * c.cap + slot]) * (cd[a][b] - c.uo[h * c.rows + row]) : 0.0;
      }
    tile_pb<true, NC>(Ps, Qs, c.d, ty, tx, acc, [&](int cc) {
      tile_fill(Qs, tid, [&](int rr, int col) {
        const int64_t row = r0 + rr, cq = cc * kTl + col;
        return row < c.rows && cq < c.d ? double(c.Qf[(h * c.rows + row) * c.d + cq]) : 0.0;
      });
    });
  }
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t slot = s0 + ty + 16 * a;
    if (slot >= S) continue;
    tile_store_row<NC>(acc, a, c.d, tx, c.T + (h * c.cap + slot) * c.d);
  }
}

// JVP partials: f_is = scale A_is mut_s (q_i . T_s); per (head, slot chunk, row): [sum_s f_is, sum_s f_is v1_s].
template <int DT, int DVMAX>
__global__ void __launch_bounds__(kT) jvp_kernel(Ctx c) {
  __shared__ double Qs[kTl][kTp], Ts[kTl][kTp], Ps[kTl][kTp], Vs[kTl][kTp];
  constexpr int NC = DVMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.z, r0 = int64_t(blockIdx.y) * kTl, chunk = blockIdx.x;
  if (!head_on(c, h, kCgHeads)) return;
  const int64_t S = c.st[h].count;
  const int64_t t1 = imin(S, (chunk + 1) * kChunkSlots);
  const O3& V = c.p.values_out;
  const double scale = c.p.scale;
  double acc[2][2 * NC], fs[2] = {0.0, 0.0};
  tile_zero(acc);
  for (int64_t t0 = chunk * kChunkSlots; t0 < t1; t0 += kTl) {
    double qd[2][2] = {{0.0, 0.0}, {0.0, 0.0}};
    tile_dot_cols(Qs, Ts, c.d, tid, ty, tx, qd, query_rows<double>(c, h, r0),
        [&](int rr, int64_t col) {
          const int64_t slot = t0 + rr;
          return slot < t1 ? c.T[(h * c.cap + slot) * c.d + col] : 0.0;
        });
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
      for (int b = 0; b < 2; b++) {
        const int64_t row = r0 + ty + 16 * a, slot = t0 + tx + 16 * b;
        const bool ok = row < c.rows && slot < t1 && c.smut[h * c.cap + slot];
        const double f = ok ? scale * double(c.A[(h * c.rows + row) * c.cap + slot]) * qd[a][b] : 0.0;
        fs[a] += f;
        Ps[ty + 16 * a][tx + 16 * b] = f;
      }
    tile_pb<false, NC>(Ps, Vs, c.dv, ty, tx, acc, [&](int cc) {
      tile_fill(Vs, tid, [&](int tt, int col) {
        const int64_t slot = t0 + tt, cv = cc * kTl + col;
        return slot < t1 && cv < c.dv ? double(ldf<DT>(V.p, h * V.s0 + slot * V.s1 + cv * V.s2)) : 0.0;
      });
    });
  }
  const int64_t stride = c.dv + 1;
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const double fsum = half_sum(fs[a]);
    const int64_t row = r0 + ty + 16 * a;
    if (row >= c.rows) continue;
    double* out = c.partd + ((h * c.nchs + chunk) * c.rows + row) * stride;
    if (tx == 0) out[0] = fsum;
    tile_store_row<NC>(acc, a, c.dv, tx, out + 1);
  }
}

// Y_i = sqrt(w_i) (sum_s f_is v1_s - (sum_s f_is) o1_i), summed over the chunks.
__global__ void jvp_reduce_kernel(Ctx c) {
  const int64_t n = c.H * c.rows * c.dv;
  const int64_t stride = c.dv + 1;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = e / (c.rows * c.dv), i = (e / c.dv) % c.rows, col = e % c.dv;
    if (!head_on(c, h, kCgHeads)) continue;
    double y = 0, fsum = 0;
    for (int64_t k = 0; k < c.nchs; k++) {
      const double* pp = c.partd + ((h * c.nchs + k) * c.rows + i) * stride;
      fsum += pp[0];
      y += pp[1 + col];
    }
    c.Y[e] = double(sw_of(c, i)) * (y - fsum * double(c.o1[e]));
  }
}

// One CG iteration per head: Ap = Y + lambda p, alpha, x, res, beta, p (shared scalar logic in grkv_math.h).
__global__ void __launch_bounds__(kRedThreads) cg_update_kernel(Ctx c) {
  __shared__ double sh[32];
  __shared__ double s_alpha, s_beta;
  __shared__ int s_ok, s_active;
  const int64_t h = blockIdx.x;
  if (!head_on(c, h, kCgHeads)) return;
  const int64_t n = c.rows * c.dv, off = h * n;
  const double lambda = c.p.lambda;
  double pAp = 0;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    const double ap = c.Y[off + e] + lambda * c.pv[off + e];
    c.Y[off + e] = ap;
    pAp += c.pv[off + e] * ap;
  }
  pAp = block_sum<double>(pAp, sh);
  if (threadIdx.x == 0) {
    double alpha = 0;
    s_ok = grkv_cg_alpha(c.st[h], pAp, &alpha);
    s_alpha = alpha;
  }
  __syncthreads();
  if (!s_ok) return;
  const double alpha = s_alpha;
  double rr = 0;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    c.x[off + e] += alpha * c.pv[off + e];
    const double r = c.res[off + e] - alpha * c.Y[off + e];
    c.res[off + e] = r;
    rr += r * r;
  }
  rr = block_sum<double>(rr, sh);
  if (threadIdx.x == 0) {
    s_beta = grkv_cg_after(c.st[h], rr, c.p.tol, c.p.cg_iters);
    s_active = c.st[h].cg_active;
  }
  __syncthreads();
  if (!s_active) return;
  const double beta = s_beta;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) c.pv[off + e] = c.res[off + e] + beta * c.pv[off + e];
}

// ---------------------------------------------------------------------------------------------------------------
// finalize

// Per head: the value-only ablation, the choice, non-finite objectives, diagnostics.
__global__ void finalize_kernel(Ctx c, int run_key) {
  const int64_t h = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (h >= c.H) return;
  GrkvHead& st = c.st[h];
  if (st.active) {
    if (!run_key) {
      st.loss[2] = st.loss[1];
      st.L[2] = st.L[1];
      st.scale[1] = 0;
      st.nonfinite[1] = 0;
    }
    if (st.spd_info) st.flags |= kGrkvNotSpd;
    const bool ok1 = !st.nonfinite[0], ok2 = ok1 && !st.nonfinite[1];
    if (!ok1) st.flags |= kGrkvNonfiniteV;
    if (!ok2) st.flags |= kGrkvNonfiniteKV;
    st.chosen = grkv_choose(st.L, ok1, ok2, c.p.accept);
    for (int i = 1; i < 3; i++)
      if (!finite_d(st.L[i]) || (i == 1 && !ok1) || (i == 2 && !ok2)) st.L[i] = NAN;
  } else {
    st.chosen = 0;
    st.L[1] = st.L[2] = st.L[0];
  }
  if (c.p.diag) grkv_diag_row(st, c.p.diag + h * c.p.diag_s0, c.p.diag_s1);
}

// Rows of rejected candidates go back to the inputs (bit copies): keys unless key+value won, values if unchanged.
template <int ES>
__global__ void restore_kernel(Ctx c) {
  using U = typename std::conditional<ES == 4, uint32_t, uint16_t>::type;
  const int64_t wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (wid >= c.H * c.cap) return;
  const int64_t h = wid / c.cap, s = wid % c.cap;
  const GrkvHead& st = c.st[h];
  if (!st.active || s >= st.count || !c.smut[h * c.cap + s] || st.chosen == 2) return;
  const int64_t pos = c.spos[h * c.cap + s];
  const GrkvParams& p = c.p;
  for (int64_t col = lane; col < c.d; col += kWarp)
    static_cast<U*>(p.keys_out.p)[h * p.keys_out.s0 + s * p.keys_out.s1 + col * p.keys_out.s2] =
        static_cast<const U*>(p.keys.p)[h * p.keys.s0 + pos * p.keys.s1 + col * p.keys.s2];
  if (st.chosen == 0)
    for (int64_t col = lane; col < c.dv; col += kWarp)
      static_cast<U*>(p.values_out.p)[h * p.values_out.s0 + s * p.values_out.s1 + col * p.values_out.s2] =
          static_cast<const U*>(p.values.p)[h * p.values.s0 + pos * p.values.s1 + col * p.values.s2];
}

// ---------------------------------------------------------------------------------------------------------------
// host orchestration

inline unsigned blocks_for(int64_t n, int threads) { return unsigned(imax(ceil_div(n, threads), 1)); }

template <int DT, int DVMAX, int DMAX>
struct Run {
  static cudaError_t go(Ctx& c, cudaStream_t stream) {
    const int64_t H = c.H, rows = c.rows, cap = c.cap;
    const unsigned rb = unsigned(ceil_div(rows, kTl));
    const unsigned warps_rows = blocks_for(H * rows * kWarp, kT);
    const bool run_key = c.p.cap_key > 0 && c.p.cg_iters > 0;
    // target
    target_kernel<DT, DVMAX><<<dim3(unsigned(c.ncht), rb, unsigned(H)), kT, 0, stream>>>(c);
    KVT_CU_TRY(cudaGetLastError());
    target_merge_kernel<<<warps_rows, kT, 0, stream>>>(c);
    KVT_CU_TRY(cudaGetLastError());
    // attention over the retained rows at (K0, V0) and L0, every head
    auto attention = [&](int sel) -> cudaError_t {
      logits_kernel<DT><<<dim3(unsigned(ceil_div(cap, kTl)), rb, unsigned(H)), kT, 0, stream>>>(c, sel);
      KVT_CU_TRY(cudaGetLastError());
      softmax_kernel<<<warps_rows, kT, 0, stream>>>(c, sel);
      KVT_CU_TRY(cudaGetLastError());
      return cudaSuccess;
    };
    auto output = [&](int sel, float* out, int k) -> cudaError_t {
      av_kernel<DT, DVMAX><<<dim3(unsigned(c.nchs), rb, unsigned(H)), kT, 0, stream>>>(c, sel);
      KVT_CU_TRY(cudaGetLastError());
      av_reduce_kernel<<<blocks_for(H * rows * c.dv, kT), kT, 0, stream>>>(c, out, sel);
      KVT_CU_TRY(cudaGetLastError());
      loss_kernel<<<unsigned(H), kRedThreads, 0, stream>>>(c, out, k, sel);
      return cudaGetLastError();
    };
    KVT_CU_TRY(attention(kAllHeads));
    KVT_CU_TRY(output(kAllHeads, c.o, 0));
    // value step
    const int64_t nb = ceil_div(rows, kTl);
    gram_kernel<<<dim3(unsigned(nb * (nb + 1) / 2), unsigned(H)), kT, 0, stream>>>(c);
    KVT_CU_TRY(cudaGetLastError());
    rhs_kernel<<<blocks_for(H * rows * c.dv, kT), kT, 0, stream>>>(c);
    KVT_CU_TRY(cudaGetLastError());
    SpdPlan plan;
    KVT_CU_TRY(spd_plan(rows, &plan));
    Scratch factor(plan.global_factor ? size_t(H * (rows * (rows + 1) / 2)) * sizeof(float) : 0, stream);
    KVT_CU_TRY(factor.error());
    const F3 gm{c.Gm, H, rows, rows, rows * rows, rows, 1};
    const F3 xs{c.X, H, rows, c.dv, rows * c.dv, c.dv, 1};
    int32_t* info = reinterpret_cast<int32_t*>(reinterpret_cast<char*>(c.st) + offsetof(GrkvHead, spd_info));
    KVT_CU_TRY(spd_launch(gm, xs, 0.0f, xs, info, int64_t(sizeof(GrkvHead) / sizeof(int32_t)), plan,
                          factor.as<float>(), stream));
    dv_kernel<DVMAX><<<dim3(unsigned(ceil_div(cap, kTl)), unsigned(H)), kT, 0, stream>>>(c);
    KVT_CU_TRY(cudaGetLastError());
    step_kernel<DT, float><<<unsigned(H), kStepThreads, 0, stream>>>(c, 0, c.Dv, c.p.cap_value);
    KVT_CU_TRY(cudaGetLastError());
    KVT_CU_TRY(output(kFitHeads, c.o1, 1));
    // key step
    if (run_key) {
      cg_init_kernel<<<unsigned(H), kRedThreads, 0, stream>>>(c);
      KVT_CU_TRY(cudaGetLastError());
      for (int it = 0; it < c.p.cg_iters; it++) {
        rowdot_kernel<<<warps_rows, kT, 0, stream>>>(c, c.pv, kCgHeads);
        KVT_CU_TRY(cudaGetLastError());
        vjp_kernel<DT, DMAX><<<dim3(unsigned(ceil_div(cap, kTl)), unsigned(H)), kT, 0, stream>>>(c, c.pv, kCgHeads);
        KVT_CU_TRY(cudaGetLastError());
        jvp_kernel<DT, DVMAX><<<dim3(unsigned(c.nchs), rb, unsigned(H)), kT, 0, stream>>>(c);
        KVT_CU_TRY(cudaGetLastError());
        jvp_reduce_kernel<<<blocks_for(H * rows * c.dv, kT), kT, 0, stream>>>(c);
        KVT_CU_TRY(cudaGetLastError());
        cg_update_kernel<<<unsigned(H), kRedThreads, 0, stream>>>(c);
        KVT_CU_TRY(cudaGetLastError());
      }
      rowdot_kernel<<<warps_rows, kT, 0, stream>>>(c, c.x, kFitHeads);
      KVT_CU_TRY(cudaGetLastError());
      vjp_kernel<DT, DMAX><<<dim3(unsigned(ceil_div(cap, kTl)), unsigned(H)), kT, 0, stream>>>(c, c.x, kFitHeads);
      KVT_CU_TRY(cudaGetLastError());
      step_kernel<DT, double><<<unsigned(H), kStepThreads, 0, stream>>>(c, 1, c.T, c.p.cap_key);
      KVT_CU_TRY(cudaGetLastError());
      KVT_CU_TRY(attention(kFitHeads));
      KVT_CU_TRY(output(kFitHeads, c.o, 2));
    }
    finalize_kernel<<<blocks_for(H, 128), 128, 0, stream>>>(c, run_key ? 1 : 0);
    KVT_CU_TRY(cudaGetLastError());
    restore_kernel<DT == kF32 ? 4 : 2><<<blocks_for(H * cap * kWarp, kT), kT, 0, stream>>>(c);
    return cudaGetLastError();
  }
};

template <int DT>
cudaError_t run_dt(Ctx& c, cudaStream_t s) {
  const int64_t dvm = c.dv <= 64 ? 64 : c.dv <= 128 ? 128 : 256;
  const int64_t dm = c.d <= 64 ? 64 : c.d <= 128 ? 128 : 256;
#define KVT_GRKV_D(DVM)                                     \
  if (dm == 64) return Run<DT, DVM, 64>::go(c, s);         \
  if (dm == 128) return Run<DT, DVM, 128>::go(c, s);       \
  return Run<DT, DVM, 256>::go(c, s);
  if (dvm == 64) {
    KVT_GRKV_D(64)
  }
  if (dvm == 128) {
    KVT_GRKV_D(128)
  }
  KVT_GRKV_D(256)
#undef KVT_GRKV_D
}

// Sub-allocations of one scratch buffer, 256-byte aligned.
struct Layout {
  size_t bytes = 0;
  size_t take(size_t n) {
    const size_t at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};

}  // namespace

cudaError_t grkv_merge(const GrkvParams& p, cudaStream_t stream) {
  Ctx c{};
  c.p = p;
  c.H = p.keys.n0;
  c.N = p.keys.n1;
  c.d = p.keys.n2;
  c.dv = p.values.n2;
  c.Qs = p.queries.n1;
  c.G = p.queries.n0 / (c.H > 0 ? c.H : 1);
  c.rows = c.G * c.Qs;
  c.cap_in = p.indices.n1;
  c.cap = p.keys_out.n1;
  if (c.H == 0 || c.cap == 0) return cudaSuccess;
  if (c.rows > kGrkvMaxRows || c.d > kGrkvMaxDim || c.dv > kGrkvMaxDim || c.H > 65535) return cudaErrorInvalidValue;
  // plain eviction first: every output row as gatherKV writes it
  KVT_CU_TRY(gather_kv(p.keys, p.values, p.indices, p.counts, p.keys_out, p.values_out, p.counts_out, nullptr, stream));
  // target split: about four CTAs per SM over the layer
  const int64_t rb = ceil_div(imax(c.rows, 1), kTl);
  const int sms = sm_count(current_device());
  c.ncht = imax(1, imin(ceil_div(int64_t(sms) * 4, c.H * rb), ceil_div(c.N, kTl)));
  c.cht = ceil_div(ceil_div(c.N, c.ncht), kTl) * kTl;
  c.ncht = ceil_div(c.N, c.cht);
  c.nchs = ceil_div(c.cap, kChunkSlots);
  if (c.ncht > 65535 || c.nchs > 65535) return cudaErrorInvalidConfiguration;
  const int64_t H = c.H, rows = c.rows, cap = c.cap, d = c.d, dv = c.dv;
  Layout L;
  const size_t oQf = L.take(size_t(H * rows * d) * 4), oSpos = L.take(size_t(H * cap) * 4), oSmut = L.take(size_t(H * cap));
  const size_t oSt = L.take(size_t(H) * sizeof(GrkvHead)), oSkey = L.take(size_t(H * cap) * 8);
  const size_t oOstar = L.take(size_t(H * rows * dv) * 4), oO = L.take(size_t(H * rows * dv) * 4);
  const size_t oO1 = L.take(size_t(H * rows * dv) * 4), oX = L.take(size_t(H * rows * dv) * 4);
  const size_t oA = L.take(size_t(H * rows * cap) * 4), oGm = L.take(size_t(H * rows * rows) * 4);
  const size_t oDv = L.take(size_t(H * cap * dv) * 4);
  const size_t oPart = L.take(size_t(H * imax(c.ncht * (dv + 2), c.nchs * dv) * rows) * 4);
  const bool run_key = p.cap_key > 0 && p.cg_iters > 0 && rows > 0;
  const size_t nv = run_key ? size_t(H * rows * dv) * 8 : 0;
  const size_t ox = L.take(nv), ores = L.take(nv), op = L.take(nv), oY = L.take(nv);
  const size_t ouo = L.take(run_key ? size_t(H * rows) * 8 : 0), oT = L.take(run_key ? size_t(H * cap * d) * 8 : 0);
  const size_t oPartd = L.take(run_key ? size_t(H * c.nchs * rows * (dv + 1)) * 8 : 0);
  Scratch scratch(L.bytes, stream);
  KVT_CU_TRY(scratch.error());
  char* base = scratch.as<char>();
  c.Qf = reinterpret_cast<float*>(base + oQf);
  c.spos = reinterpret_cast<int32_t*>(base + oSpos);
  c.smut = reinterpret_cast<uint8_t*>(base + oSmut);
  c.st = reinterpret_cast<GrkvHead*>(base + oSt);
  c.skey = reinterpret_cast<uint64_t*>(base + oSkey);
  c.ostar = reinterpret_cast<float*>(base + oOstar);
  c.o = reinterpret_cast<float*>(base + oO);
  c.o1 = reinterpret_cast<float*>(base + oO1);
  c.X = reinterpret_cast<float*>(base + oX);
  c.A = reinterpret_cast<float*>(base + oA);
  c.Gm = reinterpret_cast<float*>(base + oGm);
  c.Dv = reinterpret_cast<float*>(base + oDv);
  c.part = reinterpret_cast<float*>(base + oPart);
  if (run_key) {
    c.x = reinterpret_cast<double*>(base + ox);
    c.res = reinterpret_cast<double*>(base + ores);
    c.pv = reinterpret_cast<double*>(base + op);
    c.Y = reinterpret_cast<double*>(base + oY);
    c.uo = reinterpret_cast<double*>(base + ouo);
    c.T = reinterpret_cast<double*>(base + oT);
    c.partd = reinterpret_cast<double*>(base + oPartd);
  }
  if (rows > 0) {
    prep_kernel<<<blocks_for(H * rows * d, kT), kT, 0, stream>>>(c);
    KVT_CU_TRY(cudaGetLastError());
  }
  partition_kernel<<<unsigned(H), kRedThreads, 0, stream>>>(c);
  KVT_CU_TRY(cudaGetLastError());
  if (rows > 0) {
    cudaError_t e;
    switch (p.keys.dtype) {
      case kF32: e = run_dt<kF32>(c, stream); break;
      case kF16: e = run_dt<kF16>(c, stream); break;
      case kBF16: e = run_dt<kBF16>(c, stream); break;
      default: e = cudaErrorInvalidValue;
    }
    return e;
  }
  finalize_kernel<<<blocks_for(H, 128), 128, 0, stream>>>(c, 0);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace kvt
