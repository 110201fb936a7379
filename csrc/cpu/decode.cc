// Normalisation-corrected decode attention on the CPU backend (docs/methods/momentkv.md §4.4). The per-element formulas
// (rescale, λ, clip factor) are math/momentkv.h's, shared with the CUDA kernels (cuda/decode.cu).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"
#include "cpu/simd.h"
#include "math/momentkv.h"

namespace kvt {
namespace cpu {

// Corrected decode attention (docs/methods/momentkv.md §4.4): per (KV head, chunk of rows) partial softmax states for all
// G·T queries of the head (two-pass inside the chunk), then per query an in-order merge of the chunk states and
// the summary. Chunks of a fixed size: the result does not depend on the thread count.
constexpr int64_t kDecodeRows = 512;

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
  // A task is one head's chunk, or the chunk of every head where rows.h's row_walk reads all heads together (token by
  // token, or page by page); each head's rows are still taken in ascending order, so its arithmetic is the same.
  const RowWalk wk = row_walk(A.k), wv = row_walk(A.v);
  const int64_t hg = wk.all_heads || wv.all_heads ? Hkv : 1;  // heads per task
  parallel_for(Hkv / hg * nch, 1, [&](int64_t b, int64_t e) {
    std::vector<float> buf, logits, mx;
    for (int64_t t = b; t < e; t++) {
      const int64_t h0 = t / nch * hg, ch = t % nch, r0 = ch * kDecodeRows;
      int64_t L = 0;  // rows of the chunk in the longest head of the group
      for (int64_t h = h0; h < h0 + hg; h++) {
        float* P = &part[size_t((h * nch + ch) * Q * ps)];
        for (int64_t q = 0; q < Q; q++) {
          P[q * ps] = -INFINITY;
          std::fill(P + q * ps + 1, P + (q + 1) * ps, 0.f);
        }
        L = std::max(L, std::min(count_of(h), r0 + kDecodeRows) - r0);
      }
      if (L <= 0) continue;
      // logits[r * HQ + (h - h0) * Q + q]: one row's logits of every head of the task side by side; a head's rows at
      // and past its own count stay -inf (no effect on the maximum; the V pass never reads them)
      const int64_t HQ = hg * Q;
      logits.assign(size_t(L * HQ), -INFINITY);
      walk_rows(A.k, wk, h0, h0 + hg, r0, r0 + L, [&](int64_t h, int64_t i, const char* p) {
        if (i >= count_of(h)) return;
        float* lg = &logits[size_t((i - r0) * HQ + (h - h0) * Q)];
        simd().dots(&a[size_t(h * Q * d)], d, Q, load_row_at(A.k, p, buf), d, lg);  // queries q = g*T + t of head h
        for (int64_t q = 0; q < Q; q++) lg[q] = mkv::logit_or_nan(lg[q]);
      });
      mx.assign(size_t(HQ), -INFINITY);
      for (int64_t r = 0; r < L; r++)
        for (int64_t j = 0; j < HQ; j++) mx[size_t(j)] = std::max(mx[size_t(j)], logits[size_t(r * HQ + j)]);
      for (int64_t j = 0; j < HQ; j++) part[size_t(((h0 + j / Q) * nch + ch) * Q * ps + (j % Q) * ps)] = mx[size_t(j)];
      for (int64_t r = 0; r < L; r++)
        for (int64_t j = 0; j < HQ; j++) logits[size_t(r * HQ + j)] = expf(logits[size_t(r * HQ + j)] - mx[size_t(j)]);
      walk_rows(A.v, wv, h0, h0 + hg, r0, r0 + L, [&](int64_t h, int64_t i, const char* p) {
        if (i >= count_of(h)) return;
        float* P = &part[size_t((h * nch + ch) * Q * ps)];
        const float* pr = &logits[size_t((i - r0) * HQ + (h - h0) * Q)];
        for (int64_t q = 0; q < Q; q++) P[q * ps + 1] += pr[q];
        simd().axpys(pr, Q, load_row_at(A.v, p, buf), dv, P + 2, ps);
      });
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
      // A NaN l (a non-finite logit or value) makes the row NaN: `any` does not look at l.
      const bool any = count_of(h) > 0;
      const float lse = any ? mx + logf(l) : -INFINITY;
      const float inv = any ? 1.f / l : 0.f;
      float* o = A.out.ptr<float>() + j * A.out.stride[0] + t * A.out.stride[1];
      const int64_t os = A.out.stride[2];
      const float n = A.m ? A.m->n().ptr<float>()[h] : 0.f;
      // The row into oe, then written whole: NaN throughout when an element is not finite.
      auto write = [&]() {
        bool finite = true;
        for (int64_t c = 0; c < dv; c++) finite &= finite_f(oe[size_t(c)]);
        for (int64_t c = 0; c < dv; c++) o[c * os] = finite ? oe[size_t(c)] : NAN;
      };
      if (!mkv::valid_count(n)) {
        std::fill(oe.begin(), oe.end(), NAN);
        write();
        continue;
      }
      if (!(n > 0.f)) {
        for (int64_t c = 0; c < dv; c++) oe[size_t(c)] = any ? acc[size_t(c)] * inv : 0.f;
        write();
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
        oe[size_t(c)] = lam * orr + (1.f - lam) * oe[size_t(c)];
      }
      write();
    }
  });
}

}  // namespace cpu
}  // namespace kvt
