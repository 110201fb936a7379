// GRKV merge on CUDA (docs/methods/grkv.md §6): attention of the surrogate query rows over the retained slots (the rows of
// keys_out / values_out, which hold the current candidate): logits, softmax, the split-K output A V, and the
// candidate's objective.
#include "grkv_tiles.cuh"

namespace kvt {
namespace cuda {
namespace grkv {
namespace {

// A[h, i, s] = scale q_i . k_s for visible slots (spos[s] <= qpos_i), -inf otherwise (s < count only).
template <int DT>
__global__ void __launch_bounds__(kT) logits_kernel(Ctx c, int sel) {
  __shared__ float Qs[kTl][kTp], Ks[kTl][kTp];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.z, r0 = int64_t(blockIdx.y) * kTl, s0 = int64_t(blockIdx.x) * kTl;
  if (!head_on(c, h, sel)) return;
  const int64_t S = c.st[h].count, rows = rows_of(c, h);
  if (s0 >= S || r0 >= rows) return;
  const O3& K = c.p.keys_out;
  float dot[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
  tile_dot_cols(Qs, Ks, c.d, tid, ty, tx, dot, query_rows<float>(c, h, r0), stored_rows<DT, float>(c, K, h, s0, S));
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t row = r0 + ty + 16 * a;
    if (row >= rows) continue;
    const int32_t qp = qpos_of(c, h, row);
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
  if (wid >= c.VH * c.rows) return;
  const int64_t h = wid / c.rows, i = wid % c.rows;
  if (!head_on(c, h, sel) || i >= rows_of(c, h)) return;
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
  const int64_t S = c.st[h].count, rows = rows_of(c, h);
  if (r0 >= rows) return;
  const int64_t t1 = imin(S, (chunk + 1) * kChunkSlots);
  const O3& V = c.p.values_out;
  float acc[2][2 * NC];
  tile_zero(acc);
  for (int64_t t0 = chunk * kChunkSlots; t0 < t1; t0 += kTl) {
    for (int e = tid; e < kTl * kTl; e += kT) {
      const int rr = e / kTl, tt = e % kTl;
      const int64_t row = r0 + rr, slot = t0 + tt;
      Ps[rr][tt] = row < rows && slot < t1 ? c.A[(h * c.rows + row) * c.cap + slot] : 0.f;
    }
    tile_pb<false, NC>(Ps, Vs, c.dv, ty, tx, acc, [&](int cc) {
      tile_fill(Vs, tid, [&](int tt, int col) {
        const int64_t slot = t0 + tt, cv = cc * kTl + col;
        return slot < t1 && cv < c.dv ? ldf<DT>(V.p, out_row(c, V, h, slot) + cv * V.s2) : 0.f;
      });
    });
  }
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t row = r0 + ty + 16 * a;
    if (row >= rows) continue;
    float* out = c.part + ((h * c.nchs + chunk) * c.rows + row) * c.dv;
    tile_store_row<NC>(acc, a, c.dv, tx, out);
  }
}

// out[h, i, :] = sum over chunks of the av partials.
__global__ void av_reduce_kernel(Ctx c, float* out, int sel) {
  const int64_t n = c.VH * c.rows * c.dv;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = e / (c.rows * c.dv), r = e % (c.rows * c.dv);
    if (!head_on(c, h, sel) || r / c.dv >= rows_of(c, h)) continue;
    float s = 0.f;
    for (int64_t k = 0; k < c.nchs; k++) s += c.part[(h * c.nchs + k) * c.rows * c.dv + r];
    out[e] = s;
  }
}

// Loss of candidate k (docs/methods/grkv.md §6): sum_i w_i ||o_i - o*_i||^2, plus lambda times the ridge of the steps taken.
__global__ void __launch_bounds__(kRedThreads) loss_kernel(Ctx c, const float* o, int k, int sel) {
  __shared__ double sh[32];
  const int64_t h = blockIdx.x;
  if (!head_on(c, h, sel)) return;
  double acc = 0;
  const int64_t rows = rows_of(c, h);
  for (int64_t i = 0; i < rows; i++) {
    double e = 0;
    for (int64_t col = threadIdx.x; col < c.dv; col += blockDim.x) {
      const double x = double(o[(h * c.rows + i) * c.dv + col]) - double(c.ostar[(h * c.rows + i) * c.dv + col]);
      e += x * x;
    }
    acc += double(w_of(c, h, i)) * e;
  }
  const double L = block_sum<double>(acc, sh);
  if (threadIdx.x == 0) {
    GrkvHead& st = c.st[h];
    st.loss[k] = L;
    const double ridge = k == 0 ? 0.0 : k == 1 ? st.dist2[0] : st.dist2[0] + st.dist2[1];
    st.L[k] = L + c.p.lambda * ridge;
  }
}

}  // namespace

cudaError_t launch_attention(const Ctx& c, int sel, cudaStream_t s) {
  KVT_CU_TRY(with_dtype(c.p.keys.dtype, [&](auto dt) {
    logits_kernel<decltype(dt)::value>
        <<<dim3(unsigned(ceil_div(c.cap, kTl)), row_tiles(c), unsigned(c.VH)), kT, 0, s>>>(c, sel);
    return cudaGetLastError();
  }));
  softmax_kernel<<<row_warps(c), kT, 0, s>>>(c, sel);
  return cudaGetLastError();
}

cudaError_t launch_output(const Ctx& c, int sel, float* out, int k, cudaStream_t s) {
  KVT_CU_TRY(with_dtype(c.p.keys.dtype, [&](auto dt) {
    return with_dim(c.dv, [&](auto dvm) {
      av_kernel<decltype(dt)::value, decltype(dvm)::value>
          <<<dim3(unsigned(c.nchs), row_tiles(c), unsigned(c.VH)), kT, 0, s>>>(c, sel);
      return cudaGetLastError();
    });
  }));
  av_reduce_kernel<<<blocks_for(c.VH * c.rows * c.dv, kT), kT, 0, s>>>(c, out, sel);
  KVT_CU_TRY(cudaGetLastError());
  loss_kernel<<<unsigned(c.VH), kRedThreads, 0, s>>>(c, out, k, sel);
  return cudaGetLastError();
}

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
