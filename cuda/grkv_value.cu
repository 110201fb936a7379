// GRKV merge on CUDA, value step (docs/methods/grkv.md §7.1): the exact dual ridge at K0, (Aw Aw^T + lambda I) X =
// sqrt(w) (o* - o) with Aw = sqrt(w) A on the mutable slots: the Gram matrix (SIMT fp32: TF32 tensor cores would break
// parity with the CPU backend), one SPD solve per head (spd_device.cuh), and dV = Aw^T X. The capped step that turns
// dV into V1 is grkv_candidates.cu's.
#include <stddef.h>

#include "grkv_tiles.cuh"
#include "spd_device.cuh"

namespace kvt {
namespace cuda {
namespace grkv {
namespace {

// Gram of Aw = sqrt(w) * A restricted to the mutable slots, plus lambda on the diagonal: lower 32x32 blocks.
__global__ void __launch_bounds__(kT) gram_kernel(Ctx c) {
  __shared__ float Xi[kTl][kTp], Xj[kTl][kTp];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.y;
  int bi = 0;
  while ((bi + 1) * (bi + 2) / 2 <= int(blockIdx.x)) bi++;
  const int bj = int(blockIdx.x) - bi * (bi + 1) / 2;
  const int64_t i0 = int64_t(bi) * kTl, j0 = int64_t(bj) * kTl;
  const int64_t S = c.st[h].count, rows = rows_of(c, h);
  if (i0 >= rows) return;  // past this head's rows (its system is smaller)
  float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
  for (int64_t t0 = 0; t0 < S; t0 += kTl) {
    for (int e = tid; e < kTl * kTl; e += kT) {
      const int rr = e / kTl, tt = e % kTl;
      const int64_t slot = t0 + tt;
      const bool mut = slot < S && c.smut[h * c.cap + slot];
      const int64_t ri = i0 + rr, rj = j0 + rr;
      Xi[rr][tt] = mut && ri < rows ? sw_of(c, h, ri) * c.A[(h * c.rows + ri) * c.cap + slot] : 0.f;
      Xj[rr][tt] = mut && rj < rows ? sw_of(c, h, rj) * c.A[(h * c.rows + rj) * c.cap + slot] : 0.f;
    }
    __syncthreads();
    tile_dot<float>(Xi, Xj, ty, tx, acc);
    __syncthreads();
  }
#pragma unroll
  for (int a = 0; a < 2; a++)
#pragma unroll
    for (int b = 0; b < 2; b++) {
      const int64_t i = i0 + ty + 16 * a, j = j0 + tx + 16 * b;
      if (i < rows && j < rows) c.Gm[(h * c.rows + i) * c.rows + j] = acc[a][b] + (i == j ? float(c.p.lambda) : 0.f);
    }
}

// Right-hand sides of the value step: X = sqrt(w) (o* - o).
__global__ void rhs_kernel(Ctx c) {
  const int64_t n = c.VH * c.rows * c.dv;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = (e / c.dv) % c.rows, h = e / (c.rows * c.dv);
    if (i < rows_of(c, h)) c.X[e] = sw_of(c, h, i) * (c.ostar[e] - c.o[e]);
  }
}

// dV_s = mut_s * sum_i sqrt(w_i) A_is X_i (slot-major accumulation over row blocks). One CTA per 32 slots.
template <int DVMAX>
__global__ void __launch_bounds__(kT) dv_kernel(Ctx c) {
  __shared__ float Ps[kTl][kTp], Xs[kTl][kTp];
  constexpr int NC = DVMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.y, s0 = int64_t(blockIdx.x) * kTl;
  if (!c.st[h].active) return;
  const int64_t S = c.st[h].count;
  if (s0 >= S) return;
  float acc[2][2 * NC];
  tile_zero(acc);
  const int64_t rows = rows_of(c, h);
  for (int64_t r0 = 0; r0 < rows; r0 += kTl) {
    for (int e = tid; e < kTl * kTl; e += kT) {
      const int rr = e / kTl, tt = e % kTl;
      const int64_t row = r0 + rr, slot = s0 + tt;
      const bool ok = row < rows && slot < S && c.smut[h * c.cap + slot];
      Ps[rr][tt] = ok ? sw_of(c, h, row) * c.A[(h * c.rows + row) * c.cap + slot] : 0.f;
    }
    tile_pb<true, NC>(Ps, Xs, c.dv, ty, tx, acc, [&](int cc) {
      tile_fill(Xs, tid, [&](int rr, int col) {
        const int64_t row = r0 + rr, cv = cc * kTl + col;
        return row < rows && cv < c.dv ? c.X[(h * c.rows + row) * c.dv + cv] : 0.f;
      });
    });
  }
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t slot = s0 + ty + 16 * a;
    if (slot >= S) continue;
    tile_store_row<NC>(acc, a, c.dv, tx, c.Dv + (h * c.cap + slot) * c.dv);
  }
}

}  // namespace

cudaError_t launch_value_step(const Ctx& c, cudaStream_t s) {
  const int64_t H = c.VH, rows = c.rows, nb = ceil_div(rows, kTl);
  gram_kernel<<<dim3(unsigned(nb * (nb + 1) / 2), unsigned(H)), kT, 0, s>>>(c);
  KVT_CU_TRY(cudaGetLastError());
  rhs_kernel<<<blocks_for(H * rows * c.dv, kT), kT, 0, s>>>(c);
  KVT_CU_TRY(cudaGetLastError());
  SpdPlan plan;
  KVT_CU_TRY(spd_plan(rows, &plan));
  Scratch factor(plan.global_factor ? size_t(H * (rows * (rows + 1) / 2)) * sizeof(float) : 0, s);
  KVT_CU_TRY(factor.error());
  const F3 gm{c.Gm, H, rows, rows, rows * rows, rows, 1};
  const F3 xs{c.X, H, rows, c.dv, rows * c.dv, c.dv, 1};
  // info of head h: GrkvHead::spd_info of c.st[h]
  int32_t* info = reinterpret_cast<int32_t*>(reinterpret_cast<char*>(c.st) + offsetof(GrkvHead, spd_info));
  // order of head h's system: its rows (GrkvGeo::rows of c.geo[h])
  const int32_t* orders = reinterpret_cast<const int32_t*>(reinterpret_cast<const char*>(c.geo) + offsetof(GrkvGeo, rows));
  KVT_CU_TRY(spd_launch(gm, xs, 0.0f, xs, info, int64_t(sizeof(GrkvHead) / sizeof(int32_t)), plan, factor.as<float>(), s,
                        orders, int64_t(sizeof(GrkvGeo) / sizeof(int32_t))));
  return with_dim(c.dv, [&](auto dvm) {
    dv_kernel<decltype(dvm)::value><<<dim3(unsigned(ceil_div(c.cap, kTl)), unsigned(H)), kT, 0, s>>>(c);
    return cudaGetLastError();
  });
}

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
