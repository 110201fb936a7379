// C ABI entry point of the multi-round moment-informed eviction (docs/methods/momentkv.md §5.2-§5.3): the defaults,
// validation, then the CUDA launcher or the CPU backend.
#include <algorithm>
#include <cmath>
#include <string>

#include "abi/moment_state.h"
#include "abi/validate.h"
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
    KVT_TRY(check_distinct(*outs[a], out_names[a]));
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
  if (!s.on_cuda())
    KVT_TRY(check_scratch(4.0 * double(H) * double(N) + 32.0 * double(N) * 4 + 8.0 * double(dv) * (double(d) + double(dv)),
                          s.span_bytes() + k.span_bytes() + v.span_bytes(), "scores", "momentkvSelect",
                          "round labels, rank keys and the summary subspace"));
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
