// GRKV merge on CUDA, key step (docs/methods/grkv.md §7.2): one Gauss-Newton ridge step on the keys at (K0, V1), solved in
// output space by conjugate gradients on (J_w J_w^T + lambda I) x = b, in fp64 (fp32 recurrences drift from the
// Krylov iterate within a few iterations; see cpu/grkv_key.cc). Per iteration: the VJP T = J^T p, the JVP J T
// (split-K + reduce) and the update; at the end dK = J^T x, which grkv_candidates.cu caps and rounds into K1.
#include "grkv_tiles.cuh"

namespace kvt {
namespace cuda {
namespace grkv {
namespace {

// b = sqrt(w) (o* - o1); res = p = b; x = 0; CG start.
__global__ void __launch_bounds__(kRedThreads) cg_init_kernel(Ctx c) {
  __shared__ double sh[32];
  const int64_t h = blockIdx.x;
  if (!c.st[h].active) return;
  const int64_t n = rows_of(c, h) * c.dv, off = h * c.rows * c.dv;
  double rr = 0;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    const double b = double(sw_of(c, h, e / c.dv)) * (double(c.ostar[off + e]) - double(c.o1[off + e]));
    c.res[off + e] = b;
    c.pv[off + e] = b;
    c.x[off + e] = 0.0;
    rr += b * b;
  }
  rr = block_sum<double>(rr, sh);
  if (threadIdx.x == 0) grkv_cg_start(c.st[h], rr, c.p.tol, c.p.cg_iters);
}

// uo_i = sum_c sqrt(w_i) U_ic o1_ic (U = p or x). One warp per (head, row).
__global__ void rowdot_kernel(Ctx c, const double* U, int sel) {
  const int64_t wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (wid >= c.VH * c.rows) return;
  const int64_t h = wid / c.rows, i = wid % c.rows;
  if (!head_on(c, h, sel) || i >= rows_of(c, h)) return;
  const double sw = sw_of(c, h, i);
  double acc = 0;
  for (int64_t col = lane; col < c.dv; col += kWarp)
    acc += sw * U[wid * c.dv + col] * double(c.o1[wid * c.dv + col]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += shfl_xor(acc, o);
  if (lane == 0) c.uo[wid] = acc;
}

// VJP: T_s = scale * sum_i A_is mut_s (U'_i . v1_s - uo_i) q_i with U' = sqrt(w) U. One CTA per 32 slots.
template <int DT, int DMAX>
__global__ void __launch_bounds__(kT) vjp_kernel(Ctx c, const double* U, int sel) {
  __shared__ double Us[kTl][kTp], Vs[kTl][kTp], Ps[kTl][kTp], Qs[kTl][kTp];
  constexpr int NC = DMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.y, s0 = int64_t(blockIdx.x) * kTl;
  if (!head_on(c, h, sel)) return;
  const int64_t S = c.st[h].count;
  if (s0 >= S) return;
  const O3& V = c.p.values_out;
  const double scale = c.p.scale;
  double acc[2][2 * NC];
  tile_zero(acc);
  const int64_t rows = rows_of(c, h);
  for (int64_t r0 = 0; r0 < rows; r0 += kTl) {
    double cd[2][2] = {{0.0, 0.0}, {0.0, 0.0}};
    tile_dot_cols(Us, Vs, c.dv, tid, ty, tx, cd,
        [&](int rr, int64_t col) {
          const int64_t row = r0 + rr;
          return row < rows ? double(sw_of(c, h, row)) * U[(h * c.rows + row) * c.dv + col] : 0.0;
        },
        stored_rows<DT, double>(c, V, h, s0, S));
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
      for (int b = 0; b < 2; b++) {
        const int64_t row = r0 + ty + 16 * a, slot = s0 + tx + 16 * b;
        const bool ok = row < rows && slot < S && c.smut[h * c.cap + slot];
        Ps[ty + 16 * a][tx + 16 * b] =
            ok ? scale * double(c.A[(h * c.rows + row) * c.cap + slot]) * (cd[a][b] - c.uo[h * c.rows + row]) : 0.0;
      }
    tile_pb<true, NC>(Ps, Qs, c.d, ty, tx, acc, [&](int cc) {
      tile_fill(Qs, tid, [&](int rr, int col) {
        const int64_t row = r0 + rr, cq = cc * kTl + col;
        return row < rows && cq < c.d ? double(c.Qf[(h * c.rows + row) * c.d + cq]) : 0.0;
      });
    });
  }
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int64_t slot = s0 + ty + 16 * a;
    if (slot >= S) continue;
    tile_store_row<NC>(acc, a, c.d, tx, c.T + (h * c.cap + slot) * c.d);
  }
}

// JVP partials: f_is = scale A_is mut_s (q_i . T_s); per (head, slot chunk, row): [sum_s f_is, sum_s f_is v1_s].
template <int DT, int DVMAX>
__global__ void __launch_bounds__(kT) jvp_kernel(Ctx c) {
  __shared__ double Qs[kTl][kTp], Ts[kTl][kTp], Ps[kTl][kTp], Vs[kTl][kTp];
  constexpr int NC = DVMAX / kTl;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t h = blockIdx.z, r0 = int64_t(blockIdx.y) * kTl, chunk = blockIdx.x;
  if (!head_on(c, h, kCgHeads)) return;
  const int64_t S = c.st[h].count, rows = rows_of(c, h);
  if (r0 >= rows) return;
  const int64_t t1 = imin(S, (chunk + 1) * kChunkSlots);
  const O3& V = c.p.values_out;
  const double scale = c.p.scale;
  double acc[2][2 * NC], fs[2] = {0.0, 0.0};
  tile_zero(acc);
  for (int64_t t0 = chunk * kChunkSlots; t0 < t1; t0 += kTl) {
    double qd[2][2] = {{0.0, 0.0}, {0.0, 0.0}};
    tile_dot_cols(Qs, Ts, c.d, tid, ty, tx, qd, query_rows<double>(c, h, r0),
        [&](int rr, int64_t col) {
          const int64_t slot = t0 + rr;
          return slot < t1 ? c.T[(h * c.cap + slot) * c.d + col] : 0.0;
        });
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
      for (int b = 0; b < 2; b++) {
        const int64_t row = r0 + ty + 16 * a, slot = t0 + tx + 16 * b;
        const bool ok = row < rows && slot < t1 && c.smut[h * c.cap + slot];
        const double f = ok ? scale * double(c.A[(h * c.rows + row) * c.cap + slot]) * qd[a][b] : 0.0;
        fs[a] += f;
        Ps[ty + 16 * a][tx + 16 * b] = f;
      }
    tile_pb<false, NC>(Ps, Vs, c.dv, ty, tx, acc, [&](int cc) {
      tile_fill(Vs, tid, [&](int tt, int col) {
        const int64_t slot = t0 + tt, cv = cc * kTl + col;
        return slot < t1 && cv < c.dv ? double(ldf<DT>(V.p, out_row(c, V, h, slot) + cv * V.s2)) : 0.0;
      });
    });
  }
  const int64_t stride = c.dv + 1;
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const double fsum = half_sum(fs[a]);
    const int64_t row = r0 + ty + 16 * a;
    if (row >= rows) continue;
    double* out = c.partd + ((h * c.nchs + chunk) * c.rows + row) * stride;
    if (tx == 0) out[0] = fsum;
    tile_store_row<NC>(acc, a, c.dv, tx, out + 1);
  }
}

// Y_i = sqrt(w_i) (sum_s f_is v1_s - (sum_s f_is) o1_i), summed over the chunks.
__global__ void jvp_reduce_kernel(Ctx c) {
  const int64_t n = c.VH * c.rows * c.dv;
  const int64_t stride = c.dv + 1;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = e / (c.rows * c.dv), i = (e / c.dv) % c.rows, col = e % c.dv;
    if (!head_on(c, h, kCgHeads) || i >= rows_of(c, h)) continue;
    double y = 0, fsum = 0;
    for (int64_t k = 0; k < c.nchs; k++) {
      const double* pp = c.partd + ((h * c.nchs + k) * c.rows + i) * stride;
      fsum += pp[0];
      y += pp[1 + col];
    }
    c.Y[e] = double(sw_of(c, h, i)) * (y - fsum * double(c.o1[e]));
  }
}

// One CG iteration per head: Ap = Y + lambda p, alpha, x, res, beta, p (shared scalar logic in math/grkv.h).
__global__ void __launch_bounds__(kRedThreads) cg_update_kernel(Ctx c) {
  __shared__ double sh[32];
  __shared__ double s_alpha, s_beta;
  __shared__ int s_ok, s_active;
  const int64_t h = blockIdx.x;
  if (!head_on(c, h, kCgHeads)) return;
  const int64_t n = rows_of(c, h) * c.dv, off = h * c.rows * c.dv;
  const double lambda = c.p.lambda;
  double pAp = 0;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    const double ap = c.Y[off + e] + lambda * c.pv[off + e];
    c.Y[off + e] = ap;
    pAp += c.pv[off + e] * ap;
  }
  pAp = block_sum<double>(pAp, sh);
  if (threadIdx.x == 0) {
    double alpha = 0;
    s_ok = grkv_cg_alpha(c.st[h], pAp, &alpha);
    s_alpha = alpha;
  }
  __syncthreads();
  if (!s_ok) return;
  const double alpha = s_alpha;
  double rr = 0;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    c.x[off + e] += alpha * c.pv[off + e];
    const double r = c.res[off + e] - alpha * c.Y[off + e];
    c.res[off + e] = r;
    rr += r * r;
  }
  rr = block_sum<double>(rr, sh);
  if (threadIdx.x == 0) {
    s_beta = grkv_cg_after(c.st[h], rr, c.p.tol, c.p.cg_iters);
    s_active = c.st[h].cg_active;
  }
  __syncthreads();
  if (!s_active) return;
  const double beta = s_beta;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) c.pv[off + e] = c.res[off + e] + beta * c.pv[off + e];
}

}  // namespace

