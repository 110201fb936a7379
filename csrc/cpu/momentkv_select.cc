// Multi-round moment-informed eviction on the CPU backend (docs/methods/momentkv.md §5.2-§5.3): per round the summary
// subspace of each head's moment state, the residual of every candidate's value against it, the eviction of the
// lowest keys, and the merge of the evicted rows into the state (cpu/moments.cc). Algorithm constants and the
// subspace-iteration schedule are math/momentkv.h's, shared with the CUDA kernels (cuda/momentkv_select.cu).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"
#include "math/momentkv.h"

namespace kvt {
namespace cpu {
namespace {

// Summary subspace basis (docs/methods/momentkv.md §5.2; algorithm and constants in math/momentkv.h). Serial, f32.

float dotf(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

// Classical Gram–Schmidt pass of y [dv] against columns 0..k-1 of X [dv][p].
void cgs_pass(const std::vector<float>& X, int64_t dv, int p, int k, float* y, float* proj) {
  for (int jj = 0; jj < k; jj++) {
    float s = 0.f;
    for (int64_t a = 0; a < dv; a++) s += X[size_t(a * p + jj)] * y[a];
    proj[jj] = s;
  }
  for (int64_t a = 0; a < dv; a++) {
    float s = y[a];
    for (int jj = 0; jj < k; jj++) s -= proj[jj] * X[size_t(a * p + jj)];
    y[a] = s;
  }
}

// X [dv][p] <- orthonormal columns from Y [dv][p] (column-by-column CGS2; collapsed columns replaced).
void orthonormalize(const std::vector<float>& Y, std::vector<float>& X, int64_t dv, int p, int it) {
  std::vector<float> y(static_cast<size_t>(dv));
  float proj[mkv::kMaxP];
  for (int k = 0; k < p; k++) {
    for (int64_t a = 0; a < dv; a++) y[size_t(a)] = Y[size_t(a * p + k)];
    const float n0 = sqrtf(dotf(y.data(), y.data(), dv));
    float n1 = 0.f;
    if (n0 > 0.f && n0 < INFINITY) {
      cgs_pass(X, dv, p, k, y.data(), proj);
      cgs_pass(X, dv, p, k, y.data(), proj);
      n1 = sqrtf(dotf(y.data(), y.data(), dv));
    }
    if (!(n1 > mkv::kCollapseRel * n0)) {
      for (int64_t a = 0; a < dv; a++) y[size_t(a)] = mkv::det_uniform(uint32_t(a), uint32_t(k), uint32_t(it + 1));
      cgs_pass(X, dv, p, k, y.data(), proj);
      cgs_pass(X, dv, p, k, y.data(), proj);
      n1 = sqrtf(dotf(y.data(), y.data(), dv));
    }
    const float inv = n1 > 0.f ? 1.f / n1 : 0.f;
    for (int64_t a = 0; a < dv; a++) X[size_t(a * p + k)] = y[size_t(a)] * inv;
  }
}

// Returns the number of basis vectors written to `basis` [(r+1)][dv].
int summary_basis(const MomentViews& m, int64_t h, int64_t d, int64_t dv, int r, float* basis) {
  const float* muv = m.mu_v().ptr<float>() + h * dv;
  const float* M = m.m().ptr<float>() + h * dv * d;
  std::vector<std::vector<float>> cand;
  cand.emplace_back(muv, muv + dv);
  if (r > 0) {
    float mmax = 0.f;
    for (int64_t i = 0; i < dv * d; i++) mmax = fmaxf(mmax, fabsf(M[i]));
    if (mmax > 0.f && mmax < INFINITY) {
      const float inv = 1.f / mmax;
      std::vector<float> Ch(static_cast<size_t>(dv * d));
      for (int64_t i = 0; i < dv * d; i++) Ch[size_t(i)] = M[i] * inv;
      std::vector<float> S(static_cast<size_t>(dv * dv));
      for (int64_t x = 0; x < dv; x++)
        for (int64_t y = 0; y <= x; y++) {
          const float s = dotf(&Ch[size_t(x * d)], &Ch[size_t(y * d)], d);
          S[size_t(x * dv + y)] = s;
          S[size_t(y * dv + x)] = s;
        }
      const int p = mkv::subspace_p(dv, r);
      std::vector<float> X(static_cast<size_t>(dv * p)), Y(static_cast<size_t>(dv * p));
      for (int64_t x = 0; x < dv; x++)
        for (int k = 0; k < p; k++) Y[size_t(x * p + k)] = mkv::det_uniform(uint32_t(x), uint32_t(k), 0u);
      orthonormalize(Y, X, dv, p, 0);
      auto apply_s = [&]() {
        for (int64_t x = 0; x < dv; x++) {
          float acc[mkv::kMaxP] = {0};
          const float* Sr = &S[size_t(x * dv)];
          for (int64_t y = 0; y < dv; y++) {
            const float sv = Sr[y];
            const float* Xr = &X[size_t(y * p)];
            for (int k = 0; k < p; k++) acc[k] += sv * Xr[k];
          }
          for (int k = 0; k < p; k++) Y[size_t(x * p + k)] = acc[k];
        }
      };
      for (int it = 1; it <= mkv::kSubspaceIters; it++) {
        apply_s();
        orthonormalize(Y, X, dv, p, it);
      }
      apply_s();
      float B[mkv::kMaxP * mkv::kMaxP], W[mkv::kMaxP * mkv::kMaxP], lam[mkv::kMaxP];
      int order[mkv::kMaxP];
      for (int k = 0; k < p; k++)
        for (int l = 0; l < p; l++) {
          float s = 0.f;
          for (int64_t x = 0; x < dv; x++) s += X[size_t(x * p + k)] * Y[size_t(x * p + l)];
          B[k * p + l] = s;
        }
      for (int k = 0; k < p; k++)
        for (int l = 0; l < k; l++) B[k * p + l] = B[l * p + k] = 0.5f * (B[k * p + l] + B[l * p + k]);
      mkv::jacobi_eigen(p, B, W, lam, order);
      float sigma0 = 0.f;
      std::vector<float> u(static_cast<size_t>(dv));
      for (int i = 0; i < std::min(r, p); i++) {
        const int col = order[i];
        for (int64_t x = 0; x < dv; x++) {
          float s = 0.f;
          for (int k = 0; k < p; k++) s += X[size_t(x * p + k)] * W[k * p + col];
          u[size_t(x)] = s;
        }
        float s2 = 0.f;
        for (int64_t c = 0; c < d; c++) {
          float t = 0.f;
          for (int64_t x = 0; x < dv; x++) t += Ch[size_t(x * d + c)] * u[size_t(x)];
          s2 += t * t;
        }
        const float sigma = sqrtf(s2);
        if (i == 0) sigma0 = sigma;
        if (sigma > 0.f && sigma >= mkv::kSigmaRel * sigma0) cand.push_back(u);
      }
    }
  }
  int nb = 0;
  std::vector<float> w(static_cast<size_t>(dv));
  for (const auto& c : cand) {
    const float cn = sqrtf(dotf(c.data(), c.data(), dv));
    if (!(cn > 0.f)) continue;
    w = c;
    for (int pass = 0; pass < 2; pass++)
      for (int b = 0; b < nb; b++) {
        const float* bb = basis + b * dv;
        const float pr = dotf(bb, w.data(), dv);
        for (int64_t x = 0; x < dv; x++) w[size_t(x)] -= pr * bb[x];
      }
    const float wn = sqrtf(dotf(w.data(), w.data(), dv));
    if (!(wn > mkv::kGsRel * cn)) continue;
    for (int64_t x = 0; x < dv; x++) basis[nb * dv + x] = w[size_t(x)] / wn;
    nb++;
  }
  return nb;
}

}  // namespace

// Multi-round moment-informed eviction (docs/methods/momentkv.md §5.3).
void momentkv_select(const View& s, const View& k, const View& v, const kvt_momentkv_select_opts& o, const View& idx,
                     const View& cnt, const MomentViews& m, const View* rounds_out) {
  const int64_t H = s.shape[0], N = s.shape[1], d = k.shape[2], dv = v.shape[2];
  const int64_t excess = N - o.keep;
  const int rounds = o.mi ? o.rounds : 1;
  const int r = int(std::min<int64_t>(o.r, dv));
  std::vector<int32_t> label(size_t(H * N), -1);
  View lv;
  lv.base = reinterpret_cast<char*>(label.data());
  lv.dtype = kI32;
  lv.ndim = 2;
  lv.shape[0] = H;
  lv.shape[1] = N;
  lv.stride[0] = N;
  lv.stride[1] = 1;
  auto score = [&](int64_t h, int64_t i) { return s.ptr<float>()[h * s.stride[0] + i * s.stride[1]]; };
  int64_t done = 0;
  for (int rd = 0; rd < rounds; rd++) {
    const int64_t mc = (excess - done + (rounds - rd) - 1) / (rounds - rd);
    if (mc <= 0) break;
    parallel_for(H, 1, [&](int64_t b, int64_t e) {
      std::vector<int32_t> cand;
      std::vector<float> basis(static_cast<size_t>((mkv::kMaxR + 1) * dv)), rho, buf;
      std::vector<uint64_t> keys;
      for (int64_t h = b; h < e; h++) {
        cand.clear();
        for (int64_t i = 0; i < N; i++)
          if (label[size_t(h * N + i)] == -1 && score(h, i) != INFINITY) cand.push_back(int32_t(i));
        const int64_t nc = int64_t(cand.size());
        const bool use = o.mi && m.n().ptr<float>()[h] > 0.f;
        float eps_mean = 0.f;
        rho.assign(size_t(nc), 0.f);
        if (use) {
          const int nb = summary_basis(m, h, d, dv, r, basis.data());
          double sum = 0.0;
          for (int64_t c = 0; c < nc; c++) {
            const float* vr = load_row(v, h, cand[size_t(c)], buf);
            float proj[mkv::kMaxR + 1];
            for (int bb = 0; bb < nb; bb++) proj[bb] = dot8(basis.data() + bb * dv, vr, dv);
            float s2 = 0.f;
            for (int64_t x = 0; x < dv; x++) {
              float w = vr[x];
              for (int bb = 0; bb < nb; bb++) w -= proj[bb] * basis[size_t(bb * dv + x)];
              s2 += w * w;
            }
            rho[size_t(c)] = sqrtf(s2);
            sum += double(rho[size_t(c)]);
          }
          eps_mean = float(double(o.eps) * (sum / double(nc)));
        }
        keys.resize(size_t(nc));
        for (int64_t c = 0; c < nc; c++) {
          const int64_t i = cand[size_t(c)];
          const float key = mkv::candidate_key(use ? mkv::mi_key(score(h, i), rho[size_t(c)], eps_mean) : score(h, i));
          keys[size_t(c)] = rank_key(key, false, i, h, H);
        }
        // Evict the mc lowest-ranked candidates (ties: the higher position ranks lower).
        std::vector<uint64_t> sorted(keys);
        std::nth_element(sorted.begin(), sorted.begin() + (mc - 1), sorted.end());
        const uint64_t pivot = sorted[size_t(mc - 1)];
        for (int64_t c = 0; c < nc; c++)
          if (keys[size_t(c)] <= pivot) label[size_t(h * N + cand[size_t(c)])] = rd;
      }
    });
    RowSource src;
    src.mode = RowSource::kLabel;
    src.label = &lv;
    src.value = rd;
    moments_merge(k, v, src, m);
    done += mc;
  }
  const int64_t cap = idx.shape[1];
  for (int64_t h = 0; h < H; h++) {
    int32_t* out = idx.ptr<int32_t>() + h * idx.stride[0];
    int64_t c = 0;
    for (int64_t i = 0; i < N; i++)
      if (label[size_t(h * N + i)] == -1) out[(c++) * idx.stride[1]] = int32_t(i);
    for (int64_t j = c; j < cap; j++) out[j * idx.stride[1]] = -1;
    cnt.ptr<int32_t>()[h * cnt.stride[0]] = int32_t(c);
    if (rounds_out)
      for (int64_t i = 0; i < N; i++)
        rounds_out->ptr<int32_t>()[h * rounds_out->stride[0] + i * rounds_out->stride[1]] = label[size_t(h * N + i)];
  }
}

}  // namespace cpu
}  // namespace kvt
