// Straightforward GPU baselines for `kvtrim bench` (not used by the library ops). They compute the same
// functions as the fused kernels the way an unfused framework implementation does (kvpress-style, see
// docs/performance.md §4): materialised intermediates, a full segmented sort for top-k, element-wise copies.
#include <cub/device/device_segmented_radix_sort.cuh>

#include "common.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Normalise every key row into an f32 copy (warp per row).
__global__ void normalize_kernel(T3 k, float* kn) {
  const int64_t row = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= k.n0 * k.n1) return;
  const int64_t h = row / k.n1, i = row % k.n1;
  float ss = 0.f;
  for (int64_t c = lane; c < k.n2; c += kWarp) {
    const float x = load_as_f32(k.p, k.dtype, h * k.s0 + i * k.s1 + c * k.s2);
    ss += x * x;
  }
  const float inv = inv_norm_clamped(warp_sum(ss));
  for (int64_t c = lane; c < k.n2; c += kWarp) kn[row * k.n2 + c] = load_as_f32(k.p, k.dtype, h * k.s0 + i * k.s1 + c * k.s2) * inv;
}

// Column mean per head: thread per (head, channel), loop over rows.
__global__ void mean_kernel(const float* kn, int64_t H, int64_t N, int64_t d, float* mean) {
  const int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (t >= H * d) return;
  const int64_t h = t / d, c = t % d;
  float s = 0.f;
  for (int64_t i = 0; i < N; i++) s += kn[(h * N + i) * d + c];
  mean[t] = s / float(N);
}

// Cosine of each normalised key with its head's mean (warp per row).
__global__ void cosine_kernel(const float* kn, const float* mean, int64_t H, int64_t N, int64_t d, T2 out) {
  const int64_t row = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= H * N) return;
  const int64_t h = row / N, i = row % N;
  float dot = 0.f, an = 0.f;
  for (int64_t c = lane; c < d; c += kWarp) {
    dot += kn[row * d + c] * mean[h * d + c];
    an += mean[h * d + c] * mean[h * d + c];
  }
  dot = warp_sum(dot);
  an = warp_sum(an);
  if (lane == 0) static_cast<float*>(out.p)[h * out.s0 + i * out.s1] = neg_cosine(dot, 1.f, sqrtf(an));
}

__global__ void iota_kernel(const T2 s, float* keys, int32_t* vals) {
  const int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (t >= s.n0 * s.n1) return;
  const int64_t h = t / s.n1, i = t % s.n1;
  keys[t] = static_cast<const float*>(s.p)[h * s.s0 + i * s.s1];
  vals[t] = int32_t(i);
}

__global__ void offsets_kernel(int32_t* off, int64_t H, int64_t N) {
  const int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (t <= H) off[t] = int32_t(t * N);
}

// Mark the first k sorted indices of each row in a mask.
__global__ void mark_kernel(const int32_t* sorted, int64_t H, int64_t N, int64_t k, uint8_t* mask) {
  const int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (t >= H * k) return;
  const int64_t h = t / k, j = t % k;
  mask[h * N + sorted[h * N + j]] = 1;
}

// Per-row serial compaction of the mask into ascending indices (one thread per row).
__global__ void compact_kernel(const uint8_t* mask, int64_t H, int64_t N, T2 idx, T2 cnt) {
  const int64_t h = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (h >= H) return;
  int64_t c = 0;
  int32_t* out = static_cast<int32_t*>(idx.p) + h * idx.s0;
  for (int64_t i = 0; i < N; i++)
    if (mask[h * N + i]) out[(c++) * idx.s1] = int32_t(i);
  static_cast<int32_t*>(cnt.p)[h * cnt.s0] = int32_t(c);
}

