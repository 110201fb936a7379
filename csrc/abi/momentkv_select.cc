// C ABI entry point of the multi-round moment-informed eviction (docs/methods/momentkv.md §5.2-§5.3): the defaults,
// validation, then the CUDA launcher or the CPU backend.
#include <algorithm>
#include <cmath>
#include <string>

#include "abi/moment_state.h"
#include "abi/batch.h"
#include "abi/validate.h"
#include "cpu/batch.h"
#include "cpu/ops.h"
#include "math/momentkv.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

extern "C" void kvt_momentkv_select_default_opts(kvt_momentkv_select_opts* o) {
  if (!o) return;
  o->keep = 0;
  o->rounds = 4;
  o->r = 1;
  o->mi = 1;
  o->eps = 0.05;
}

// The option checks shared by the per-sequence and the batched entry points (keep depends on the sequence).
static kvt_status check_opts(const kvt_momentkv_select_opts& o) {
  KVT_TRY(check_range(o.rounds, 1, 1 << 20, "rounds"));
  KVT_TRY(check_range(o.r, 0, mkv::kMaxR, "r"));
  KVT_TRY(check_range(o.eps, 0, 1e30, "eps"));
  if (o.mi != 0 && o.mi != 1) return fail(KVT_ERR_RANGE, "mi: must be 0 or 1");
  return KVT_OK;
}

// Host scores [H, N]: finite or +Infinity (protected), at most `keep` protected per head. `seq` prefixes messages.
static kvt_status check_scores(const View& s, int64_t keep, const std::string& seq) {
  const int64_t H = s.shape[0], N = s.shape[1];
  for (int64_t h = 0; h < H; h++) {
    int64_t prot = 0;
    for (int64_t i = 0; i < N; i++) {
      const float x = s.ptr<float>()[h * s.stride[0] + i * s.stride[1]];
      if (x == INFINITY) prot++;
      else if (!(x > -INFINITY && x < INFINITY))
        return fail(KVT_ERR_RANGE, "scores: " + seq + "scores[" + std::to_string(h) + ", " + std::to_string(i) + "] = " +
                                       std::to_string(x) + " (must be finite, or +Infinity for a protected token)");
    }
    if (prot > keep)
      return fail(KVT_ERR_RANGE, "keep: " + seq + "head " + std::to_string(h) + " has " + std::to_string(prot) +
                                     " protected (+Infinity) tokens, more than keep = " + std::to_string(keep));
  }
  return KVT_OK;
}

// The CPU scratch of one sequence: round labels, rank keys and the summary subspace.
static kvt_status check_cpu_scratch(int64_t H, int64_t N, int64_t d, int64_t dv, int64_t span_bytes) {
  return check_scratch(4.0 * double(H) * double(N) + 32.0 * double(N) * 4 + 8.0 * double(dv) * (double(d) + double(dv)),
                       span_bytes, "scores", "momentkvSelect", "round labels, rank keys and the summary subspace");
}

// Outputs and the state never overlap the inputs or each other (whole tensors, also for the batched entry point).
static kvt_status check_overlaps(const View& s, const View& k, const View& v, const View& idx, const View& cnt,
                                 const View* er, const MomentViews& m) {
  const View* ins[] = {&s, &k, &v};
  const char* in_names[] = {"scores", "keys", "values"};
  const View* outs[] = {&idx, &cnt, er};
  const char* out_names[] = {"indices", "counts", "evictedRound"};
  const int nout = er ? 3 : 2;
  for (int a = 0; a < nout; a++) {
    KVT_TRY(check_distinct(*outs[a], out_names[a]));
    for (int i = 0; i < 3; i++) KVT_TRY(check_no_overlap(*outs[a], out_names[a], *ins[i], in_names[i]));
    for (int c = 0; c < a; c++) KVT_TRY(check_no_overlap(*outs[a], out_names[a], *outs[c], out_names[c]));
    KVT_TRY(check_moments_no_overlap(m, *outs[a], out_names[a]));
  }
  for (int i = 0; i < 3; i++) KVT_TRY(check_moments_no_overlap(m, *ins[i], in_names[i]));
  return KVT_OK;
}

