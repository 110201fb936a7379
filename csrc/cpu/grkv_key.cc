// GRKV merge on the CPU backend, key step (docs/methods/grkv.md §7.2): one Gauss-Newton ridge step on the keys at (K0, V1),
// solved in output space by conjugate gradients on J_w J_w^T + lambda I at cg_t (double) precision, with the VJP
// (T = J^T U) and JVP operators blocked over slots and query rows; dK = J^T x is then capped and rounded into K1.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/grkv_merge.h"
#include "cpu/parallel.h"

namespace kvt {
namespace cpu {
namespace grkv {

// U' = sqrt(w) U and uo_i = U'_i . o1_i, per fitted head with an active CG (or all fitted heads).
void Merge::prep_u(const std::vector<cg_t> Head::*U, bool cg_only) {
  const int64_t rows = a_.rows, dv = a_.dv;
  for (auto& hd : heads_) {
    if (!hd.fit || (cg_only && !hd.st.cg_active)) continue;
    hd.Up.resize(size_t(rows * dv));
    hd.uo.resize(size_t(rows));
    const std::vector<cg_t>& u = hd.*U;
    for (int64_t i = 0; i < rows; i++) {
      cg_t acc = 0;
      for (int64_t c = 0; c < dv; c++) {
        const cg_t x = cg_t(hd.sw[size_t(i)]) * u[size_t(i * dv + c)];
        hd.Up[size_t(i * dv + c)] = x;
        acc += x * hd.o1c[size_t(i * dv + c)];
      }
      hd.uo[size_t(i)] = acc;
    }
  }
}

// VJP (docs/methods/grkv.md §7.2): T_t = scale * sum_i A_it (U'_i . v1_t - uo_i) q_i for the mutable slots t.
void Merge::vjp(bool cg_only) {
  const int64_t H = a_.H, d = a_.d, dv = a_.dv, rows = a_.rows;
  int64_t maxR = 0;
  for (auto& hd : heads_) maxR = std::max<int64_t>(maxR, hd.fit ? hd.st.mut : 0);
  const int64_t TB = (maxR + kTile - 1) / kTile;
  const cg_t scale = a_.scale;
  parallel_for(H * TB, 1, [&](int64_t b, int64_t e) {
    std::vector<cg_t> vbt(size_t(dv * kTile)), cm(size_t(rows * kTile)), ct(size_t(kTile * rows));
    for (int64_t task = b; task < e; task++) {
      const int64_t h = task / TB, t0 = (task % TB) * kTile;
      Head& hd = heads_[size_t(h)];
      const int64_t R = hd.st.mut;
      if (!hd.fit || (cg_only && !hd.st.cg_active) || t0 >= R) continue;
      const int64_t tn = std::min(kTile, R - t0);
      transpose(hd.V1m.data() + t0 * dv, tn, dv, dv, vbt.data(), kTile);
      gemm_nn(rows, tn, dv, hd.Up.data(), dv, vbt.data(), kTile, cm.data(), kTile, false);
      for (int64_t i = 0; i < rows; i++)
        for (int64_t t = 0; t < tn; t++)
          ct[size_t(t * rows + i)] = scale * hd.AM[size_t(i * R + t0 + t)] * (cm[size_t(i * kTile + t)] - hd.uo[size_t(i)]);
      gemm_nn(tn, d, rows, ct.data(), rows, hd.Qc.data(), d, hd.T.data() + t0 * d, d, false);
    }
  });
}

// JVP (docs/methods/grkv.md §7.2): Y_i = sqrt(w_i) (sum_t f_it v1_t - (sum_t f_it) o1_i), f_it = scale A_it (q_i . T_t).
void Merge::jvp() {
  const int64_t H = a_.H, d = a_.d, dv = a_.dv, rows = a_.rows;
  const int64_t RB = (rows + kRowBlock - 1) / kRowBlock;
  const cg_t scale = a_.scale;
  parallel_for(H * RB, 1, [&](int64_t b, int64_t e) {
    std::vector<cg_t> dt(size_t(d * kTile)), f(size_t(kRowBlock * kTile)), y(size_t(kRowBlock * dv));
    for (int64_t task = b; task < e; task++) {
      const int64_t h = task / RB, i0 = (task % RB) * kRowBlock, in = std::min(kRowBlock, rows - i0);
      Head& hd = heads_[size_t(h)];
      if (!hd.fit || !hd.st.cg_active) continue;
      const int64_t R = hd.st.mut;
      cg_t fsum[kRowBlock] = {};
      std::fill(y.begin(), y.end(), cg_t(0));
      for (int64_t t0 = 0; t0 < R; t0 += kTile) {
        const int64_t tn = std::min(kTile, R - t0);
        transpose(hd.T.data() + t0 * d, tn, d, d, dt.data(), kTile);
        gemm_nn(in, tn, d, hd.Qc.data() + i0 * d, d, dt.data(), kTile, f.data(), kTile, false);
        for (int64_t i = 0; i < in; i++)
          for (int64_t t = 0; t < tn; t++) {
            cg_t& x = f[size_t(i * kTile + t)];
            x = scale * hd.AM[size_t((i0 + i) * R + t0 + t)] * x;
            fsum[i] += x;
          }
        gemm_nn(in, dv, tn, f.data(), kTile, hd.V1m.data() + t0 * dv, dv, y.data(), dv, true);
      }
      for (int64_t i = 0; i < in; i++)
        for (int64_t c = 0; c < dv; c++)
          hd.Y[size_t((i0 + i) * dv + c)] =
              cg_t(hd.sw[size_t(i0 + i)]) * (y[size_t(i * dv + c)] - fsum[i] * hd.o1c[size_t((i0 + i) * dv + c)]);
    }
  });
}

// docs/methods/grkv.md §7.2: one Gauss-Newton ridge step on the keys at (K0, V1), CG in output space; capped, rounded -> K1 in Kr.
void Merge::key_step() {
  const int64_t H = a_.H, d = a_.d, dv = a_.dv, rows = a_.rows, n = rows * dv, ld = std::max(a_.d, a_.dv);
  const bool run_key = a_.o.cap_key > 0 && a_.o.cg_iters > 0;
  const cg_t lambda = a_.o.lambda;
  if (run_key) {
    for (auto& hd : heads_) {
      if (!hd.fit) continue;
      hd.Qc.assign(hd.Q.begin(), hd.Q.end());
      hd.o1c.assign(hd.o1.begin(), hd.o1.end());
      hd.res.resize(size_t(n));
      hd.p.resize(size_t(n));
      hd.Y.resize(size_t(n));
      hd.T.resize(size_t(hd.st.mut * d));
      hd.x.assign(size_t(n), cg_t(0));
      double rr = 0;
      for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < dv; c++) {
          const cg_t b = cg_t(hd.sw[size_t(i)]) * (cg_t(hd.ostar[size_t(i * dv + c)]) - hd.o1c[size_t(i * dv + c)]);
          hd.res[size_t(i * dv + c)] = b;
          hd.p[size_t(i * dv + c)] = b;
          rr += double(b) * double(b);
        }
      grkv_cg_start(hd.st, rr, a_.o.tol, a_.o.cg_iters);
    }
    for (int it = 0; it < a_.o.cg_iters; it++) {
      bool any = false;
      for (auto& hd : heads_) any |= hd.fit && hd.st.cg_active;
      if (!any) break;
      prep_u(&Head::p, true);
      vjp(true);
      jvp();
      parallel_for(H, 1, [&](int64_t b, int64_t e) {
        for (int64_t h = b; h < e; h++) {
          Head& hd = heads_[size_t(h)];
          if (!hd.fit || !hd.st.cg_active) continue;
          double pAp = 0;
          for (int64_t x = 0; x < n; x++) {
            hd.Y[size_t(x)] += lambda * hd.p[size_t(x)];
            pAp += double(hd.p[size_t(x)]) * double(hd.Y[size_t(x)]);
          }
          double alpha = 0;
          if (!grkv_cg_alpha(hd.st, pAp, &alpha)) continue;
          const cg_t al = cg_t(alpha);
          double rr = 0;
          for (int64_t x = 0; x < n; x++) {
            hd.x[size_t(x)] += al * hd.p[size_t(x)];
            hd.res[size_t(x)] -= al * hd.Y[size_t(x)];
            rr += double(hd.res[size_t(x)]) * double(hd.res[size_t(x)]);
          }
          const cg_t beta = cg_t(grkv_cg_after(hd.st, rr, a_.o.tol, a_.o.cg_iters));
          if (hd.st.cg_active)
            for (int64_t x = 0; x < n; x++) hd.p[size_t(x)] = hd.res[size_t(x)] + beta * hd.p[size_t(x)];
        }
      });
    }
    // dK = J_w^T x
    prep_u(&Head::x, false);
    vjp(false);
  }
  parallel_for(H, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; h++) {
      Head& hd = heads_[size_t(h)];
      if (!hd.fit) continue;
      if (run_key) {
        for (int64_t t = 0; t < hd.st.mut; t++)
          for (int64_t c = 0; c < d; c++) hd.D[size_t(t * ld + c)] = float(hd.T[size_t(t * d + c)]);
        apply_step(hd, hd.Kr, d, a_.o.cap_key, 1);
      } else {  // value-only ablation: K1 = K0, the key+value candidate equals the value-only one
        hd.st.scale[1] = 0;
        hd.st.nonfinite[1] = 0;
      }
    }
  });
}

}  // namespace grkv
}  // namespace cpu
}  // namespace kvt
