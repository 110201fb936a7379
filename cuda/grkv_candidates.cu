// GRKV merge on CUDA (docs/methods/grkv.md §7.3, §11): the candidates and the choice between them: the capped step with
// storage rounding and cap recheck that writes a candidate's rows (V1 from dV, K1 from dK), the per-head choice among
// {unchanged, value-only, key+value} with the diagnostics row, and the restore of the rows of rejected candidates.
#include <type_traits>

#include "grkv_tiles.cuh"

namespace kvt {
namespace cuda {
namespace grkv {
namespace {

// Capped step of one head (docs/methods/grkv.md §7.3): norms, first-cut scale, storage-rounding recheck, then the candidate rows
// round(X0 + s D) written into the output rows of the mutable slots. X0 is read from the original input rows.
// which = 0: values (D = dV, f32 [H, cap, dv]); which = 1: keys (D = dK, f64 [H, cap, d]).
template <int DT, typename DTy>
__global__ void __launch_bounds__(kStepThreads) step_kernel(Ctx c, int which, const DTy* D, double cap) {
  __shared__ double sh[32];
  const int64_t h = blockIdx.x;
  GrkvHead& st = c.st[h];
  if (!st.active) return;
  const T3& in = which ? c.p.keys : c.p.values;
  const O3& out = which ? c.p.keys_out : c.p.values_out;
  const int64_t w = which ? c.d : c.dv;
  const int64_t S = st.count;
  const int32_t* spos = c.spos + h * c.cap;
  const uint8_t* smut = c.smut + h * c.cap;
  auto x0_at = [&](int64_t s, int64_t col) { return ldf<DT>(in.p, in_row(c, in, h, spos[s]) + col * in.s2); };
  auto d_at = [&](int64_t s, int64_t col) { return float(D[(h * c.cap + s) * w + col]); };
  double n0 = 0, nd = 0;
  for (int64_t e = threadIdx.x; e < S * w; e += blockDim.x) {
    const int64_t s = e / w, col = e % w;
    if (!smut[s]) continue;
    const double x = x0_at(s, col), dd = d_at(s, col);
    n0 += x * x;
    nd += dd * dd;
  }
  n0 = sqrt(block_sum<double>(n0, sh));
  nd = sqrt(block_sum<double>(nd, sh));
  auto dist2 = [&](double s) {
    double acc = 0;
    for (int64_t e = threadIdx.x; e < S * w; e += blockDim.x) {
      const int64_t sl = e / w, col = e % w;
      if (!smut[sl]) continue;
      const float x = x0_at(sl, col);
      const double diff = double(grkv_candidate(x, s, d_at(sl, col), DT)) - double(x);
      acc += diff * diff;
    }
    return block_sum<double>(acc, sh);
  };
  int32_t shrinks = 0;
  bool dropped = false;
  double d2 = 0;
  const double s = grkv_step_scale(cap, n0, nd, DT, dist2, &shrinks, &dropped, &d2);
  double bad = 0;
  for (int64_t e = threadIdx.x; e < S * w; e += blockDim.x) {
    const int64_t sl = e / w, col = e % w;
    if (!smut[sl]) continue;
    const float v = grkv_candidate(x0_at(sl, col), s, d_at(sl, col), DT);
    bad += finite_f(v) ? 0.0 : 1.0;
    stf<DT>(out.p, out_row(c, out, h, sl) + col * out.s2, v);
  }
  bad = block_sum<double>(bad, sh);
  if (threadIdx.x == 0) {
    st.n0[which] = n0;
    st.nd[which] = nd;
    st.scale[which] = s;
    st.shrinks[which] = shrinks;
    st.dist2[which] = d2;
    st.nonfinite[which] = bad > 0;
    if (dropped) st.flags |= which ? kGrkvDroppedK : kGrkvDroppedV;
  }
}

// Per head: the value-only ablation, the choice, non-finite objectives, diagnostics.
__global__ void finalize_kernel(Ctx c, int run_key) {
  const int64_t h = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (h >= c.VH) return;
  GrkvHead& st = c.st[h];
  if (st.active) {
    if (!run_key) {
      st.loss[2] = st.loss[1];
      st.L[2] = st.L[1];
      st.scale[1] = 0;
      st.nonfinite[1] = 0;
    }
    if (st.spd_info) st.flags |= kGrkvNotSpd;
    const bool ok1 = !st.nonfinite[0], ok2 = ok1 && !st.nonfinite[1];
    if (!ok1) st.flags |= kGrkvNonfiniteV;
    if (!ok2) st.flags |= kGrkvNonfiniteKV;
    st.chosen = grkv_choose(st.L, ok1, ok2, c.p.accept);
    for (int i = 1; i < 3; i++)
      if (!finite_d(st.L[i]) || (i == 1 && !ok1) || (i == 2 && !ok2)) st.L[i] = NAN;
  } else {
    st.chosen = 0;
    st.L[1] = st.L[2] = st.L[0];
  }
  if (c.p.diag) grkv_diag_row(st, c.p.diag + (h / c.H) * c.p.diag_sq + (h % c.H) * c.p.diag_s0, c.p.diag_s1);
}

// Rows of rejected candidates go back to the inputs (bit copies): keys unless key+value won, values if unchanged.
template <int ES>
__global__ void restore_kernel(Ctx c) {
  using U = typename std::conditional<ES == 4, uint32_t, uint16_t>::type;
  const int64_t wid = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (wid >= c.VH * c.cap) return;
  const int64_t h = wid / c.cap, s = wid % c.cap;
  const GrkvHead& st = c.st[h];
  if (!st.active || s >= st.count || !c.smut[h * c.cap + s] || st.chosen == 2) return;
  const int64_t pos = c.spos[h * c.cap + s];
  const GrkvParams& p = c.p;
  const int64_t ko = out_row(c, p.keys_out, h, s), ki = in_row(c, p.keys, h, pos);
  for (int64_t col = lane; col < c.d; col += kWarp)
    static_cast<U*>(p.keys_out.p)[ko + col * p.keys_out.s2] = static_cast<const U*>(p.keys.p)[ki + col * p.keys.s2];
  if (st.chosen == 0) {
    const int64_t vo = out_row(c, p.values_out, h, s), vi = in_row(c, p.values, h, pos);
    for (int64_t col = lane; col < c.dv; col += kWarp)
      static_cast<U*>(p.values_out.p)[vo + col * p.values_out.s2] = static_cast<const U*>(p.values.p)[vi + col * p.values.s2];
  }
}

}  // namespace

cudaError_t launch_step(const Ctx& c, int which, cudaStream_t s) {
  return with_dtype(c.p.keys.dtype, [&](auto dt) {
    constexpr int DT = decltype(dt)::value;
    if (which == 0) step_kernel<DT, float><<<unsigned(c.VH), kStepThreads, 0, s>>>(c, 0, c.Dv, c.p.cap_value);
    else step_kernel<DT, double><<<unsigned(c.VH), kStepThreads, 0, s>>>(c, 1, c.T, c.p.cap_key);
    return cudaGetLastError();
  });
}

cudaError_t launch_finalize(const Ctx& c, int run_key, cudaStream_t s) {
  finalize_kernel<<<blocks_for(c.VH, 128), 128, 0, s>>>(c, run_key);
  return cudaGetLastError();
}

cudaError_t launch_restore(const Ctx& c, cudaStream_t s) {
  if (c.p.keys.dtype == kF32) restore_kernel<4><<<blocks_for(c.VH * c.cap * kWarp, kT), kT, 0, s>>>(c);
  else restore_kernel<2><<<blocks_for(c.VH * c.cap * kWarp, kT), kT, 0, s>>>(c);
  return cudaGetLastError();
}

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
