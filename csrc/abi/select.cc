// C ABI entry points of token selection (docs/methods/selection.md §4): the capacity bound, validation, then the CUDA
// launcher or the CPU backend. Both backends rank by the unique 64-bit key of math/common.h.
#include <algorithm>
#include <cmath>
#include <string>

#include "abi/batch.h"
#include "abi/validate.h"
#include "cpu/batch.h"
#include "cpu/ops.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

// Head-wise safeguard of the adaptive budget: floor(keep * safeguard) forced tokens per head (0 for uniform).
int32_t kvt::select_n_safe(const kvt_select_opts& o) {
  if (o.budget != KVT_BUDGET_ADAPTIVE || !(o.safeguard >= 0 && o.safeguard <= 1) || o.keep < 0) return 0;
  return int32_t(floor(double(o.keep) * o.safeguard + 1e-9));  // in [0, keep]
}

extern "C" void kvt_select_default_opts(kvt_select_opts* o) {
  if (!o) return;
  o->keep = 0;
  o->budget = KVT_BUDGET_UNIFORM;
  o->safeguard = 0.2;
  o->sinks = 0;
  o->recent = 0;
}

extern "C" int64_t kvt_select_capacity(int64_t H, int64_t N, const kvt_select_opts* o) {
  if (!o || H <= 0 || N <= 0) return 0;
  const int64_t keep = std::max<int64_t>(0, std::min<int64_t>(o->keep, N));
  if (o->budget != KVT_BUDGET_ADAPTIVE) return keep;
  // H*keep - (H-1)*n_safe, saturated at N (an invalid safeguard counts as 0: the larger, always sufficient bound)
  int64_t all = 0, safe = 0, bound = 0;
  if (__builtin_mul_overflow(H, keep, &all) || __builtin_mul_overflow(H - 1, int64_t(select_n_safe(*o)), &safe) ||
      __builtin_sub_overflow(all, safe, &bound))
    return N;
  return std::min<int64_t>(N, bound);
}

// The option checks shared by the per-sequence and the batched entry points (keep depends on the sequence).
kvt_status kvt::check_select_opts(const kvt_select_opts& o) {
  if (o.budget != KVT_BUDGET_UNIFORM && o.budget != KVT_BUDGET_ADAPTIVE)
    return fail(KVT_ERR_RANGE, "budget: must be 'uniform' or 'adaptive'");
  KVT_TRY(check_range(o.safeguard, 0, 1, "safeguard"));
  KVT_TRY(check_range(o.sinks, 0, 2147483647.0, "sinks"));
  KVT_TRY(check_range(o.recent, 0, 2147483647.0, "recent"));
  return KVT_OK;
}

