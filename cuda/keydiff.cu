// KeyDiff scoring on CUDA (docs/methods/keydiff.md §3; docs/performance.md §5.1): two streaming passes over K.
//   pass 1: per (head, row chunk) partial sums of the L2-normalised keys (warp per row, block reduction);
//   pass 2: every block reduces its head's partials to the anchor in a fixed order (deterministic), then a warp
//           per row computes -cos(k, anchor) with the shared per-token math of math/common.h.
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
  T2 out;       // [H, N] or a batch's per-token scores
};

template <bool BATCH, int DT, int V, int STEPS>
__global__ void __launch_bounds__(kThreads) anchor_partial_kernel(Args a) {
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
    for (int64_t i = i0 + warp; i < i1; i += kWarps) {
      float x[V * STEPS];
      warp_load_row<DT, V, STEPS>(row_of(i), d, k.s2, lane, x, !BATCH || a.vec);
      float ss = 0.f;
#pragma unroll
      for (int j = 0; j < V * STEPS; j++) ss += x[j] * x[j];
      const float inv = inv_norm_clamped(warp_sum(ss));
#pragma unroll
      for (int j = 0; j < V * STEPS; j++) acc[j] += x[j] * inv;
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

template <bool BATCH, int DT, int V, int STEPS>
__global__ void __launch_bounds__(kThreads) score_kernel(Args a) {
  extern __shared__ float anchor[];  // [d] + kWarps
  const T3& k = a.k;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, chunk = blockIdx.x, d = k.n2, H = k.n0;
  const int64_t n = seq_len<BATCH>(a.seqs, b), rows_per_blk = rows_per_block(H, n);
  const int64_t C = ceil_div(n, rows_per_blk);
  const int64_t i0 = chunk * rows_per_blk, i1 = imin(n, i0 + rows_per_blk);
  if (i0 >= i1) return;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  constexpr int ES = DT == kF32 ? 4 : 2;
  float* wsum = anchor + d;
  const float* partial = a.partial + (b * H + h) * gridDim.x * d;
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
  float an2 = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; w++) an2 += wsum[w];
  const float anorm = sqrtf(an2);
  float* o = static_cast<float*>(a.out.p);
  for (int64_t i = i0 + warp; i < i1; i += kWarps) {
    const char* row = static_cast<const char*>(k.p) + row_off<BATCH>(a.seqs, k, b, h, i) * ES;
    float dot = 0.f, ss = 0.f;
    if constexpr (STEPS == 0) {
      for (int64_t c = lane; c < d; c += kWarp) {
        float x;
        load_vec<DT, 1>(row + c * k.s2 * ES, &x);
        dot += x * anchor[c];
        ss += x * x;
      }
    } else {
      float x[V * STEPS];
      warp_load_row<DT, V, STEPS>(row, d, k.s2, lane, x, !BATCH || a.vec);
#pragma unroll
      for (int j = 0; j < STEPS; j++)
#pragma unroll
        for (int v = 0; v < V; v++) {
          const int64_t c = slot_elem<V>(j, v, lane);
          const float xv = x[j * V + v];
          if (c < d) dot += xv * anchor[c];
          ss += xv * xv;
        }
    }
    dot = warp_sum(dot);
    ss = warp_sum(ss);
    if (lane == 0) o[tok_off<BATCH>(a.seqs, a.out, b, h, i)] = neg_cosine(dot, ss, anorm);
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
    Scratch partial(size_t(B * H * C * d) * sizeof(float), stream);
    KVT_CU_TRY(partial.error());
    Args x = a;
    x.partial = partial.as<float>();
    const dim3 grid{static_cast<unsigned>(C), static_cast<unsigned>(H), static_cast<unsigned>(B)};
    anchor_partial_kernel<BATCH, DT, V, STEPS><<<grid, kThreads, size_t(kWarps * d) * sizeof(float), stream>>>(x);
    KVT_CU_TRY(cudaGetLastError());
    score_kernel<BATCH, DT, V, STEPS><<<grid, kThreads, size_t(d + kWarps) * sizeof(float), stream>>>(x);
    return cudaGetLastError();
  }
};

}  // namespace

cudaError_t keydiff_scores(const T3& keys, const T2& scores, cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  if (keys.n0 == 0 || keys.n1 == 0) return cudaSuccess;
  const Args a{keys, dense_seqs(keys.n1), true, nullptr, scores};
  return dispatch_rows(keys, Launch<false>{a, stream});
}

cudaError_t keydiff_scores_batched(const Seqs& seqs, const T3& keys, const T2& scores, cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  if (seqs.B == 0 || keys.n0 == 0 || keys.n1 == 0) return cudaSuccess;
  const int vec = contiguous_vec_width(keys.dtype, keys.n2);
  const Args a{keys, seqs, batch_vec_ok(keys, vec), nullptr, scores};
  return dispatch_vec(keys.dtype, vec, keys.n2, Launch<true>{a, stream});
}

}  // namespace cuda
}  // namespace kvt
