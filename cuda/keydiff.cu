// KeyDiff scoring on CUDA (docs/methods/keydiff.md §3; docs/performance.md §5.1): two streaming passes over K.
//   pass 1: per (head, row chunk) partial sums of the L2-normalised keys (warp per row, block reduction);
//   anchor: one block per (sequence, head) reduces the head's partials to the anchor and its norm in a fixed order
//           (deterministic), once per head;
//   pass 2: a warp per row computes -cos(k, anchor) with the shared per-token math of math/common.h, the anchor held
//           in registers (each lane's own columns), two rows in flight per warp.
// Batched (docs/runtime-caches.md §6): the grid's z dimension runs over the sequences of a batch, each chunked as the
// per-sequence op chunks it (rows_per_block of its own length), its rows read in place through the table.
#include "common.cuh"
#include "dispatch.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;

// Rows per block of a head of n tokens in a layer of H heads: about four blocks per SM of the reference device
// (kRefSMs) over the layer, at least 64 rows, a multiple of the warps. The same rule for each sequence of a batch
// (n = n_b), so it is chunked as the per-sequence op chunks it and its anchor sums in the same order.
__host__ __device__ __forceinline__ int64_t rows_per_block(int64_t H, int64_t n) {
  const int64_t rows = imax(64, ceil_div(H * n, kRefSMs * 4));
  return ceil_div(rows, kWarps) * kWarps;
}

struct Args {
  T3 k;         // keys: [H, N, d], or one sequence's rows of a batch (n1 bounds n_b)
  Seqs seqs;
  bool vec;     // vector loads allowed (always with V > 1 for a plain tensor)
  float* partial;  // [B, H, gridDim.x, d]
  float* anchor;   // [B, H, d]
  float* anorm;    // [B, H]
  T2 out;       // [H, N] or a batch's per-token scores
};

// Rows a warp loads before it reduces any (bytes in flight): two where a lane's part of a row is at most 8 values in
// vector loads (d = 64, 128 and 256 in every dtype), one otherwise (the registers of the odd-d and d > 256 variants).
template <int V, int STEPS>
constexpr int rows_in_flight() {
  return V > 1 && V * STEPS <= 8 ? 2 : 1;
}

template <bool BATCH, int DT, int V, int STEPS>
__global__ void __launch_bounds__(kThreads, 4) anchor_partial_kernel(Args a) {
  extern __shared__ float red[];  // [kWarps][d]
  const T3& k = a.k;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, chunk = blockIdx.x, d = k.n2, H = k.n0;
  const int64_t n = seq_len<BATCH>(a.seqs, b), rows_per_blk = rows_per_block(H, n);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  constexpr int ES = DT == kF32 ? 4 : 2;
  const int64_t i0 = chunk * rows_per_blk, i1 = imin(n, i0 + rows_per_blk);
  if (i0 >= i1) return;  // past this sequence's chunks (uniform over the block)
  float* my = red + warp * d;
  auto row_of = [&](int64_t i) { return static_cast<const char*>(k.p) + row_off<BATCH>(a.seqs, k, b, h, i) * ES; };
  if constexpr (STEPS == 0) {
    for (int64_t c = lane; c < d; c += kWarp) my[c] = 0.f;
    for (int64_t i = i0 + warp; i < i1; i += kWarps) {
      const char* row = row_of(i);
      float ss = 0.f;
      for (int64_t c = lane; c < d; c += kWarp) {
        float x;
        load_vec<DT, 1>(row + c * k.s2 * ES, &x);
        ss += x * x;
      }
      const float inv = inv_norm_clamped(warp_sum(ss));
      for (int64_t c = lane; c < d; c += kWarp) {
        float x;
        load_vec<DT, 1>(row + c * k.s2 * ES, &x);
        my[c] += x * inv;
      }
    }
  } else {
    float acc[V * STEPS];
#pragma unroll
    for (int j = 0; j < V * STEPS; j++) acc[j] = 0.f;
    constexpr int R = rows_in_flight<V, STEPS>();
    for (int64_t i = i0 + warp; i < i1; i += R * kWarps) {
      float x[R][V * STEPS];
#pragma unroll
      for (int r = 0; r < R; r++)  // every load first, then the reductions (rows in ascending order per warp)
        if (i + r * kWarps < i1) warp_load_row<DT, V, STEPS>(row_of(i + r * kWarps), d, k.s2, lane, x[r], !BATCH || a.vec);
#pragma unroll
      for (int r = 0; r < R; r++) {
        if (i + r * kWarps >= i1) break;
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < V * STEPS; j++) ss += x[r][j] * x[r][j];
        const float inv = inv_norm_clamped(warp_sum(ss));
#pragma unroll
        for (int j = 0; j < V * STEPS; j++) acc[j] += x[r][j] * inv;
      }
    }
#pragma unroll
    for (int j = 0; j < STEPS; j++)
#pragma unroll
      for (int v = 0; v < V; v++) {
        const int64_t c = slot_elem<V>(j, v, lane);
        if (c < d) my[c] = acc[j * V + v];
      }
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < d; c += kThreads) {
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; w++) s += red[w * d + c];
    a.partial[(((b * H) + h) * gridDim.x + chunk) * d + c] = s;
  }
}

