// Per-token math of NestedKV (docs/methods/nestedkv.md §3), shared by the CPU backend (csrc/cpu/nestedkv.cc) and the CUDA
// kernels (cuda/nestedkv.cu). Every elementwise formula lives here once; the backends differ only in the summation
// order of dot products / norms.
//
// Numerical scheme (the same on both backends except where noted):
//  - S1: inv = 1/max(‖k‖, ε) per row; k̂ = k·inv in f32 feeds the anchor and window sums. The cosines use the raw
//    key, a = −(k·μ')·inv/‖μ'‖; the row reductions (‖k‖², k·μ', ‖S‖²) are accumulated in double on the CPU and in
//    f32 (FMA lane partials, warp tree) in the CUDA kernels, where per-row double arithmetic would cost more than
//    the memory traffic. Raw anomalies are stored as f32.
//  - Global and block anchors are sums of k̂ in 32.32 fixed point (int64): exact, so the CUDA reduction order
//    (integer atomics) cannot change them, and CPU and GPU agree bit for bit given the same k̂. The anchor used
//    in the cosine is that sum scaled by 2^-32 (cosines are invariant to the anchor's positive scale; the docs/methods/nestedkv.md §9.13
//    rule ‖mean‖ < ε is tested as ‖sum‖ < ε·count).
//  - The causal window sum uses two f32 accumulators over W-aligned chunks of positions (no drift, no
//    cancellation of long running sums): for i in chunk c = ⌊i/W⌋, window(i) = [i−W+1, i] =
//    (suffix of chunk c−1) ∪ (prefix of chunk c). A = Σ_{j=cW}^{i} k̂_j (reset at each chunk start),
//    B = Tot(chunk c−1) − Σ_{j=(c−1)W}^{i−W} k̂_j, S = A + B. Each accumulator sees at most 2W operations.
//    The operation sequence depends only on the positions, so any split of the rows between threads/warps gives
//    the same bits (window_state_init reproduces it for a range starting anywhere).
//  - Min-max (S4, S6) treats a range below kRangeTol as zero (docs/methods/nestedkv.md §9.13: output 0): f32 cosines of bitwise-identical
//    keys against anchors that differ only by rounding spread by a few ulps, which must not be amplified to [0, 1].
//  - The 10 % tail means (S5) and the mean of the normalised surprise (S6) are sums in 32.32 fixed point (values
//    in [0, 1]): exact and order-independent; tail thresholds are exact order statistics (nth_element / radix
//    select), so ties at the threshold cannot change the sums.
//  - Non-finite keys (docs/methods/nestedkv.md §12): a head with any non-finite k̂ element (a NaN or ±Infinity in a
//    key) scores NaN at every position, sinks included. The fixed-point conversions are total (clamped, NaN -> 0), so
//    such a head's statistics are computed without undefined behaviour and then discarded.
#pragma once

#include "math/common.h"

