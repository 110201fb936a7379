// NestedKV scoring on the threaded CPU backend (docs/methods/nestedkv.md §3 S1–S7 with the §9 choices). The per-token math
// and the numerical scheme (fixed-point anchor sums, chunked window sums, exact tail statistics) are shared with the
// CUDA kernels through math/nestedkv.h, so both backends compute the same function; see that header for the scheme.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"
#include "cpu/simd.h"
#include "math/nestedkv.h"

namespace kvt {
namespace cpu {
namespace {

using namespace nkv;

using Nkv = NestedkvParams;  // cpu/ops.h

// Dot product of f32 vectors accumulated in double (products of f32 values are exact in double): the dispatched
// kernel (cpu/simd.h), whose sum runs in lanes of the level's vector width.
inline double dotd(const float* a, const float* b, int64_t n) {
  double r;
  simd().dotds(a, &b, 1, n, &r);
  return r;
}

// 1/max(‖k‖, ε) in double from ‖k‖² (S1).
inline double inv_norm(double sq) { return 1.0 / std::max(sqrt(sq), double(kEps)); }

// Row (h, i) as f32 (pointer into the tensor or `buf`) and its inverse norm in double (S1).
inline const float* key_row(const View& k, int64_t h, int64_t i, std::vector<float>& buf, double* inv) {
  const float* row = load_row(k, h, i, buf);
  *inv = inv_norm(dotd(row, row, k.shape[2]));
  return row;
}

// k̂ of row (h, i) (S1) in f32 into out[0, d). Returns false when an element is not finite (a NaN or ±Infinity in
// the key: the head scores NaN, math/nestedkv.h).
inline bool khat_row(const View& k, int64_t h, int64_t i, std::vector<float>& buf, float* out) {
  double inv;
  const float* row = key_row(k, h, i, buf, &inv);
  return simd().scale_finite(row, k.shape[2], float(inv), out);
}

// Anchors of one layer: fixed-point sums turned into scaled f32 anchor vectors and their norms.
struct Anchors {
  std::vector<float> mu_s;   // [H, d]
  std::vector<double> norm_s;  // [H]
  std::vector<float> mu_e;   // [H, nb, d]
  std::vector<double> norm_e;  // [H, nb]
  std::vector<uint8_t> bad;    // [H]: a key of the head has a non-finite element (its scores are NaN)
};

// Norm of an anchor vector, summed in double (the CUDA finalize kernel does the same, then rounds to f32).
double anchor_norm(const float* v, int64_t d) { return sqrt(dotd(v, v, d)); }

// Pass 1: exact block sums of k̂ (and from them the global sum), one work unit per (head, block).
void anchors(const View& k, const Nkv& o, Anchors& a) {
  const int64_t H = o.H, d = o.d, nb = o.nb;
  std::vector<int64_t> bsum(size_t(H * nb * d), 0);
  std::vector<uint8_t> bad_block(size_t(H * nb), 0);
  parallel_for(H * nb, 1, [&](int64_t u0, int64_t u1) {
    std::vector<float> buf, kh(static_cast<size_t>(d));
    for (int64_t u = u0; u < u1; u++) {
      const int64_t h = u / nb, blk = u % nb;
      int64_t* acc = &bsum[size_t(u * d)];
      bool finite = true;
      for (int64_t i = blk * o.b; i < std::min(o.N, (blk + 1) * o.b); i++) {
        finite &= khat_row(k, h, i, buf, kh.data());
        simd().fixed_add(kh.data(), d, acc);
      }
      bad_block[size_t(u)] = !finite;
    }
  });
  a.bad.assign(size_t(H), 0);
  for (int64_t u = 0; u < H * nb; u++) a.bad[size_t(u / nb)] |= bad_block[size_t(u)];
  a.mu_s.assign(size_t(H * d), 0.f);
  a.norm_s.assign(size_t(H), 0.0);
  a.mu_e.assign(size_t(H * nb * d), 0.f);
  a.norm_e.assign(size_t(H * nb), 0.0);
  parallel_for(H, 1, [&](int64_t h0, int64_t h1) {
    std::vector<int64_t> g(static_cast<size_t>(d));
    for (int64_t h = h0; h < h1; h++) {
      std::fill(g.begin(), g.end(), 0);
      for (int64_t blk = 0; blk < nb; blk++) {
        const int64_t* s = &bsum[size_t((h * nb + blk) * d)];
        float* mu = &a.mu_e[size_t((h * nb + blk) * d)];
        for (int64_t c = 0; c < d; c++) {
          g[size_t(c)] += s[c];
          mu[c] = from_fixed(s[c]);
        }
        a.norm_e[size_t(h * nb + blk)] = anchor_norm(mu, d);
      }
      float* mu = &a.mu_s[size_t(h * d)];
      for (int64_t c = 0; c < d; c++) mu[c] = from_fixed(g[size_t(c)]);
      a.norm_s[size_t(h)] = anchor_norm(mu, d);
    }
  });
}

// Pass 2 over rows [r0, r1) of head h: raw anomalies a_s, a_e, a_c (S3), and their min/max.
void raw_scores(const View& k, const Nkv& o, const Anchors& an, int64_t h, int64_t r0, int64_t r1, float* raw,
                float lo[3], float hi[3]) {
  const int64_t d = o.d, W = o.W, N = o.N, HN = o.H * o.N;
  std::vector<float> buf, buf2, kh(static_cast<size_t>(d)), old(static_cast<size_t>(d)), A(static_cast<size_t>(d), 0.f),
      B(static_cast<size_t>(d), 0.f), S(static_cast<size_t>(d));
  // Window state before row r0 (math/nestedkv.h): A = running sum of the current chunk, B = previous chunk's
  // total minus the rows that left the window.
  if (!o.global) {
    const int64_t c = r0 / W;
    if (c >= 1)
      for (int64_t j = (c - 1) * W; j < c * W; j++) {
        khat_row(k, h, j, buf, old.data());
        for (int64_t x = 0; x < d; x++) A[size_t(x)] = fadd(A[size_t(x)], old[size_t(x)]);
      }
    if (r0 != c * W) {
      B = A;
      std::fill(A.begin(), A.end(), 0.f);
      if (c >= 1)
        for (int64_t j = (c - 1) * W; j <= r0 - 1 - W; j++) {
          khat_row(k, h, j, buf, old.data());
          for (int64_t x = 0; x < d; x++) B[size_t(x)] = fsub(B[size_t(x)], old[size_t(x)]);
        }
      for (int64_t j = c * W; j < r0; j++) {
        khat_row(k, h, j, buf, old.data());
        for (int64_t x = 0; x < d; x++) A[size_t(x)] = fadd(A[size_t(x)], old[size_t(x)]);
      }
    }
  }
  const float* mus = &an.mu_s[size_t(h * d)];
  const double ns = an.norm_s[size_t(h)];
  // k̂ of the last W rows, so the row leaving the window is not loaded and normalised again (the same bits: rows
  // before r0 are recomputed by khat_row); only when some row of [r0, r1) leaves a window that started in it.
  const bool ring = !o.global && W < r1 - r0;
  std::vector<float> past(ring ? size_t(W * d) : 0);
  for (int64_t i = r0; i < r1; i++) {
    const float* row = load_row(k, h, i, buf);
    // ‖k‖², k·μ_s and k·μ_e in one pass over the row
    const int64_t blk = i / o.b;
    const float* ys[3] = {row, mus, o.global ? mus : &an.mu_e[size_t((h * o.nb + blk) * d)]};
    double dots[3];
    simd().dotds(row, ys, o.global ? 2 : 3, d, dots);
    const double inv = inv_norm(dots[0]);
    const float as = anchor_neg_cos(dots[1] * inv, ns, double(N));
    raw[h * N + i] = as;
    lo[0] = std::min(lo[0], as);
    hi[0] = std::max(hi[0], as);
    if (o.global) continue;
    simd().scale_finite(row, d, float(inv), kh.data());
    // episodic: whole-block mean (last partial block keeps its own mean)
    const float ae =
        anchor_neg_cos(dots[2] * inv, an.norm_e[size_t(h * o.nb + blk)], double(std::min(o.b, N - blk * o.b)));
    // current: causal inclusive window [max(0, i-W+1), i]
    if (i > 0 && i % W == 0) {
      B = A;
      std::fill(A.begin(), A.end(), 0.f);
    }
    float* slot = ring ? &past[size_t((i % W) * d)] : nullptr;  // row i − W's k̂ once this segment has W rows
    const float* leaving = nullptr;
    if (i >= W) {
      if (ring && i - W >= r0) {
        leaving = slot;
      } else {
        khat_row(k, h, i - W, buf2, old.data());
        leaving = old.data();
      }
    }
    simd().window_step(A.data(), B.data(), kh.data(), leaving, S.data(), d);
    if (ring) std::copy(kh.begin(), kh.end(), slot);
    const float* sy[2] = {row, S.data()};
    double sd[2];
    simd().dotds(S.data(), sy, 2, d, sd);
    const float ac = anchor_neg_cos(sd[0] * inv, sqrt(sd[1]), double(std::min(i + 1, W)));
    raw[HN + h * N + i] = ae;
    raw[2 * HN + h * N + i] = ac;
    lo[1] = std::min(lo[1], ae);
    hi[1] = std::max(hi[1], ae);
    lo[2] = std::min(lo[2], ac);
    hi[2] = std::max(hi[2], ac);
  }
}

// k-th largest (1-based) order key of keys[0, n); reorders keys.
uint32_t kth_largest(std::vector<uint32_t>& keys, int64_t k) {
  std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(), std::greater<uint32_t>());
  return keys[size_t(k - 1)];
}

// Outer-learner statistics of head h (S5 tails, S6 surprise), as exact integer sums.
HeadStats head_stats(const Nkv& o, const float* raw, int64_t h, const float lo[3], const float hi[3]) {
  const int64_t N = o.N, HN = o.H * o.N;
  HeadStats st{};
  MinMax mm[3];
  std::vector<uint32_t> keys(static_cast<size_t>(N));
  for (int x = 0; x < 3; x++) {
    mm[x] = make_minmax(lo[x], hi[x]);
    const float* r = raw + x * HN + h * N;
    for (int64_t i = 0; i < N; i++) keys[size_t(i)] = order_key(r[i]);
    st.key_top[x] = kth_largest(keys, o.m);
    st.key_bot[x] = kth_largest(keys, N - o.m + 1);
  }
  uint32_t s_lo = 0xffffffffu, s_hi = 0;
  for (int64_t i = 0; i < N; i++) {
    float t[3];
    for (int x = 0; x < 3; x++) {
      const float a = raw[x * HN + h * N + i];
      const uint32_t key = order_key(a);
      t[x] = apply_minmax(a, mm[x]);
      if (key > st.key_top[x]) {
        st.sum_gt[x] += to_ufixed(t[x]);
        st.cnt_gt[x]++;
      }
      if (key < st.key_bot[x]) {
        st.sum_lt[x] += to_ufixed(t[x]);
        st.cnt_lt[x]++;
      }
    }
    const float s = spread3(t[0], t[1], t[2]);
    const uint32_t ks = order_key(s);
    s_lo = std::min(s_lo, ks);
    s_hi = std::max(s_hi, ks);
    st.sum_s += to_ufixed(s);
  }
  st.s_lo_key = s_lo;
  st.s_hi_key = s_hi;
  return st;
}

}  // namespace

void nestedkv(const View& k, const Nkv& o, const View& out) {
  const int64_t H = o.H, N = o.N;
  Anchors an;
  anchors(k, o, an);
  // Pass 2, one unit per (head, segment of rows); the window state makes any split give identical bits.
  const int64_t seg = 1024, S = (N + seg - 1) / seg;
  std::vector<float> raw(size_t((o.global ? 1 : 3) * H * N));
  std::vector<float> ulo(size_t(H * S * 3), INFINITY), uhi(size_t(H * S * 3), -INFINITY);
  parallel_for(H * S, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; u++) {
      const int64_t h = u / S, s = u % S;
      raw_scores(k, o, an, h, s * seg, std::min(N, (s + 1) * seg), raw.data(), &ulo[size_t(u * 3)],
                 &uhi[size_t(u * 3)]);
    }
  });
  std::vector<HeadParams> params(static_cast<size_t>(H));
  parallel_for(H, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; h++) {
      float lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
      for (int64_t s = 0; s < S; s++)
        for (int x = 0; x < 3; x++) {
          lo[x] = std::min(lo[x], ulo[size_t((h * S + s) * 3 + x)]);
          hi[x] = std::max(hi[x], uhi[size_t((h * S + s) * 3 + x)]);
        }
      HeadStats st{};
      if (!o.global) st = head_stats(o, raw.data(), h, lo, hi);
      params[size_t(h)] = head_params(lo, hi, st, N, o.m, o.prior, o.beta, o.global);
    }
  });
  const int64_t HN = H * N;
  parallel_for(H * S, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; u++) {
      const int64_t h = u / S, s = u % S;
      float* dst = out.ptr<float>() + h * out.stride[0];
      for (int64_t i = s * seg; i < std::min(N, (s + 1) * seg); i++) {
        const int64_t r = h * N + i;
        dst[i * out.stride[1]] =
            an.bad[size_t(h)] ? NAN
            : i < o.sinks ? INFINITY
                        : token_score(raw[size_t(r)], o.global ? 0.f : raw[size_t(HN + r)],
                                      o.global ? 0.f : raw[size_t(2 * HN + r)], params[size_t(h)], o.tau, o.kappa,
                                      o.global);
      }
    }
  });
}

}  // namespace cpu
}  // namespace kvt