// The anchor of head h of sequence b (blockIdx.x = h, blockIdx.y = b): its chunks' partial sums in chunk order over
// n, and its norm, reduced once per head (every score block used to repeat it).
template <bool BATCH>
__global__ void __launch_bounds__(kThreads) anchor_kernel(Args a, int64_t nchunks) {
  __shared__ float wsum[kWarps];
  const int64_t b = BATCH ? int64_t(blockIdx.y) : 0, h = blockIdx.x, d = a.k.n2, H = a.k.n0;
  const int64_t n = seq_len<BATCH>(a.seqs, b);
  if (n == 0) return;  // an empty sequence of a batch: no scores read its anchor
  const int64_t C = ceil_div(n, rows_per_block(H, n));
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const float* partial = a.partial + (b * H + h) * nchunks * d;
  float* anchor = a.anchor + (b * H + h) * d;
  float part = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += kThreads) {
    float s = 0.f;
    for (int64_t q = 0; q < C; q++) s += partial[q * d + c];
    s /= float(n);
    anchor[c] = s;
    part += s * s;
  }
  part = warp_sum(part);
  if (lane == 0) wsum[warp] = part;
  __syncthreads();
  if (threadIdx.x == 0) {
    float an2 = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; w++) an2 += wsum[w];
    a.anorm[b * H + h] = sqrtf(an2);
  }
}

template <bool BATCH, int DT, int V, int STEPS>
__global__ void __launch_bounds__(kThreads, BATCH ? 4 : 5) score_kernel(Args a) {
  extern __shared__ float anchor_sh[];  // [d] (the generic-d variant only)
  const T3& k = a.k;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, chunk = blockIdx.x, d = k.n2, H = k.n0;
  const int64_t n = seq_len<BATCH>(a.seqs, b), rows_per_blk = rows_per_block(H, n);
  const int64_t i0 = chunk * rows_per_blk, i1 = imin(n, i0 + rows_per_blk);
  if (i0 >= i1) return;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  constexpr int ES = DT == kF32 ? 4 : 2;
  const float* anchor = a.anchor + (b * H + h) * d;
  const float anorm = a.anorm[b * H + h];
  float* o = static_cast<float*>(a.out.p);
  auto row_of = [&](int64_t i) { return static_cast<const char*>(k.p) + row_off<BATCH>(a.seqs, k, b, h, i) * ES; };
  if constexpr (STEPS == 0) {
    for (int64_t c = threadIdx.x; c < d; c += kThreads) anchor_sh[c] = anchor[c];
    __syncthreads();
    for (int64_t i = i0 + warp; i < i1; i += kWarps) {
      const char* row = row_of(i);
      float dot = 0.f, ss = 0.f;
      for (int64_t c = lane; c < d; c += kWarp) {
        float x;
        load_vec<DT, 1>(row + c * k.s2 * ES, &x);
        dot += x * anchor_sh[c];
        ss += x * x;
      }
      dot = warp_sum(dot);
      ss = warp_sum(ss);
      if (lane == 0) o[tok_off<BATCH>(a.seqs, a.out, b, h, i)] = neg_cosine(dot, ss, anorm);
    }
  } else {
    float an[V * STEPS];  // this lane's columns of the anchor
#pragma unroll
    for (int j = 0; j < STEPS; j++)
#pragma unroll
      for (int v = 0; v < V; v++) {
        const int64_t c = slot_elem<V>(j, v, lane);
        an[j * V + v] = c < d ? anchor[c] : 0.f;
      }
    constexpr int R = rows_in_flight<V, STEPS>();
    for (int64_t i = i0 + warp; i < i1; i += R * kWarps) {
      float x[R][V * STEPS];
#pragma unroll
      for (int r = 0; r < R; r++)
        if (i + r * kWarps < i1) warp_load_row<DT, V, STEPS>(row_of(i + r * kWarps), d, k.s2, lane, x[r], !BATCH || a.vec);
#pragma unroll
      for (int r = 0; r < R; r++) {
        if (i + r * kWarps >= i1) break;
        float dot = 0.f, ss = 0.f;
#pragma unroll
        for (int j = 0; j < STEPS; j++)
#pragma unroll
          for (int v = 0; v < V; v++) {
            const int64_t c = slot_elem<V>(j, v, lane);
            const float xv = x[r][j * V + v];
            if (c < d) dot += xv * an[j * V + v];
            ss += xv * xv;
          }
        dot = warp_sum(dot);
        ss = warp_sum(ss);
        if (lane == 0) o[tok_off<BATCH>(a.seqs, a.out, b, h, i + r * kWarps)] = neg_cosine(dot, ss, anorm);
      }
    }
  }
}

