// GRKV merge (spec/grkv.md §4-§7, choices §11): C ABI entry point, validation and the CPU backend.
//
// The CPU backend runs the same phases as the CUDA kernels (cuda/grkv.cu), each threaded over (KV head, block)
// tasks, with the per-head decisions (anchors, caps and recheck, CG scalars, candidate choice) taken by the shared
// code of grkv_math.h. Vectors are fp32; norms, objectives and CG scalars are accumulated in double.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"
#include "cpu/spd.h"
#include "grkv_math.h"
#include "kvt_internal.h"
#if defined(KVT_WITH_CUDA)
#include "cuda_grkv.h"
#endif

namespace kvt {

struct GrkvArgs {
  View k, v, idx, cnt, q, qp, w, sc, ko, vo, co, dg;
  bool has_w = false, has_dg = false;
  int64_t H = 0, N = 0, d = 0, dv = 0, Hq = 0, Qs = 0, G = 0, rows = 0, cap_in = 0, cap = 0;
  kvt_grkv_opts o{};
  float scale = 1.0f;
};

namespace cpu {
namespace {

constexpr int64_t kKeyChunk = 512;  // target: keys per task
constexpr int64_t kTile = 64;       // keys / slots per inner tile
constexpr int64_t kRowBlock = 16;   // query rows per task

// Precision of the key step's conjugate gradients (operator applications and recurrences). The truncated CG on
// J_w J_w^T + lambda I is ill-conditioned (relative residuals above 1 are common in the first iterations), so fp32
// recurrences drift from the exact Krylov iterate within ~8 iterations; double keeps it (spec/grkv.md §7.2).
using cg_t = double;

inline const char* row3(const View& t, int64_t a, int64_t b) {
  return t.base + (a * t.stride[0] + b * t.stride[1]) * dtype_size(t.dtype);
}

// Copies one row between views of the same dtype (bit-exact), or zero-fills it (src == nullptr).
void copy_row(const View& src, int64_t h, int64_t i, const View& dst, int64_t j) {
  const int64_t w = dst.shape[2], es = dtype_size(dst.dtype);
  char* o = dst.base + (h * dst.stride[0] + j * dst.stride[1]) * es;
  if (i < 0) {
    for (int64_t c = 0; c < w; c++) std::memset(o + c * dst.stride[2] * es, 0, size_t(es));
    return;
  }
  const char* s = row3(src, h, i);
  if (src.stride[2] == 1 && dst.stride[2] == 1) {
    std::memcpy(o, s, size_t(w * es));
  } else {
    for (int64_t c = 0; c < w; c++) std::memcpy(o + c * dst.stride[2] * es, s + c * src.stride[2] * es, size_t(es));
  }
}

// Writes an f32 row (values already representable in the dtype) into a storage row.
void store_row(const View& dst, int64_t h, int64_t j, const float* x) {
  const int64_t w = dst.shape[2];
  char* o = dst.base + (h * dst.stride[0] + j * dst.stride[1]) * dtype_size(dst.dtype);
  const int64_t s = dst.stride[2];
  if (dst.dtype == kF32) {
    float* p = reinterpret_cast<float*>(o);
    for (int64_t c = 0; c < w; c++) p[c * s] = x[c];
  } else {
    uint16_t* p = reinterpret_cast<uint16_t*>(o);
    for (int64_t c = 0; c < w; c++) p[c * s] = dst.dtype == kBF16 ? f32_to_bf16(x[c]) : f32_to_f16(x[c]);
  }
}

struct Head {
  GrkvHead st{};
  std::vector<int32_t> pos;    // [S] retained positions
  std::vector<int32_t> mlist;  // [R] mutable slot indices, ascending
  std::vector<float> Q;        // [rows, d] query rows (g, j) -> g*Qs + j
  std::vector<int32_t> qpos;   // [rows]
  std::vector<float> w, sw;    // [rows]
  std::vector<float> ostar;    // [rows, dv] full-cache target
  std::vector<float> o;        // [rows, dv] output at the current candidate
  std::vector<float> o1;       // [rows, dv] output at (K0, V1): the key step's linearisation point
  std::vector<float> Kr, Vr;   // [S, d], [S, dv] current retained rows (f32 values of the storage)
  std::vector<float> A;        // [rows, S] attention weights
  std::vector<cg_t> AM;        // [rows, R] weights at K0 on the mutable slots
  std::vector<float> AwT;      // [R, rows] sqrt(w) * AM, transposed
  std::vector<float> X;        // [rows, dv] dual solution of the value step; CG iterate x
  std::vector<float> D;        // [R, max(d, dv)] step: dV, then dK
  std::vector<cg_t> V1m;       // [R, dv] mutable rows of V1
  std::vector<cg_t> Qc, o1c;   // query rows and o1 at CG precision
  std::vector<cg_t> x, res, p, Y, Up, uo;  // CG vectors [rows, dv]; U' = sqrt(w) U; uo = U'.o1 per row
  std::vector<cg_t> T;         // [R, d] VJP output (the key step dK at the end)
  bool fit = false;            // R > 0 and rows > 0
};

double weighted_loss(const Head& hd, const std::vector<float>& o, int64_t rows, int64_t dv) {
  double L = 0;
  for (int64_t i = 0; i < rows; i++) {
    double e = 0;
    for (int64_t c = 0; c < dv; c++) {
      const double x = double(o[size_t(i * dv + c)]) - double(hd.ostar[size_t(i * dv + c)]);
      e += x * x;
    }
    L += double(hd.w[size_t(i)]) * e;
  }
  return L;
}

class Merge {
 public:
  explicit Merge(const GrkvArgs& a) : a_(a), heads_(static_cast<size_t>(a.H)) {}

  void run() {
    gather_outputs();
    setup();
    if (a_.rows > 0) {
      target();
      attention_and_output(true);
      for (auto& hd : heads_) hd.st.loss[0] = weighted_loss(hd, hd.o, a_.rows, a_.dv);
    }
    for (auto& hd : heads_) hd.st.L[0] = hd.st.loss[0];
    if (any_fit()) {
      value_step();
      key_step();
      key_value_objective();
    }
    finish();
  }

 private:
  const GrkvArgs& a_;
  std::vector<Head> heads_;

  bool any_fit() const {
    for (const auto& hd : heads_)
      if (hd.fit) return true;
    return false;
  }

