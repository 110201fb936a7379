// MomentKV (spec/momentkv.md): C ABI entry points, validation and the CPU backend of the moment-state merge (§4.3),
// the normalisation-corrected decode attention (§4.4) and the multi-round moment-informed eviction (§5.2-§5.3).
// The per-element formulas and the partitions that fix the reduction order live in momentkv_math.h and are shared
// with the CUDA kernels (cuda/momentkv_*.cu).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/rows.h"
#include "momentkv_internal.h"
#include "momentkv_math.h"
#if defined(KVT_WITH_CUDA)
#include "cuda_status.h"
#endif

namespace kvt {

// ---------------------------------------------------------------------------------------------------------
// Validation helpers.

kvt_status check_moments(const kvt_moments* m, const View& ref, const char* ref_name, int64_t H, int64_t d, int64_t dv,
                         MomentViews* out) {
  if (!m) return fail(KVT_ERR_TYPE, "moments: missing");
  KVT_TRY(check_tensor(&m->n, "moments.n", 1, kMaskF32, "[H]", &out->n()));
  KVT_TRY(check_tensor(&m->mu_k, "moments.muK", 2, kMaskF32, "[H, d]", &out->mu_k()));
  KVT_TRY(check_tensor(&m->mu_v, "moments.muV", 2, kMaskF32, "[H, dv]", &out->mu_v()));
  KVT_TRY(check_tensor(&m->m, "moments.m", 3, kMaskF32, "[H, dv, d]", &out->m()));
  static const char* names[4] = {"moments.n", "moments.muK", "moments.muV", "moments.m"};
  for (int i = 0; i < 4; i++) {
    KVT_TRY(check_same_device(ref, ref_name, out->v[i], names[i]));
    if (!out->v[i].contiguous())
      return fail(KVT_ERR_TYPE, std::string(names[i]) + ": must be contiguous (the moment state is a packed f32 buffer)");
  }
  KVT_TRY(check_dim(out->n(), "moments.n", 0, H, "H (heads)"));
  KVT_TRY(check_dim(out->mu_k(), "moments.muK", 0, H, "H (heads)"));
  KVT_TRY(check_dim(out->mu_k(), "moments.muK", 1, d, "d (key dim)"));
  KVT_TRY(check_dim(out->mu_v(), "moments.muV", 0, H, "H (heads)"));
  KVT_TRY(check_dim(out->mu_v(), "moments.muV", 1, dv, "dv (value dim)"));
  KVT_TRY(check_dim(out->m(), "moments.m", 0, H, "H (heads)"));
  KVT_TRY(check_dim(out->m(), "moments.m", 1, dv, "dv (value dim)"));
  KVT_TRY(check_dim(out->m(), "moments.m", 2, d, "d (key dim)"));
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < i; j++) KVT_TRY(check_no_overlap(out->v[i], names[i], out->v[j], names[j]));
  if (!ref.on_cuda()) {
    for (int64_t h = 0; h < H; h++) {
      const float x = out->n().ptr<float>()[h];
      if (!(x >= 0.f && x < 3e38f))
        return fail(KVT_ERR_RANGE, "moments.n: n[" + std::to_string(h) + "] = " + std::to_string(x) +
                                       " must be a finite count >= 0 (is the state initialised?)");
    }
  }
  return KVT_OK;
}

kvt_status check_moments_no_overlap(const MomentViews& m, const View& v, const char* name) {
  static const char* names[4] = {"moments.n", "moments.muK", "moments.muV", "moments.m"};
  for (int i = 0; i < 4; i++) KVT_TRY(check_no_overlap(m.v[i], names[i], v, name));
  return KVT_OK;
}