template <bool BATCH>
struct Launch {
  Args a;
  cudaStream_t stream;
  template <int DT, int V, int STEPS>
  cudaError_t run() const {
    const int64_t H = a.k.n0, N = a.k.n1, d = a.k.n2, B = a.seqs.B;
    // Chunks: the per-sequence op's for a plain tensor; for a batch a bound over every length (rows_per_block >= 64
    // and >= H n / (4 kRefSMs)): blocks past a sequence's own chunks return at once.
    const int64_t C = BATCH ? imax(1, imin(ceil_div(N, 64), ceil_div(4 * kRefSMs, H)))
                            : ceil_div(N, rows_per_block(H, N));
    if (H > 65535 || B > 65535 || C > 0x7fffffff) return cudaErrorInvalidConfiguration;
    Scratch scratch(size_t(B * H * (C * d + d + 1)) * sizeof(float), stream);
    KVT_CU_TRY(scratch.error());
    Args x = a;
    x.partial = scratch.as<float>();
    x.anchor = x.partial + B * H * C * d;
    x.anorm = x.anchor + B * H * d;
    const dim3 grid{static_cast<unsigned>(C), static_cast<unsigned>(H), static_cast<unsigned>(B)};
    anchor_partial_kernel<BATCH, DT, V, STEPS><<<grid, kThreads, size_t(kWarps * d) * sizeof(float), stream>>>(x);
    KVT_CU_TRY(cudaGetLastError());
    anchor_kernel<BATCH><<<dim3(unsigned(H), unsigned(B)), kThreads, 0, stream>>>(x, C);
    KVT_CU_TRY(cudaGetLastError());
    score_kernel<BATCH, DT, V, STEPS><<<grid, kThreads, STEPS == 0 ? size_t(d) * sizeof(float) : 0, stream>>>(x);
    return cudaGetLastError();
  }
};

}  // namespace

cudaError_t keydiff_scores(const T3& keys, const T2& scores, cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  if (keys.n0 == 0 || keys.n1 == 0) return cudaSuccess;
  const Args a{keys, dense_seqs(keys.n1), true, nullptr, nullptr, nullptr, scores};
  return dispatch_rows(keys, Launch<false>{a, stream});
}

cudaError_t keydiff_scores_batched(const Seqs& seqs, const T3& keys, const T2& scores, cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  if (seqs.B == 0 || keys.n0 == 0 || keys.n1 == 0) return cudaSuccess;
  const int vec = contiguous_vec_width(keys.dtype, keys.n2);
  const Args a{keys, seqs, batch_vec_ok(keys, vec), nullptr, nullptr, nullptr, scores};
  return dispatch_vec(keys.dtype, vec, keys.n2, Launch<true>{a, stream});
}

}  // namespace cuda
}  // namespace kvt
