// SnapKV scoring on CUDA (docs/methods/snapkv.md §3.1; docs/performance.md §4-§5): the [Hq, W, N] attention tensor is never
// materialised.
//   pass 1  (reads K once)  CTA = (key chunk, KV head, query range): logits of the group's window queries against
//                           32-key tiles; an online max / sum of exp per query and chunk -> partials [Hkv, M, C].
//   merge                   per query: LSE over the chunks (double).
//   pass 2  (reads K again, prefix keys only) the same logits; p = exp(logit - LSE) summed over each query head's
//                           W window queries in a fixed order (P tile in shared memory) -> window means [Hq, L].
//   pool                    pooling along the prefix and the GQA group mean (shared pool_at), window +Infinity.
// Logit tiles: tensor cores (mma.sync m16n8k16, fp32 accumulation; bf16/f16 products are exact) when queries and keys
// are both bf16 or both f16 and d is 64, 96, 128 or 256, with the key tiles double-buffered by cp.async; otherwise a SIMT f32
// path that stages 32-channel slices of queries and keys in shared memory (any dtypes, strides, d).
// M = G*W query rows per KV head (row m: query head h*G + m/W, window query m%W at position N-W+m%W).
// Batched (docs/runtime-caches.md §6): virtual KV heads b·Hkv + h in the grid's y dimension, each sequence with its own
// N, window W_b (its last W_b queries), prefix L_b and key chunking (the per-sequence op's, from its own shape), keys
// and queries read in place through their tables, compact scratch (seq_window_offsets). The logits, LSE partials
// and window sums of a row do not depend on how query rows are grouped into blocks, so one block shape serves the
// whole batch and each sequence's scores equal the per-sequence op's.
#include <type_traits>

#include "common.cuh"
#include "math/snapkv.h"