  // Plain eviction first: every output row is the gathered (or zero) row; merged rows overwrite it at the end.
  void gather_outputs() {
    const int64_t H = a_.H, cap = a_.cap;
    parallel_for(H * cap, 64, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; t++) {
        const int64_t h = t / cap, j = t % cap;
        const int64_t c = a_.cnt.ptr<int32_t>()[h * a_.cnt.stride[0]];
        const int64_t i = j < c ? a_.idx.ptr<int32_t>()[h * a_.idx.stride[0] + j * a_.idx.stride[1]] : -1;
        copy_row(a_.k, h, i, a_.ko, j);
        copy_row(a_.v, h, i, a_.vo, j);
      }
    });
    for (int64_t h = 0; h < H; h++)
      a_.co.ptr<int32_t>()[h * a_.co.stride[0]] = a_.cnt.ptr<int32_t>()[h * a_.cnt.stride[0]];
  }

  // Partition (§4), query rows, retained rows.
  void setup() {
    const int64_t N = a_.N, d = a_.d, dv = a_.dv, rows = a_.rows, Qs = a_.Qs, G = a_.G;
    const int64_t W = a_.o.window;
    parallel_for(a_.H, 1, [&](int64_t b, int64_t e) {
      std::vector<float> buf;
      std::vector<std::pair<uint64_t, int32_t>> keys;
      for (int64_t h = b; h < e; h++) {
        Head& hd = heads_[size_t(h)];
        GrkvHead& st = hd.st;
        const int64_t S = a_.cnt.ptr<int32_t>()[h * a_.cnt.stride[0]];
        st.count = int32_t(S);
        hd.pos.resize(size_t(S));
        for (int64_t s = 0; s < S; s++) hd.pos[size_t(s)] = a_.idx.ptr<int32_t>()[h * a_.idx.stride[0] + s * a_.idx.stride[1]];
        keys.clear();
        for (int64_t s = 0; s < S; s++) {
          const int64_t p = hd.pos[size_t(s)];
          if (p < N - W) keys.emplace_back(grkv_anchor_key(a_.sc.ptr<float>()[h * a_.sc.stride[0] + p * a_.sc.stride[1]], p), int32_t(s));
        }
        st.prefix = int32_t(keys.size());
        st.anchors = int32_t(grkv_anchor_count(st.prefix, a_.o.gamma));
        std::vector<uint8_t> anchor(size_t(S), 0);
        if (st.anchors > 0) {
          std::nth_element(keys.begin(), keys.begin() + (st.anchors - 1), keys.end(),
                           [](const auto& x, const auto& y) { return x.first > y.first; });
          for (int64_t t = 0; t < st.anchors; t++) anchor[size_t(keys[size_t(t)].second)] = 1;
        }
        hd.mlist.clear();
        for (int64_t s = 0; s < S; s++)
          if (hd.pos[size_t(s)] < N - W && !anchor[size_t(s)]) hd.mlist.push_back(int32_t(s));
        st.mut = int32_t(hd.mlist.size());
        hd.fit = st.mut > 0 && rows > 0;
        st.active = hd.fit;
        st.flags = hd.fit ? 0 : kGrkvSkipped;
        st.cg_stop = kCgNotRun;
        st.chosen = 0;
        if (rows == 0) continue;
        // query rows of this KV head
        hd.Q.resize(size_t(rows * d));
        hd.qpos.resize(size_t(rows));
        hd.w.resize(size_t(rows));
        hd.sw.resize(size_t(rows));
        for (int64_t g = 0; g < G; g++)
          for (int64_t j = 0; j < Qs; j++) {
            const int64_t i = g * Qs + j;
            const float* qr = load_row(a_.q, h * G + g, j, buf);
            std::copy(qr, qr + d, hd.Q.begin() + i * d);
            hd.qpos[size_t(i)] = a_.qp.ptr<int32_t>()[j * a_.qp.stride[0]];
            const float wj = a_.has_w ? a_.w.ptr<float>()[j * a_.w.stride[0]] : 1.0f;
            hd.w[size_t(i)] = wj;
            hd.sw[size_t(i)] = sqrtf(wj);
          }
        hd.Kr.resize(size_t(S * d));
        hd.Vr.resize(size_t(S * dv));
        for (int64_t s = 0; s < S; s++) {
          const float* kr = load_row(a_.k, h, hd.pos[size_t(s)], buf);
          std::copy(kr, kr + d, hd.Kr.begin() + s * d);
          const float* vr = load_row(a_.v, h, hd.pos[size_t(s)], buf);
          std::copy(vr, vr + dv, hd.Vr.begin() + s * dv);
        }
      }
    });
  }

