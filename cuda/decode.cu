// Normalisation-corrected decode attention on CUDA (docs/methods/momentkv.md §4.4; docs/performance.md §5.4): split-K
// flash decoding over the retained (ragged) cache plus the moment summary as one extra LSE state.
//
//   partial kernel  grid (KV chunks, query groups, Hkv), 256 threads = 8 warps. The G·T queries of a KV head are
//                   processed in groups of up to 8 that share every K/V row load. A warp walks the chunk's rows
//                   (only rows < counts[h] are read), keeps an online softmax state (max, sum, accumulator) per
//                   query; the 8 warp states are combined in a fixed order and written as the chunk's partial state.
//   merge kernel    grid (Hq, T), 256 threads: merges the chunk states in chunk order (max, rescaled sums), takes
//                   lse_R, and folds in the summary: λ = sigmoid(lse_R − log n − a·mu_k), o = λ o_R + (1−λ)(mu_v +
//                   c·C a) with C a = M a / n (a warp per row of M; block reductions in a fixed order).
// Every reduction has a fixed order, so results are deterministic. The chunk partition depends only on the shapes.
// Non-finite inputs (math/momentkv.h logit_or_nan / valid_count): a non-finite logit is NaN, so its query's state is
// NaN; an output row with a non-finite element is written as NaN throughout (one flag reduction per row).
// Batched (docs/runtime-caches.md §6): virtual KV heads b·Hkv + h in the grid's z dimension (partials) and sequences ×
// query heads in x (merge); each sequence is chunked as the per-sequence op chunks its contiguous [Hkv, n_b, d] rows
// (chunking of n_b, the element-to-lane assignment of contiguous rows), rows read in place through the table.
#include "math/momentkv.h"
#include "common.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int kQB = 8;               // queries per group (share the K/V row loads)
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinChunk = 128;

struct DecArgs {
  Seqs seqs;
  T3 q;          // [Hq, T, d] (a batch: sq between sequences)
  T3 k, v;       // [Hkv, cap, d], [Hkv, cap, dv], or a batch's rows
  T2 cnt;        // [Hkv] or [B, Hkv]
  Moments m;     // per virtual head b·Hkv + h
  int has_m;
  DecodeParams p;
  O3 out;        // [Hq, T, dv] f32 (a batch: sq between sequences)
  float* part;   // [B·Hkv][Q][nch][dv + 2]
  int64_t G, Q, nch;  // nch: chunks of a plain tensor, the bound of every sequence's chunks for a batch
  int64_t chunk;      // rows per chunk of a plain tensor (a batch computes each sequence's in the kernel)
  bool vload;    // vector loads allowed (a batch whose rows are aligned; always for a plain tensor with VEC)
};

// KV chunks of a cache of `cap` rows (Hkv heads, `groups` query groups): enough blocks to fill the GPU, a shape-only
// rule (results do not depend on the device); a batch chunks each sequence with cap = n_b.
struct Chunks {
  int64_t nch, chunk;
};
__host__ __device__ __forceinline__ Chunks kv_chunks(int64_t cap, int64_t Hkv, int64_t groups) {
  int64_t nch = imax(1, ceil_div(kTargetBlocks, Hkv * groups));
  nch = imin(nch, imax(1, ceil_div(cap, kMinChunk)));
  Chunks c;
  c.chunk = imax(1, ceil_div(cap, nch));
  c.nch = imax(1, ceil_div(cap, c.chunk));
  return c;
}

__device__ __forceinline__ int64_t count_of(const DecArgs& A, int64_t b, int64_t h, int64_t n) {
  const int64_t c = static_cast<const int32_t*>(A.cnt.p)[head_off(A.cnt, b, h)];
  return imax(0, imin(c, n));
}

// Element held in register slot i of a lane: strided (lane + 32 i) or, with VEC, contiguous (lane·PL + i).
template <int PL, bool VEC>
__device__ __forceinline__ int64_t slot(int lane, int i) {
  return VEC ? int64_t(lane) * PL + i : int64_t(lane) + 32 * i;
}

