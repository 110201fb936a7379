// GRKV merge on the CPU backend, value step (docs/methods/grkv.md §7.1): the exact dual ridge at K0 (Gram of the weighted
// attention on the mutable slots, one Cholesky solve per head, dV = Aw^T X), and the capped step with storage
// rounding and cap recheck (docs/methods/grkv.md §7.3) that both steps use to turn a direction into a candidate.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/cholesky.h"
#include "cpu/gemm.h"
#include "cpu/grkv_merge.h"
#include "cpu/parallel.h"

namespace kvt {
namespace cpu {
namespace grkv {

// Shared capped step (docs/methods/grkv.md §7.3) for the mutable rows of X (Kr or Vr, width w) with step D [R, w]: decides the scale
// with the recheck and writes round(X0 + s D) into X. which = 0 (values) or 1 (keys).
void Merge::apply_step(Head& hd, std::vector<float>& X, int64_t w, double cap, int which) {
  GrkvHead& st = hd.st;
  const int64_t R = st.mut, ld = std::max(a_.d, a_.dv);
  const int dt = a_.k.dtype;
  double n0 = 0, nd = 0;
  for (int64_t t = 0; t < R; t++) {
    const float* x0 = X.data() + int64_t(hd.mlist[size_t(t)]) * w;
    const float* dd = hd.D.data() + t * ld;
    for (int64_t c = 0; c < w; c++) {
      n0 += double(x0[c]) * x0[c];
      nd += double(dd[c]) * dd[c];
    }
  }
  n0 = sqrt(n0);
  nd = sqrt(nd);
  auto dist2 = [&](double s) {
    double acc = 0;
    for (int64_t t = 0; t < R; t++) {
      const float* x0 = X.data() + int64_t(hd.mlist[size_t(t)]) * w;
      const float* dd = hd.D.data() + t * ld;
      for (int64_t c = 0; c < w; c++) {
        const double diff = double(grkv_candidate(x0[c], s, dd[c], dt)) - double(x0[c]);
        acc += diff * diff;
      }
    }
    return acc;
  };
  int32_t shrinks = 0;
  bool dropped = false;
  double d2 = 0;
  const double s = grkv_step_scale(cap, n0, nd, dt, dist2, &shrinks, &dropped, &d2);
  st.n0[which] = n0;
  st.nd[which] = nd;
  st.scale[which] = s;
  st.shrinks[which] = shrinks;
  st.dist2[which] = d2;
  if (dropped) st.flags |= which ? kGrkvDroppedK : kGrkvDroppedV;
  bool finite = true;
  for (int64_t t = 0; t < R; t++) {
    float* x = X.data() + int64_t(hd.mlist[size_t(t)]) * w;
    const float* dd = hd.D.data() + t * ld;
    for (int64_t c = 0; c < w; c++) {
      x[c] = grkv_candidate(x[c], s, dd[c], dt);
      finite &= finite_f(x[c]);
    }
  }
  st.nonfinite[which] = !finite;
}

// docs/methods/grkv.md §7.1: exact dual ridge at K0: (Aw Aw^T + lambda I) X = sqrt(w) (o* - o), dV = Aw^T X; capped, rounded -> V1.
void Merge::value_step() {
  const int64_t H = a_.H, dv = a_.dv, rows = a_.rows, ld = std::max(a_.d, a_.dv);
  const float lambda = float(a_.o.lambda);
  // compact the weights of the mutable slots: AM [rows, R] and AwT [R, rows]
  parallel_for(H, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; h++) {
      Head& hd = heads_[size_t(h)];
      if (!hd.fit) continue;
      const int64_t S = hd.st.count, R = hd.st.mut;
      hd.AM.resize(size_t(rows * R));
      hd.AwT.resize(size_t(R * rows));
      for (int64_t i = 0; i < rows; i++)
        for (int64_t t = 0; t < R; t++) {
          const float a = hd.A[size_t(i * S + hd.mlist[size_t(t)])];
          hd.AM[size_t(i * R + t)] = a;
          hd.AwT[size_t(t * rows + i)] = hd.sw[size_t(i)] * a;
        }
      hd.X.resize(size_t(rows * dv));
      for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < dv; c++)
          hd.X[size_t(i * dv + c)] = hd.sw[size_t(i)] * (hd.ostar[size_t(i * dv + c)] - hd.o[size_t(i * dv + c)]);
    }
  });
  // Gram (rows x rows per head) by row blocks, then the SPD solve per head
  std::vector<std::vector<float>> gram(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; h++)
    if (heads_[size_t(h)].fit) gram[size_t(h)].resize(size_t(rows * rows));
  const int64_t RB = (rows + kRowBlock - 1) / kRowBlock;
  parallel_for(H * RB, 1, [&](int64_t b, int64_t e) {
    std::vector<float> aw;
    for (int64_t task = b; task < e; task++) {
      const int64_t h = task / RB, i0 = (task % RB) * kRowBlock, in = std::min(kRowBlock, rows - i0);
      Head& hd = heads_[size_t(h)];
      if (!hd.fit) continue;
      const int64_t R = hd.st.mut;
      aw.resize(size_t(in * R));
      for (int64_t i = 0; i < in; i++)
        for (int64_t t = 0; t < R; t++) aw[size_t(i * R + t)] = hd.AwT[size_t(t * rows + i0 + i)];
      gemm_nn(in, rows, R, aw.data(), R, hd.AwT.data(), rows, gram[size_t(h)].data() + i0 * rows, rows, false);
    }
  });
  parallel_for(H, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; h++) {
      Head& hd = heads_[size_t(h)];
      if (!hd.fit) continue;
      float* Gm = gram[size_t(h)].data();
      for (int64_t i = 0; i < rows; i++) Gm[i * rows + i] += lambda;
      float piv = 0;
      const int64_t k = cholesky_inplace(Gm, rows, &piv);
      hd.st.spd_info = int32_t(k);
      if (k == 0) {
        cholesky_solve(Gm, rows, hd.X.data(), dv, dv);
      } else {
        hd.st.flags |= kGrkvNotSpd;
        std::fill(hd.X.begin(), hd.X.end(), std::numeric_limits<float>::quiet_NaN());
      }
      hd.D.assign(size_t(hd.st.mut * ld), 0.0f);
    }
  });
  // dV = Aw^T X by blocks of mutable slots
  int64_t maxR = 0;
  for (auto& hd : heads_) maxR = std::max<int64_t>(maxR, hd.fit ? hd.st.mut : 0);
  const int64_t TB = (maxR + kTile - 1) / kTile;
  parallel_for(H * TB, 1, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; task++) {
      const int64_t h = task / TB, t0 = (task % TB) * kTile;
      Head& hd = heads_[size_t(h)];
      if (!hd.fit || t0 >= hd.st.mut) continue;
      const int64_t tn = std::min(kTile, int64_t(hd.st.mut) - t0);
      gemm_nn(tn, dv, rows, hd.AwT.data() + t0 * rows, rows, hd.X.data(), dv, hd.D.data() + t0 * ld, ld, false);
    }
  });
  // cap, recheck, round -> V1 in Vr; o1 = A Vr; objective of the value-only candidate
  parallel_for(H, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; h++) {
      Head& hd = heads_[size_t(h)];
      if (!hd.fit) continue;
      apply_step(hd, hd.Vr, dv, a_.o.cap_value, 0);
      const int64_t R = hd.st.mut;
      hd.V1m.resize(size_t(R * dv));
      for (int64_t t = 0; t < R; t++)
        std::copy(hd.Vr.begin() + int64_t(hd.mlist[size_t(t)]) * dv, hd.Vr.begin() + (int64_t(hd.mlist[size_t(t)]) + 1) * dv,
                  hd.V1m.begin() + t * dv);
    }
  });
  for (auto& hd : heads_)
    if (hd.fit) hd.o1.resize(size_t(rows * dv));
  parallel_for(H * RB, 1, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; task++) {
      const int64_t h = task / RB, i0 = (task % RB) * kRowBlock, in = std::min(kRowBlock, rows - i0);
      Head& hd = heads_[size_t(h)];
      if (!hd.fit) continue;
      gemm_nn(in, dv, hd.st.count, hd.A.data() + i0 * hd.st.count, hd.st.count, hd.Vr.data(), dv,
              hd.o1.data() + i0 * dv, dv, false);
    }
  });
  for (auto& hd : heads_) {
    if (!hd.fit) continue;
    hd.st.loss[1] = weighted_loss(hd, hd.o1, rows, dv);
    hd.st.L[1] = hd.st.loss[1] + a_.o.lambda * hd.st.dist2[0];
  }
}

}  // namespace grkv
}  // namespace cpu
}  // namespace kvt