  // o* = full causal attention over all N positions (§5, §6), split over key chunks with an LSE merge.
  void target() {
    const int64_t H = a_.H, N = a_.N, d = a_.d, dv = a_.dv, rows = a_.rows;
    const int64_t C = (N + kKeyChunk - 1) / kKeyChunk;
    const int64_t ps = rows * (dv + 2);
    std::vector<float> part(size_t(H * C * ps));
    parallel_for(H * C, 1, [&](int64_t b, int64_t e) {
      std::vector<float> kt(size_t(d * kTile)), vt(size_t(kTile * dv)), lg(size_t(rows * kTile)), buf;
      for (int64_t task = b; task < e; task++) {
        const int64_t h = task / C, c = task % C;
        const Head& hd = heads_[size_t(h)];
        float* m = part.data() + task * ps;  // [rows] max, [rows] sum, [rows, dv] acc
        float* l = m + rows;
        float* acc = l + rows;
        std::fill(m, m + rows, -INFINITY);
        std::fill(l, l + rows, 0.0f);
        std::fill(acc, acc + rows * dv, 0.0f);
        int32_t maxpos = std::numeric_limits<int32_t>::min();
        for (int64_t i = 0; i < rows; i++) maxpos = std::max(maxpos, hd.qpos[size_t(i)]);
        const int64_t n1 = std::min(N, (c + 1) * kKeyChunk);
        for (int64_t t0 = c * kKeyChunk; t0 < n1 && t0 <= maxpos; t0 += kTile) {
          const int64_t tn = std::min(kTile, n1 - t0);
          for (int64_t t = 0; t < tn; t++) {
            const float* kr = load_row(a_.k, h, t0 + t, buf);
            for (int64_t x = 0; x < d; x++) kt[size_t(x * kTile + t)] = kr[x];
            const float* vr = load_row(a_.v, h, t0 + t, buf);
            std::copy(vr, vr + dv, vt.begin() + t * dv);
          }
          gemm_nn(rows, tn, d, hd.Q.data(), d, kt.data(), kTile, lg.data(), kTile, false);
          for (int64_t i = 0; i < rows; i++) {
            float* li = lg.data() + i * kTile;
            float mx = -INFINITY;
            for (int64_t t = 0; t < tn; t++) {
              li[t] = t0 + t <= hd.qpos[size_t(i)] ? li[t] * a_.scale : -INFINITY;
              mx = std::max(mx, li[t]);
            }
            const float mnew = std::max(m[i], mx);
            if (mnew == -INFINITY) {
              std::fill(li, li + tn, 0.0f);
              continue;
            }
            const float corr = m[i] == -INFINITY ? 0.0f : expf(m[i] - mnew);
            float sum = 0;
            for (int64_t t = 0; t < tn; t++) {
              li[t] = expf(li[t] - mnew);
              sum += li[t];
            }
            l[i] = l[i] * corr + sum;
            m[i] = mnew;
            float* ai = acc + i * dv;
            for (int64_t x = 0; x < dv; x++) ai[x] *= corr;
          }
          gemm_nn(rows, dv, tn, lg.data(), kTile, vt.data(), dv, acc, dv, true);
        }
      }
    });
    parallel_for(H, 1, [&](int64_t b, int64_t e) {
      for (int64_t h = b; h < e; h++) {
        Head& hd = heads_[size_t(h)];
        hd.ostar.assign(size_t(rows * dv), 0.0f);
        for (int64_t i = 0; i < rows; i++) {
          float M = -INFINITY;
          for (int64_t c = 0; c < C; c++) M = std::max(M, part[size_t((h * C + c) * ps + i)]);
          if (M == -INFINITY) continue;
          float Lsum = 0;
          float* oi = hd.ostar.data() + i * dv;
          for (int64_t c = 0; c < C; c++) {
            const float* pm = part.data() + (h * C + c) * ps;
            if (pm[i] == -INFINITY) continue;
            const float f = expf(pm[i] - M);
            Lsum += pm[rows + i] * f;
            const float* ac = pm + 2 * rows + i * dv;
            for (int64_t x = 0; x < dv; x++) oi[x] += ac[x] * f;
          }
          const float inv = 1.0f / Lsum;
          for (int64_t x = 0; x < dv; x++) oi[x] *= inv;
        }
      }
    });
  }

  // Attention of the query rows over the retained rows Kr (weights A, softmax over visible slots; a row with no
  // visible slot gets zero weights) and the output o = A Vr. `all` = every head; otherwise fitted heads only.
  void attention_and_output(bool all) {
    const int64_t H = a_.H, d = a_.d, dv = a_.dv, rows = a_.rows;
    int64_t maxS = 0;
    for (auto& hd : heads_) maxS = std::max<int64_t>(maxS, hd.st.count);
    const int64_t SB = (maxS + kTile - 1) / kTile;
    for (auto& hd : heads_) {
      if (!(all || hd.fit)) continue;
      hd.A.resize(size_t(rows * hd.st.count));
      hd.o.resize(size_t(rows * dv));
    }
    parallel_for(H * SB, 1, [&](int64_t b, int64_t e) {
      std::vector<float> kt(size_t(d * kTile)), lg(size_t(rows * kTile));
      for (int64_t task = b; task < e; task++) {
        const int64_t h = task / SB, s0 = (task % SB) * kTile;
        Head& hd = heads_[size_t(h)];
        const int64_t S = hd.st.count;
        if (s0 >= S || !(all || hd.fit)) continue;
        const int64_t sn = std::min(kTile, S - s0);
        transpose(hd.Kr.data() + s0 * d, sn, d, d, kt.data(), kTile);
        gemm_nn(rows, sn, d, hd.Q.data(), d, kt.data(), kTile, lg.data(), kTile, false);
        for (int64_t i = 0; i < rows; i++)
          for (int64_t t = 0; t < sn; t++)
            hd.A[size_t(i * S + s0 + t)] = hd.pos[size_t(s0 + t)] <= hd.qpos[size_t(i)] ? lg[size_t(i * kTile + t)] * a_.scale : -INFINITY;
      }
    });
    const int64_t RB = (rows + kRowBlock - 1) / kRowBlock;
    parallel_for(H * RB, 1, [&](int64_t b, int64_t e) {
      for (int64_t task = b; task < e; task++) {
        const int64_t h = task / RB, i0 = (task % RB) * kRowBlock, in = std::min(kRowBlock, rows - i0);
        Head& hd = heads_[size_t(h)];
        if (!(all || hd.fit)) continue;
        const int64_t S = hd.st.count;
        for (int64_t i = i0; i < i0 + in; i++) {
          float* ai = hd.A.data() + i * S;
          float mx = -INFINITY;
          for (int64_t s = 0; s < S; s++) mx = std::max(mx, ai[s]);
          if (mx == -INFINITY) {
            std::fill(ai, ai + S, 0.0f);
            continue;
          }
          float sum = 0;
          for (int64_t s = 0; s < S; s++) {
            ai[s] = expf(ai[s] - mx);
            sum += ai[s];
          }
          const float inv = 1.0f / sum;
          for (int64_t s = 0; s < S; s++) ai[s] *= inv;
        }
        gemm_nn(in, dv, S, hd.A.data() + i0 * S, S, hd.Vr.data(), dv, hd.o.data() + i0 * dv, dv, false);
      }
    });
  }