// counts in [0, cap] and, for j < counts[h], strictly ascending positions in [0, N) (host memory only).
static kvt_status check_index_lists(const View& idx, const View& cnt, int64_t N, const char* idx_name) {
  const int64_t H = idx.shape[0], cap = idx.shape[1];
  for (int64_t h = 0; h < H; h++) {
    const int64_t c = cnt.ptr<int32_t>()[h * cnt.stride[0]];
    if (c < 0 || c > cap)
      return fail(KVT_ERR_RANGE, "counts: counts[" + std::to_string(h) + "] = " + std::to_string(c) +
                                     " must be in [0, " + std::to_string(cap) + "] (the capacity of " + idx_name + ")");
    int64_t prev = -1;
    for (int64_t j = 0; j < c; j++) {
      const int64_t i = idx.ptr<int32_t>()[h * idx.stride[0] + j * idx.stride[1]];
      if (i < 0 || i >= N || i <= prev)
        return fail(KVT_ERR_RANGE, std::string(idx_name) + ": row " + std::to_string(h) + " must hold strictly ascending positions in [0, " +
                                       std::to_string(N) + ") before counts[h]; entry " + std::to_string(j) + " is " +
                                       std::to_string(i));
      prev = i;
    }
  }
  return KVT_OK;
}

namespace cpu {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Moment merge (spec/momentkv.md §4.3) over the fixed partition of momentkv_math.h.

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

// Segment state (momentkv_math.h seg_state_floats): n, r_k[d], r_v[dv], s_k[d], s_v[dv], M[dv][d].
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
      dvv(static_cast<size_t>(dv)), tmp(static_cast<size_t>(d)), buf;
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
    for (int64_t a = 0; a < dv; a++) {
      std::fill(tmp.begin(), tmp.end(), 0.f);
      for (int r = 0; r < nc; r++) {
        const float va = vb[size_t(r * dv + a)];
        const float* kr = &kb[size_t(r * d)];
        for (int64_t x = 0; x < d; x++) tmp[size_t(x)] += va * kr[x];
      }
      const float fdv = ch.f * dvv[size_t(a)];
      float* Mr = M + a * d;
      for (int64_t x = 0; x < d; x++) Mr[x] += tmp[size_t(x)] + fdv * dk[size_t(x)];
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
    for (int64_t h = b; h < e; h++) merge_segments_into(m, h, d, dv, &seg[size_t(h * S * sf)], S, sf);
  });}

