// C ABI entry points of NestedKV scoring (docs/methods/nestedkv.md §3 S1–S7, §9 choices): the defaults, the default block
// size, validation, then the CUDA launcher or the CPU backend.
#include <cmath>
#include <string>

#include "abi/batch.h"
#include "abi/validate.h"
#include "cpu/batch.h"
#include "cpu/ops.h"
#include "math/nestedkv.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

extern "C" void kvt_nestedkv_default_opts(kvt_nestedkv_opts* o) {
  if (!o) return;
  o->window = 64;
  o->block = 0;
  o->prior[0] = 0.4;
  o->prior[1] = 0.4;
  o->prior[2] = 0.2;
  o->beta = 3.0;
  o->tau = 0.6;
  o->kappa = 10.0;
  o->tail = 0.1;
  o->sinks = 4;
  o->scales = KVT_SCALES_ALL;
}

extern "C" int64_t kvt_nestedkv_block_size(int64_t N) { return nkv::default_block(N); }

// Finite and within the f32 range (tau and kappa are used as f32).
static kvt_status check_finite(double v, const char* name) {
  if (!(std::fabs(v) <= 3.4028234663852886e38))
    return fail(KVT_ERR_RANGE, std::string(name) + ": must be finite (within the f32 range), got " + std::to_string(v));
  return KVT_OK;
}

// The option checks shared by the per-sequence and the batched entry points.
static kvt_status check_opts(const kvt_nestedkv_opts& o) {
  KVT_TRY(check_range(o.window, 1, 2147483647.0, "window"));
  KVT_TRY(check_range(o.block, 0, 2147483647.0, "block"));
  for (int x = 0; x < 3; x++) {
    if (!(std::isfinite(o.prior[x]) && o.prior[x] >= 0))
      return fail(KVT_ERR_RANGE, "prior: expected 3 finite non-negative weights, got prior[" + std::to_string(x) +
                                     "] = " + std::to_string(o.prior[x]));
  }
  if (!(o.prior[0] > 0 || o.prior[1] > 0 || o.prior[2] > 0))
    return fail(KVT_ERR_RANGE, "prior: at least one weight must be positive");
  KVT_TRY(check_finite(o.beta, "beta"));
  KVT_TRY(check_finite(o.tau, "tau"));
  KVT_TRY(check_finite(o.kappa, "kappa"));
  KVT_TRY(check_range(o.tail, 0, 1, "tail"));
  KVT_TRY(check_range(o.sinks, 0, 2147483647.0, "sinks"));
  if (o.scales != KVT_SCALES_ALL && o.scales != KVT_SCALES_GLOBAL)
    return fail(KVT_ERR_RANGE, "scales: must be 'all' or 'global'");
  return KVT_OK;
}

// The CPU parameters of one sequence of N tokens (the default block size depends on N).
static cpu::NestedkvParams params(const kvt_nestedkv_opts& o, int64_t H, int64_t N, int64_t d) {
  cpu::NestedkvParams p;
  p.H = H;
  p.N = N;
  p.d = d;
  p.W = o.window;
  p.b = o.block > 0 ? o.block : nkv::default_block(N);
  p.nb = (N + p.b - 1) / p.b;
  p.sinks = o.sinks;
  p.m = nkv::tail_count(o.tail, N);
  for (int x = 0; x < 3; x++) p.prior[x] = o.prior[x];
  p.beta = o.beta;
  p.tau = float(o.tau);
  p.kappa = float(o.kappa);
  p.global = o.scales == KVT_SCALES_GLOBAL;
  return p;
}

// The CPU scratch of one sequence: 3 f32 anomalies per token and 32.32 fixed-point block sums.
static kvt_status check_cpu_scratch(const cpu::NestedkvParams& p, int64_t span_bytes) {
  return check_scratch(12.0 * double(p.H) * double(p.N) + 12.0 * double(p.H) * double(p.nb) * double(p.d) + 8.0 * double(p.N),
                       span_bytes, "keys", "nestedkvScores", "3 f32 anomalies per token, 32.32 fixed-point block sums");
}