// One thread per element.
__global__ void gather_elem_kernel(T3 src, T2 idx, T2 cnt, O3 dst) {
  const int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t cap = dst.n1, d = dst.n2;
  if (t >= dst.n0 * cap * d) return;
  const int64_t h = t / (cap * d), j = (t / d) % cap, c = t % d;
  const int64_t n = static_cast<const int32_t*>(cnt.p)[h * cnt.s0];
  const int es = src.dtype == kF32 ? 4 : 2;
  char* o = static_cast<char*>(dst.p) + (h * dst.s0 + j * dst.s1 + c * dst.s2) * es;
  if (j < n) {
    const int64_t i = static_cast<const int32_t*>(idx.p)[h * idx.s0 + j * idx.s1];
    const char* s = static_cast<const char*>(src.p) + (h * src.s0 + i * src.s1 + c * src.s2) * es;
    if (es == 4) *reinterpret_cast<uint32_t*>(o) = *reinterpret_cast<const uint32_t*>(s);
    else *reinterpret_cast<uint16_t*>(o) = *reinterpret_cast<const uint16_t*>(s);
  } else if (es == 4) {
    *reinterpret_cast<uint32_t*>(o) = 0u;
  } else {
    *reinterpret_cast<uint16_t*>(o) = 0;
  }
}

unsigned blocks(int64_t n) { return unsigned(ceil_div(n, kThreads)); }

}  // namespace

cudaError_t baseline_keydiff(const T3& k, const T2& out, cudaStream_t s) {
  const int64_t H = k.n0, N = k.n1, d = k.n2;
  Scratch kn(size_t(H * N * d) * sizeof(float), s), mean(size_t(H * d) * sizeof(float), s);
  KVT_CU_TRY(kn.error());
  KVT_CU_TRY(mean.error());
  normalize_kernel<<<blocks(H * N * kWarp), kThreads, 0, s>>>(k, kn.as<float>());
  mean_kernel<<<blocks(H * d), kThreads, 0, s>>>(kn.as<float>(), H, N, d, mean.as<float>());
  cosine_kernel<<<blocks(H * N * kWarp), kThreads, 0, s>>>(kn.as<float>(), mean.as<float>(), H, N, d, out);
  return cudaGetLastError();
}

cudaError_t baseline_select(const T2& scores, int64_t keep, const T2& idx, const T2& cnt, cudaStream_t s) {
  const int64_t H = scores.n0, N = scores.n1, n = H * N;
  size_t temp = 0;
  KVT_CU_TRY(cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, temp, static_cast<const float*>(nullptr),
                                                                 static_cast<float*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                                 static_cast<int32_t*>(nullptr), int(n), int(H),
                                                                 static_cast<const int32_t*>(nullptr),
                                                                 static_cast<const int32_t*>(nullptr), 0, 32, s));
  Scratch ws(temp + size_t(n) * (2 * sizeof(float) + 2 * sizeof(int32_t) + 1) + size_t(H + 1) * sizeof(int32_t), s);
  KVT_CU_TRY(ws.error());
  char* p = ws.as<char>();
  float* k_in = reinterpret_cast<float*>(p + temp);
  float* k_out = k_in + n;
  int32_t* v_in = reinterpret_cast<int32_t*>(k_out + n);
  int32_t* v_out = v_in + n;
  int32_t* off = v_out + n;
  uint8_t* mask = reinterpret_cast<uint8_t*>(off + H + 1);
  iota_kernel<<<blocks(n), kThreads, 0, s>>>(scores, k_in, v_in);
  offsets_kernel<<<blocks(H + 1), kThreads, 0, s>>>(off, H, N);
  KVT_CU_TRY(cub::DeviceSegmentedRadixSort::SortPairsDescending(p, temp, k_in, k_out, v_in, v_out, int(n), int(H), off,
                                                                 off + 1, 0, 32, s));
  KVT_CU_TRY(cudaMemsetAsync(mask, 0, size_t(n), s));
  mark_kernel<<<blocks(H * keep), kThreads, 0, s>>>(v_out, H, N, keep, mask);
  compact_kernel<<<blocks(H), kThreads, 0, s>>>(mask, H, N, idx, cnt);
  return cudaGetLastError();
}

cudaError_t baseline_gather(const T3& k, const T3& v, const T2& idx, const T2& cnt, const O3& ko, const O3& vo, cudaStream_t s) {
  gather_elem_kernel<<<blocks(ko.n0 * ko.n1 * ko.n2), kThreads, 0, s>>>(k, idx, cnt, ko);
  gather_elem_kernel<<<blocks(vo.n0 * vo.n1 * vo.n2), kThreads, 0, s>>>(v, idx, cnt, vo);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace kvt