namespace {

// ---------------------------------------------------------------------------------------------------------
// Corrected decode attention (spec/momentkv.md §4.4): per (KV head, chunk of rows) partial softmax states for all
// G·T queries of the head (two-pass inside the chunk), then per query an in-order merge of the chunk states and
// the summary. Chunks of a fixed size: the result does not depend on the thread count.
constexpr int64_t kDecodeRows = 512;

struct DecodeArgs {
  View q, k, v, cnt, out;
  const MomentViews* m;
  int order;
  float scale;
  int clip_mode;  // 0 none, 1 scalar, 2 tensor
  float clip;
  View clip_t;
};

void decode(const DecodeArgs& A) {
  const int64_t Hq = A.q.shape[0], T = A.q.shape[1], d = A.q.shape[2];
  const int64_t Hkv = A.k.shape[0], cap = A.k.shape[1], dv = A.v.shape[2];
  const int64_t G = Hq / Hkv, Q = G * T;
  if (Hq == 0 || T == 0) return;
  std::vector<float> a(static_cast<size_t>(Hq * T * d));
  parallel_for(Hq * T, 16, [&](int64_t b, int64_t e) {
    std::vector<float> buf;
    for (int64_t r = b; r < e; r++) {
      const float* row = load_row(A.q, r / T, r % T, buf);
      for (int64_t c = 0; c < d; c++) a[size_t(r * d + c)] = row[c] * A.scale;
    }
  });
  const int64_t nch = std::max<int64_t>(1, (cap + kDecodeRows - 1) / kDecodeRows);
  const int64_t ps = dv + 2;  // partial state: m, l, acc[dv]
  std::vector<float> part(static_cast<size_t>(Hkv * nch * Q * ps));
  auto count_of = [&](int64_t h) { return int64_t(A.cnt.ptr<int32_t>()[h * A.cnt.stride[0]]); };
  parallel_for(Hkv * nch, 1, [&](int64_t b, int64_t e) {
    std::vector<float> buf, logits;
    for (int64_t t = b; t < e; t++) {
      const int64_t h = t / nch, ch = t % nch;
      const int64_t r0 = ch * kDecodeRows, r1 = std::min(count_of(h), r0 + kDecodeRows);
      float* P = &part[size_t(t * Q * ps)];
      for (int64_t q = 0; q < Q; q++) {
        P[q * ps] = -INFINITY;
        std::fill(P + q * ps + 1, P + (q + 1) * ps, 0.f);
      }
      if (r0 >= r1) continue;
      const int64_t L = r1 - r0;
      const float* ah = &a[size_t(h * Q * d)];  // queries of KV head h: index q = g*T + t
      logits.resize(size_t(Q * L));
      for (int64_t r = 0; r < L; r++) {
        const float* kr = load_row(A.k, h, r0 + r, buf);
        for (int64_t q = 0; q < Q; q++) logits[size_t(q * L + r)] = dot8(ah + q * d, kr, d);
      }
      for (int64_t q = 0; q < Q; q++) {
        float mx = -INFINITY;
        for (int64_t r = 0; r < L; r++) mx = std::max(mx, logits[size_t(q * L + r)]);
        P[q * ps] = mx;
        for (int64_t r = 0; r < L; r++) logits[size_t(q * L + r)] = expf(logits[size_t(q * L + r)] - mx);
      }
      for (int64_t r = 0; r < L; r++) {
        const float* vr = load_row(A.v, h, r0 + r, buf);
        for (int64_t q = 0; q < Q; q++) {
          const float p = logits[size_t(q * L + r)];
          float* acc = P + q * ps + 2;
          P[q * ps + 1] += p;
          for (int64_t c = 0; c < dv; c++) acc[c] += p * vr[c];
        }
      }
    }
  });
  parallel_for(Hq * T, 4, [&](int64_t b, int64_t e) {
    std::vector<float> acc(static_cast<size_t>(dv)), oe(static_cast<size_t>(dv));
    for (int64_t r = b; r < e; r++) {
      const int64_t j = r / T, t = r % T, h = j / G, q = (j % G) * T + t;
      const float* ar = &a[size_t(r * d)];
      float mx = -INFINITY;
      for (int64_t ch = 0; ch < nch; ch++) mx = std::max(mx, part[size_t(((h * nch + ch) * Q + q) * ps)]);
      float l = 0.f;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t ch = 0; ch < nch; ch++) {
        const float* P = &part[size_t(((h * nch + ch) * Q + q) * ps)];
        const float f = mkv::rescale(P[0], mx);
        l += P[1] * f;
        for (int64_t c = 0; c < dv; c++) acc[size_t(c)] += P[2 + c] * f;
      }
      const bool any = count_of(h) > 0 && l > 0.f;
      const float lse = any ? mx + logf(l) : -INFINITY;
      const float inv = any ? 1.f / l : 0.f;
      float* o = A.out.ptr<float>() + j * A.out.stride[0] + t * A.out.stride[1];
      const int64_t os = A.out.stride[2];
      const float n = A.m ? A.m->n().ptr<float>()[h] : 0.f;
      if (!(n > 0.f)) {
        for (int64_t c = 0; c < dv; c++) o[c * os] = any ? acc[size_t(c)] * inv : 0.f;
        continue;
      }
      const float* muk = A.m->mu_k().ptr<float>() + h * d;
      const float* muv = A.m->mu_v().ptr<float>() + h * dv;
      const float amu = dot8(ar, muk, d);
      if (A.order == 1) {
        const float* M = A.m->m().ptr<float>() + h * dv * d;
        float nrm2 = 0.f;
        for (int64_t c = 0; c < dv; c++) {
          oe[size_t(c)] = dot8(M + c * d, ar, d) / n;
          nrm2 += oe[size_t(c)] * oe[size_t(c)];
        }
        float f = 1.f;
        if (A.clip_mode == 1) f = mkv::clip_factor(sqrtf(nrm2), A.clip);
        if (A.clip_mode == 2) f = mkv::clip_factor(sqrtf(nrm2), A.clip_t.ptr<float>()[h * A.clip_t.stride[0]]);
        for (int64_t c = 0; c < dv; c++) oe[size_t(c)] = muv[c] + oe[size_t(c)] * f;
      } else {
        for (int64_t c = 0; c < dv; c++) oe[size_t(c)] = muv[c];
      }
      const float lam = mkv::nc_lambda(lse, n, amu);
      for (int64_t c = 0; c < dv; c++) {
        const float orr = any ? acc[size_t(c)] * inv : 0.f;
        o[c * os] = lam * orr + (1.f - lam) * oe[size_t(c)];
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Summary subspace basis (spec/momentkv.md §5.2; algorithm and constants in momentkv_math.h). Serial, f32.

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

// ---------------------------------------------------------------------------------------------------------
// Multi-round moment-informed eviction (spec/momentkv.md §5.3).
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
          const float key = use ? mkv::mi_key(score(h, i), rho[size_t(c)], eps_mean) : score(h, i);
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

}  // namespace
}  // namespace cpu
}  // namespace kvt

using namespace kvt;

// ---------------------------------------------------------------------------------------------------------
// C ABI.

extern "C" kvt_status kvt_moments_merge(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* evicted_indices,
                                        const kvt_tensor* counts, const kvt_moments* moments, kvt_stream stream) {
  View k, v, idx, cnt;
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[H, N, d]", &k));
  KVT_TRY(check_tensor(values, "values", 3, kMaskFloat, "[H, N, dv]", &v));
  KVT_TRY(check_tensor(evicted_indices, "evictedIndices", 2, kMaskI32, "[H, cap]", &idx));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[H]", &cnt));
  KVT_TRY(check_same_device(k, "keys", v, "values"));
  KVT_TRY(check_same_device(k, "keys", idx, "evictedIndices"));
  KVT_TRY(check_same_device(k, "keys", cnt, "counts"));
  const int64_t H = k.shape[0], N = k.shape[1], d = k.shape[2], dv = v.shape[2];
  KVT_TRY(check_dim(v, "values", 0, H, "H of keys"));
  KVT_TRY(check_dim(v, "values", 1, N, "N of keys"));
  KVT_TRY(check_dim(idx, "evictedIndices", 0, H, "H of keys"));
  KVT_TRY(check_dim(cnt, "counts", 0, H, "H of keys"));
  MomentViews m;
  KVT_TRY(check_moments(moments, k, "keys", H, d, dv, &m));
  KVT_TRY(check_moments_no_overlap(m, k, "keys"));
  KVT_TRY(check_moments_no_overlap(m, v, "values"));
  KVT_TRY(check_moments_no_overlap(m, idx, "evictedIndices"));
  KVT_TRY(check_moments_no_overlap(m, cnt, "counts"));
  if (!k.on_cuda()) KVT_TRY(check_index_lists(idx, cnt, N, "evictedIndices"));
  if (H == 0 || N == 0 || idx.shape[1] == 0) return KVT_OK;
#if defined(KVT_WITH_CUDA)
  if (k.on_cuda()) {
    KVT_CUDA_TRY(set_device(k.device_id));
    cuda::RowSel sel{0, t2(idx), t2(cnt), cuda::T2{nullptr, kI32, 0, 0, 0, 0}, 0};
    return cuda_status(cuda::moments_merge(t3(k), t3(v), sel, cuda_moments(m), static_cast<cudaStream_t>(stream)),
                       "MomentState.merge");
  }
#else
  (void)stream;
#endif
  cpu::RowSource src;
  src.mode = cpu::RowSource::kList;
  src.idx = &idx;
  src.cnt = &cnt;
  cpu::moments_merge(k, v, src, m);
  return KVT_OK;
}

extern "C" kvt_status kvt_decode_attention(const kvt_tensor* queries, const kvt_tensor* keys, const kvt_tensor* values,
                                           const kvt_tensor* counts, const kvt_moments* moments, const kvt_tensor* clip,
                                           const kvt_decode_opts* opts, const kvt_tensor* out, kvt_stream stream) {
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  if (!queries) return fail(KVT_ERR_TYPE, "queries: missing tensor");
  const int qnd = queries->ndim;
  if (qnd != 2 && qnd != 3)
    return fail(KVT_ERR_TYPE, "queries: expected a 2-D [Hq, d] or 3-D [Hq, T, d] tensor, got " + std::to_string(qnd) + "-D");
  View q, k, v, cnt, o;
  KVT_TRY(check_tensor(queries, "queries", qnd, kMaskFloat, qnd == 2 ? "[Hq, d]" : "[Hq, T, d]", &q));
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[Hkv, cap, d]", &k));
  KVT_TRY(check_tensor(values, "values", 3, kMaskFloat, "[Hkv, cap, dv]", &v));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[Hkv]", &cnt));
  KVT_TRY(check_tensor(out, "out", qnd, kMaskF32, qnd == 2 ? "[Hq, dv]" : "[Hq, T, dv]", &o));
  if (v.dtype != k.dtype)
    return fail(KVT_ERR_TYPE, std::string("values: expected the dtype of keys (") + dtype_name(k.dtype) + "), got " +
                                  dtype_name(v.dtype));
  const View* all[] = {&v, &cnt, &o};
  const char* names[] = {"values", "counts", "out"};
  for (int i = 0; i < 3; i++) KVT_TRY(check_same_device(k, "keys", *all[i], names[i]));
  KVT_TRY(check_same_device(k, "keys", q, "queries"));
  // Views as [Hq, T, d] / [Hq, T, dv].
  if (qnd == 2) {
    q.shape[2] = q.shape[1];
    q.stride[2] = q.stride[1];
    q.shape[1] = 1;
    q.stride[1] = 0;
    q.ndim = 3;
    o.shape[2] = o.shape[1];
    o.stride[2] = o.stride[1];
    o.shape[1] = 1;
    o.stride[1] = 0;
    o.ndim = 3;
  }
  const int64_t Hq = q.shape[0], T = q.shape[1], d = q.shape[2];
  const int64_t Hkv = k.shape[0], cap = k.shape[1], dv = v.shape[2];
  if (Hkv < 1) return fail(KVT_ERR_RANGE, "keys: Hkv (dimension 0) must be >= 1");
  if (Hq % Hkv != 0)
    return fail(KVT_ERR_RANGE, "queries: Hq (" + std::to_string(Hq) + ") must be a multiple of Hkv (" +
                                   std::to_string(Hkv) + ", dimension 0 of keys) for grouped-query attention");
  KVT_TRY(check_dim(k, "keys", 2, d, "d of queries"));
  KVT_TRY(check_dim(v, "values", 0, Hkv, "Hkv of keys"));
  KVT_TRY(check_dim(v, "values", 1, cap, "cap of keys"));
  KVT_TRY(check_dim(cnt, "counts", 0, Hkv, "Hkv of keys"));
  if (o.shape[0] != Hq || o.shape[1] != T || o.shape[2] != dv) {
    const int64_t want[3] = {Hq, T, dv};
    const int64_t want2[2] = {Hq, dv};
    return fail(KVT_ERR_RANGE, "out: expected shape " + (qnd == 2 ? shape_str(want2, 2) : shape_str(want, 3)) +
                                   ", got " + shape_str(out->shape, qnd));
  }
  if (opts->order != 0 && opts->order != 1) return fail(KVT_ERR_RANGE, "order: must be 0 or 1, got " + std::to_string(opts->order));
  double scale = opts->scale;
  if (scale == 0.0) scale = d > 0 ? 1.0 / std::sqrt(double(d)) : 1.0;
  if (!(scale > 0.0 && scale < 1e30)) return fail(KVT_ERR_RANGE, "scale: must be a finite number > 0, got " + std::to_string(opts->scale));
  const View* ins[] = {&q, &k, &v, &cnt};
  const char* in_names[] = {"queries", "keys", "values", "counts"};
  for (int i = 0; i < 4; i++) KVT_TRY(check_no_overlap(o, "out", *ins[i], in_names[i]));
  MomentViews m;
  if (moments) {
    KVT_TRY(check_moments(moments, k, "keys", Hkv, d, dv, &m));
    KVT_TRY(check_moments_no_overlap(m, o, "out"));
  }
  int clip_mode = 0;
  View cl;
  if (clip) {
    KVT_TRY(check_tensor(clip, "clip", 1, kMaskF32, "[Hkv]", &cl));
    KVT_TRY(check_same_device(k, "keys", cl, "clip"));
    KVT_TRY(check_dim(cl, "clip", 0, Hkv, "Hkv of keys"));
    KVT_TRY(check_no_overlap(o, "out", cl, "clip"));
    clip_mode = 2;
    if (!cl.on_cuda())
      for (int64_t h = 0; h < Hkv; h++) {
        const float x = cl.ptr<float>()[h * cl.stride[0]];
        if (!(x >= 0.f))
          return fail(KVT_ERR_RANGE, "clip: clip[" + std::to_string(h) + "] = " + std::to_string(x) + " must be >= 0");
      }
  } else if (opts->use_clip) {
    if (!(opts->clip >= 0.0)) return fail(KVT_ERR_RANGE, "clip: must be >= 0, got " + std::to_string(opts->clip));
    clip_mode = 1;
  }
  if (!k.on_cuda()) {
    for (int64_t h = 0; h < Hkv; h++) {
      const int64_t c = cnt.ptr<int32_t>()[h * cnt.stride[0]];
      if (c < 0 || c > cap)
        return fail(KVT_ERR_RANGE, "counts: counts[" + std::to_string(h) + "] = " + std::to_string(c) + " must be in [0, " +
                                       std::to_string(cap) + "] (the capacity of keys)");
    }
  }
  if (Hq == 0 || T == 0 || dv == 0) return KVT_OK;
#if defined(KVT_WITH_CUDA)
  if (k.on_cuda()) {
    if (d > cuda::kDecodeMaxDim || dv > cuda::kDecodeMaxDim)
      return fail(KVT_ERR_RANGE, "keys: the CUDA decodeAttention supports d and dv up to 256, got d = " +
                                     std::to_string(d) + ", dv = " + std::to_string(dv));
    KVT_CUDA_TRY(set_device(k.device_id));
    cuda::DecodeParams p{opts->order, float(scale), clip_mode, float(opts->clip),
                         clip_mode == 2 ? t2(cl) : cuda::T2{nullptr, kF32, 0, 0, 0, 0}};
    cuda::Moments cm{};
    if (moments) cm = cuda_moments(m);
    return cuda_status(cuda::decode_attention(t3(q), t3(k), t3(v), t2(cnt), moments ? &cm : nullptr, p, o3(o),
                                              static_cast<cudaStream_t>(stream)),
                       "decodeAttention");
  }
#else
  (void)stream;
#endif
  cpu::DecodeArgs A;
  A.q = q;
  A.k = k;
  A.v = v;
  A.cnt = cnt;
  A.out = o;
  A.m = moments ? &m : nullptr;
  A.order = opts->order;
  A.scale = float(scale);
  A.clip_mode = clip_mode;
  A.clip = float(opts->clip);
  A.clip_t = cl;
  cpu::decode(A);
  return KVT_OK;
}

extern "C" kvt_status kvt_momentkv_select(const kvt_tensor* scores, const kvt_tensor* keys, const kvt_tensor* values,
                                          const kvt_momentkv_select_opts* opts, const kvt_tensor* indices,
                                          const kvt_tensor* counts, const kvt_moments* moments,
                                          const kvt_tensor* evicted_round, kvt_stream stream) {
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_momentkv_select_opts o = *opts;
  View s, k, v, idx, cnt, er;
  KVT_TRY(check_tensor(scores, "scores", 2, kMaskF32, "[H, N]", &s));
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[H, N, d]", &k));
  KVT_TRY(check_tensor(values, "values", 3, kMaskFloat, "[H, N, dv]", &v));
  KVT_TRY(check_tensor(indices, "indices", 2, kMaskI32, "[H, cap]", &idx));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[H]", &cnt));
  if (evicted_round) KVT_TRY(check_tensor(evicted_round, "evictedRound", 2, kMaskI32, "[H, N]", &er));
  const View* all[] = {&k, &v, &idx, &cnt, &er};
  const char* names[] = {"keys", "values", "indices", "counts", "evictedRound"};
  for (int i = 0; i < (evicted_round ? 5 : 4); i++) KVT_TRY(check_same_device(s, "scores", *all[i], names[i]));
  const int64_t H = s.shape[0], N = s.shape[1], d = k.shape[2], dv = v.shape[2];
  if (H < 1 || N < 1) return fail(KVT_ERR_RANGE, "scores: H and N must be >= 1, got shape " + shape_str(s.shape, 2));
  if (H * N >= (int64_t(1) << 31)) return fail(KVT_ERR_RANGE, "scores: H*N must be < 2^31");
  KVT_TRY(check_dim(k, "keys", 0, H, "H of scores"));
  KVT_TRY(check_dim(k, "keys", 1, N, "N of scores"));
  KVT_TRY(check_dim(v, "values", 0, H, "H of scores"));
  KVT_TRY(check_dim(v, "values", 1, N, "N of scores"));
  KVT_TRY(check_dim(idx, "indices", 0, H, "H of scores"));
  KVT_TRY(check_dim(cnt, "counts", 0, H, "H of scores"));
  if (evicted_round) {
    KVT_TRY(check_dim(er, "evictedRound", 0, H, "H of scores"));
    KVT_TRY(check_dim(er, "evictedRound", 1, N, "N of scores"));
  }
  KVT_TRY(check_range(o.keep, 1, double(N), "keep"));
  KVT_TRY(check_range(o.rounds, 1, 1 << 20, "rounds"));
  KVT_TRY(check_range(o.r, 0, mkv::kMaxR, "r"));
  KVT_TRY(check_range(o.eps, 0, 1e30, "eps"));
  if (o.mi != 0 && o.mi != 1) return fail(KVT_ERR_RANGE, "mi: must be 0 or 1");
  if (idx.shape[1] < o.keep)
    return fail(KVT_ERR_RANGE, "indices: capacity (dimension 1) must be at least keep = " + std::to_string(o.keep) +
                                   ", got " + std::to_string(idx.shape[1]));
  MomentViews m;
  KVT_TRY(check_moments(moments, s, "scores", H, d, dv, &m));
  const View* ins[] = {&s, &k, &v};
  const char* in_names[] = {"scores", "keys", "values"};
  const View* outs[] = {&idx, &cnt, &er};
  const char* out_names[] = {"indices", "counts", "evictedRound"};
  const int nout = evicted_round ? 3 : 2;
  for (int a = 0; a < nout; a++) {
    for (int i = 0; i < 3; i++) KVT_TRY(check_no_overlap(*outs[a], out_names[a], *ins[i], in_names[i]));
    for (int b = 0; b < a; b++) KVT_TRY(check_no_overlap(*outs[a], out_names[a], *outs[b], out_names[b]));
    KVT_TRY(check_moments_no_overlap(m, *outs[a], out_names[a]));
  }
  for (int i = 0; i < 3; i++) KVT_TRY(check_moments_no_overlap(m, *ins[i], in_names[i]));
  if (!s.on_cuda()) {
    for (int64_t h = 0; h < H; h++) {
      int64_t prot = 0;
      for (int64_t i = 0; i < N; i++) {
        const float x = s.ptr<float>()[h * s.stride[0] + i * s.stride[1]];
        if (x == INFINITY) prot++;
        else if (!(x > -INFINITY && x < INFINITY))
          return fail(KVT_ERR_RANGE, "scores: scores[" + std::to_string(h) + ", " + std::to_string(i) + "] = " +
                                         std::to_string(x) + " (must be finite, or +Infinity for a protected token)");
      }
      if (prot > o.keep)
        return fail(KVT_ERR_RANGE, "keep: head " + std::to_string(h) + " has " + std::to_string(prot) +
                                       " protected (+Infinity) tokens, more than keep = " + std::to_string(o.keep));
    }
  }
#if defined(KVT_WITH_CUDA)
  if (s.on_cuda()) {
    if (dv > 256)
      return fail(KVT_ERR_RANGE, "values: the CUDA momentkvSelect supports dv up to 256, got " + std::to_string(dv));
    KVT_CUDA_TRY(set_device(s.device_id));
    cuda::MkvSelectParams p{o.keep, o.mi ? o.rounds : 1, int32_t(std::min<int64_t>(o.r, dv)), o.mi, float(o.eps)};
    cuda::T2 ert = evicted_round ? t2(er) : cuda::T2{nullptr, kI32, 0, 0, 0, 0};
    return cuda_status(cuda::momentkv_select(t2(s), t3(k), t3(v), p, t2(idx), t2(cnt), cuda_moments(m),
                                             evicted_round ? &ert : nullptr, static_cast<cudaStream_t>(stream)),
                       "momentkvSelect");
  }
#else
  (void)stream;
#endif
  cpu::momentkv_select(s, k, v, o, idx, cnt, m, evicted_round ? &er : nullptr);
  return KVT_OK;
}