extern "C" kvt_status kvt_momentkv_select(const kvt_tensor* scores, const kvt_tensor* keys, const kvt_tensor* values,
                                          const kvt_momentkv_select_opts* opts, const kvt_tensor* indices,
                                          const kvt_tensor* counts, const kvt_moments* moments,
                                          const kvt_tensor* evicted_round, kvt_stream stream) try {
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
  KVT_TRY(check_opts(o));
  if (idx.shape[1] < o.keep)
    return fail(KVT_ERR_RANGE, "indices: capacity (dimension 1) must be at least keep = " + std::to_string(o.keep) +
                                   ", got " + std::to_string(idx.shape[1]));
  MomentViews m;
  KVT_TRY(check_moments(moments, s, "scores", H, d, dv, &m));
  KVT_TRY(check_overlaps(s, k, v, idx, cnt, evicted_round ? &er : nullptr, m));
  if (!s.on_cuda()) KVT_TRY(check_scores(s, o.keep, ""));
  if (!s.on_cuda()) KVT_TRY(check_cpu_scratch(H, N, d, dv, s.span_bytes() + k.span_bytes() + v.span_bytes()));
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
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): sequence b keeps min(keep_b, n_b) per head; its evicted rows go to virtual heads
// b*H .. b*H + H - 1 of the moment state. Empty sequences get counts 0 and -1 indices.
extern "C" kvt_status kvt_momentkv_select_batched(const kvt_seqs* seqs, const kvt_tensor* scores, const kvt_tensor* keys,
                                                  const kvt_tensor* values, const kvt_momentkv_select_opts* opts,
                                                  const kvt_tensor* keep, const kvt_tensor* indices, const kvt_tensor* counts,
                                                  const kvt_moments* moments, const kvt_tensor* evicted_round,
                                                  kvt_stream stream) try {
  (void)stream;
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_momentkv_select_opts o = *opts;
  Batch b;
  View s, k, v, idx, cnt, er;
  int64_t H, d, Hv, dv;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &k, &H, &d));
  KVT_TRY(check_seq_data(b, values, "values", kMaskFloat, &v, &Hv, &dv));
  if (Hv != H) return fail(KVT_ERR_RANGE, "values: expected H = " + std::to_string(H) + " heads like keys, got " + std::to_string(Hv));
  KVT_TRY(check_token_tensor(b, scores, "scores", kMaskF32, H, &s));
  KVT_TRY(check_seq_tensor(b, indices, "indices", 3, kMaskI32, "[B, H, cap]", H, &idx));
  KVT_TRY(check_seq_tensor(b, counts, "counts", 2, kMaskI32, "[B, H]", H, &cnt));
  if (evicted_round) KVT_TRY(check_token_tensor(b, evicted_round, "evictedRound", kMaskI32, H, &er));
  KVT_TRY(check_opts(o));
  MomentViews m;
  KVT_TRY(check_batch_moments(b, moments, k, H, d, dv, &m));
  KVT_TRY(check_moments_not_table(b, m));
  KVT_TRY(check_not_table(b, idx, "indices"));
  KVT_TRY(check_not_table(b, cnt, "counts"));
  if (evicted_round) KVT_TRY(check_not_table(b, er, "evictedRound"));
  KVT_TRY(check_overlaps(s, k, v, idx, cnt, evicted_round ? &er : nullptr, m));
  std::vector<int32_t> kb;
  KVT_TRY(resolve_keep(b, o.keep, keep, &kb));
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // keep_b and the rounds' plan per sequence on the device
    if (dv > 256)
      return fail(KVT_ERR_RANGE, "values: the CUDA momentkvSelectBatched supports dv up to 256, got " + std::to_string(dv));
    KVT_CUDA_TRY(set_device(k.device_id));
    const cuda::Seqs sq = evicted_round ? cuda_seqs(b, {&k, &v}, {&s, &er}) : cuda_seqs(b, {&k, &v}, {&s});
    int64_t ks;
    const int32_t* kp = keep_ptr(keep, &ks);
    cuda::MkvSelectParams p{o.keep, o.mi ? o.rounds : 1, int32_t(std::min<int64_t>(o.r, dv)), o.mi, float(o.eps)};
    cuda::T2 ert = evicted_round ? batch_tok(b, er) : cuda::T2{nullptr, kI32, 0, 0, 0, 0};
    return cuda_status(cuda::momentkv_select_batched(sq, batch_tok(b, s), batch_t3(b, k, sq), batch_t3(b, v, sq), p, kp, ks,
                                                     seq_t2(idx), seq_t2(cnt), cuda_moments(m), evicted_round ? &ert : nullptr,
                                                     static_cast<cudaStream_t>(stream)),
                       "momentkvSelectBatched");
  }
#endif
  for (int64_t i = 0; i < b.B; i++) {
    if (b.len(i) == 0) continue;
    if (H * b.len(i) >= (int64_t(1) << 31))
      return fail(KVT_ERR_RANGE, "scores: H*N must be < 2^31, sequence " + std::to_string(i) + " has " + std::to_string(b.len(i)));
    if (idx.shape[2] < kb[size_t(i)])
      return fail(KVT_ERR_RANGE, "indices: capacity (dimension 2) must be at least keep = " + std::to_string(kb[size_t(i)]) +
                                     " of sequence " + std::to_string(i) + ", got " + std::to_string(idx.shape[2]));
    KVT_TRY(check_scores(token_view(b, s, i), kb[size_t(i)], "sequence " + std::to_string(i) + ": "));
  }
  cpu::for_each_seq(b.B, [&](int64_t i) { return H * b.len(i); },
                    [&](int64_t i) {
                      const View ii = seq_slice(idx, i), ci = seq_slice(cnt, i);
                      if (b.len(i) == 0 || H == 0) return cpu::empty_selection(ii, ci);
                      kvt_momentkv_select_opts oi = o;
                      oi.keep = kb[size_t(i)];
                      const View eri = evicted_round ? token_view(b, er, i) : View();
                      cpu::momentkv_select(token_view(b, s, i), seq_view(b, k, i), seq_view(b, v, i), oi, ii, ci,
                                           moments_slice(m, i, H), evicted_round ? &eri : nullptr);
                    });
  return KVT_OK;
} KVT_API_CATCH
