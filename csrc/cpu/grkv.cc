// GRKV merge on the CPU backend (docs/methods/grkv.md §4-§7, choices §11): the entry point and the phases around the fits:
// plain eviction into the outputs, the partition (docs/methods/grkv.md §4: fixed window and anchor rows, mutable rows) with the query
// and retained rows of each head, the key+value objective, and the choice per head (docs/methods/grkv.md §7.3) with its diagnostics.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/grkv_merge.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"

namespace kvt {
namespace cpu {
namespace grkv {

// Copies one row between views of the same dtype (bit-exact), or zero-fills it (src == nullptr).
static void copy_row(const View& src, int64_t h, int64_t i, const View& dst, int64_t j) {
  const int64_t w = dst.shape[2], es = dtype_size(dst.dtype);
  if (w == 0) return;  // an empty row (its base may be null)
  char* o = dst.base + (h * dst.stride[0] + j * dst.stride[1]) * es;
  if (i < 0) {
    for (int64_t c = 0; c < w; c++) std::memset(o + c * dst.stride[2] * es, 0, size_t(es));
    return;
  }
  const char* s = row_ptr(src, h, i);
  if (src.stride[2] == 1 && dst.stride[2] == 1) {
    std::memcpy(o, s, size_t(w * es));
  } else {
    for (int64_t c = 0; c < w; c++) std::memcpy(o + c * dst.stride[2] * es, s + c * src.stride[2] * es, size_t(es));
  }
}

// Writes an f32 row (values already representable in the dtype) into a storage row.
static void store_row(const View& dst, int64_t h, int64_t j, const float* x) {
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

void Merge::run() {
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

// Plain eviction first: every output row is the gathered (or zero) row; merged rows overwrite it at the end.
void Merge::gather_outputs() {
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

// Partition (docs/methods/grkv.md §4), query rows, retained rows.
void Merge::setup() {
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

void Merge::key_value_objective() {
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

void Merge::finish() {
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

}  // namespace grkv

void grkv_merge(const GrkvArgs& a) { grkv::Merge(a).run(); }

void grkv_empty(const GrkvArgs& a) {
  for (int64_t h = 0; h < a.H; h++) {
    for (int64_t j = 0; j < a.cap; j++) {
      grkv::copy_row(a.k, h, -1, a.ko, j);
      grkv::copy_row(a.v, h, -1, a.vo, j);
    }
    a.co.ptr<int32_t>()[h * a.co.stride[0]] = 0;
    if (a.has_dg) {
      GrkvHead st{};
      st.flags = kGrkvSkipped;
      st.cg_stop = kCgNotRun;
      grkv_diag_row(st, a.dg.ptr<float>() + h * a.dg.stride[0], a.dg.stride[1]);
    }
  }
}

}  // namespace cpu
}  // namespace kvt