  // Shared capped step (§7.3) for the mutable rows of X (Kr or Vr, width w) with step D [R, w]: decides the scale
  // with the recheck and writes round(X0 + s D) into X. which = 0 (values) or 1 (keys).
  void apply_step(Head& hd, std::vector<float>& X, int64_t w, double cap, int which) {
    GrkvHead& st = hd.st;
    const int64_t R = st.mut, ld = std::max(a_.d, a_.dv);
    const int dt = a_.k.dtype;
    double n0 = 0, nd = 0;
    for (int64_t t = 0; t < R; t++) {
      const float* x0 = X.data() + int64_t(hd.mlist[size_t(t)]) * w;
      const float* dd = hd.D.data() + t * ld;
      for (int64_t c = 0; c < w; c++) {
        n0 += double(x0[c]) * x0[c];
        nd += double(dd[c]) * dd[c];
      }
    }
    n0 = sqrt(n0);
    nd = sqrt(nd);
    auto dist2 = [&](double s) {
      double acc = 0;
      for (int64_t t = 0; t < R; t++) {
        const float* x0 = X.data() + int64_t(hd.mlist[size_t(t)]) * w;
        const float* dd = hd.D.data() + t * ld;
        for (int64_t c = 0; c < w; c++) {
          const double diff = double(grkv_candidate(x0[c], s, dd[c], dt)) - double(x0[c]);
          acc += diff * diff;
        }
      }
      return acc;
    };
    int32_t shrinks = 0;
    bool dropped = false;
    double d2 = 0;
    const double s = grkv_step_scale(cap, n0, nd, dt, dist2, &shrinks, &dropped, &d2);
    st.n0[which] = n0;
    st.nd[which] = nd;
    st.scale[which] = s;
    st.shrinks[which] = shrinks;
    st.dist2[which] = d2;
    if (dropped) st.flags |= which ? kGrkvDroppedK : kGrkvDroppedV;
    bool finite = true;
    for (int64_t t = 0; t < R; t++) {
      float* x = X.data() + int64_t(hd.mlist[size_t(t)]) * w;
      const float* dd = hd.D.data() + t * ld;
      for (int64_t c = 0; c < w; c++) {
        x[c] = grkv_candidate(x[c], s, dd[c], dt);
        finite &= finite_f(x[c]);
      }
    }
    st.nonfinite[which] = !finite;
  }

  // §7.1: exact dual ridge at K0: (Aw Aw^T + lambda I) X = sqrt(w) (o* - o), dV = Aw^T X; capped, rounded -> V1.
  void value_step() {
    const int64_t H = a_.H, dv = a_.dv, rows = a_.rows, ld = std::max(a_.d, a_.dv);
    const float lambda = float(a_.o.lambda);
    // compact the weights of the mutable slots: AM [rows, R] and AwT [R, rows]
    parallel_for(H, 1, [&](int64_t b, int64_t e) {
      for (int64_t h = b; h < e; h++) {
        Head& hd = heads_[size_t(h)];
        if (!hd.fit) continue;
        const int64_t S = hd.st.count, R = hd.st.mut;
        hd.AM.resize(size_t(rows * R));
        hd.AwT.resize(size_t(R * rows));
        for (int64_t i = 0; i < rows; i++)
          for (int64_t t = 0; t < R; t++) {
            const float a = hd.A[size_t(i * S + hd.mlist[size_t(t)])];
            hd.AM[size_t(i * R + t)] = a;
            hd.AwT[size_t(t * rows + i)] = hd.sw[size_t(i)] * a;
          }
        hd.X.resize(size_t(rows * dv));
        for (int64_t i = 0; i < rows; i++)
          for (int64_t c = 0; c < dv; c++)
            hd.X[size_t(i * dv + c)] = hd.sw[size_t(i)] * (hd.ostar[size_t(i * dv + c)] - hd.o[size_t(i * dv + c)]);
      }
    });
    // Gram (rows x rows per head) by row blocks, then the SPD solve per head
    std::vector<std::vector<float>> gram(static_cast<size_t>(H));
    for (int64_t h = 0; h < H; h++)
      if (heads_[size_t(h)].fit) gram[size_t(h)].resize(size_t(rows * rows));
    const int64_t RB = (rows + kRowBlock - 1) / kRowBlock;
    parallel_for(H * RB, 1, [&](int64_t b, int64_t e) {
      std::vector<float> aw;
      for (int64_t task = b; task < e; task++) {
        const int64_t h = task / RB, i0 = (task % RB) * kRowBlock, in = std::min(kRowBlock, rows - i0);
        Head& hd = heads_[size_t(h)];
        if (!hd.fit) continue;
        const int64_t R = hd.st.mut;
        aw.resize(size_t(in * R));
        for (int64_t i = 0; i < in; i++)
          for (int64_t t = 0; t < R; t++) aw[size_t(i * R + t)] = hd.AwT[size_t(t * rows + i0 + i)];
        gemm_nn(in, rows, R, aw.data(), R, hd.AwT.data(), rows, gram[size_t(h)].data() + i0 * rows, rows, false);
      }
    });
    parallel_for(H, 1, [&](int64_t b, int64_t e) {
      for (int64_t h = b; h < e; h++) {
        Head& hd = heads_[size_t(h)];
        if (!hd.fit) continue;
        float* Gm = gram[size_t(h)].data();
        for (int64_t i = 0; i < rows; i++) Gm[i * rows + i] += lambda;
        float piv = 0;
        const int64_t k = cholesky_inplace(Gm, rows, &piv);
        hd.st.spd_info = int32_t(k);
        if (k == 0) {
          cholesky_solve(Gm, rows, hd.X.data(), dv, dv);
        } else {
          hd.st.flags |= kGrkvNotSpd;
          std::fill(hd.X.begin(), hd.X.end(), std::numeric_limits<float>::quiet_NaN());
        }
        hd.D.assign(size_t(hd.st.mut * ld), 0.0f);
      }
    });
    // dV = Aw^T X by blocks of mutable slots
    int64_t maxR = 0;
    for (auto& hd : heads_) maxR = std::max<int64_t>(maxR, hd.fit ? hd.st.mut : 0);
    const int64_t TB = (maxR + kTile - 1) / kTile;
    parallel_for(H * TB, 1, [&](int64_t b, int64_t e) {
      for (int64_t task = b; task < e; task++) {
        const int64_t h = task / TB, t0 = (task % TB) * kTile;
        Head& hd = heads_[size_t(h)];
        if (!hd.fit || t0 >= hd.st.mut) continue;
        const int64_t tn = std::min(kTile, int64_t(hd.st.mut) - t0);
        gemm_nn(tn, dv, rows, hd.AwT.data() + t0 * rows, rows, hd.X.data(), dv, hd.D.data() + t0 * ld, ld, false);
      }
    });
    // cap, recheck, round -> V1 in Vr; o1 = A Vr; objective of the value-only candidate
    parallel_for(H, 1, [&](int64_t b, int64_t e) {
      for (int64_t h = b; h < e; h++) {
        Head& hd = heads_[size_t(h)];
        if (!hd.fit) continue;
        apply_step(hd, hd.Vr, dv, a_.o.cap_value, 0);
        const int64_t R = hd.st.mut;
        hd.V1m.resize(size_t(R * dv));
        for (int64_t t = 0; t < R; t++)
          std::copy(hd.Vr.begin() + int64_t(hd.mlist[size_t(t)]) * dv, hd.Vr.begin() + (int64_t(hd.mlist[size_t(t)]) + 1) * dv,
                    hd.V1m.begin() + t * dv);
      }
    });
    for (auto& hd : heads_)
      if (hd.fit) hd.o1.resize(size_t(rows * dv));
    parallel_for(H * RB, 1, [&](int64_t b, int64_t e) {
      for (int64_t task = b; task < e; task++) {
        const int64_t h = task / RB, i0 = (task % RB) * kRowBlock, in = std::min(kRowBlock, rows - i0);
        Head& hd = heads_[size_t(h)];
        if (!hd.fit) continue;
        gemm_nn(in, dv, hd.st.count, hd.A.data() + i0 * hd.st.count, hd.st.count, hd.Vr.data(), dv,
                hd.o1.data() + i0 * dv, dv, false);
      }
    });
    for (auto& hd : heads_) {
      if (!hd.fit) continue;
      hd.st.loss[1] = weighted_loss(hd, hd.o1, rows, dv);
      hd.st.L[1] = hd.st.loss[1] + a_.o.lambda * hd.st.dist2[0];
    }
  }