// Loads a row of n elements (element stride s) into PL registers per lane (zero beyond n). VEC: the contiguous
// assignment, with 8/16-byte vector loads when `vload` (s == 1 and the row aligned to min(16, PL·elem) bytes, checked
// on the host), else element by element.
template <int DT, int PL, bool VEC>
__device__ __forceinline__ void load_row(const void* base, int64_t off, int64_t n, int64_t s, int lane, float* x,
                                         bool vload) {
  using E = Elem<DT>;
  const typename E::T* p = static_cast<const typename E::T*>(base) + off;
  if constexpr (VEC) {
    const int64_t c0 = int64_t(lane) * PL;
    if (c0 + PL <= n && vload) {
      if constexpr (DT == kF32) {
#pragma unroll
        for (int i = 0; i < PL; i += 4) load_vec<DT, 4>(p + c0 + i, x + i);
      } else if constexpr (PL == 4) {
        load_vec<DT, 4>(p + c0, x);
      } else {
#pragma unroll
        for (int i = 0; i < PL; i += 8) load_vec<DT, 8>(p + c0 + i, x + i);
      }
      return;
    }
#pragma unroll
    for (int i = 0; i < PL; i++) x[i] = c0 + i < n ? E::load(p + (c0 + i) * (vload ? 1 : s)) : 0.f;  // vload: s == 1
  } else {
#pragma unroll
    for (int i = 0; i < PL; i++) {
      const int64_t c = lane + 32 * i;
      x[i] = c < n ? E::load(p + c * s) : 0.f;
    }
  }
}

template <bool BATCH, int DT, int PL, bool VEC>
__global__ void __launch_bounds__(kThreads) partial_kernel(DecArgs A) {
  extern __shared__ float sm[];
  float* as = sm;                                // [kQB][PL*32] scaled queries
  float* wm = as + kQB * PL * 32;                // [kWarps][kQB]
  float* wl = wm + kWarps * kQB;                 // [kWarps][kQB]
  float* wacc = wl + kWarps * kQB;               // [kWarps][kQB][PL*32]
  // A plain tensor (!BATCH) keeps the per-sequence op's addressing: b = 0 and the host's chunking, no division here.
  const int64_t ch = blockIdx.x, qg = blockIdx.y, vh = blockIdx.z, Hkv = A.k.n0;
  const int64_t b = BATCH ? vh / Hkv : 0, h = BATCH ? vh % Hkv : vh;
  const int64_t d = A.k.n2, dv = A.v.n2;
  const int64_t n = seq_len<BATCH>(A.seqs, b);
  Chunks C{A.nch, A.chunk};
  if constexpr (BATCH) {
    C = kv_chunks(n, Hkv, ceil_div(A.Q, kQB));
    if (ch >= C.nch) return;  // past this sequence's chunks (uniform over the block)
  }
  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const int64_t q0 = qg * kQB;
  const int nq = int(imin(kQB, A.Q - q0));
  constexpr int W = PL * 32;
  for (int e = tid; e < kQB * W; e += kThreads) {
    const int qq = e / W, c = e % W;
    float x = 0.f;
    if (qq < nq && c < d) {
      const int64_t qi = q0 + qq, T = A.q.n1;
      const int64_t j = h * A.G + qi / T, t = qi % T;
      x = load_as_f32(A.q.p, A.q.dtype, b * A.q.sq + j * A.q.s0 + t * A.q.s1 + c * A.q.s2) * A.p.scale;
    }
    as[e] = x;
  }
  __syncthreads();
  float m[kQB], l[kQB], acc[kQB][PL];
#pragma unroll
  for (int qq = 0; qq < kQB; qq++) {
    m[qq] = -INFINITY;
    l[qq] = 0.f;
#pragma unroll
    for (int i = 0; i < PL; i++) acc[qq][i] = 0.f;
  }
  const int64_t r0 = ch * C.chunk, r1 = imin(count_of(A, b, h, n), r0 + C.chunk);
  const bool vload = !BATCH || A.vload;
  for (int64_t r = r0 + warp; r < r1; r += kWarps) {
    float x[PL], y[PL], s[kQB];
    load_row<DT, PL, VEC>(A.k.p, row_off<BATCH>(A.seqs, A.k, b, h, r), d, A.k.s2, lane, x, vload);
    load_row<DT, PL, VEC>(A.v.p, row_off<BATCH>(A.seqs, A.v, b, h, r), dv, A.v.s2, lane, y, vload);
#pragma unroll
    for (int qq = 0; qq < kQB; qq++) {
      if (qq >= nq) break;
      float t = 0.f;
      if constexpr (VEC) {  // 16-byte shared-memory reads: no bank conflicts for the contiguous mapping
        const float4* a4 = reinterpret_cast<const float4*>(as + qq * W + lane * PL);
#pragma unroll
        for (int i = 0; i < PL / 4; i++) {
          const float4 av = a4[i];
          t += av.x * x[4 * i];
          t += av.y * x[4 * i + 1];
          t += av.z * x[4 * i + 2];
          t += av.w * x[4 * i + 3];
        }
      } else {
#pragma unroll
        for (int i = 0; i < PL; i++) t += as[qq * W + lane + 32 * i] * x[i];
      }
      s[qq] = mkv::logit_or_nan(warp_sum(t));
    }
#pragma unroll
    for (int qq = 0; qq < kQB; qq++) {
      if (qq >= nq) break;
      const float mn = fmaxf(m[qq], s[qq]);
      const float sc = mkv::rescale(m[qq], mn);
      const float pr = expf(s[qq] - mn);
      l[qq] = l[qq] * sc + pr;
#pragma unroll
      for (int i = 0; i < PL; i++) acc[qq][i] = acc[qq][i] * sc + pr * y[i];
      m[qq] = mn;
    }
  }
  // Combine the warp states in warp order.
#pragma unroll
  for (int qq = 0; qq < kQB; qq++) {
    if (lane == 0) {
      wm[warp * kQB + qq] = m[qq];
      wl[warp * kQB + qq] = l[qq];
    }
#pragma unroll
    for (int i = 0; i < PL; i++) wacc[(warp * kQB + qq) * W + slot<PL, VEC>(lane, i)] = acc[qq][i];
  }
  __syncthreads();
  const int64_t ps = dv + 2;
  for (int e = tid; e < nq * (W + 2); e += kThreads) {
    const int qq = e / (W + 2), c = e % (W + 2);
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; w++) mx = fmaxf(mx, wm[w * kQB + qq]);
    float* P = A.part + ((vh * A.Q + q0 + qq) * A.nch + ch) * ps;
    if (c == 0) {
      P[0] = mx;
    } else if (c == 1) {
      float t = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; w++) t += wl[w * kQB + qq] * mkv::rescale(wm[w * kQB + qq], mx);
      P[1] = t;
    } else if (c - 2 < dv) {
      float t = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; w++) t += wacc[(w * kQB + qq) * W + (c - 2)] * mkv::rescale(wm[w * kQB + qq], mx);
      P[c] = t;
    }
  }
}