namespace kvt {
namespace nkv {

// Fixed point for anchor and statistic sums: value * 2^32, rounded to nearest even.
constexpr float kFixScale = 4294967296.0f;       // 2^32
constexpr float kFixInv = 2.3283064365386963e-10f;  // 2^-32
constexpr double kFixInvD = 2.3283064365386963e-10;

// Min-max ranges (and spreads) at or below this are treated as zero (docs/methods/nestedkv.md §9.13; see header comment).
constexpr float kRangeTol = 1e-5f;

// Default episodic block size clip(⌊N/32⌋, 128, 256) (docs/methods/nestedkv.md §3 S2 / §6).
KVT_HD int64_t default_block(int64_t N) {
  int64_t b = N / 32;
  return b < 128 ? 128 : (b > 256 ? 256 : b);
}

// Tail count m = max(1, ⌊tail·N⌋) (docs/methods/nestedkv.md §9.6).
KVT_HD int64_t tail_count(double tail, int64_t N) {
  double m = floor(tail * double(N));
  return m < 1 ? 1 : (m > double(N) ? N : int64_t(m));
}

// f32 value -> 32.32 fixed point. A k̂ component is in [-1, 1] up to rounding: clamped there (N < 2^31 sums fit in
// int64), NaN -> 0 (its head is flagged and scores NaN).
KVT_HD int64_t to_fixed(float x) {
  x = x >= -1.0f ? (x <= 1.0f ? x : 1.0f) : (x < -1.0f ? -1.0f : 0.0f);
#if defined(__CUDA_ARCH__)
  return __float2ll_rn(x * kFixScale);
#else
  return int64_t(rintf(x * kFixScale));
#endif
}
// Fixed-point sum -> f32 (correctly rounded), scaled by 2^-32 (exact).
KVT_HD float from_fixed(int64_t s) {
#if defined(__CUDA_ARCH__)
  return __ll2float_rn(s) * kFixInv;
#else
  return float(s) * kFixInv;
#endif
}
// Values in [0, 1] for the statistic sums (unsigned): clamped there, NaN -> 0 (only a flagged head has them).
KVT_HD uint64_t to_ufixed(float x) {
  x = x >= 0.0f ? (x <= 1.0f ? x : 1.0f) : 0.0f;
#if defined(__CUDA_ARCH__)
  return __float2ull_rn(x * kFixScale);
#else
  return uint64_t(rintf(x * kFixScale));
#endif
}

// S3: a = −cos(k̂, μ) from dot = k̂·μ' (= (k·μ')·inv_norm), the norm of μ' = (scaled) anchor sum over `count`
// tokens. ‖mean‖ = ‖μ'‖/count < ε gives 0 (docs/methods/nestedkv.md §9.13). Never NaN for finite input; +0 instead of −0. T = double on
// the CPU backend (row reductions accumulated in double), float in the CUDA kernels.
template <typename T>
KVT_HD float anchor_neg_cos(T dot, T mu_norm, T count) {
  if (!(mu_norm >= T(kEps) * count)) return 0.0f;
  return float(T(0) - dot / mu_norm);
}

// Per-(scale, head) min-max parameters (S4): ã = (a − lo) / (hi − lo), or 0 when the range is (numerically) zero.
struct MinMax {
  float lo, range;  // range == 0 -> everything maps to 0
};
KVT_HD MinMax make_minmax(float lo, float hi) {
  MinMax m;
  m.lo = lo;
  const float r = hi - lo;
  m.range = (r > kRangeTol) ? r : 0.0f;  // also 0 for NaN / inverted ranges
  return m;
}
KVT_HD float apply_minmax(float a, const MinMax& m) {
  if (m.range == 0.0f) return 0.0f;
  const float v = (a - m.lo) / m.range;
  return v;  // in [0, 1] for lo <= a <= hi
}

// S6: population std of three values (in f32, fixed operation order).
KVT_HD float spread3(float a, float b, float c) {
  const float mean = fadd(fadd(a, b), c) / 3.0f;
  const float da = fsub(a, mean), db = fsub(b, mean), dc = fsub(c, mean);
  const float v = fadd(fadd(fmul(da, da), fmul(db, db)), fmul(dc, dc)) / 3.0f;
  return sqrtf(v);
}

KVT_HD float max3(float a, float b, float c) { return fmaxf(fmaxf(a, b), c); }

// Per-head parameters of the outer learner (S5, S6), computed once per head from the statistics.
struct HeadParams {
  MinMax mm[3];   // per-scale min-max (s, e, c)
  float w[3];     // blend weights
  float s_lo;     // surprise min
  float s_range;  // surprise range (0 -> ŝ = 0)
  float s_mean;   // mean over tokens of ŝ
};

// S5–S6 for one token: blend, surprise gate, final score. `global` = single-anchor ablation (a* = ã_s).
KVT_HD float token_score(float a_s, float a_e, float a_c, const HeadParams& p, float tau, float kappa, bool global) {
  const float s = apply_minmax(a_s, p.mm[0]);
  if (global) return s;
  const float e = apply_minmax(a_e, p.mm[1]);
  const float c = apply_minmax(a_c, p.mm[2]);
  const float blend = fadd(fadd(fmul(p.w[0], s), fmul(p.w[1], e)), fmul(p.w[2], c));
  const float win = max3(s, e, c);
  const float sp = spread3(s, e, c);
  const float sh = p.s_range == 0.0f ? 0.0f : (sp - p.s_lo) / p.s_range;
  const float sc = fsub(sh, p.s_mean);
  const float alpha = 1.0f / (1.0f + expf(-fmul(kappa, fsub(sc, tau))));
  return fadd(fmul(fsub(1.0f, alpha), blend), fmul(alpha, win));
}

// Order-preserving 32-bit key of a float for exact order statistics (−0 == +0, NaN lowest). Same map as selection.
KVT_HD uint32_t order_key(float x) { return score_order_bits(x); }
KVT_HD float key_value(uint32_t k) {
  // inverse of score_order_bits for non-NaN keys
  const uint32_t b = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  return bits_to_f32(b);
}

// Outer-learner statistics of one head, as exact integer sums (filled by either backend).
struct HeadStats {
  uint32_t key_top[3];  // order key of the m-th largest raw score, per scale
  uint32_t key_bot[3];  // order key of the m-th smallest raw score
  uint64_t sum_gt[3];   // Σ fixed(ã) over tokens with key > key_top
  uint64_t sum_lt[3];   // Σ fixed(ã) over tokens with key < key_bot
  uint32_t cnt_gt[3];
  uint32_t cnt_lt[3];
  uint64_t sum_s;       // Σ fixed(s) (raw surprise, in [0, 0.48])
  uint32_t s_lo_key, s_hi_key;  // order keys of min and max surprise
};

// Turns a head's statistics into its parameters (S5 weights in double, S6 surprise normalisation).
// raw_lo/raw_hi: per-scale min and max of the raw anomalies. prior: 3 non-negative weights, not all 0.
KVT_HD HeadParams head_params(const float raw_lo[3], const float raw_hi[3], const HeadStats& st, int64_t N, int64_t m,
                              const double prior[3], double beta, bool global) {
  HeadParams p;
  for (int x = 0; x < 3; x++) p.mm[x] = make_minmax(raw_lo[x], raw_hi[x]);
  p.w[0] = 1.0f;
  p.w[1] = p.w[2] = 0.0f;
  p.s_lo = 0.0f;
  p.s_range = 0.0f;
  p.s_mean = 0.0f;
  if (global) return p;
  double delta[3];
  for (int x = 0; x < 3; x++) {
    const uint64_t top_v = to_ufixed(apply_minmax(key_value(st.key_top[x]), p.mm[x]));
    const uint64_t bot_v = to_ufixed(apply_minmax(key_value(st.key_bot[x]), p.mm[x]));
    const double top = double(st.sum_gt[x]) + double(uint64_t(m) - st.cnt_gt[x]) * double(top_v);
    const double bot = double(st.sum_lt[x]) + double(uint64_t(m) - st.cnt_lt[x]) * double(bot_v);
    delta[x] = (top - bot) * kFixInvD / double(m);
  }
  // softmax(log(prior) + β·Δ) written as prior·exp(β(Δ − max)) (same value; a zero prior gives weight 0).
  double mx = -1e300;
  for (int x = 0; x < 3; x++)
    if (prior[x] > 0 && beta * delta[x] > mx) mx = beta * delta[x];
  double e[3], z = 0;
  for (int x = 0; x < 3; x++) {
    e[x] = prior[x] > 0 ? prior[x] * exp(beta * delta[x] - mx) : 0.0;
    z += e[x];
  }
  for (int x = 0; x < 3; x++) p.w[x] = float(e[x] / z);
  const float s_lo = key_value(st.s_lo_key), s_hi = key_value(st.s_hi_key);
  const MinMax sm = make_minmax(s_lo, s_hi);
  p.s_lo = sm.lo;
  p.s_range = sm.range;
  if (sm.range != 0.0f) {
    // mean_i (s_i − lo)/range = (mean_i s_i − lo)/range
    const double mean_s = double(st.sum_s) * kFixInvD / double(N);
    p.s_mean = float((mean_s - double(sm.lo)) / double(sm.range));
  }
  return p;
}

}  // namespace nkv

}  // namespace kvt
