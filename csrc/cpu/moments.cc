// The moment-state merge on the CPU backend (docs/methods/momentkv.md §4.3): per (head, segment) a transient state built
// window by window with the exact pairwise (Chan) update, then the segment states merged in order into the persistent
// state. The partition that fixes the reduction order is math/momentkv.h's, shared with the CUDA kernels
// (cuda/moments.cu), so the result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/gemm.h"
#include "cpu/rows.h"
#include "math/momentkv.h"

namespace kvt {
namespace cpu {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Moment merge (docs/methods/momentkv.md §4.3) over the fixed partition of math/momentkv.h.

// Rows of window [p, p + w) of head h to merge, as a bit mask. `j` is the cursor into the head's sorted list.
uint32_t window_mask(const RowSource& src, int64_t h, int64_t p, int w, int64_t& j, int64_t c) {
  const uint32_t full = w == 32 ? 0xffffffffu : ((1u << w) - 1u);
  if (src.mode == RowSource::kLabel) {
    const View& L = *src.label;
    const int32_t* row = L.ptr<int32_t>() + h * L.stride[0];
    uint32_t m = 0;
    for (int t = 0; t < w; t++)
      if (row[(p + t) * L.stride[1]] == src.value) m |= 1u << t;
    return m;
  }
  const View& I = *src.idx;
  const int32_t* list = I.ptr<int32_t>() + h * I.stride[0];
  uint32_t in = 0;
  while (j < c) {
    const int64_t x = list[j * I.stride[1]];
    if (x >= p + w) break;
    if (x >= p) in |= 1u << (x - p);
    j++;
  }
  return src.mode == RowSource::kList ? in : (full & ~in);
}

// Segment state (math/momentkv.h seg_state_floats): n, r_k[d], r_v[dv], s_k[d], s_v[dv], M[dv][d].
void merge_segment(const View& k, const View& v, const RowSource& src, const MomentViews& m, int64_t h, int64_t p0,
                   int64_t p1, float* st) {
  const int64_t d = k.shape[2], dv = v.shape[2];
  const mkv::SegState<float> ss = mkv::seg_state(st, d, dv);
  float *rk = ss.rk, *rv = ss.rv, *sk = ss.sk, *sv = ss.sv, *M = ss.M;
  std::fill(st, st + mkv::seg_state_floats(d, dv), 0.f);
  const float n_state = m.n().ptr<float>()[h];
  bool shifted = n_state > 0.f;
  if (shifted) {
    std::copy(m.mu_k().ptr<float>() + h * d, m.mu_k().ptr<float>() + (h + 1) * d, sk);
    std::copy(m.mu_v().ptr<float>() + h * dv, m.mu_v().ptr<float>() + (h + 1) * dv, sv);
  }
  int64_t j = 0, c = 0;
  if (src.mode != RowSource::kLabel) {
    const View& I = *src.idx;
    c = src.cnt->ptr<int32_t>()[h * src.cnt->stride[0]];
    const int32_t* list = I.ptr<int32_t>() + h * I.stride[0];
    int64_t lo = 0, hi = c;  // first entry >= p0
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (list[mid * I.stride[1]] < p0) lo = mid + 1;
      else hi = mid;
    }
    j = lo;
  }
  std::vector<float> kb(static_cast<size_t>(mkv::kWindow * d)), vb(static_cast<size_t>(mkv::kWindow * dv));
  std::vector<float> yk(static_cast<size_t>(d)), yv(static_cast<size_t>(dv)), dk(static_cast<size_t>(d)),
      dvv(static_cast<size_t>(dv)), tmp(static_cast<size_t>(dv * d)), vt(static_cast<size_t>(dv * mkv::kWindow)), buf;
  float n = 0.f;
  for (int64_t p = p0; p < p1; p += mkv::kWindow) {
    const int w = int(std::min<int64_t>(mkv::kWindow, p1 - p));
    const uint32_t mask = window_mask(src, h, p, w, j, c);
    if (!mask) continue;
    int nc = 0;
    for (int t = 0; t < w; t++) {
      if (!((mask >> t) & 1u)) continue;
      const float* kr = load_row(k, h, p + t, buf);
      std::copy(kr, kr + d, kb.begin() + nc * d);
      const float* vr = load_row(v, h, p + t, buf);
      std::copy(vr, vr + dv, vb.begin() + nc * dv);
      nc++;
    }
    if (!shifted) {  // shift = mean of the segment's first window
      for (int64_t x = 0; x < d; x++) {
        float acc = 0.f;
        for (int r = 0; r < nc; r++) acc += kb[size_t(r * d + x)];
        sk[x] = acc / float(nc);
      }
      for (int64_t x = 0; x < dv; x++) {
        float acc = 0.f;
        for (int r = 0; r < nc; r++) acc += vb[size_t(r * dv + x)];
        sv[x] = acc / float(nc);
      }
      shifted = true;
    }
    // Window batch: y = x − s, ȳ = Σ y / n_c, δ = ȳ − r; rows centred at ȳ.
    const float fn = float(nc);
    for (int64_t x = 0; x < d; x++) {
      float acc = 0.f;
      for (int r = 0; r < nc; r++) acc += (kb[size_t(r * d + x)] -= sk[x]);
      yk[size_t(x)] = acc / fn;
      dk[size_t(x)] = yk[size_t(x)] - rk[x];
    }
    for (int64_t x = 0; x < dv; x++) {
      float acc = 0.f;
      for (int r = 0; r < nc; r++) acc += (vb[size_t(r * dv + x)] -= sv[x]);
      yv[size_t(x)] = acc / fn;
      dvv[size_t(x)] = yv[size_t(x)] - rv[x];
    }
    const mkv::Chan ch = mkv::chan(n, fn);
    for (int r = 0; r < nc; r++) {
      for (int64_t x = 0; x < d; x++) kb[size_t(r * d + x)] -= yk[size_t(x)];
      for (int64_t x = 0; x < dv; x++) vb[size_t(r * dv + x)] -= yv[size_t(x)];
    }
    // The window's centred cross products Σ_r v_r k_rᵀ [dv x d] as one product of the dispatched register-tiled
    // GEMM (csrc/cpu/simd.h; summed over r in order, as the rank-one updates were), then the Chan correction.
    for (int r = 0; r < nc; r++)
      for (int64_t a = 0; a < dv; a++) vt[size_t(a * nc + r)] = vb[size_t(r * dv + a)];
    gemm_nn(dv, d, nc, vt.data(), nc, kb.data(), d, tmp.data(), d, false);
    for (int64_t a = 0; a < dv; a++) {
      const float fdv = ch.f * dvv[size_t(a)];
      float* Mr = M + a * d;
      const float* Tr = &tmp[size_t(a * d)];
      for (int64_t x = 0; x < d; x++) Mr[x] += Tr[x] + fdv * dk[size_t(x)];
    }
    for (int64_t x = 0; x < d; x++) rk[x] += dk[size_t(x)] * ch.wb;
    for (int64_t x = 0; x < dv; x++) rv[x] += dvv[size_t(x)] * ch.wb;
    n = ch.n;
  }
  st[0] = n;
}

// Merges the segment states of head h, in segment order, into the persistent state. The merge runs in residual
// form about one common shift c (the persistent mean when the state is non-empty, else the first non-empty
// segment's shift): δ = (s_seg − c) + r_seg − r, r += δ·wb; the mean c + r is written once at the end.
void merge_segments_into(const MomentViews& m, int64_t h, int64_t d, int64_t dv, const float* seg, int64_t S,
                         int64_t sf) {
  float* n = m.n().ptr<float>() + h;
  float* mk = m.mu_k().ptr<float>() + h * d;
  float* mv = m.mu_v().ptr<float>() + h * dv;
  float* M = m.m().ptr<float>() + h * dv * d;
  std::vector<float> ck(mk, mk + d), cv(mv, mv + dv), rk(static_cast<size_t>(d), 0.f), rv(static_cast<size_t>(dv), 0.f);
  std::vector<float> dk(static_cast<size_t>(d)), dvv(static_cast<size_t>(dv));
  float na = *n;
  bool any = false;
  for (int64_t si = 0; si < S; si++) {
    const mkv::SegState<const float> sg = mkv::seg_state(seg + si * sf, d, dv);
    const float nb = *sg.n;
    if (nb == 0.f) continue;
    const float *srk = sg.rk, *srv = sg.rv, *ssk = sg.sk, *ssv = sg.sv, *sM = sg.M;
    if (!any && na == 0.f) {  // common shift = the first non-empty segment's mean
      for (int64_t x = 0; x < d; x++) ck[size_t(x)] = ssk[x] + srk[x];
      for (int64_t x = 0; x < dv; x++) cv[size_t(x)] = ssv[x] + srv[x];
    }
    any = true;
    const mkv::Chan ch = mkv::chan(na, nb);
    for (int64_t x = 0; x < d; x++) dk[size_t(x)] = mkv::seg_delta(ssk[x], ck[size_t(x)], srk[x], rk[size_t(x)]);
    for (int64_t x = 0; x < dv; x++) dvv[size_t(x)] = mkv::seg_delta(ssv[x], cv[size_t(x)], srv[x], rv[size_t(x)]);
    for (int64_t a = 0; a < dv; a++) {
      const float fdv = ch.f * dvv[size_t(a)];
      float* Mr = M + a * d;
      const float* Sr = sM + a * d;
      for (int64_t x = 0; x < d; x++) Mr[x] += Sr[x] + fdv * dk[size_t(x)];
    }
    for (int64_t x = 0; x < d; x++) rk[size_t(x)] += dk[size_t(x)] * ch.wb;
    for (int64_t x = 0; x < dv; x++) rv[size_t(x)] += dvv[size_t(x)] * ch.wb;
    na = ch.n;
  }
  if (!any) return;
  for (int64_t x = 0; x < d; x++) mk[x] = ck[size_t(x)] + rk[size_t(x)];
  for (int64_t x = 0; x < dv; x++) mv[x] = cv[size_t(x)] + rv[size_t(x)];
  *n = na;
}

}  // namespace

