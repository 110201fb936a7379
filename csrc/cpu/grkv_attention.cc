// GRKV merge on the CPU backend (docs/methods/grkv.md §5, §6): the target o* = full causal attention over all N keys (split
// over key chunks with an LSE merge), and the attention of the query rows over the retained rows of the current
// candidate with its output o = A V.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/grkv_merge.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"

namespace kvt {
namespace cpu {
namespace grkv {

// o* = full causal attention over all N positions (docs/methods/grkv.md §5, §6), split over key chunks with an LSE merge.
void Merge::target() {
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
void Merge::attention_and_output(bool all) {
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

}  // namespace grkv
}  // namespace cpu
}  // namespace kvt
