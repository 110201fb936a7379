// GRKV merge on CUDA, first phase (docs/methods/grkv.md §4): the queries staged as f32 rows, and per KV head the partition
// of the retained slots into fixed (window, anchors) and mutable rows with the head's initial state.
#include "grkv_tiles.cuh"

namespace kvt {
namespace cuda {
namespace grkv {
namespace {

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

}  // namespace

cudaError_t launch_prep(const Ctx& c, cudaStream_t s) {
  prep_kernel<<<blocks_for(c.H * c.rows * c.d, kT), kT, 0, s>>>(c);
  return cudaGetLastError();
}

cudaError_t launch_partition(const Ctx& c, cudaStream_t s) {
  partition_kernel<<<unsigned(c.H), kRedThreads, 0, s>>>(c);
  return cudaGetLastError();
}

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
