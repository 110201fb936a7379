// MomentKV math shared by the CPU backend and the CUDA kernels (docs/methods/momentkv.md §4, §5, §8). Everything here is
// `__host__ __device__` under nvcc, so both backends evaluate the same formulas; the partitions that fix the
// reduction order (merge segments and windows, subspace-iteration schedule, start vectors) are defined here too,
// so the two backends also accumulate in the same order wherever that is cheap to do.
#pragma once

#include "math/common.h"

namespace kvt {
namespace mkv {

// ---------------------------------------------------------------------------------------------------------
// Moment merge partition (docs/methods/momentkv.md §4.3). Evicted rows of a head are merged by position: positions are
// cut into `segments` of `seg_len` positions (a multiple of kWindow), each segment into windows of kWindow
// positions. A window's evicted rows (ascending positions) form one batch: its mean is taken two-pass and its
// centred co-moment is merged into the segment's running state with the exact pairwise (Chan) update. The segment
// states are then merged, in segment order, into the persistent state. The partition depends only on the shapes,
// so results are deterministic and independent of the thread count or the GPU model, and merging an explicit row
// list, the complement of a kept list, or rows carrying a round label gives bit-identical states for the same set.
constexpr int kWindow = 32;
constexpr int64_t kSegMinLen = 512;
// Bound on the transient segment states (floats) so the CUDA scratch stays below ~32 MB.
constexpr int64_t kSegScratchFloats = int64_t(1) << 23;

KVT_HD int64_t state_floats(int64_t d, int64_t dv) { return 1 + d + dv + d * dv; }
// A segment's transient state: n, residual means r_k[d], r_v[dv] relative to the shifts s_k[d], s_v[dv], and the
// co-moment M[dv][d] about s + r. The shift is the persistent state's mean (or, while that is empty, the mean of the
// segment's first non-empty window), so the running mean is held as a small residual: its rounding error, which
// enters the pairwise update at first order, is relative to the spread of the rows, not to their (possibly large)
// offset. The segment states are merged into the persistent state in the same residual form about one common shift
// (the persistent mean, or the first non-empty segment's mean) and the mean is written once at the end.
KVT_HD int64_t seg_state_floats(int64_t d, int64_t dv) { return 1 + 2 * (d + dv) + d * dv; }

// The parts of one segment state at st: n, r_k[d], r_v[dv], s_k[d], s_v[dv], M[dv][d] (F = float or const float).
template <typename F>
struct SegState {
  F* n;
  F* rk;
  F* rv;
  F* sk;
  F* sv;
  F* M;
};
template <typename F>
KVT_HD SegState<F> seg_state(F* st, int64_t d, int64_t dv) {
  SegState<F> s;
  s.n = st;
  s.rk = st + 1;
  s.rv = s.rk + d;
  s.sk = s.rv + dv;
  s.sv = s.sk + d;
  s.M = s.sv + dv;
  return s;
}
// Merging a segment (shift s, residual rs) into a running residual r about the common shift c: the difference of
// their means, (s − c) + rs − r, in this order (the shifts are close, their difference is nearly exact).
KVT_HD float seg_delta(float s, float c, float rs, float r) { return ((s - c) + rs) - r; }

struct Partition {
  int64_t seg_len;   // positions per segment (multiple of kWindow)
  int64_t segments;  // ceil(N / seg_len), >= 1
};

KVT_HD Partition merge_partition(int64_t N, int64_t H, int64_t d, int64_t dv) {
  int64_t s = (N + kSegMinLen - 1) / kSegMinLen;
  int64_t per = H * seg_state_floats(d, dv);
  int64_t cap = per > 0 ? kSegScratchFloats / per : 1;
  if (cap < 1) cap = 1;
  if (s > cap) s = cap;
  if (s < 1) s = 1;
  int64_t len = (N + s - 1) / s;
  len = ((len + kWindow - 1) / kWindow) * kWindow;
  if (len < kWindow) len = kWindow;
  Partition p;
  p.seg_len = len;
  p.segments = N > 0 ? (N + len - 1) / len : 1;
  return p;
}

// Coefficients of the exact pairwise update of (n_a, mu_a, M_a) with a batch (n_b, mu_b, M_b):
//   n = n_a + n_b;  mu = mu_a + (mu_b - mu_a)·wb;  M = M_a + M_b + f·δv δkᵀ,  wb = n_b/n,  f = n_a·n_b/n.
struct Chan {
  float n, wb, f;
};
KVT_HD Chan chan(float na, float nb) {
  Chan c;
  c.n = na + nb;
  c.wb = nb / c.n;
  c.f = na * c.wb;
  return c;
}

// ---------------------------------------------------------------------------------------------------------
// Normalisation-corrected decode attention (docs/methods/momentkv.md §4.4, §8).
KVT_HD float sigmoid_stable(float x) {
  if (x >= 0.f) return 1.f / (1.f + expf(-x));
  const float e = expf(x);
  return e / (1.f + e);
}

// Weight of the retained attention: λ = sigmoid(lse_R − ℓ_E) with ℓ_E = log n + a·mu_k. No retained row
// (lse_R = −inf) gives λ = 0 (the summary alone). Only called when n > 0.
KVT_HD float nc_lambda(float lse_r, float n, float a_dot_muk) {
  if (lse_r == -INFINITY) return 0.f;  // no retained row (a NaN lse stays NaN)
  return sigmoid_stable(lse_r - (logf(n) + a_dot_muk));
}

// Non-finite inputs of the corrected decode (docs/methods/momentkv.md §8). A logit that is not finite (a NaN or ±Infinity
// in the query or a retained key, or an overflow) becomes NaN, so the softmax state of its query becomes NaN (-Infinity
// logits would otherwise drop out silently); a summary count must be finite and >= 0; an output row with any
// non-finite element is written as NaN throughout.
KVT_HD float logit_or_nan(float s) { return finite_f(s) ? s : NAN; }
KVT_HD bool valid_count(float n) { return n >= 0.f && finite_f(n); }

// Factor applied to C a by the optional ball clip: min(1, radius / max(‖C a‖, 1e-12)) (radius +inf: 1).
KVT_HD float clip_factor(float norm, float radius) { return fminf(1.f, radius / fmaxf(norm, 1e-12f)); }

// Merging two partial softmax states (max m, sum l of exp(s − m), unnormalised accumulator) is done by every
// backend with this rescale factor; exp(−inf − x) = 0 handles empty states.
KVT_HD float rescale(float m_part, float m_all) { return m_part == -INFINITY ? 0.f : expf(m_part - m_all); }

// ---------------------------------------------------------------------------------------------------------
// Moment-informed eviction (docs/methods/momentkv.md §5.2): key = score · (ρ + ε·mean ρ); protected (+inf) tokens and
// evicted ones (NaN, never selected) are handled by the caller.
KVT_HD float mi_key(float score, float rho, float eps_mean) { return score * (rho + eps_mean); }

// The rank key of a candidate (not yet evicted) token: a NaN key — a non-finite value row of the head makes ρ, and so
// the mean ρ of every candidate, NaN (docs/methods/momentkv.md §8) — ranks as −Infinity: below every number (evicted first,
// the highest positions first), but above the tokens evicted in earlier rounds, which the CUDA selection marks NaN.
KVT_HD float candidate_key(float key) { return key != key ? -INFINITY : key; }

// Summary subspace (docs/methods/momentkv.md §5.2): top-r left singular vectors of C by subspace iteration on
// S = Ĉ Ĉᵀ (Ĉ = C / max|C|) with a block of kSubspaceP(dv, r) vectors, kSubspaceIters iterations, each block
// re-orthonormalised by classical Gram–Schmidt with one re-orthogonalisation pass (a column that collapses is
// replaced by a fixed pseudo-random vector), then one Rayleigh–Ritz step (Jacobi on the p×p projected matrix).
// σ_i = ‖Ĉᵀ u_i‖; a vector is used when σ_i > 0 and σ_i ≥ 1e-6·σ_1. Basis = Gram–Schmidt (two passes) of
// [mu_v, u_1..u_r], dropping a candidate whose remainder is ≤ 1e-6 of its norm.
constexpr int kMaxR = 8;
constexpr int kMaxP = 16;
constexpr int kSubspaceIters = 96;
constexpr float kSigmaRel = 1e-6f;
constexpr float kGsRel = 1e-6f;
constexpr float kCollapseRel = 1e-4f;

KVT_HD int subspace_p(int64_t dv, int r) {
  int p = r + 12;
  if (p > kMaxP) p = kMaxP;
  if (p > dv) p = int(dv);
  return p;
}

// Deterministic pseudo-random value in [-1, 1) (start and replacement vectors of the subspace iteration).
KVT_HD float det_uniform(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t x = a * 0x9e3779b1u ^ (b + 0x7f4a7c15u) * 0x85ebca6bu ^ (c + 0x165667b1u) * 0xc2b2ae35u;
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return float(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

// Cyclic Jacobi eigen-decomposition of the symmetric p×p matrix A (row-major, destroyed). On return `w` holds the
// eigenvectors as columns ([p][p] row-major) and `order` the column indices sorted by eigenvalue, descending (ties:
// lower index first); `lam[i]` is the eigenvalue of column i. Serial: run by one thread on CUDA.
KVT_HD void jacobi_eigen(int p, float* A, float* w, float* lam, int* order) {
  for (int i = 0; i < p; i++)
    for (int j = 0; j < p; j++) w[i * p + j] = i == j ? 1.f : 0.f;
  float total = 0.f;
  for (int i = 0; i < p * p; i++) total += A[i] * A[i];
  for (int sweep = 0; sweep < 40; sweep++) {
    float off = 0.f;
    for (int i = 0; i < p; i++)
      for (int j = i + 1; j < p; j++) off += A[i * p + j] * A[i * p + j];
    if (!(2.f * off > 1e-14f * total)) break;
    for (int i = 0; i < p - 1; i++) {
      for (int j = i + 1; j < p; j++) {
        const float apq = A[i * p + j];
        if (apq == 0.f) continue;
        const float tau = (A[j * p + j] - A[i * p + i]) / (2.f * apq);
        const float t = (tau >= 0.f ? 1.f : -1.f) / (fabsf(tau) + sqrtf(1.f + tau * tau));
        const float c = 1.f / sqrtf(1.f + t * t), s = t * c;
        for (int k = 0; k < p; k++) {
          const float akp = A[k * p + i], akq = A[k * p + j];
          A[k * p + i] = c * akp - s * akq;
          A[k * p + j] = s * akp + c * akq;
        }
        for (int k = 0; k < p; k++) {
          const float apk = A[i * p + k], aqk = A[j * p + k];
          A[i * p + k] = c * apk - s * aqk;
          A[j * p + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < p; k++) {
          const float vkp = w[k * p + i], vkq = w[k * p + j];
          w[k * p + i] = c * vkp - s * vkq;
          w[k * p + j] = s * vkp + c * vkq;
        }
      }
    }
  }
  for (int i = 0; i < p; i++) {
    lam[i] = A[i * p + i];
    order[i] = i;
  }
  for (int i = 1; i < p; i++) {  // insertion sort, descending, stable
    const int o = order[i];
    int j = i - 1;
    while (j >= 0 && lam[order[j]] < lam[o]) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = o;
  }
}

}  // namespace mkv
}  // namespace kvt
