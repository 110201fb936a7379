// KeyDiff scoring on CUDA (docs/methods/keydiff.md §3; docs/performance.md §5.1): two streaming passes over K.
//   pass 1: per (head, row chunk) partial sums of the L2-normalised keys (warp per row, block reduction);
//   pass 2: every block reduces its head's partials to the anchor in a fixed order (deterministic), then a warp
//           per row computes -cos(k, anchor) with the shared per-token math of math/common.h.
#include "common.cuh"
#include "dispatch.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;

template <int DT, int V, int STEPS>
__global__ void __launch_bounds__(kThreads) anchor_partial_kernel(T3 k, int64_t rows_per_block, float* partial) {
  extern __shared__ float red[];  // [kWarps][d]
  const int64_t h = blockIdx.y, chunk = blockIdx.x, d = k.n2;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  constexpr int ES = DT == kF32 ? 4 : 2;
  const int64_t i0 = chunk * rows_per_block, i1 = imin(k.n1, i0 + rows_per_block);
  float* my = red + warp * d;
  if constexpr (STEPS == 0) {
    for (int64_t c = lane; c < d; c += kWarp) my[c] = 0.f;
    for (int64_t i = i0 + warp; i < i1; i += kWarps) {
      const char* row = static_cast<const char*>(k.p) + (h * k.s0 + i * k.s1) * ES;
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
      const char* row = static_cast<const char*>(k.p) + (h * k.s0 + i * k.s1) * ES;
      float x[V * STEPS];
      warp_load_row<DT, V, STEPS>(row, d, k.s2, lane, x);
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
    partial[(h * gridDim.x + chunk) * d + c] = s;
  }
}

template <int DT, int V, int STEPS>
__global__ void __launch_bounds__(kThreads) score_kernel(T3 k, int64_t rows_per_block, const float* partial, T2 out) {
  extern __shared__ float anchor[];  // [d] + kWarps
  const int64_t h = blockIdx.y, chunk = blockIdx.x, d = k.n2, C = gridDim.x;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  constexpr int ES = DT == kF32 ? 4 : 2;
  float* wsum = anchor + d;
  float part = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += kThreads) {
    float s = 0.f;
    for (int64_t q = 0; q < C; q++) s += partial[(h * C + q) * d + c];
    s /= float(k.n1);
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
  const int64_t i0 = chunk * rows_per_block, i1 = imin(k.n1, i0 + rows_per_block);
  float* o = static_cast<float*>(out.p) + h * out.s0;
  for (int64_t i = i0 + warp; i < i1; i += kWarps) {
    const char* row = static_cast<const char*>(k.p) + (h * k.s0 + i * k.s1) * ES;
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
      warp_load_row<DT, V, STEPS>(row, d, k.s2, lane, x);
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
    if (lane == 0) o[i * out.s1] = neg_cosine(dot, ss, anorm);
  }
}

struct Launch {
  const T3& k;
  const T2& out;
  cudaStream_t stream;
  template <int DT, int V, int STEPS>
  cudaError_t run() const {
    const int64_t H = k.n0, N = k.n1, d = k.n2;
    // About four blocks per SM of the reference device over the whole layer, at least 64 rows per block.
    int64_t rows = imax(64, ceil_div(H * N, kRefSMs * 4));
    rows = ceil_div(rows, kWarps) * kWarps;
    const int64_t C = ceil_div(N, rows);
    if (H > 65535) return cudaErrorInvalidConfiguration;
    Scratch partial(size_t(H * C * d) * sizeof(float), stream);
    KVT_CU_TRY(partial.error());
    const dim3 grid{static_cast<unsigned>(C), static_cast<unsigned>(H)};
    anchor_partial_kernel<DT, V, STEPS>
        <<<grid, kThreads, size_t(kWarps * d) * sizeof(float), stream>>>(k, rows, partial.as<float>());
    KVT_CU_TRY(cudaGetLastError());
    score_kernel<DT, V, STEPS>
        <<<grid, kThreads, size_t(d + kWarps) * sizeof(float), stream>>>(k, rows, partial.as<float>(), out);
    return cudaGetLastError();
  }
};

}  // namespace

cudaError_t keydiff_scores(const T3& keys, const T2& scores, cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  return dispatch_rows(keys, Launch{keys, scores, stream});
}

}  // namespace cuda
}  // namespace kvt