  // U' = sqrt(w) U and uo_i = U'_i . o1_i, per fitted head with an active CG (or all fitted heads).
  void prep_u(const std::vector<cg_t> Head::*U, bool cg_only) {
    const int64_t rows = a_.rows, dv = a_.dv;
    for (auto& hd : heads_) {
      if (!hd.fit || (cg_only && !hd.st.cg_active)) continue;
      hd.Up.resize(size_t(rows * dv));
      hd.uo.resize(size_t(rows));
      const std::vector<cg_t>& u = hd.*U;
      for (int64_t i = 0; i < rows; i++) {
        cg_t acc = 0;
        for (int64_t c = 0; c < dv; c++) {
          const cg_t x = cg_t(hd.sw[size_t(i)]) * u[size_t(i * dv + c)];
          hd.Up[size_t(i * dv + c)] = x;
          acc += x * hd.o1c[size_t(i * dv + c)];
        }
        hd.uo[size_t(i)] = acc;
      }
    }
  }

  // VJP (§7.2): T_t = scale * sum_i A_it (U'_i . v1_t - uo_i) q_i for the mutable slots t.
  void vjp(bool cg_only) {
    const int64_t H = a_.H, d = a_.d, dv = a_.dv, rows = a_.rows;
    int64_t maxR = 0;
    for (auto& hd : heads_) maxR = std::max<int64_t>(maxR, hd.fit ? hd.st.mut : 0);
    const int64_t TB = (maxR + kTile - 1) / kTile;
    const cg_t scale = a_.scale;
    parallel_for(H * TB, 1, [&](int64_t b, int64_t e) {
      std::vector<cg_t> vbt(size_t(dv * kTile)), cm(size_t(rows * kTile)), ct(size_t(kTile * rows));
      for (int64_t task = b; task < e; task++) {
        const int64_t h = task / TB, t0 = (task % TB) * kTile;
        Head& hd = heads_[size_t(h)];
        const int64_t R = hd.st.mut;
        if (!hd.fit || (cg_only && !hd.st.cg_active) || t0 >= R) continue;
        const int64_t tn = std::min(kTile, R - t0);
        transpose(hd.V1m.data() + t0 * dv, tn, dv, dv, vbt.data(), kTile);
        gemm_nn(rows, tn, dv, hd.Up.data(), dv, vbt.data(), kTile, cm.data(), kTile, false);
        for (int64_t i = 0; i < rows; i++)
          for (int64_t t = 0; t < tn; t++)
            ct[size_t(t * rows + i)] = scale * hd.AM[size_t(i * R + t0 + t)] * (cm[size_t(i * kTile + t)] - hd.uo[size_t(i)]);
        gemm_nn(tn, d, rows, ct.data(), rows, hd.Qc.data(), d, hd.T.data() + t0 * d, d, false);
      }
    });
  }

  // JVP (§7.2): Y_i = sqrt(w_i) (sum_t f_it v1_t - (sum_t f_it) o1_i), f_it = scale A_it (q_i . T_t).
  void jvp() {
    const int64_t H = a_.H, d = a_.d, dv = a_.dv, rows = a_.rows;
    const int64_t RB = (rows + kRowBlock - 1) / kRowBlock;
    const cg_t scale = a_.scale;
    parallel_for(H * RB, 1, [&](int64_t b, int64_t e) {
      std::vector<cg_t> dt(size_t(d * kTile)), f(size_t(kRowBlock * kTile)), y(size_t(kRowBlock * dv));
      for (int64_t task = b; task < e; task++) {
        const int64_t h = task / RB, i0 = (task % RB) * kRowBlock, in = std::min(kRowBlock, rows - i0);
        Head& hd = heads_[size_t(h)];
        if (!hd.fit || !hd.st.cg_active) continue;
        const int64_t R = hd.st.mut;
        cg_t fsum[kRowBlock] = {};
        std::fill(y.begin(), y.end(), cg_t(0));
        for (int64_t t0 = 0; t0 < R; t0 += kTile) {
          const int64_t tn = std::min(kTile, R - t0);
          transpose(hd.T.data() + t0 * d, tn, d, d, dt.data(), kTile);
          gemm_nn(in, tn, d, hd.Qc.data() + i0 * d, d, dt.data(), kTile, f.data(), kTile, false);
          for (int64_t i = 0; i < in; i++)
            for (int64_t t = 0; t < tn; t++) {
              cg_t& x = f[size_t(i * kTile + t)];
              x = scale * hd.AM[size_t((i0 + i) * R + t0 + t)] * x;
              fsum[i] += x;
            }
          gemm_nn(in, dv, tn, f.data(), kTile, hd.V1m.data() + t0 * dv, dv, y.data(), dv, true);
        }
        for (int64_t i = 0; i < in; i++)
          for (int64_t c = 0; c < dv; c++)
            hd.Y[size_t((i0 + i) * dv + c)] =
                cg_t(hd.sw[size_t(i0 + i)]) * (y[size_t(i * dv + c)] - fsum[i] * hd.o1c[size_t((i0 + i) * dv + c)]);
      }
    });
  }

