// GRKV scalar logic shared by the CPU backend and the CUDA kernels (docs/methods/grkv.md §4-§7): the anchor ranking, the
// capped step with storage rounding and cap recheck, the conjugate-gradient scalar recurrences, the candidate
// choice, and the per-head state both backends carry through the phases. Vector work (attention, Gram, operators)
// lives in csrc/cpu/grkv*.cc and cuda/grkv*.cu; everything decided per head is decided here, once.
#pragma once

#include "math/common.h"

namespace kvt {

// Storage rounding of an f32 value to the cache dtype (f32 is the identity). Values of 16-bit caches are exact in
// f32, so X0 + s*D is rounded once, exactly like the float64 reference's `round`.
KVT_HD float round_to_storage(float x, int dt) {
  if (dt == kBF16) return bf16_to_f32(f32_to_bf16(x));
  if (dt == kF16) return f16_to_f32(f32_to_f16(x));
  return x;
}

KVT_HD bool finite_d(double x) { return x - x == 0.0; }

// docs/methods/grkv.md §4: number of anchors among |P| retained prefix tokens, floor(|P|*gamma) computed in double as the reference does.
KVT_HD int64_t grkv_anchor_count(int64_t prefix, double gamma) {
  double a = floor(double(prefix) * gamma);
  if (!(a > 0)) return 0;
  return a >= double(prefix) ? prefix : int64_t(a);
}

// docs/methods/grkv.md §4: anchor rank: higher raw SnapKV score first (NaN lowest, -0 == +0), ties to the lower position. Unique per
// position, so "the top k keys" is a well-defined set on both backends.
KVT_HD uint64_t grkv_anchor_key(float score, int64_t pos) {
  return (uint64_t(score_order_bits(score)) << 32) | uint64_t(~uint32_t(pos));
}

// Flags of the diagnostics row (kvtrim.h KVT_GRKV_DIAG_FLAGS).
constexpr int kGrkvSkipped = 1, kGrkvDroppedV = 2, kGrkvDroppedK = 4, kGrkvNonfiniteV = 8, kGrkvNonfiniteKV = 16,
              kGrkvNotSpd = 32;
constexpr int kGrkvDiagCols = 14;
constexpr int kCgTol = 0, kCgMaxIter = 1, kCgCurvature = 2, kCgNotRun = 3;

// Per-KV-head state, filled phase by phase (host memory on CPU, device memory on CUDA).
struct GrkvHead {
  int32_t count;   // retained slots S (counts[h], clamped to the capacities)
  int32_t prefix;  // |P|: retained positions < N - W
  int32_t anchors; // floor(|P| * gamma)
  int32_t mut;     // R = |P| - anchors
  int32_t active;  // 1 while the fit runs (R > 0 and rows > 0)
  int32_t flags;
  int32_t chosen;
  int32_t spd_info;
  // steps (V then K): first-cut scale, final scale, shrinks, squared distance of the rounded rows
  double n0[2], nd[2], scale[2], dist2[2];
  int32_t shrinks[2];
  int32_t nonfinite[2];  // rows of the value step / key step not all finite
  // objectives: loss parts (weighted squared output error) and totals
  double loss[3];
  double L[3];
  // conjugate gradients
  double rr, bn;
  int32_t cg_iters, cg_stop, cg_active, pad_;
};

// docs/methods/grkv.md §7.3: first-cut scale min(1, cap*||X0|| / max(||D||, 1e-30)); an infinite cap gives 1; a NaN norm gives NaN (so
// the candidate becomes non-finite and is skipped, as in the reference).
KVT_HD double grkv_cap_scale(double cap, double n0, double nd) {
  if (!(cap <= 1.79e308)) return 1.0;
  if (!(nd == nd) || !(n0 == n0)) return NAN;
  const double s = cap * n0 / (nd > 1e-30 ? nd : 1e-30);
  return s < 1.0 ? s : 1.0;
}

// docs/methods/grkv.md §7.3/§11.10: the recheck applies to finite caps on 16-bit storage only. (An f32 cache keeps the fp32 fit result;
// its rounding noise, ~1e-7 relative, would otherwise decide shrinks at random.)
KVT_HD bool grkv_recheck(double cap, int dt) { return cap <= 1.79e308 && (dt == kF16 || dt == kBF16); }
KVT_HD double grkv_cap_limit(double cap, double n0) { return cap * n0 * (1.0 + 1e-9); }

// docs/methods/grkv.md §7.3 recheck state machine, shared by both backends. `dist2(s)` returns ||round(X0 + s*D) - X0||^2 (a reduction
// over the head's mutable rows; on CUDA all threads of the CTA call it). Returns the final scale; sets shrinks,
// dropped and the final squared distance.
template <typename Dist2>
KVT_HD double grkv_step_scale(double cap, double n0, double nd, int dt, Dist2 dist2, int32_t* shrinks, bool* dropped,
                              double* final_dist2) {
  double s = grkv_cap_scale(cap, n0, nd);
  double d2 = dist2(s);
  *shrinks = 0;
  *dropped = false;
  if (grkv_recheck(cap, dt)) {
    const double limit = grkv_cap_limit(cap, n0);
    while (sqrt(d2) > limit && *shrinks < 4) {
      s *= 0.9;
      (*shrinks)++;
      d2 = dist2(s);
    }
    if (sqrt(d2) > limit) {
      s = 0.0;
      d2 = 0.0;
      *dropped = true;
    }
  }
  *final_dist2 = d2;
  return s;
}

// The candidate row value round(X0 + s*D), computed in f32 like a kernel writing the cache.
KVT_HD float grkv_candidate(float x0, double s, float delta, int dt) {
  return round_to_storage(x0 + float(s) * delta, dt);
}

// docs/methods/grkv.md §7.3 acceptance (per KV head, §11.7): the lowest objective among {unchanged, value-only, key+value}, the earlier
// on exact ties; a candidate with a non-finite entry or objective is skipped. accept = 1: the joint candidate
// whenever it is finite (GRKV-W "earliest" applies the joint result), else value-only, else unchanged.
KVT_HD int grkv_choose(const double L[3], bool ok1, bool ok2, int accept) {
  if (accept == 1) return ok2 && finite_d(L[2]) ? 2 : ok1 && finite_d(L[1]) ? 1 : 0;  // joint (GRKV-W "earliest")
  int chosen = 0;
  const bool ok[3] = {true, ok1, ok2};
  for (int i = 1; i < 3; i++) {
    if (!ok[i] || !finite_d(L[i])) continue;
    if (!finite_d(L[chosen]) || L[i] < L[chosen]) chosen = i;
  }
  return chosen;
}

// ---- conjugate gradients on (J_w J_w^T + lambda I) x = b from x = 0 (docs/methods/grkv.md §7.2, reference grkvMergeRef step 4).
// Start: rr = ||b||^2, bn = ||b||; converged at once when sqrt(rr) <= tol*bn (b = 0).
KVT_HD void grkv_cg_start(GrkvHead& st, double rr, double tol, int cg_iters) {
  st.rr = rr;
  st.bn = sqrt(rr);
  st.cg_iters = 0;
  if (sqrt(rr) <= tol * st.bn) {
    st.cg_stop = kCgTol;
    st.cg_active = 0;
  } else {
    st.cg_stop = cg_iters > 0 ? kCgMaxIter : kCgNotRun;
    st.cg_active = cg_iters > 0;
  }
}
// Step size alpha = rr / pAp, or stop (returns false) on non-positive or non-finite curvature.
KVT_HD bool grkv_cg_alpha(GrkvHead& st, double pAp, double* alpha) {
  if (!(pAp > 0) || !finite_d(pAp)) {
    st.cg_stop = kCgCurvature;
    st.cg_active = 0;
    return false;
  }
  *alpha = st.rr / pAp;
  return true;
}
// After x += alpha p, res -= alpha Ap: returns beta (p = res + beta p), or stops at the tolerance / iteration limit.
KVT_HD double grkv_cg_after(GrkvHead& st, double rr_new, double tol, int cg_iters) {
  st.cg_iters++;
  const double beta = rr_new / st.rr;
  st.rr = rr_new;
  if (sqrt(rr_new) <= tol * st.bn) {
    st.cg_stop = kCgTol;
    st.cg_active = 0;
  } else if (st.cg_iters >= cg_iters) {
    st.cg_stop = kCgMaxIter;
    st.cg_active = 0;
  }
  return beta;
}

// Fills one diagnostics row from the final state.
KVT_HD void grkv_diag_row(const GrkvHead& st, float* row, int64_t stride) {
  const double nan = NAN;
  row[0 * stride] = float(st.chosen);
  row[1 * stride] = float(st.L[0]);
  row[2 * stride] = float(st.L[1]);
  row[3 * stride] = float(st.L[2]);
  row[4 * stride] = float(st.scale[0]);
  row[5 * stride] = float(st.scale[1]);
  row[6 * stride] = float(st.shrinks[0]);
  row[7 * stride] = float(st.shrinks[1]);
  row[8 * stride] = float(st.cg_iters);
  row[9 * stride] = float(st.bn > 0 ? sqrt(st.rr) / st.bn : (st.cg_stop == kCgNotRun ? nan : 0.0));
  row[10 * stride] = float(st.cg_stop);
  row[11 * stride] = float(st.mut);
  row[12 * stride] = float(st.count - st.mut);
  row[13 * stride] = float(st.flags);
}

}  // namespace kvt
