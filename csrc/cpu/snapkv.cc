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
#include "math/snapkv.h"

namespace kvt {
namespace cpu {
namespace {

using Snap = SnapkvParams;  // cpu/ops.h

constexpr int64_t kChunk = 2048;  // keys per work unit
constexpr int64_t kTile = 64;     // keys per logit tile

// Window queries of query head j as f32 [W][d].
void load_queries(const View& q, int64_t j, int64_t W, std::vector<float>& out) {
  const int64_t d = q.shape[2], Wq = q.shape[1];
  out.resize(size_t(W * d));
  std::vector<float> buf;
  for (int64_t t = 0; t < W; t++) {
    const float* row = load_row(q, j, Wq - W + t, buf);
    std::copy(row, row + d, out.begin() + t * d);
  }
}

// Logits l[t][p - p0] = scale * q_t . k_p for keys [p0, p1) of KV head h.
void logits_tile(const View& k, const Snap& o, int64_t h, const std::vector<float>& qf, int64_t p0, int64_t p1,
                 std::vector<float>& buf, float* l) {
  const int64_t d = o.d, n = p1 - p0;
  for (int64_t p = p0; p < p1; p++) {
    const float* row = load_row(k, h, p, buf);
    for (int64_t t = 0; t < o.W; t++) l[t * n + (p - p0)] = snap::logit_or_inf(fmul(o.scale, dot8(&qf[size_t(t * d)], row, d)));
  }
}

}  // namespace

void snapkv(const View& q, const View& k, const Snap& o, const View& out) {
  const int64_t W = o.W, N = o.N, L = o.L;
  const int64_t C = (N + kChunk - 1) / kChunk;
  // Pass 1: per (query head, key chunk) partial max / sum of exp per window query; merged per query.
  std::vector<float> pm(size_t(o.Hq * C * W));
  std::vector<double> ps(size_t(o.Hq * C * W));
  parallel_for(o.Hq * C, 1, [&](int64_t u0, int64_t u1) {
    std::vector<float> qf, buf, l(size_t(W * kTile));
    int64_t loaded = -1;
    for (int64_t u = u0; u < u1; u++) {
      const int64_t j = u / C, c = u % C, h = j / o.G;
      if (j != loaded) {
        load_queries(q, j, W, qf);
        loaded = j;
      }
      float* m = &pm[size_t(u * W)];
      double* s = &ps[size_t(u * W)];
      std::fill(m, m + W, -INFINITY);
      std::fill(s, s + W, 0.0);
      for (int64_t p0 = c * kChunk; p0 < std::min(N, (c + 1) * kChunk); p0 += kTile) {
        const int64_t p1 = std::min({N, p0 + kTile, (c + 1) * kChunk}), n = p1 - p0;
        logits_tile(k, o, h, qf, p0, p1, buf, l.data());
        for (int64_t t = 0; t < W; t++) {
          const int64_t vis = std::min(p1, L + t + 1) - p0;  // query t sees keys <= N - W + t
          if (vis <= 0) continue;
          const float* lt = &l[size_t(t * n)];
          float tm = -INFINITY;
          for (int64_t x = 0; x < vis; x++) tm = std::max(tm, lt[x]);
          if (tm == -INFINITY) continue;
          if (tm > m[t]) {
            if (m[t] != -INFINITY) s[t] *= exp(double(m[t]) - double(tm));
            m[t] = tm;
          }
          double acc = 0;
          for (int64_t x = 0; x < vis; x++) acc += double(expf(lt[x] - m[t]));
          s[t] += acc;
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
  parallel_for(o.Hq * C2, 1, [&](int64_t u0, int64_t u1) {
    std::vector<float> qf, buf, l(size_t(W * kTile));
    int64_t loaded = -1;
    for (int64_t u = u0; u < u1; u++) {
      const int64_t j = u / C2, c = u % C2, h = j / o.G;
      if (j != loaded) {
        load_queries(q, j, W, qf);
        loaded = j;
      }
      const float* lj = &lse[size_t(j * W)];
      for (int64_t p0 = c * kChunk; p0 < std::min(L, (c + 1) * kChunk); p0 += kTile) {
        const int64_t p1 = std::min({L, p0 + kTile, (c + 1) * kChunk}), n = p1 - p0;
        logits_tile(k, o, h, qf, p0, p1, buf, l.data());
        for (int64_t x = 0; x < n; x++) {
          float acc = 0.f;
          for (int64_t t = 0; t < W; t++) acc = fadd(acc, expf(l[size_t(t * n + x)] - lj[t]));
          mean[size_t(j * L + p0 + x)] = acc / float(W);
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