  // §7.2: one Gauss-Newton ridge step on the keys at (K0, V1), CG in output space; capped, rounded -> K1 in Kr.
  void key_step() {
    const int64_t H = a_.H, d = a_.d, dv = a_.dv, rows = a_.rows, n = rows * dv, ld = std::max(a_.d, a_.dv);
    const bool run_key = a_.o.cap_key > 0 && a_.o.cg_iters > 0;
    const cg_t lambda = a_.o.lambda;
    if (run_key) {
      for (auto& hd : heads_) {
        if (!hd.fit) continue;
        hd.Qc.assign(hd.Q.begin(), hd.Q.end());
        hd.o1c.assign(hd.o1.begin(), hd.o1.end());
        hd.res.resize(size_t(n));
        hd.p.resize(size_t(n));
        hd.Y.resize(size_t(n));
        hd.T.resize(size_t(hd.st.mut * d));
        hd.x.assign(size_t(n), cg_t(0));
        double rr = 0;
        for (int64_t i = 0; i < rows; i++)
          for (int64_t c = 0; c < dv; c++) {
            const cg_t b = cg_t(hd.sw[size_t(i)]) * (cg_t(hd.ostar[size_t(i * dv + c)]) - hd.o1c[size_t(i * dv + c)]);
            hd.res[size_t(i * dv + c)] = b;
            hd.p[size_t(i * dv + c)] = b;
            rr += double(b) * double(b);
          }
        grkv_cg_start(hd.st, rr, a_.o.tol, a_.o.cg_iters);
      }
      for (int it = 0; it < a_.o.cg_iters; it++) {
        bool any = false;
        for (auto& hd : heads_) any |= hd.fit && hd.st.cg_active;
        if (!any) break;
        prep_u(&Head::p, true);
        vjp(true);
        jvp();
        parallel_for(H, 1, [&](int64_t b, int64_t e) {
          for (int64_t h = b; h < e; h++) {
            Head& hd = heads_[size_t(h)];
            if (!hd.fit || !hd.st.cg_active) continue;
            double pAp = 0;
            for (int64_t x = 0; x < n; x++) {
              hd.Y[size_t(x)] += lambda * hd.p[size_t(x)];
              pAp += double(hd.p[size_t(x)]) * double(hd.Y[size_t(x)]);
            }
            double alpha = 0;
            if (!grkv_cg_alpha(hd.st, pAp, &alpha)) continue;
            const cg_t al = cg_t(alpha);
            double rr = 0;
            for (int64_t x = 0; x < n; x++) {
              hd.x[size_t(x)] += al * hd.p[size_t(x)];
              hd.res[size_t(x)] -= al * hd.Y[size_t(x)];
              rr += double(hd.res[size_t(x)]) * double(hd.res[size_t(x)]);
            }
            const cg_t beta = cg_t(grkv_cg_after(hd.st, rr, a_.o.tol, a_.o.cg_iters));
            if (hd.st.cg_active)
              for (int64_t x = 0; x < n; x++) hd.p[size_t(x)] = hd.res[size_t(x)] + beta * hd.p[size_t(x)];
          }
        });
      }
      // dK = J_w^T x
      prep_u(&Head::x, false);
      vjp(false);
    }
    parallel_for(H, 1, [&](int64_t b, int64_t e) {
      for (int64_t h = b; h < e; h++) {
        Head& hd = heads_[size_t(h)];
        if (!hd.fit) continue;
        if (run_key) {
          for (int64_t t = 0; t < hd.st.mut; t++)
            for (int64_t c = 0; c < d; c++) hd.D[size_t(t * ld + c)] = float(hd.T[size_t(t * d + c)]);
          apply_step(hd, hd.Kr, d, a_.o.cap_key, 1);
        } else {  // value-only ablation: K1 = K0, the key+value candidate equals the value-only one
          hd.st.scale[1] = 0;
          hd.st.nonfinite[1] = 0;
        }
      }
    });
  }

  void key_value_objective() {
    const int64_t dv = a_.dv, rows = a_.rows;
    const bool run_key = a_.o.cap_key > 0 && a_.o.cg_iters > 0;
    if (run_key) attention_and_output(false);
    for (auto& hd : heads_) {
      if (!hd.fit) continue;
      GrkvHead& st = hd.st;
      if (run_key) {
        st.loss[2] = weighted_loss(hd, hd.o, rows, dv);
        st.L[2] = st.loss[2] + a_.o.lambda * (st.dist2[1] + st.dist2[0]);
      } else {
        st.loss[2] = st.loss[1];
        st.L[2] = st.L[1];
      }
    }
  }

  void finish() {
    const int64_t d = a_.d, dv = a_.dv;
    parallel_for(a_.H, 1, [&](int64_t b, int64_t e) {
      for (int64_t h = b; h < e; h++) {
        Head& hd = heads_[size_t(h)];
        GrkvHead& st = hd.st;
        if (hd.fit) {
          const bool ok1 = !st.nonfinite[0];
          const bool ok2 = !st.nonfinite[0] && !st.nonfinite[1];
          if (!ok1) st.flags |= kGrkvNonfiniteV;
          if (!ok2) st.flags |= kGrkvNonfiniteKV;
          st.chosen = grkv_choose(st.L, ok1, ok2, a_.o.accept);
          for (int i = 1; i < 3; i++)
            if (!finite_d(st.L[i]) || (i == 1 && !ok1) || (i == 2 && !ok2)) st.L[i] = NAN;
          for (int64_t t = 0; t < st.mut; t++) {
            const int64_t s = hd.mlist[size_t(t)];
            if (st.chosen >= 1) store_row(a_.vo, h, s, hd.Vr.data() + s * dv);
            if (st.chosen == 2) store_row(a_.ko, h, s, hd.Kr.data() + s * d);
          }
        } else {
          st.L[1] = st.L[2] = st.L[0];
        }
        if (a_.has_dg) grkv_diag_row(st, a_.dg.ptr<float>() + h * a_.dg.stride[0], a_.dg.stride[1]);
      }
    });
  }
};

}  // namespace
}  // namespace cpu

