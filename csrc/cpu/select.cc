// Token selection on the CPU backend (docs/methods/selection.md §4): uniform per-head top-k and the AdaKV-style adaptive layer
// budget, by k-th largest pivots of the unique 64-bit rank key of math/common.h, so the CPU and CUDA backends select
// identical sets from identical scores.
#include <algorithm>
#include <functional>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"

namespace kvt {
namespace cpu {

static inline float score_at(const View& s, int64_t h, int64_t i) {
  return s.ptr<float>()[h * s.stride[0] + i * s.stride[1]];
}

// k-th largest key of `keys` (1 <= k <= size); reorders `keys`.
static uint64_t kth_largest(std::vector<uint64_t>& keys, int64_t k) {
  std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(), std::greater<uint64_t>());
  return keys[size_t(k - 1)];
}

void select(const View& s, const kvt_select_opts& o, int32_t n_safe, const View& idx, const View& cnt) {
  const int64_t H = s.shape[0], N = s.shape[1], cap = idx.shape[1];
  auto key = [&](int64_t h, int64_t i) {
    return rank_key(score_at(s, h, i), is_forced_position(i, N, o.sinks, o.recent), i, h, H);
  };
  // Per-head pivot for the uniform budget (k = keep) or the adaptive safeguard (k = n_safe).
  const int64_t k_head = o.budget == KVT_BUDGET_ADAPTIVE ? n_safe : o.keep;
  std::vector<uint64_t> head_pivot(static_cast<size_t>(H), ~uint64_t(0));
  if (k_head > 0) {
    parallel_for(H, 1, [&](int64_t b, int64_t e) {
      std::vector<uint64_t> keys(static_cast<size_t>(N));
      for (int64_t h = b; h < e; h++) {
        for (int64_t i = 0; i < N; i++) keys[size_t(i)] = key(h, i);
        head_pivot[size_t(h)] = kth_largest(keys, k_head);
      }
    });
  }
  uint64_t global_pivot = 0;
  auto adaptive_key = [&](int64_t h, int64_t i) {
    uint64_t kk = key(h, i);
    if (kk >= head_pivot[size_t(h)]) kk |= uint64_t(kForcedKey) << 32;  // safeguard: promote to forced
    return kk;
  };
  if (o.budget == KVT_BUDGET_ADAPTIVE) {
    std::vector<uint64_t> keys(static_cast<size_t>(H * N));
    parallel_for(H, 1, [&](int64_t b, int64_t e) {
      for (int64_t h = b; h < e; h++)
        for (int64_t i = 0; i < N; i++) keys[size_t(h * N + i)] = adaptive_key(h, i);
    });
    global_pivot = kth_largest(keys, H * int64_t(o.keep));
  }
  parallel_for(H, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; h++) {
      int32_t* out = idx.ptr<int32_t>() + h * idx.stride[0];
      int64_t c = 0;
      for (int64_t i = 0; i < N; i++) {
        bool kept = o.budget == KVT_BUDGET_ADAPTIVE ? adaptive_key(h, i) >= global_pivot : key(h, i) >= head_pivot[size_t(h)];
        if (kept) {
          if (c < cap) out[c * idx.stride[1]] = int32_t(i);
          c++;
        }
      }
      for (int64_t j = c; j < cap; j++) out[j * idx.stride[1]] = -1;
      cnt.ptr<int32_t>()[h * cnt.stride[0]] = int32_t(c);
    }
  });
}

}  // namespace cpu
}  // namespace kvt