void moments_merge(const View& k, const View& v, const RowSource& src, const MomentViews& m) {
  const int64_t H = k.shape[0], N = k.shape[1], d = k.shape[2], dv = v.shape[2];
  if (H == 0 || N == 0) return;
  const mkv::Partition P = mkv::merge_partition(N, H, d, dv);
  const int64_t S = P.segments, sf = mkv::seg_state_floats(d, dv);
  std::vector<float> seg(static_cast<size_t>(H * S * sf));
  parallel_for(H * S, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const int64_t h = t / S, s = t % S;
      const int64_t p0 = s * P.seg_len, p1 = std::min(N, p0 + P.seg_len);
      merge_segment(k, v, src, m, h, p0, p1, &seg[size_t(t * sf)]);
    }
  });
  parallel_for(H, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; h++) {
      merge_segments_into(m, h, d, dv, &seg[size_t(h * S * sf)], S, sf);
      // Non-finite statistics (a merged row held a NaN or ±Infinity, or an overflow): the head's means and
      // co-moment become NaN throughout (math/momentkv.h), the same on CUDA.
      float* mk = m.mu_k().ptr<float>() + h * d;
      float* mv = m.mu_v().ptr<float>() + h * dv;
      float* M = m.m().ptr<float>() + h * dv * d;
      bool finite = true;
      for (int64_t x = 0; x < d; x++) finite &= finite_f(mk[x]);
      for (int64_t x = 0; x < dv; x++) finite &= finite_f(mv[x]);
      for (int64_t x = 0; x < dv * d; x++) finite &= finite_f(M[x]);
      if (finite) continue;
      std::fill(mk, mk + d, NAN);
      std::fill(mv, mv + dv, NAN);
      std::fill(M, M + dv * d, NAN);
    }
  });
}

}  // namespace cpu
}  // namespace kvt