static kvt_status validate(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                           const kvt_tensor* counts, const kvt_tensor* queries, const kvt_tensor* query_positions,
                           const kvt_tensor* weights, const kvt_tensor* scores, const kvt_grkv_opts* opts,
                           const kvt_tensor* keys_out, const kvt_tensor* values_out, const kvt_tensor* counts_out,
                           const kvt_tensor* diagnostics, GrkvArgs& a) {
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[H, N, d]", &a.k));
  KVT_TRY(check_tensor(values, "values", 3, kMaskFloat, "[H, N, dv]", &a.v));
  if (a.v.dtype != a.k.dtype)
    return fail(KVT_ERR_TYPE, std::string("values: must have the dtype of keys (") + dtype_name(a.k.dtype) + "), got " +
                                  dtype_name(a.v.dtype));
  KVT_TRY(check_tensor(indices, "indices", 2, kMaskI32, "[H, cap]", &a.idx));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[H]", &a.cnt));
  KVT_TRY(check_tensor(queries, "queries", 3, kMaskFloat, "[Hq, Qs, d]", &a.q));
  KVT_TRY(check_tensor(query_positions, "queryPositions", 1, kMaskI32, "[Qs]", &a.qp));
  a.has_w = weights != nullptr;
  if (a.has_w) KVT_TRY(check_tensor(weights, "weights", 1, kMaskF32, "[Qs]", &a.w));
  KVT_TRY(check_tensor(scores, "scores", 2, kMaskF32, "[H, N]", &a.sc));
  KVT_TRY(check_tensor(keys_out, "keysOut", 3, 1u << a.k.dtype, "[H, cap, d]", &a.ko));
  KVT_TRY(check_tensor(values_out, "valuesOut", 3, 1u << a.v.dtype, "[H, cap, dv]", &a.vo));
  KVT_TRY(check_tensor(counts_out, "countsOut", 1, kMaskI32, "[H]", &a.co));
  a.has_dg = diagnostics != nullptr;
  if (a.has_dg) KVT_TRY(check_tensor(diagnostics, "diagnostics", 2, kMaskF32, "[H, 14]", &a.dg));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  a.o = *opts;

  const View* dev[] = {&a.v, &a.idx, &a.cnt, &a.q, &a.qp, &a.w, &a.sc, &a.ko, &a.vo, &a.co, &a.dg};
  const char* dev_names[] = {"values", "indices", "counts", "queries", "queryPositions", "weights", "scores",
                             "keysOut", "valuesOut", "countsOut", "diagnostics"};
  for (int i = 0; i < 11; i++) {
    if ((i == 5 && !a.has_w) || (i == 10 && !a.has_dg)) continue;
    KVT_TRY(check_same_device(a.k, "keys", *dev[i], dev_names[i]));
  }
  a.H = a.k.shape[0];
  a.N = a.k.shape[1];
  a.d = a.k.shape[2];
  a.dv = a.v.shape[2];
  a.Hq = a.q.shape[0];
  a.Qs = a.q.shape[1];
  a.cap_in = a.idx.shape[1];
  a.cap = a.ko.shape[1];
  KVT_TRY(check_dim(a.v, "values", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.v, "values", 1, a.N, "N of keys"));
  KVT_TRY(check_dim(a.idx, "indices", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.cnt, "counts", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.q, "queries", 2, a.d, "d of keys"));
  if (a.H < 1 || a.N < 1)
    return fail(KVT_ERR_RANGE, "keys: H and N must be >= 1, got shape " + shape_str(a.k.shape, 3));
  if (a.N >= (int64_t(1) << 31) - 1) return fail(KVT_ERR_RANGE, "keys: N must be < 2^31 - 1");
  if (a.Hq < a.H || a.Hq % a.H != 0) {
    std::ostringstream os;
    os << "queries: the number of query heads (dimension 0, " << a.Hq << ") must be a positive multiple of H = " << a.H;
    return fail(KVT_ERR_RANGE, os.str());
  }
  a.G = a.Hq / a.H;
  a.rows = a.G * a.Qs;
  KVT_TRY(check_dim(a.qp, "queryPositions", 0, a.Qs, "Qs of queries"));
  if (a.has_w) KVT_TRY(check_dim(a.w, "weights", 0, a.Qs, "Qs of queries"));
  KVT_TRY(check_dim(a.sc, "scores", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.sc, "scores", 1, a.N, "N of keys"));
  KVT_TRY(check_dim(a.ko, "keysOut", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.ko, "keysOut", 2, a.d, "d of keys"));
  KVT_TRY(check_dim(a.vo, "valuesOut", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.vo, "valuesOut", 1, a.cap, "cap of keysOut"));
  KVT_TRY(check_dim(a.vo, "valuesOut", 2, a.dv, "dv of values"));
  KVT_TRY(check_dim(a.co, "countsOut", 0, a.H, "H of keys"));
  if (a.cap < 1) return fail(KVT_ERR_RANGE, "keysOut: capacity (dimension 1) must be >= 1");
  if (a.has_dg) {
    KVT_TRY(check_dim(a.dg, "diagnostics", 0, a.H, "H of keys"));
    KVT_TRY(check_dim(a.dg, "diagnostics", 1, kGrkvDiagCols, "KVT_GRKV_DIAG_COLS"));
  }
  // options
  KVT_TRY(check_range(a.o.window, 0, 2147483647.0, "window"));
  KVT_TRY(check_range(a.o.cg_iters, 0, 100000, "cgIters"));
  KVT_TRY(check_range(a.o.gamma, 0, 1, "gamma"));
  if (!(a.o.lambda > 0) || !(a.o.lambda < 1e30)) {
    std::ostringstream os;
    os << "lambda: must be finite and > 0 (it keeps the value system SPD), got " << a.o.lambda;
    return fail(KVT_ERR_RANGE, os.str());
  }
  if (!(a.o.cap_key >= 0)) return fail(KVT_ERR_RANGE, "caps.key: must be >= 0 (Infinity = uncapped), got " + std::to_string(a.o.cap_key));
  if (!(a.o.cap_value >= 0))
    return fail(KVT_ERR_RANGE, "caps.value: must be >= 0 (Infinity = uncapped), got " + std::to_string(a.o.cap_value));
  if (a.o.accept != KVT_GRKV_ACCEPT_BEST && a.o.accept != KVT_GRKV_ACCEPT_JOINT)
    return fail(KVT_ERR_RANGE, "acceptance: must be 'best' or 'joint'");
  if (!(a.o.tol >= 0) || !(a.o.tol < 1e30)) return fail(KVT_ERR_RANGE, "tol: must be finite and >= 0, got " + std::to_string(a.o.tol));
  if (a.o.scale == 0) {
    a.scale = float(1.0 / sqrt(double(a.d)));
  } else {
    if (!(a.o.scale > 0) || !(a.o.scale < 1e30))
      return fail(KVT_ERR_RANGE, "scale: must be finite and > 0, got " + std::to_string(a.o.scale));
    a.scale = float(a.o.scale);
  }
  // outputs never overlap inputs or each other
  const View* ins[] = {&a.k, &a.v, &a.idx, &a.cnt, &a.q, &a.qp, &a.w, &a.sc};
  const char* in_names[] = {"keys", "values", "indices", "counts", "queries", "queryPositions", "weights", "scores"};
  const View* outs[] = {&a.ko, &a.vo, &a.co, &a.dg};
  const char* out_names[] = {"keysOut", "valuesOut", "countsOut", "diagnostics"};
  for (int o = 0; o < 4; o++) {
    if (o == 3 && !a.has_dg) continue;
    for (int i = 0; i < 8; i++) {
      if (i == 6 && !a.has_w) continue;
      KVT_TRY(check_no_overlap(*outs[o], out_names[o], *ins[i], in_names[i]));
    }
    for (int p = 0; p < o; p++) KVT_TRY(check_no_overlap(*outs[o], out_names[o], *outs[p], out_names[p]));
  }
  if (!a.k.on_cuda()) {  // host memory: check the data itself (the CUDA kernels clamp instead)
    for (int64_t h = 0; h < a.H; h++) {
      const int64_t c = a.cnt.ptr<int32_t>()[h * a.cnt.stride[0]];
      if (c < 0 || c > a.cap_in || c > a.cap)
        return fail(KVT_ERR_RANGE, "counts: counts[" + std::to_string(h) + "] = " + std::to_string(c) +
                                       " must be in [0, min(indices capacity " + std::to_string(a.cap_in) +
                                       ", output capacity " + std::to_string(a.cap) + ")]");
      int64_t prev = -1;
      for (int64_t j = 0; j < c; j++) {
        const int64_t i = a.idx.ptr<int32_t>()[h * a.idx.stride[0] + j * a.idx.stride[1]];
        if (i < 0 || i >= a.N || i <= prev)
          return fail(KVT_ERR_RANGE, "indices: row " + std::to_string(h) + " must hold strictly ascending positions in [0, " +
                                         std::to_string(a.N) + ") before counts[h]; entry " + std::to_string(j) + " is " +
                                         std::to_string(i));
        prev = i;
      }
    }
    for (int64_t j = 0; j < a.Qs; j++) {
      const int64_t p = a.qp.ptr<int32_t>()[j * a.qp.stride[0]];
      if (p < 0 || p >= a.N)
        return fail(KVT_ERR_RANGE, "queryPositions: entry " + std::to_string(j) + " is " + std::to_string(p) +
                                       ", must be a position in [0, " + std::to_string(a.N) + ")");
      if (a.has_w) {
        const float w = a.w.ptr<float>()[j * a.w.stride[0]];
        if (!(w >= 0) || !finite_f(w)) {
          std::ostringstream os;
          os << "weights: entry " << j << " is " << w << ", must be finite and >= 0";
          return fail(KVT_ERR_RANGE, os.str());
        }
      }
    }
  }
  return KVT_OK;
}

}  // namespace kvt

