// GRKV merge on CUDA (docs/methods/grkv.md §5, §6): the target o* = full causal attention of the surrogate query rows over
// all N keys, by split-K online softmax (partial m, l, acc per (head, chunk, row)) and an LSE merge.
#include "grkv_tiles.cuh"

namespace kvt {
namespace cuda {
namespace grkv {
namespace {

template <int DT, int DVMAX>
__global__ void __launch_bounds__(kT, 2) target_kernel(Ctx c) {
  __shared__ float Qs[kTl][kTp], Ks[kTl][kTp], Ps[kTl][kTp], Vs[kTl][kTp];
  __shared__ int32_t qmax[kTl];
  __shared__ int64_t koff[kTl], voff[kTl];  // element offsets of the tile's key / value rows (-1 past n1)
  constexpr int NC = DVMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.z, r0 = int64_t(blockIdx.y) * kTl, chunk = blockIdx.x;
  const GrkvGeo& g = c.geo[h];
  const int64_t rows = g.rows;
  if (chunk >= g.ncht || r0 >= rows) return;  // past this head's chunks or rows (uniform over the block)
  const int64_t n0 = chunk * g.cht, n1 = imin(g.N, n0 + g.cht);
  const T3& K = c.p.keys;
  const T3& V = c.p.values;
  int32_t qp[2];
#pragma unroll
  for (int a = 0; a < 2; a++) qp[a] = r0 + ty + 16 * a < rows ? qpos_of(c, h, r0 + ty + 16 * a) : -1;
  if (tid < kTl) qmax[tid] = r0 + tid < rows ? qpos_of(c, h, r0 + tid) : -1;
  __syncthreads();
  int32_t maxq = -1;
  for (int i = 0; i < kTl; i++) maxq = max(maxq, qmax[i]);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, acc[2][2 * NC];
  tile_zero(acc);
  for (int64_t t0 = n0; t0 < n1 && t0 <= maxq; t0 += kTl) {
    // The rows' offsets through the batch's table once per tile (not per element: the paged addressing held in
    // registers across the tile loops spilled); the previous tile's last reads of them precede tile_pb's barrier.
    if (tid < 2 * kTl) {
      const int64_t key = t0 + tid % kTl;
      const T3& X = tid < kTl ? K : V;
      (tid < kTl ? koff : voff)[tid % kTl] = key < n1 ? in_row(c, X, h, key) : -1;
    }
    __syncthreads();
    float dot[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    tile_dot_cols(Qs, Ks, c.d, tid, ty, tx, dot, query_rows<float>(c, h, r0), [&](int rr, int64_t col) {
      return koff[rr] >= 0 ? ldf<DT>(K.p, koff[rr] + col * K.s2) : 0.f;
    });
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
        const int64_t cv = cc * kTl + col;
        return voff[tt] >= 0 && cv < c.dv ? ldf<DT>(V.p, voff[tt] + cv * V.s2) : 0.f;
      });
    });
  }
  const int64_t stride = c.dv + 2;
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t row = r0 + ty + 16 * a;
    if (row >= rows) continue;
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
  if (wid >= c.VH * c.rows) return;
  const int64_t h = wid / c.rows, i = wid % c.rows, stride = c.dv + 2, ncht = c.geo[h].ncht;
  if (i >= c.geo[h].rows) return;
  const float* base = c.part + (h * c.ncht * c.rows + i) * stride;
  const int64_t cs = c.rows * stride;  // chunk stride
  float M = -INFINITY;
  for (int64_t k = lane; k < ncht; k += kWarp) M = fmaxf(M, base[k * cs]);
  M = warp_max(M);
  float* o = c.ostar + (h * c.rows + i) * c.dv;
  if (M == -INFINITY) {
    for (int64_t col = lane; col < c.dv; col += kWarp) o[col] = 0.f;
    return;
  }
  float L = 0.f;
  for (int64_t k = lane; k < ncht; k += kWarp) {
    const float mk = base[k * cs];
    if (mk != -INFINITY) L += base[k * cs + 1] * expf(mk - M);
  }
  L = warp_sum(L);
  const float inv = 1.0f / L;
  for (int64_t col = lane; col < c.dv; col += kWarp) {
    float s = 0.f;
    for (int64_t k = 0; k < ncht; k++) {
      const float mk = base[k * cs];
      if (mk != -INFINITY) s += base[k * cs + 2 + col] * expf(mk - M);
    }
    o[col] = s * inv;
  }
}

}  // namespace

cudaError_t launch_target(const Ctx& c, cudaStream_t s) {
  KVT_CU_TRY(with_dtype(c.p.keys.dtype, [&](auto dt) {
    return with_dim(c.dv, [&](auto dvm) {
      target_kernel<decltype(dt)::value, decltype(dvm)::value>
          <<<dim3(unsigned(c.ncht), row_tiles(c), unsigned(c.VH)), kT, 0, s>>>(c);
      return cudaGetLastError();
    });
  }));
  target_merge_kernel<<<row_warps(c), kT, 0, s>>>(c);
  return cudaGetLastError();
}

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