extern "C" kvt_status kvt_nestedkv_scores(const kvt_tensor* keys, const kvt_nestedkv_opts* opts, const kvt_tensor* scores,
                                          kvt_stream stream) try {
  View k, s;
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[H, N, d]", &k));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_nestedkv_opts o = *opts;
  KVT_TRY(check_tensor(scores, "out", 2, kMaskF32, "[H, N]", &s));
  KVT_TRY(check_same_device(k, "keys", s, "out"));
  KVT_TRY(check_dim(s, "out", 0, k.shape[0], "H of keys"));
  KVT_TRY(check_dim(s, "out", 1, k.shape[1], "N of keys"));
  KVT_TRY(check_distinct(s, "out"));
  KVT_TRY(check_no_overlap(s, "out", k, "keys"));
  const int64_t H = k.shape[0], N = k.shape[1], d = k.shape[2];
  if (N > 2147483647) return fail(KVT_ERR_RANGE, "keys: N must be < 2^31, got " + std::to_string(N));
  KVT_TRY(check_opts(o));
  if (H == 0 || N == 0) return KVT_OK;
  if (d < 1) return fail(KVT_ERR_RANGE, "keys: head dim d must be >= 1, got shape " + shape_str(k.shape, 3));
  const cpu::NestedkvParams p = params(o, H, N, d);
  if (!k.on_cuda()) KVT_TRY(check_cpu_scratch(p, k.span_bytes()));
#if defined(KVT_WITH_CUDA)
  if (k.on_cuda()) {
    KVT_CUDA_TRY(set_device(k.device_id));
    cuda::NestedkvParams cp{p.W, p.b, p.sinks, p.m, {p.prior[0], p.prior[1], p.prior[2]}, p.beta, p.tau, p.kappa,
                            p.global ? 1 : 0};
    return cuda_status(cuda::nestedkv_scores(t3(k), cp, t2(s), static_cast<cudaStream_t>(stream)), "nestedkvScores");
  }
#else
  (void)stream;
#endif
  cpu::nestedkv(k, p, s);
  return KVT_OK;
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): sequence b with its own default block size and tail count.
extern "C" kvt_status kvt_nestedkv_scores_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_nestedkv_opts* opts,
                                                  const kvt_tensor* scores, kvt_stream stream) try {
  (void)stream;
  Batch b;
  View k, s;
  int64_t H, d;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &k, &H, &d));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_nestedkv_opts o = *opts;
  KVT_TRY(check_opts(o));
  KVT_TRY(check_token_tensor(b, scores, "out", kMaskF32, H, &s));
  KVT_TRY(check_distinct(s, "out"));
  KVT_TRY(check_not_table(b, s, "out"));
  KVT_TRY(check_no_overlap(s, "out", k, "keys"));
  if (H > 0 && d < 1) return fail(KVT_ERR_RANGE, "keys: head dim d must be >= 1, got shape " + shape_str(k.shape, k.ndim));
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // block size and tail count per sequence, from its length on the device
    if (H == 0) return KVT_OK;
    KVT_CUDA_TRY(set_device(k.device_id));
    const cuda::Seqs sq = cuda_seqs(b, {&k}, {&s});
    cuda::NestedkvParams cp{o.window, o.block, o.sinks, 0, {o.prior[0], o.prior[1], o.prior[2]}, o.beta, float(o.tau),
                            float(o.kappa), o.scales == KVT_SCALES_GLOBAL ? 1 : 0};
    return cuda_status(cuda::nestedkv_scores_batched(sq, batch_t3(b, k, sq), cp, o.tail, batch_tok(b, s),
                                                     static_cast<cudaStream_t>(stream)),
                       "nestedkvScoresBatched");
  }
#endif
  for (int64_t i = 0; i < b.B; i++)
    if (H > 0 && b.len(i) > 0) KVT_TRY(check_cpu_scratch(params(o, H, b.len(i), d), k.span_bytes()));
  cpu::for_each_seq(b.B, [&](int64_t i) { return H * b.len(i); },
                    [&](int64_t i) {
                      const int64_t N = b.len(i);
                      if (H > 0 && N > 0) cpu::nestedkv(seq_view(b, k, i), params(o, H, N, d), token_view(b, s, i));
                    });
  return KVT_OK;
} KVT_API_CATCH