using namespace kvt;

extern "C" void kvt_grkv_default_opts(kvt_grkv_opts* o) {
  if (!o) return;
  o->window = 32;
  o->cg_iters = 16;
  o->gamma = 0.1;
  o->lambda = 0.01;
  o->cap_key = 0.025;
  o->cap_value = 0.10;
  o->tol = 1e-6;
  o->scale = 0;
  o->accept = KVT_GRKV_ACCEPT_BEST;
}

extern "C" kvt_status kvt_grkv_merge(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                                     const kvt_tensor* counts, const kvt_tensor* queries, const kvt_tensor* query_positions,
                                     const kvt_tensor* weights, const kvt_tensor* scores, const kvt_grkv_opts* opts,
                                     const kvt_tensor* keys_out, const kvt_tensor* values_out, const kvt_tensor* counts_out,
                                     const kvt_tensor* diagnostics, kvt_stream stream) {
  GrkvArgs a;
  KVT_TRY(validate(keys, values, indices, counts, queries, query_positions, weights, scores, opts, keys_out, values_out,
                   counts_out, diagnostics, a));
#if defined(KVT_WITH_CUDA)
  if (a.k.on_cuda()) {
    if (a.rows > cuda::kGrkvMaxRows) {
      std::ostringstream os;
      os << "queries: the CUDA backend fits at most " << cuda::kGrkvMaxRows << " query rows per KV head, got G*Qs = "
         << a.G << "*" << a.Qs << " = " << a.rows;
      return fail(KVT_ERR_RANGE, os.str());
    }
    if (a.d > cuda::kGrkvMaxDim || a.dv > cuda::kGrkvMaxDim) {
      std::ostringstream os;
      os << (a.d > cuda::kGrkvMaxDim ? "keys" : "values") << ": the CUDA backend supports head dims up to "
         << cuda::kGrkvMaxDim << ", got d = " << a.d << ", dv = " << a.dv;
      return fail(KVT_ERR_RANGE, os.str());
    }
    KVT_CUDA_TRY(set_device(a.k.device_id));
    cuda::GrkvParams p;
    p.keys = t3(a.k);
    p.values = t3(a.v);
    p.indices = t2(a.idx);
    p.counts = t2(a.cnt);
    p.queries = t3(a.q);
    p.qpos = a.qp.ptr<int32_t>();
    p.qpos_s = a.qp.stride[0];
    p.weights = a.has_w ? a.w.ptr<float>() : nullptr;
    p.weights_s = a.has_w ? a.w.stride[0] : 0;
    p.scores = t2(a.sc);
    p.keys_out = o3(a.ko);
    p.values_out = o3(a.vo);
    p.counts_out = t2(a.co);
    p.diag = a.has_dg ? a.dg.ptr<float>() : nullptr;
    p.diag_s0 = a.has_dg ? a.dg.stride[0] : 0;
    p.diag_s1 = a.has_dg ? a.dg.stride[1] : 0;
    p.window = a.o.window;
    p.cg_iters = a.o.cg_iters;
    p.gamma = a.o.gamma;
    p.lambda = a.o.lambda;
    p.cap_key = a.o.cap_key;
    p.cap_value = a.o.cap_value;
    p.tol = a.o.tol;
    p.scale = a.scale;
    p.accept = a.o.accept;
    return cuda_status(cuda::grkv_merge(p, static_cast<cudaStream_t>(stream)), "grkvMerge");
  }
#else
  (void)stream;
#endif
  cpu::Merge(a).run();
  return KVT_OK;
}