template <bool BATCH>
__global__ void __launch_bounds__(kThreads) merge_kernel(DecArgs A) {
  extern __shared__ float sm[];
  const int64_t d = A.k.n2, dv = A.v.n2;
  float* a = sm;         // [d]
  float* ca = a + d;     // [dv]
  float* ob = ca + dv;   // [dv]: the row, written once it is known to be finite
  __shared__ float red[kWarps];
  const int64_t Hq = A.q.n0, Hkv = A.k.n0, t = blockIdx.y, T = A.q.n1;
  const int64_t b = BATCH ? blockIdx.x / Hq : 0, j = BATCH ? blockIdx.x % Hq : blockIdx.x;
  const int64_t h = j / A.G, qi = (j % A.G) * T + t, vh = b * Hkv + h;
  const int64_t len = seq_len<BATCH>(A.seqs, b);
  const int64_t nch = BATCH ? kv_chunks(len, Hkv, ceil_div(A.Q, kQB)).nch : A.nch;  // a plain tensor: the host's
  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  for (int64_t c = tid; c < d; c += kThreads)
    a[c] = load_as_f32(A.q.p, A.q.dtype, b * A.q.sq + j * A.q.s0 + t * A.q.s1 + c * A.q.s2) * A.p.scale;
  const int64_t ps = dv + 2;
  const float* P = A.part + (vh * A.Q + qi) * A.nch * ps;
  float mx = -INFINITY;
  for (int64_t c = 0; c < nch; c++) mx = fmaxf(mx, P[c * ps]);
  float l = 0.f;
  for (int64_t c = 0; c < nch; c++) l += P[c * ps + 1] * mkv::rescale(P[c * ps], mx);
  const bool any = count_of(A, b, h, len) > 0;  // a NaN l (non-finite logit or value) makes the row NaN
  const float lse = any ? mx + logf(l) : -INFINITY;
  const float inv = any ? 1.f / l : 0.f;
  float* o = static_cast<float*>(A.out.p) + b * A.out.sq + j * A.out.s0 + t * A.out.s1;
  const float n = A.has_m ? A.m.n[vh] : 0.f;
  const bool bad_n = !mkv::valid_count(n);
  __syncthreads();
  float amu = 0.f, f = 1.f;
  if (n > 0.f) {
    float part = 0.f;
    for (int64_t c = tid; c < d; c += kThreads) part += a[c] * A.m.mu_k[vh * d + c];
    amu = block_sum<kWarps>(part, red);
    if (A.p.order == 1) {
      const float* M = A.m.m + vh * dv * d;
      for (int64_t r = warp; r < dv; r += kWarps) {
        float s = 0.f;
        for (int64_t c = lane; c < d; c += kWarp) s += M[r * d + c] * a[c];
        s = warp_sum(s);
        if (lane == 0) ca[r] = s / n;
      }
      __syncthreads();
      if (A.p.clip_mode != 0) {
        float q2 = 0.f;
        for (int64_t r = tid; r < dv; r += kThreads) q2 += ca[r] * ca[r];
        const float nrm = sqrtf(block_sum<kWarps>(q2, red));
        const float R = A.p.clip_mode == 1 ? A.p.clip : static_cast<const float*>(A.p.clip_t.p)[vh * A.p.clip_t.s0];
        f = mkv::clip_factor(nrm, R);
      }
    }
  }
  const float lam = n > 0.f ? mkv::nc_lambda(lse, n, amu) : 1.f;
  float nonfinite = 0.f;
  for (int64_t e = tid; e < dv; e += kThreads) {
    float orr = 0.f;
    if (any) {
      float s = 0.f;
      for (int64_t c = 0; c < nch; c++) s += P[c * ps + 2 + e] * mkv::rescale(P[c * ps], mx);
      orr = s * inv;
    }
    float res = orr;
    if (n > 0.f) {
      const float oe = A.p.order == 1 ? A.m.mu_v[vh * dv + e] + ca[e] * f : A.m.mu_v[vh * dv + e];
      res = lam * orr + (1.f - lam) * oe;
    }
    ob[e] = res;
    nonfinite += finite_f(res) ? 0.f : 1.f;
  }
  const bool nan_row = bad_n || block_sum<kWarps>(nonfinite, red) > 0.f;
  for (int64_t e = tid; e < dv; e += kThreads) o[e * A.out.s2] = nan_row ? NAN : ob[e];
}

