// SnapKV scoring on the threaded CPU backend (docs/methods/snapkv.md §3.1, kvpress SnapKVPress.score). Same structure as the
// CUDA kernels: pass 1 takes each window query's log-sum-exp over its visible keys (per key chunk, merged in double),
// pass 2 sums exp(logit - LSE) over the window queries for every prefix key, then pooling along the prefix and the
// GQA group mean. No [Hq, W, N] tensor is materialised.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"
#include "cpu/simd.h"
#include "math/snapkv.h"

namespace kvt {
namespace cpu {
namespace {

using Snap = SnapkvParams;  // cpu/ops.h

constexpr int64_t kChunk = 2048;  // keys per work unit
constexpr int64_t kTile = 128;    // keys per logit tile

// Window queries of the G query heads of KV head h as f32 [G * W][d] (row g * W + t).
void load_queries(const View& q, const Snap& o, int64_t h, std::vector<float>& out) {
  const int64_t d = q.shape[2], Wq = q.shape[1], W = o.W;
  out.resize(size_t(o.G * W * d));
  std::vector<float> buf;
  for (int64_t g = 0; g < o.G; g++)
    for (int64_t t = 0; t < W; t++) {
      const float* row = load_row(q, h * o.G + g, Wq - W + t, buf);
      std::copy(row, row + d, out.begin() + (g * W + t) * d);
    }
}

// Per-thread scratch of the logit tiles.
struct Tiles {
  std::vector<float> qf, kp, buf, l;
  int64_t loaded = -1;
};

// Logits l[g * W + t][p - p0] = scale * q_{g,t} . k_p for keys [p0, p1) of KV head h: the keys packed (f16 / bf16
// converted on the fly) into the panels of the dispatched register-tiled GEMM (docs/performance.md §12), G * W query rows.
void logits_tile(const View& q, const View& k, const Snap& o, int64_t h, int64_t p0, int64_t p1, Tiles& s) {
  const SimdOps& v = simd();
  const int64_t d = o.d, n = p1 - p0, rows = o.G * o.W;
  if (s.loaded != h) {
    load_queries(q, o, h, s.qf);
    s.loaded = h;
  }
  s.kp.resize(size_t(((n + v.nr - 1) / v.nr) * v.nr * d));
  s.l.resize(size_t(rows * n));
  pack_nt(n, d, v.nr, [&](int64_t j) { return load_row(k, h, p0 + j, s.buf); }, s.kp.data());
  v.gemm_packed(rows, n, d, o.scale, s.qf.data(), d, s.kp.data(), s.l.data(), n);
  for (float& x : s.l) x = snap::logit_or_inf(x);
}

}  // namespace

void snapkv(const View& q, const View& k, const Snap& o, const View& out) {
  const int64_t W = o.W, N = o.N, L = o.L, G = o.G;
  const int64_t C = (N + kChunk - 1) / kChunk;
  const SimdOps& v = simd();
  // Pass 1: per (query head, key chunk) partial max / sum of exp per window query; merged per query. A work unit is
  // a (KV head, key chunk): its keys are packed once for the G query heads.
  std::vector<float> pm(size_t(o.Hq * C * W));
  std::vector<double> ps(size_t(o.Hq * C * W));
  parallel_for(o.Hkv * C, 1, [&](int64_t u0, int64_t u1) {
    Tiles s;
    for (int64_t u = u0; u < u1; u++) {
      const int64_t h = u / C, c = u % C;
      for (int64_t g = 0; g < G; g++) {
        const int64_t j = h * G + g;
        std::fill(&pm[size_t((j * C + c) * W)], &pm[size_t((j * C + c) * W)] + W, -INFINITY);
        std::fill(&ps[size_t((j * C + c) * W)], &ps[size_t((j * C + c) * W)] + W, 0.0);
      }
      for (int64_t p0 = c * kChunk; p0 < std::min(N, (c + 1) * kChunk); p0 += kTile) {
        const int64_t p1 = std::min({N, p0 + kTile, (c + 1) * kChunk}), n = p1 - p0;
        logits_tile(q, k, o, h, p0, p1, s);
        for (int64_t g = 0; g < G; g++) {
          const int64_t j = h * G + g;
          float* m = &pm[size_t((j * C + c) * W)];
          double* sm = &ps[size_t((j * C + c) * W)];
          for (int64_t t = 0; t < W; t++) {
            const int64_t vis = std::min(p1, L + t + 1) - p0;  // query t sees keys <= N - W + t
            if (vis <= 0) continue;
            const float* lt = &s.l[size_t((g * W + t) * n)];
            const float tm = v.max(lt, vis);
            if (tm == -INFINITY) continue;
            if (tm > m[t]) {
              if (m[t] != -INFINITY) sm[t] *= exp(double(m[t]) - double(tm));
              m[t] = tm;
            }
            sm[t] += v.sum_exp(lt, vis, m[t]);
          }
        }
      }
    }
  });
  std::vector<float> lse(size_t(o.Hq * W));
  for (int64_t j = 0; j < o.Hq; j++)
    for (int64_t t = 0; t < W; t++) {
      float M = -INFINITY;
      for (int64_t c = 0; c < C; c++) M = std::max(M, pm[size_t((j * C + c) * W + t)]);
      double S = 0;
      for (int64_t c = 0; c < C; c++) {
        const float mc = pm[size_t((j * C + c) * W + t)];
        if (mc != -INFINITY) S += ps[size_t((j * C + c) * W + t)] * exp(double(mc) - double(M));
      }
      lse[size_t(j * W + t)] = float(double(M) + log(S));
    }
  // Pass 2: mean over the window queries of exp(logit - lse), prefix keys only.
  const int64_t C2 = (L + kChunk - 1) / kChunk;
  std::vector<float> mean(size_t(o.Hq * L));
  parallel_for(o.Hkv * C2, 1, [&](int64_t u0, int64_t u1) {
    Tiles s;
    for (int64_t u = u0; u < u1; u++) {
      const int64_t h = u / C2, c = u % C2;
      for (int64_t p0 = c * kChunk; p0 < std::min(L, (c + 1) * kChunk); p0 += kTile) {
        const int64_t p1 = std::min({L, p0 + kTile, (c + 1) * kChunk}), n = p1 - p0;
        logits_tile(q, k, o, h, p0, p1, s);
        for (int64_t g = 0; g < G; g++) {
          const int64_t j = h * G + g;
          float* acc = &mean[size_t(j * L + p0)];
          std::fill(acc, acc + n, 0.f);
          for (int64_t t = 0; t < W; t++) v.acc_exp(&s.l[size_t((g * W + t) * n)], n, lse[size_t(j * W + t)], acc);
          for (int64_t x = 0; x < n; x++) acc[x] = acc[x] / float(W);
        }
      }
    }
  });
  // Pooling along the prefix, then the GQA mean; window positions always kept.
  parallel_for(o.Hkv * N, 4096, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t h = r / N, i = r % N;
      float v = INFINITY;
      if (i < L) {
        float acc = 0.f;
        for (int64_t g = 0; g < o.G; g++)
          acc = fadd(acc, snap::pool_at(&mean[size_t((h * o.G + g) * L)], 1, L, i, o.kernel, o.max_pool));
        v = acc / float(o.G);
      }
      out.ptr<float>()[h * out.stride[0] + i * out.stride[1]] = v;
    }
  });
}

}  // namespace cpu
}  // namespace kvt