namespace kvt {
namespace cuda {
namespace {

constexpr int TK = 32;        // keys per tile
constexpr int NG = TK / 8;    // n8 column groups per tile
constexpr int PP = TK + 1;    // row pitch of the probability tile (conflict-free writes)
constexpr int DC = 32;        // SIMT path: channels per staged slice
constexpr unsigned kFull = 0xffffffffu;

struct Geo {
  T3 q;  // [Hq, W, d] window queries (a batch: one sequence's queries [Hq, Wq, d])
  T3 k;  // [Hkv, N, d] (a batch: one sequence's rows)
  int64_t Hkv, G, W, N, L, d, M;  // W, N, L, M: of one sequence (a batch: set per block by seq_geo)
  float scale;
  int64_t rows_per_z;  // query rows per CTA: whole query heads
  int64_t heads_per_z;
  int64_t keys_per_chunk;  // multiple of TK
  int64_t chunks;
  int qpair;  // queries: element pairs are 4-byte aligned and contiguous
  int kvec;   // keys: rows are 16-byte aligned and contiguous (cp.async)
  // batch
  Seqs seqs, qseqs;
  int64_t window;          // the window option (0: every query of the sequence)
  int64_t chunk_stride;    // partial states per query row (the bound of every sequence's chunks)
  const int64_t* tok0;     // [B + 1] key offsets, [B + 1] window-row offsets (seq_window_offsets)
  const int64_t* q0;
  int64_t b, qt0;          // per block: the sequence, its first window query
  int64_t part0, lse0, mean0;  // per block: offsets of the sequence's scratch
};

// Key chunks of one pass over n keys: about two blocks per SM of the reference device (kRefSMs) per pass (z query
// ranges per KV head).
__host__ __device__ __forceinline__ void key_chunking(int64_t Hkv, int64_t z, int64_t n, int64_t* kpc, int64_t* chunks) {
  const int64_t want = imax(1, ceil_div(2 * kRefSMs, Hkv * z));
  *kpc = imax(TK, ceil_div(ceil_div(n, want), TK) * TK);  // (n = 0: a sequence of a batch without keys or prefix)
  *chunks = ceil_div(n, *kpc);
}
// Query heads per CTA for a window of W rows (at most 256 rows, 128 for d > 128).
__host__ __device__ __forceinline__ int64_t heads_per_cta(int64_t G, int64_t W, int64_t d) {
  const int64_t max_rows = d > 128 ? 128 : 256;
  return W >= 1 && W <= max_rows ? imin(imin(G, max_rows / W), 64) : 1;  // (W = 0: a sequence without queries)
}

// The geometry of one sequence of a batch (pass 1 when !PASS2): its window, prefix, chunking and scratch offsets.
// A sequence without a prefix (or without queries) gets L = 0: every block of it returns, pool writes +Infinity.
template <bool BATCH>
__device__ __forceinline__ Geo seq_geo(const Geo& g0, int64_t b, bool pass2) {
  Geo g = g0;
  if constexpr (BATCH) {
    g.b = b;
    g.N = g0.tok0[b + 1] - g0.tok0[b];
    g.W = g0.q0[b + 1] - g0.q0[b];
    g.L = g.W >= 1 && g.N > g.W ? g.N - g.W : 0;
    g.M = g.G * g.W;
    g.qt0 = g0.qseqs.r.length(b) - g.W;
    g.rows_per_z = g.heads_per_z * g.W;
    const int64_t z = ceil_div(g.G, heads_per_cta(g.G, g.W, g.d));  // the per-sequence op's query ranges
    key_chunking(g.Hkv, z, pass2 ? g.L : g.N, &g.keys_per_chunk, &g.chunks);
    g.part0 = g0.q0[b] * g.G * g.Hkv * g.chunk_stride;
    g.lse0 = g0.q0[b] * g.G * g.Hkv;
    g.mean0 = g0.tok0[b] * g.Hkv * g.G;
  }
  return g;
}

// Address of element c of query row m of KV head h.
template <bool BATCH>
__device__ __forceinline__ const char* qaddr(const Geo& g, int64_t h, int64_t m, int64_t c, int es) {
  const int64_t jq = h * g.G + m / g.W, t = m % g.W;
  if constexpr (BATCH)
    return static_cast<const char*>(g.q.p) + (g.qseqs.r.offset(g.q.sq, g.q.s0, g.q.s1, g.b, jq, g.qt0 + t) + c * g.q.s2) * es;
  else
    return static_cast<const char*>(g.q.p) + (jq * g.q.s0 + t * g.q.s1 + c * g.q.s2) * es;
}
// Element offset of key row p of KV head h.
template <bool BATCH>
__device__ __forceinline__ int64_t kaddr(const Geo& g, int64_t h, int64_t p) {
  return row_off<BATCH>(g.seqs, g.k, g.b, h, p);
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFull, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFull, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFull, v, 1);
  return v + __shfl_xor_sync(kFull, v, 2);
}

// ---------------------------------------------------------------------------------------------------------
// Tensor-core logits. K tile in shared memory: [TK][d + 8] 16-bit values (row pitch padded by 16 bytes so the
// fragment loads of a warp hit 32 distinct banks).
template <int DT>
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  if constexpr (DT == kBF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ uint32_t load_pair(const char* p, int64_t s2, bool pair) {
  if (pair) return *reinterpret_cast<const uint32_t*>(p);
  const uint32_t lo = *reinterpret_cast<const uint16_t*>(p), hi = *reinterpret_cast<const uint16_t*>(p + s2 * 2);
  return lo | (hi << 16);
}

// A fragments (16 query rows starting at row0, all d channels) of one warp; rows >= rows_end are zero.
template <bool BATCH, int KS>
__device__ __forceinline__ void load_a(const Geo& g, int64_t h, int64_t row0, int64_t rows_end, int lane,
                                       uint32_t (&a)[KS][4]) {
  const int gi = lane >> 2, ti = lane & 3;
  const bool pair = g.qpair;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int64_t m = row0 + gi + 8 * r;
    const bool ok = m < rows_end;
#pragma unroll
    for (int ks = 0; ks < KS; ks++)
#pragma unroll
      for (int half = 0; half < 2; half++) {
        const int64_t c = ks * 16 + 2 * ti + 8 * half;
        a[ks][r + 2 * half] = ok ? load_pair(qaddr<BATCH>(g, h, m, c, 2), g.q.s2, pair) : 0u;
      }
  }
}

// Issues the loads of key tile [p0, p0 + TK) into smem (cp.async when the rows allow it), as one commit group.
template <bool BATCH, int KS>
__device__ __forceinline__ void issue_tile(const Geo& g, int64_t h, int64_t p0, uint16_t* ks) {
  constexpr int D = KS * 16, PITCH = D + 8, VEC = 8;  // 8 halves = 16 bytes
  const int64_t n = int64_t(TK) * (D / VEC);
  for (int64_t v = threadIdx.x; v < n; v += blockDim.x) {
    const int64_t r = v / (D / VEC), c = (v % (D / VEC)) * VEC;
    uint16_t* dst = ks + r * PITCH + c;
    const int64_t p = p0 + r;
    if (p >= g.N) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
      continue;
    }
    const char* src = static_cast<const char*>(g.k.p) + (kaddr<BATCH>(g, h, p) + c * g.k.s2) * 2;
    if (g.kvec) {
      const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(dst));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(src));
    } else {
#pragma unroll
      for (int e = 0; e < VEC; e++) dst[e] = *reinterpret_cast<const uint16_t*>(src + e * g.k.s2 * 2);
    }
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

__device__ __forceinline__ void wait_all_but_one() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Logits (unscaled q.k) of one warp's 16 rows against the tile in smem: acc[n][0..3] as the m16n8 accumulator
// (rows gi, gi+8; columns n*8 + 2*ti + {0, 1}).
template <int DT, int KS>
__device__ __forceinline__ void mma_tile(const uint16_t* ks, const uint32_t (&a)[KS][4], int lane, float (&acc)[NG][4]) {
  constexpr int PW = (KS * 16 + 8) / 2;  // row pitch in 32-bit words
  const int gi = lane >> 2, ti = lane & 3;
  const uint32_t* kw = reinterpret_cast<const uint32_t*>(ks);
#pragma unroll
  for (int n = 0; n < NG; n++) {
    acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    const uint32_t* row = kw + (n * 8 + gi) * PW + ti;
#pragma unroll
    for (int s = 0; s < KS; s++) mma16816<DT>(acc[n], a[s], row[s * 8], row[s * 8 + 4]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// SIMT logits: 32-channel slices of the sub-block's queries and the tile's keys staged as f32 (any dtype/strides).
// Collective: every thread of the block must call it.
template <bool BATCH>
__device__ __forceinline__ void simt_tile(const Geo& g, int64_t h, int64_t p0, int64_t sub0, int64_t rows_end,
                                          float* qs, float* kt, int lane, int warp, float (&acc)[NG][4]) {
  const int gi = lane >> 2, ti = lane & 3;
  const int rows = blockDim.x / kWarp * 16;
#pragma unroll
  for (int n = 0; n < NG; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  for (int64_t c0 = 0; c0 < g.d; c0 += DC) {
    __syncthreads();
    for (int v = threadIdx.x; v < rows * DC; v += blockDim.x) {
      const int r = v / DC, c = v % DC;
      const int64_t m = sub0 + r;
      qs[r * (DC + 1) + c] = (m < rows_end && c0 + c < g.d)
                                 ? load_as_f32(qaddr<BATCH>(g, h, m, c0 + c, dtype_size(g.q.dtype)), g.q.dtype, 0)
                                 : 0.f;
    }
    for (int v = threadIdx.x; v < TK * DC; v += blockDim.x) {
      const int r = v / DC, c = v % DC;
      const int64_t p = p0 + r;
      kt[r * (DC + 1) + c] =
          (p < g.N && c0 + c < g.d) ? load_as_f32(g.k.p, g.k.dtype, kaddr<BATCH>(g, h, p) + (c0 + c) * g.k.s2) : 0.f;
    }
    __syncthreads();
    const float* q0 = qs + (warp * 16 + gi) * (DC + 1);
    const float* q1 = q0 + 8 * (DC + 1);
    float part[NG][4];  // per-slice partial sums: 32-term FMA chains, then one add per slice (accuracy)
#pragma unroll
    for (int n = 0; n < NG; n++) part[n][0] = part[n][1] = part[n][2] = part[n][3] = 0.f;
#pragma unroll 4
    for (int c = 0; c < DC; c++) {
      const float a0 = q0[c], a1 = q1[c];
#pragma unroll
      for (int n = 0; n < NG; n++) {
        const float b0 = kt[(n * 8 + 2 * ti) * (DC + 1) + c], b1 = kt[(n * 8 + 2 * ti + 1) * (DC + 1) + c];
        part[n][0] = fmaf(a0, b0, part[n][0]);
        part[n][1] = fmaf(a0, b1, part[n][1]);
        part[n][2] = fmaf(a1, b0, part[n][2]);
        part[n][3] = fmaf(a1, b1, part[n][3]);
      }
    }
#pragma unroll
    for (int n = 0; n < NG; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[n][e] += part[n][e];
  }
}

// ---------------------------------------------------------------------------------------------------------
// Per-tile work of the two passes on the accumulator fragment.

// Pass 1: online max / sum of exp per query row over the visible keys of the tile; state in part[(h*M + m)*C + chunk].
__device__ __forceinline__ void lse_update(const Geo& g, int64_t h, int64_t chunk, int64_t p0, int64_t row0,
                                           int64_t rows_end, int lane, const float (&acc)[NG][4], float2* part) {
  const int gi = lane >> 2, ti = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int64_t m = row0 + gi + 8 * r;
    const bool ok = m < rows_end;
    const int64_t limit = ok ? imin(g.N - 1, g.L + m % g.W) : -1;  // last visible key of this query
    float l[NG][2], mx = -INFINITY;
#pragma unroll
    for (int n = 0; n < NG; n++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int64_t p = p0 + n * 8 + 2 * ti + e;
        l[n][e] = p <= limit ? snap::logit_or_inf(fmul(g.scale, acc[n][2 * r + e])) : -INFINITY;
        mx = fmaxf(mx, l[n][e]);
      }
    mx = quad_max(mx);
    float2 st = make_float2(-INFINITY, 0.f);
    float2* slot = part + g.part0 + (h * g.M + (ok ? m : 0)) * g.chunk_stride + chunk;
    if (ok && ti == 0) st = *slot;
    const float m_old = __shfl_sync(kFull, st.x, lane & ~3);
    const float m_new = fmaxf(m_old, mx);
    float s = 0.f;
    if (m_new != -INFINITY) {
#pragma unroll
      for (int n = 0; n < NG; n++)
#pragma unroll
        for (int e = 0; e < 2; e++) s += expf(l[n][e] - m_new);
    }
    s = quad_sum(s);
    if (ok && ti == 0 && m_new != -INFINITY) *slot = make_float2(m_new, st.y * expf(m_old - m_new) + s);
  }
}

// Pass 2: p = exp(logit - lse) for prefix keys into the P tile (rows relative to sub0).
__device__ __forceinline__ void prob_tile(const Geo& g, int64_t h, int64_t p0, int64_t sub0, int64_t row0,
                                          int64_t rows_end, int lane, const float (&acc)[NG][4], const float* lse,
                                          float* P) {
  const int gi = lane >> 2, ti = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int64_t m = row0 + gi + 8 * r;
    const bool ok = m < rows_end;
    const float ls = ok ? lse[g.lse0 + h * g.M + m] : 0.f;
    float* prow = P + (m - sub0) * PP;
#pragma unroll
    for (int n = 0; n < NG; n++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int col = n * 8 + 2 * ti + e;
        const int64_t p = p0 + col;
        prow[col] = (ok && p < g.L) ? expf(snap::logit_or_inf(fmul(g.scale, acc[n][2 * r + e])) - ls) : 0.f;
      }
  }
}

// Adds the sub-block's rows of each query head into Acc[head][col], in row order (deterministic), one thread per
// (head, column).
__device__ __forceinline__ void accumulate_heads(const Geo& g, int64_t zr0, int64_t sub0, int64_t sub1, const float* P,
                                                 float* Acc) {
  for (int64_t v = threadIdx.x; v < g.heads_per_z * TK; v += blockDim.x) {
    const int64_t hl = v / TK, col = v % TK;
    const int64_t b0 = imax(sub0, zr0 + hl * g.W), b1 = imin(sub1, zr0 + (hl + 1) * g.W);
    float a = Acc[v];
    for (int64_t m = b0; m < b1; m++) a = fadd(a, P[(m - sub0) * PP + col]);
    Acc[v] = a;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The two passes. PATH: 0 = SIMT, else the mma path with KS = d/16 k-steps and 16-bit dtype DT.
struct Smem {
  uint16_t* kbuf;  // mma: two key tiles, kstride apart
  int64_t kstride;
  float* qs;       // simt: query slice
  float* kt;       // simt: key slice
  float* P;        // pass 2
  float* Acc;      // pass 2
};

template <bool BATCH, int DT, int KS, bool MMA, bool PASS2>
__global__ void __launch_bounds__(KS > 8 ? 256 : 512) snap_kernel(Geo g0, float2* part, const float* lse, float* mean) {
  extern __shared__ __align__(16) unsigned char smem[];
  // a plain tensor (!BATCH): grid y is the head (one sequence), no division
  const int64_t chunk = blockIdx.x, h = BATCH ? blockIdx.y % g0.Hkv : blockIdx.y, z = blockIdx.z;
  const Geo g = seq_geo<BATCH>(g0, blockIdx.y / g0.Hkv, PASS2);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int rows = blockDim.x / kWarp * 16;
  const int64_t zr0 = z * g.rows_per_z, zr1 = imin(g.M, zr0 + g.rows_per_z);
  const int64_t kend = PASS2 ? g.L : g.N;
  const int64_t kc0 = chunk * g.keys_per_chunk, kc1 = imin(kend, kc0 + g.keys_per_chunk);
  if (zr0 >= zr1 || kc0 >= kc1 || g.L == 0) return;  // uniform over the block
  const int64_t nsub = (zr1 - zr0 + rows - 1) / rows;
  // shared memory carve-up
  Smem sm{};
  unsigned char* sp = smem;
  if constexpr (MMA) {
    constexpr int PITCH = KS * 16 + 8;
    sm.kbuf = reinterpret_cast<uint16_t*>(sp);
    sm.kstride = TK * PITCH;
    sp += 2 * TK * PITCH * 2;
  } else {
    sm.qs = reinterpret_cast<float*>(sp);
    sp += rows * (DC + 1) * 4;
    sm.kt = reinterpret_cast<float*>(sp);
    sp += TK * (DC + 1) * 4;
  }
  if constexpr (PASS2) {
    sm.P = reinterpret_cast<float*>(sp);
    sp += rows * PP * 4;
    sm.Acc = reinterpret_cast<float*>(sp);
  } else {
    for (int64_t m = zr0 + threadIdx.x; m < zr1; m += blockDim.x)
      part[g.part0 + (h * g.M + m) * g.chunk_stride + chunk] = make_float2(-INFINITY, 0.f);
    __syncthreads();
  }
  [[maybe_unused]] uint32_t a[MMA ? KS : 1][4];
  if constexpr (MMA) {
    if (nsub == 1) load_a<BATCH, KS>(g, h, zr0 + warp * 16, zr1, lane, a);
    issue_tile<BATCH, KS>(g, h, kc0, sm.kbuf);
  }
  int buf = 0;
  for (int64_t p0 = kc0; p0 < kc1; p0 += TK, buf ^= 1) {
    if constexpr (MMA) {
      // double buffering: the next tile loads while this one is used
      if (p0 + TK < kc1) issue_tile<BATCH, KS>(g, h, p0 + TK, sm.kbuf + (buf ^ 1) * sm.kstride);
      else asm volatile("cp.async.commit_group;\n" ::);
      wait_all_but_one();
    }
    __syncthreads();
    if constexpr (PASS2) {
      for (int64_t v = threadIdx.x; v < g.heads_per_z * TK; v += blockDim.x) sm.Acc[v] = 0.f;
    }
    for (int64_t s = 0; s < nsub; s++) {
      const int64_t sub0 = zr0 + s * rows, sub1 = imin(zr1, sub0 + rows), row0 = sub0 + warp * 16;
      float acc[NG][4];
      if constexpr (MMA) {
        if (nsub > 1) load_a<BATCH, KS>(g, h, row0, sub1, lane, a);
        mma_tile<DT, KS>(sm.kbuf + buf * sm.kstride, a, lane, acc);
      } else {
        simt_tile<BATCH>(g, h, p0, sub0, sub1, sm.qs, sm.kt, lane, warp, acc);
      }
      if constexpr (PASS2) {
        prob_tile(g, h, p0, sub0, row0, sub1, lane, acc, lse, sm.P);
        __syncthreads();
        accumulate_heads(g, zr0, sub0, sub1, sm.P, sm.Acc);
        __syncthreads();
      } else {
        lse_update(g, h, chunk, p0, row0, sub1, lane, acc, part);
      }
    }
    if constexpr (PASS2) {
      for (int64_t v = threadIdx.x; v < g.heads_per_z * TK; v += blockDim.x) {
        const int64_t hl = v / TK, col = v % TK, p = p0 + col;
        const int64_t jq = h * g.G + zr0 / g.W + hl;
        if (p < g.L && zr0 + hl * g.W < zr1) mean[g.mean0 + jq * g.L + p] = sm.Acc[v] / float(g.W);
      }
    }
    __syncthreads();  // the tile buffer (and Acc) are reused by the next iteration
  }
}

// LSE per query row from the per-chunk partials (double). Grid (rows, B).
template <bool BATCH>
__global__ void merge_kernel(Geo g0, const float2* part, float* lse) {
  const Geo g = seq_geo<BATCH>(g0, blockIdx.y, false);
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // h*M + m
  if (r >= g.Hkv * g.M || g.L == 0) return;
  const float2* pp = part + g.part0 + r * g.chunk_stride;
  float mx = -INFINITY;
  for (int64_t c = 0; c < g.chunks; c++) mx = fmaxf(mx, pp[c].x);
  double s = 0;
  for (int64_t c = 0; c < g.chunks; c++)
    if (pp[c].x != -INFINITY) s += double(pp[c].y) * exp(double(pp[c].x) - double(mx));
  lse[g.lse0 + r] = float(double(mx) + log(s));
}

// Pooling along the prefix and the GQA group mean; window positions +Infinity. Grid (tokens, B).
template <bool BATCH>
__global__ void pool_kernel(Geo g0, const float* mean, int kernel, int max_pool, T2 out) {
  const Geo g = seq_geo<BATCH>(g0, blockIdx.y, false);
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // h*N + i
  if (r >= g.Hkv * g.N) return;
  const int64_t h = r / g.N, i = r % g.N;
  float v = INFINITY;
  if (i < g.L) {
    float acc = 0.f;
    for (int64_t j = 0; j < g.G; j++)
      acc = fadd(acc, snap::pool_at(mean + g.mean0 + (h * g.G + j) * g.L, 1, g.L, i, kernel, max_pool != 0));
    v = acc / float(g.G);
  }
  static_cast<float*>(out.p)[tok_off<BATCH>(g.seqs, out, g.b, h, i)] = v;
}

template <bool BATCH, int DT, int KS, bool MMA, bool PASS2>
cudaError_t launch(const Geo& g, dim3 grid, int threads, float2* part, const float* lse, float* mean,
                   cudaStream_t stream) {
  const int rows = threads / kWarp * 16;
  size_t bytes = MMA ? size_t(2) * TK * (KS * 16 + 8) * 2 : size_t(rows + TK) * (DC + 1) * 4;
  if (PASS2) bytes += size_t(rows) * PP * 4 + size_t(g.heads_per_z) * TK * 4;
  auto kern = snap_kernel<BATCH, DT, KS, MMA, PASS2>;
  if (bytes > 48 * 1024) KVT_CU_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  kern<<<grid, threads, bytes, stream>>>(g, part, lse, mean);
  return cudaGetLastError();
}

// g1 / g2: pass 1 / pass 2 geometry (chunks: a plain tensor's, or a bound for a batch); rows: query rows per KV head
// (a bound for a batch); B sequences in the grid's y dimension with the KV heads.
template <bool BATCH, int DT, int KS, bool MMA>
cudaError_t run_passes(const Geo& g1, const Geo& g2, int threads, unsigned z, int64_t rows, int64_t B, float2* part,
                       float* lse, float* mean, cudaStream_t stream) {
  const unsigned y = unsigned(B * g1.Hkv);
  KVT_CU_TRY((launch<BATCH, DT, KS, MMA, false>(g1, dim3{unsigned(g1.chunks), y, z}, threads, part, nullptr, nullptr,
                                                stream)));
  merge_kernel<BATCH><<<dim3{unsigned(imax(1, ceil_div(g1.Hkv * rows, 256))), unsigned(B)}, 256, 0, stream>>>(g1, part, lse);
  KVT_CU_TRY(cudaGetLastError());
  return launch<BATCH, DT, KS, MMA, true>(g2, dim3{unsigned(g2.chunks), y, z}, threads, nullptr, lse, mean, stream);
}

// Both forms; g holds the tensors and, for a plain tensor, W, N, L, M; W_max bounds every window of a batch.
template <bool BATCH>
cudaError_t run(Geo g, const SnapkvParams& p, int64_t W_max, int64_t B, const T2& scores, cudaStream_t stream) {
  const T3& queries = g.q;
  const T3& keys = g.k;
  const bool mma = !p.force_simt && queries.dtype == keys.dtype && (keys.dtype == kBF16 || keys.dtype == kF16) &&
                   (g.d == 64 || g.d == 96 || g.d == 128 || g.d == 256);
  // Query rows per sub-block: 16 per warp, 16 warps (8 when d = 256: the A fragments of a warp take 64 registers).
  const int64_t max_rows = g.d > 128 ? 128 : 256;
  // Query rows per CTA: whole query heads, at most one sub-block when W <= max_rows; one head otherwise (a batch:
  // for its longest window).
  g.heads_per_z = heads_per_cta(g.G, W_max, g.d);
  g.rows_per_z = g.heads_per_z * W_max;
  const unsigned z = static_cast<unsigned>(ceil_div(g.G, g.heads_per_z));
  if (z > 65535 || B * g.Hkv > 65535) return cudaErrorInvalidValue;
  const int threads = int(imin(max_rows / 16, ceil_div(g.rows_per_z, 16))) * kWarp;
  // 16-bit pairs of query elements: unit stride, even strides, 4-byte aligned base.
  g.qpair = queries.s2 == 1 && queries.s0 % 2 == 0 && queries.s1 % 2 == 0 && queries.sq % 2 == 0 &&
            reinterpret_cast<uintptr_t>(queries.p) % 4 == 0;
  g.kvec = BATCH ? keys.n2 % 8 == 0 && batch_vec_ok(keys, 8) : row_vec_width(keys) >= 8;
  // Key chunks: about two blocks per SM of the reference device per pass (a batch: per sequence, bounded by the
  // z = 1 count).
  Geo g1 = g, g2 = g;
  key_chunking(g.Hkv, z, g.N, &g1.keys_per_chunk, &g1.chunks);
  key_chunking(g.Hkv, z, g.L, &g2.keys_per_chunk, &g2.chunks);
  if (BATCH) g1.chunks = g2.chunks = imax(1, ceil_div(2 * kRefSMs, g.Hkv));
  g1.chunk_stride = g2.chunk_stride = g1.chunks;
  // Scratch: partial LSE states [rows][chunks], LSE [rows], window means [Hq, L] (a batch: compact, per sequence).
  const int64_t qrows = BATCH ? g.Hkv * g.G * seq_window_bound(g.qseqs, g.window) : g.Hkv * g.M;
  const int64_t mrows = BATCH ? g.Hkv * g.G * seq_token_bound(g.seqs) : g.Hkv * g.G * g.L;
  Scratch ws(size_t(qrows * g1.chunks) * sizeof(float2) + size_t(qrows + mrows) * sizeof(float) +
                 size_t(BATCH ? 2 * (B + 1) : 0) * sizeof(int64_t) + 64,
             stream);
  KVT_CU_TRY(ws.error());
  float2* part = ws.as<float2>();
  float* lse = reinterpret_cast<float*>(part + qrows * g1.chunks);
  float* mean = lse + qrows;
  if (BATCH) {
    int64_t* offs = reinterpret_cast<int64_t*>(reinterpret_cast<uintptr_t>(mean + mrows + 1) & ~uintptr_t(7));
    KVT_CU_TRY(seq_window_offsets(g.seqs, offs, g.qseqs, g.window, offs + B + 1, stream));
    g1.tok0 = g2.tok0 = g.tok0 = offs;
    g1.q0 = g2.q0 = g.q0 = offs + B + 1;
  }
  const int64_t rows = BATCH ? g.G * W_max : g.M;
  cudaError_t e;
  auto by_d = [&](auto dt) -> cudaError_t {
    constexpr int DT = decltype(dt)::value;
    switch (g.d) {
      case 64: return run_passes<BATCH, DT, 4, true>(g1, g2, threads, z, rows, B, part, lse, mean, stream);
      case 96: return run_passes<BATCH, DT, 6, true>(g1, g2, threads, z, rows, B, part, lse, mean, stream);
      case 128: return run_passes<BATCH, DT, 8, true>(g1, g2, threads, z, rows, B, part, lse, mean, stream);
      default: return run_passes<BATCH, DT, 16, true>(g1, g2, threads, z, rows, B, part, lse, mean, stream);
    }
  };
  if (mma && keys.dtype == kBF16)
    e = by_d(std::integral_constant<int, kBF16>{});
  else if (mma)
    e = by_d(std::integral_constant<int, kF16>{});
  else
    e = run_passes<BATCH, kF32, 1, false>(g1, g2, threads, z, rows, B, part, lse, mean, stream);
  KVT_CU_TRY(e);
  pool_kernel<BATCH><<<dim3{unsigned(imax(1, ceil_div(g.Hkv * g.N, 256))), unsigned(B)}, 256, 0, stream>>>(
      g, mean, p.kernel, p.max_pool, scores);
  return cudaGetLastError();
}

}  // namespace

cudaError_t snapkv_scores(const T3& queries, const T3& keys, const SnapkvParams& p, const T2& scores,
                          cudaStream_t stream) {
  Geo g{};
  g.q = queries;
  g.k = keys;
  g.Hkv = keys.n0;
  g.G = queries.n0 / keys.n0;
  g.W = queries.n1;
  g.N = keys.n1;
  g.L = g.N - g.W;
  g.d = keys.n2;
  g.M = g.G * g.W;
  g.scale = p.scale;
  if (g.Hkv > 65535 || g.L < 1) return cudaErrorInvalidValue;
  return run<false>(g, p, g.W, 1, scores, stream);
}

cudaError_t snapkv_scores_batched(const Seqs& seqs, const T3& keys, const Seqs& qseqs, const T3& queries,
                                  int64_t window, const SnapkvParams& p, const T2& scores, cudaStream_t stream) {
  Geo g{};
  g.q = queries;
  g.k = keys;
  g.seqs = seqs;
  g.qseqs = qseqs;
  g.window = window;
  g.Hkv = keys.n0;
  g.G = queries.n0 / keys.n0;
  g.d = keys.n2;
  g.N = seqs.r.max_len;  // bounds: the grid of the pool kernel and the key chunks
  g.L = g.N;
  g.scale = p.scale;
  if (seqs.B == 0 || g.Hkv == 0 || g.N == 0) return cudaSuccess;
  const int64_t W_max = imax(1, window > 0 ? imin(window, qseqs.r.max_len) : qseqs.r.max_len);
  return run<true>(g, p, W_max, seqs.B, scores, stream);
}

}  // namespace cuda
}  // namespace kvt