// Rows usable with vector loads: unit element stride, base and row strides aligned to min(16, PL·elem) bytes.
bool vec_ok(const T3& t, int pl) {
  const int64_t es = dtype_size(t.dtype), bytes = es * pl < 16 ? es * pl : 16;
  if (t.s2 != 1 && t.n2 > 1) return false;
  return reinterpret_cast<uintptr_t>(t.p) % bytes == 0 && (t.s0 * es) % bytes == 0 && (t.s1 * es) % bytes == 0 &&
         (t.sq * es) % bytes == 0;
}
// The same for a contiguous [H, n, w] copy of rows of w elements (what the per-sequence op sees for a sequence).
bool contiguous_vec_ok(int dtype, int64_t w, int pl) {
  const int64_t es = dtype_size(dtype), bytes = es * pl < 16 ? es * pl : 16;
  return (w * es) % bytes == 0;
}

template <bool BATCH>
struct Launch {
  DecArgs A;
  cudaStream_t stream;
  template <int DT, int PL>
  cudaError_t run() const {
    DecArgs x = A;
    // The element-to-lane assignment of the per-sequence op on contiguous rows; a batch loads element by element when
    // its own rows are not aligned for vectors.
    const bool vec = BATCH ? contiguous_vec_ok(A.k.dtype, A.k.n2, PL) && contiguous_vec_ok(A.v.dtype, A.v.n2, PL)
                           : vec_ok(A.k, PL) && vec_ok(A.v, PL);
    x.vload = vec && vec_ok(A.k, PL) && vec_ok(A.v, PL);
    return vec ? go<DT, PL, true>(x) : go<DT, PL, false>(x);
  }
  template <int DT, int PL, bool VEC>
  cudaError_t go(const DecArgs& x) const {
    const size_t smem = size_t(kQB * PL * 32 + 2 * kWarps * kQB + kWarps * kQB * PL * 32) * sizeof(float);
    if (smem > 48 * 1024)
      KVT_CU_TRY(cudaFuncSetAttribute(partial_kernel<BATCH, DT, PL, VEC>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const int64_t groups = ceil_div(x.Q, kQB);
    partial_kernel<BATCH, DT, PL, VEC>
        <<<dim3(unsigned(x.nch), unsigned(groups), unsigned(x.seqs.B * x.k.n0)), kThreads, smem, stream>>>(x);
    return cudaGetLastError();
  }
};

template <bool BATCH>
cudaError_t run(DecArgs A, const Moments* m, cudaStream_t stream) {
  const int64_t Hq = A.q.n0, T = A.q.n1, d = A.k.n2;
  const int64_t Hkv = A.k.n0, cap = A.k.n1, dv = A.v.n2, B = A.seqs.B;
  if (d > kDecodeMaxDim || dv > kDecodeMaxDim || A.k.dtype != A.v.dtype) return cudaErrorInvalidValue;
  if (Hq == 0 || T == 0 || dv == 0 || B == 0) return cudaSuccess;
  if (B * Hkv > 65535 || B * Hq > 0x7fffffff || T > 65535) return cudaErrorInvalidConfiguration;
  A.has_m = m != nullptr;
  if (m) A.m = *m;
  A.G = Hq / Hkv;
  A.Q = A.G * T;
  const int64_t groups = ceil_div(A.Q, kQB);
  if (groups > 65535) return cudaErrorInvalidConfiguration;
  // A plain tensor's chunks, or for a batch the bound over every n_b <= cap (the count is capped by the GPU target).
  const Chunks C = kv_chunks(cap, Hkv, groups);
  A.nch = C.nch;
  A.chunk = C.chunk;
  if (BATCH) A.nch = imax(1, imin(ceil_div(kTargetBlocks, Hkv * groups), ceil_div(cap, kMinChunk)));
  Scratch ws(size_t(B * Hkv * A.Q * A.nch * (dv + 2)) * sizeof(float), stream);
  KVT_CU_TRY(ws.error());
  A.part = ws.as<float>();
  const int64_t pl_need = ceil_div(imax(d, dv), kWarp);
  Launch<BATCH> L{A, stream};
  cudaError_t e;
  switch (A.k.dtype) {
    case kF32: e = pl_need <= 4 ? L.template run<kF32, 4>() : L.template run<kF32, 8>(); break;
    case kF16: e = pl_need <= 4 ? L.template run<kF16, 4>() : L.template run<kF16, 8>(); break;
    case kBF16: e = pl_need <= 4 ? L.template run<kBF16, 4>() : L.template run<kBF16, 8>(); break;
    default: return cudaErrorInvalidValue;
  }
  KVT_CU_TRY(e);
  merge_kernel<BATCH><<<dim3(unsigned(B * Hq), unsigned(T)), kThreads, size_t(d + 2 * dv) * sizeof(float), stream>>>(A);
  return cudaGetLastError();
}

DecArgs dec_args(const Seqs& seqs, const T3& queries, const T3& keys, const T3& values, const T2& counts,
                 const DecodeParams& p, const O3& out) {
  DecArgs A{};
  A.seqs = seqs;
  A.q = queries;
  A.k = keys;
  A.v = values;
  A.cnt = counts;
  A.p = p;
  A.out = out;
  return A;
}

}  // namespace

cudaError_t decode_attention(const T3& queries, const T3& keys, const T3& values, const T2& counts, const Moments* m,
                             const DecodeParams& p, const O3& out, cudaStream_t stream) {
  return run<false>(dec_args(dense_seqs(keys.n1), queries, keys, values, counts, p, out), m, stream);
}

cudaError_t decode_attention_batched(const Seqs& seqs, const T3& queries, const T3& keys, const T3& values,
                                     const T2& counts, const Moments* m, const DecodeParams& p, const O3& out,
                                     cudaStream_t stream) {
  return run<true>(dec_args(seqs, queries, keys, values, counts, p, out), m, stream);
}

}  // namespace cuda
}  // namespace kvt
