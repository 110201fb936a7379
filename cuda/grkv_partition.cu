// GRKV merge on CUDA, first phase (docs/methods/grkv.md §4): the queries staged as f32 rows, and per KV head the partition
// of the retained slots into fixed (window, anchors) and mutable rows with the head's initial state.
#include "grkv_tiles.cuh"

namespace kvt {
namespace cuda {
namespace grkv {
namespace {

// The geometry of each virtual head from its sequence's lengths (clamped: at most kGrkvMaxRows / G queries).
__global__ void geometry_kernel(Ctx c) {
  const int64_t vh = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (vh >= c.VH) return;
  GrkvGeo g{};
  g.b = vh / c.H;
  g.N = c.p.seqs.r.length(g.b);
  g.Qs = imin(c.p.qseqs.r.length(g.b), kGrkvMaxRows / c.G);
  g.rows = int32_t(c.G * g.Qs);
  target_split(c.H, g.rows, g.N, &g.ncht, &g.cht);
  c.geo[vh] = g;
}

// Full occupancy at kT = 256 threads (32 registers, as before batches; common.cuh).
static_assert(kT == 256, "KVT_FULL_SM_CTAS_256 is for 256-thread blocks");
__global__ void __launch_bounds__(kT, KVT_FULL_SM_CTAS_256) prep_kernel(Ctx c) {
  const int64_t n = c.VH * c.rows * c.d;
  const T3& q = c.p.queries;
  const int es = dtype_size(q.dtype);
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = e % c.d, i = (e / c.d) % c.rows, vh = e / (c.d * c.rows);
    const GrkvGeo& gm = c.geo[vh];
    if (i >= gm.rows) continue;
    const int64_t g = i / gm.Qs, j = i % gm.Qs;
    const int64_t off = c.p.qseqs.r.offset(q.sq, q.s0, q.s1, gm.b, (vh % c.H) * c.G + g, j);
    c.Qf[e] = load_as_f32(static_cast<const char*>(q.p) + (off + col * q.s2) * es, q.dtype, 0);
  }
}

// One CTA per head: retained slots, prefix count, anchors (the `anchors` largest anchor keys, found by a bitwise
// search for the k-th largest 64-bit key over keys built once into scratch), mutable flags, and the head state.
__global__ void __launch_bounds__(kRedThreads) partition_kernel(Ctx c) {
  __shared__ int64_t sh[32];
  const int64_t h = blockIdx.x, b = h / c.H, hh = h % c.H, N = c.geo[h].N;
  const GrkvParams& p = c.p;
  int64_t S = static_cast<const int32_t*>(p.counts.p)[head_off(p.counts, b, hh)];
  S = imax(0, imin(S, imin(c.cap_in, c.cap)));
  const int64_t W = p.window;
  uint64_t* key = c.skey + h * c.cap;  // anchor key of each retained prefix slot; 0 = not a candidate
  int64_t np = 0;
  for (int64_t s = threadIdx.x; s < c.cap; s += blockDim.x) {
    int64_t pos = -1;
    if (s < S) {
      const int64_t i = static_cast<const int32_t*>(p.indices.p)[head_off(p.indices, b, hh, s)];
      pos = i >= 0 && i < N ? i : -1;
    }
    c.spos[h * c.cap + s] = int32_t(pos);
    const bool pre = pos >= 0 && pos < N - W;
    key[s] = pre ? grkv_anchor_key(static_cast<const float*>(p.scores.p)[p.seqs.r.tok_offset(p.scores.sq, p.scores.s0,
                                                                                             p.scores.s1, b, hh, pos)],
                                   pos)
                 : 0;
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
    st.active = R > 0 && c.geo[h].rows > 0;
    st.flags = st.active ? 0 : kGrkvSkipped;
    st.cg_stop = kCgNotRun;
    c.st[h] = st;
  }
}

}  // namespace

cudaError_t launch_geometry(const Ctx& c, cudaStream_t s) {
  geometry_kernel<<<blocks_for(c.VH, 128), 128, 0, s>>>(c);
  return cudaGetLastError();
}

cudaError_t launch_prep(const Ctx& c, cudaStream_t s) {
  prep_kernel<<<blocks_for(c.VH * c.rows * c.d, kT), kT, 0, s>>>(c);
  return cudaGetLastError();
}

cudaError_t launch_partition(const Ctx& c, cudaStream_t s) {
  partition_kernel<<<unsigned(c.VH), kRedThreads, 0, s>>>(c);
  return cudaGetLastError();
}

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
