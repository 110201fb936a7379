// Token selection (spec/nestedkv.md §4): uniform per-head top-k and the AdaKV-style adaptive layer budget.
// C ABI entry point, validation and the CPU backend. The ranking is the unique 64-bit key of kvt_math.h, so the
// CPU and CUDA backends select identical sets from identical scores.
#include <algorithm>
#include <functional>
#include <vector>

#include "cpu/parallel.h"
#include "kvt_internal.h"
#if defined(KVT_WITH_CUDA)
#include "cuda_status.h"
#endif

namespace kvt {

int32_t select_n_safe(const kvt_select_opts& o) {
  if (o.budget != KVT_BUDGET_ADAPTIVE) return 0;
  return int32_t(floor(double(o.keep) * o.safeguard + 1e-9));
}

namespace cpu {

static inline float score_at(const View& s, int64_t h, int64_t i) {
  return s.ptr<float>()[h * s.stride[0] + i * s.stride[1]];
}

// k-th largest key of `keys` (1 <= k <= size); reorders `keys`.
static uint64_t kth_largest(std::vector<uint64_t>& keys, int64_t k) {
  std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(), std::greater<uint64_t>());
  return keys[size_t(k - 1)];
}

static void select(const View& s, const kvt_select_opts& o, int32_t n_safe, const View& idx, const View& cnt) {
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

using namespace kvt;

extern "C" int64_t kvt_select_capacity(int64_t H, int64_t N, const kvt_select_opts* o) {
  if (!o || H <= 0) return 0;
  int64_t keep = std::min<int64_t>(o->keep, N);
  if (o->budget != KVT_BUDGET_ADAPTIVE) return keep;
  int64_t bound = H * keep - (H - 1) * int64_t(select_n_safe(*o));
  return std::min<int64_t>(N, bound);
}

extern "C" kvt_status kvt_select_tokens(const kvt_tensor* scores, const kvt_select_opts* opts, const kvt_tensor* indices,
                                        const kvt_tensor* counts, kvt_stream stream) {
  View s, idx, cnt;
  KVT_TRY(check_tensor(scores, "scores", 2, kMaskF32, "[H, N]", &s));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_select_opts o = *opts;
  const int64_t H = s.shape[0], N = s.shape[1];
  if (H < 1 || N < 1) return fail(KVT_ERR_RANGE, "scores: H and N must be >= 1, got shape " + shape_str(s.shape, 2));
  if (H * N >= (int64_t(1) << 32)) return fail(KVT_ERR_RANGE, "scores: H*N must be < 2^32");
  if (o.budget != KVT_BUDGET_UNIFORM && o.budget != KVT_BUDGET_ADAPTIVE)
    return fail(KVT_ERR_RANGE, "budget: must be 'uniform' or 'adaptive'");
  KVT_TRY(check_range(o.keep, 1, double(N), "keep"));
  KVT_TRY(check_range(o.safeguard, 0, 1, "safeguard"));
  KVT_TRY(check_range(o.sinks, 0, 2147483647.0, "sinks"));
  KVT_TRY(check_range(o.recent, 0, 2147483647.0, "recent"));
  KVT_TRY(check_tensor(indices, "indices", 2, kMaskI32, "[H, cap]", &idx));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[H]", &cnt));
  KVT_TRY(check_same_device(s, "scores", idx, "indices"));
  KVT_TRY(check_same_device(s, "scores", cnt, "counts"));
  KVT_TRY(check_dim(idx, "indices", 0, H, "H of scores"));
  KVT_TRY(check_dim(cnt, "counts", 0, H, "H of scores"));
  const int64_t need = kvt_select_capacity(H, N, &o);
  if (idx.shape[1] < need)
    return fail(KVT_ERR_RANGE, "indices: capacity (dimension 1) must be at least " + std::to_string(need) +
                                   " for these options, got " + std::to_string(idx.shape[1]));
  KVT_TRY(check_no_overlap(idx, "indices", s, "scores"));
  KVT_TRY(check_no_overlap(cnt, "counts", s, "scores"));
  KVT_TRY(check_no_overlap(cnt, "counts", idx, "indices"));
  const int32_t n_safe = select_n_safe(o);
#if defined(KVT_WITH_CUDA)
  if (s.on_cuda()) {
    KVT_CUDA_TRY(set_device(s.device_id));
    cuda::SelectParams p{o.keep, o.budget, o.sinks, o.recent, n_safe};
    return cuda_status(cuda::select_tokens(t2(s), p, t2(idx), t2(cnt), static_cast<cudaStream_t>(stream)), "selectTokens");
  }
#else
  (void)stream;
#endif
  cpu::select(s, o, n_safe, idx, cnt);
  return KVT_OK;
}