cudaError_t launch_cg_init(const Ctx& c, cudaStream_t s) {
  cg_init_kernel<<<unsigned(c.VH), kRedThreads, 0, s>>>(c);
  return cudaGetLastError();
}

cudaError_t launch_vjp(const Ctx& c, const double* U, int sel, cudaStream_t s) {
  rowdot_kernel<<<row_warps(c), kT, 0, s>>>(c, U, sel);
  KVT_CU_TRY(cudaGetLastError());
  return with_dtype(c.p.keys.dtype, [&](auto dt) {
    return with_dim(c.d, [&](auto dm) {
      vjp_kernel<decltype(dt)::value, decltype(dm)::value>
          <<<dim3(unsigned(ceil_div(c.cap, kTl)), unsigned(c.VH)), kT, 0, s>>>(c, U, sel);
      return cudaGetLastError();
    });
  });
}

cudaError_t launch_cg_iteration(const Ctx& c, cudaStream_t s) {
  KVT_CU_TRY(launch_vjp(c, c.pv, kCgHeads, s));
  KVT_CU_TRY(with_dtype(c.p.keys.dtype, [&](auto dt) {
    return with_dim(c.dv, [&](auto dvm) {
      jvp_kernel<decltype(dt)::value, decltype(dvm)::value>
          <<<dim3(unsigned(c.nchs), row_tiles(c), unsigned(c.VH)), kT, 0, s>>>(c);
      return cudaGetLastError();
    });
  }));
  jvp_reduce_kernel<<<blocks_for(c.VH * c.rows * c.dv, kT), kT, 0, s>>>(c);
  KVT_CU_TRY(cudaGetLastError());
  cg_update_kernel<<<unsigned(c.VH), kRedThreads, 0, s>>>(c);
  return cudaGetLastError();
}

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