extern "C" kvt_status kvt_select_tokens(const kvt_tensor* scores, const kvt_select_opts* opts, const kvt_tensor* indices,
                                        const kvt_tensor* counts, kvt_stream stream) try {
  View s, idx, cnt;
  KVT_TRY(check_tensor(scores, "scores", 2, kMaskF32, "[H, N]", &s));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_select_opts o = *opts;
  const int64_t H = s.shape[0], N = s.shape[1];
  if (H < 1 || N < 1) return fail(KVT_ERR_RANGE, "scores: H and N must be >= 1, got shape " + shape_str(s.shape, 2));
  if (H * N >= (int64_t(1) << 32)) return fail(KVT_ERR_RANGE, "scores: H*N must be < 2^32");
  KVT_TRY(check_select_opts(o));
  KVT_TRY(check_range(o.keep, 1, double(N), "keep"));
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
  KVT_TRY(check_distinct(idx, "indices"));
  KVT_TRY(check_distinct(cnt, "counts"));
  KVT_TRY(check_no_overlap(idx, "indices", s, "scores"));
  KVT_TRY(check_no_overlap(cnt, "counts", s, "scores"));
  KVT_TRY(check_no_overlap(cnt, "counts", idx, "indices"));
  const int32_t n_safe = select_n_safe(o);
  if (!s.on_cuda())
    KVT_TRY(check_scratch(8.0 * double(N) * (o.budget == KVT_BUDGET_ADAPTIVE ? double(H) : 4.0), s.span_bytes(), "scores", "selectTokens",
                          "64-bit rank keys"));
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
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): sequence b keeps min(keep_b, n_b) per head; the adaptive budget is one
// layer-wide top-k per sequence. Empty sequences get counts 0 and -1 indices.
extern "C" kvt_status kvt_select_tokens_batched(const kvt_seqs* seqs, const kvt_tensor* scores, const kvt_select_opts* opts,
                                                const kvt_tensor* keep, const kvt_tensor* indices, const kvt_tensor* counts,
                                                kvt_stream stream) try {
  (void)stream;
  Batch b;
  View s, idx, cnt;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_token_tensor(b, scores, "scores", kMaskF32, -1, &s));
  const int64_t H = b.t.layout == kSeqsRagged ? s.shape[0] : s.shape[1];
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_select_opts o = *opts;
  KVT_TRY(check_select_opts(o));
  KVT_TRY(check_seq_tensor(b, indices, "indices", 3, kMaskI32, "[B, H, cap]", H, &idx));
  KVT_TRY(check_seq_tensor(b, counts, "counts", 2, kMaskI32, "[B, H]", H, &cnt));
  KVT_TRY(check_distinct(idx, "indices"));
  KVT_TRY(check_distinct(cnt, "counts"));
  KVT_TRY(check_not_table(b, idx, "indices"));
  KVT_TRY(check_not_table(b, cnt, "counts"));
  KVT_TRY(check_no_overlap(idx, "indices", s, "scores"));
  KVT_TRY(check_no_overlap(cnt, "counts", s, "scores"));
  KVT_TRY(check_no_overlap(cnt, "counts", idx, "indices"));
  std::vector<int32_t> kb;
  KVT_TRY(resolve_keep(b, o.keep, keep, &kb));
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // device tables: keep_b, capacities and lengths are the kernels' (clamped, never out of bounds)
    KVT_CUDA_TRY(set_device(s.device_id));
    const cuda::Seqs sq = cuda_seqs(b, {}, {&s});
    int64_t ks;
    const int32_t* kp = keep_ptr(keep, &ks);
    cuda::SelectParams p{o.keep, o.budget, o.sinks, o.recent, 0, o.safeguard};
    return cuda_status(cuda::select_tokens_batched(sq, batch_tok(b, s), p, kp, ks, seq_t2(idx), seq_t2(cnt),
                                                   static_cast<cudaStream_t>(stream)),
                       "selectTokensBatched");
  }
#endif
  for (int64_t i = 0; i < b.B; i++) {
    if (b.len(i) == 0) continue;
    if (H * b.len(i) >= (int64_t(1) << 32))
      return fail(KVT_ERR_RANGE, "scores: H*N must be < 2^32, sequence " + std::to_string(i) + " has " + std::to_string(b.len(i)));
    kvt_select_opts oi = o;
    oi.keep = kb[size_t(i)];
    const int64_t need = kvt_select_capacity(H, b.len(i), &oi);
    if (idx.shape[2] < need)
      return fail(KVT_ERR_RANGE, "indices: capacity (dimension 2) must be at least " + std::to_string(need) + " for sequence " +
                                     std::to_string(i) + ", got " + std::to_string(idx.shape[2]));
  }
  cpu::for_each_seq(b.B, [&](int64_t i) { return H * b.len(i); },
                    [&](int64_t i) {
                      const View ii = seq_slice(idx, i), ci = seq_slice(cnt, i);
                      if (b.len(i) == 0 || H == 0) return cpu::empty_selection(ii, ci);
                      kvt_select_opts oi = o;
                      oi.keep = kb[size_t(i)];
                      cpu::select(token_view(b, s, i), oi, select_n_safe(oi), ii, ci);
                    });
  return KVT_OK;
} KVT_API_CATCH
