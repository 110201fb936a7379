// C ABI entry points of SnapKV scoring (docs/methods/snapkv.md §3.1, kvpress SnapKVPress.score): the defaults, validation,
// then the CUDA launcher or the CPU backend.
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

extern "C" void kvt_snapkv_default_opts(kvt_snapkv_opts* o) {
  if (!o) return;
  o->window = 0;
  o->kernel = 5;
  o->pool = KVT_POOL_AVG;
  o->scale = 0;
}

// The option checks shared by the per-sequence and the batched entry points (the window depends on the sequence).
static kvt_status check_opts(const kvt_snapkv_opts& o) {
  if (o.kernel < 1 || o.kernel % 2 == 0)
    return fail(KVT_ERR_RANGE, "kernel: must be a positive odd integer, got " + std::to_string(o.kernel));
  if (o.pool != KVT_POOL_AVG && o.pool != KVT_POOL_MAX) return fail(KVT_ERR_RANGE, "pool: must be 'avg' or 'max'");
  if (!(std::fabs(o.scale) <= 3.4028234663852886e38))
    return fail(KVT_ERR_RANGE, "scale: must be finite (within the f32 range; 0 = 1/sqrt(d)), got " + std::to_string(o.scale));
  return KVT_OK;
}

extern "C" kvt_status kvt_snapkv_scores(const kvt_tensor* queries, const kvt_tensor* keys, const kvt_snapkv_opts* opts,
                                        const kvt_tensor* scores, kvt_stream stream) try {
  View q, k, s;
  KVT_TRY(check_tensor(queries, "queries", 3, kMaskFloat, "[Hq, W, d]", &q));
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[Hkv, N, d]", &k));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_snapkv_opts o = *opts;
  KVT_TRY(check_tensor(scores, "out", 2, kMaskF32, "[Hkv, N]", &s));
  KVT_TRY(check_same_device(k, "keys", q, "queries"));
  KVT_TRY(check_same_device(k, "keys", s, "out"));
  const int64_t Hq = q.shape[0], Wq = q.shape[1], Hkv = k.shape[0], N = k.shape[1], d = k.shape[2];
  KVT_TRY(check_dim(q, "queries", 2, d, "d of keys"));
  KVT_TRY(check_dim(s, "out", 0, Hkv, "Hkv of keys"));
  KVT_TRY(check_dim(s, "out", 1, N, "N of keys"));
  if (Hkv < 1 || Hq < 1 || Hq % Hkv != 0)
    return fail(KVT_ERR_RANGE, "queries: the number of query heads (" + std::to_string(Hq) +
                                   ") must be a positive multiple of the number of KV heads (" + std::to_string(Hkv) + ")");
  if (Wq < 1) return fail(KVT_ERR_RANGE, "queries: need at least one window query, got shape " + shape_str(q.shape, 3));
  if (d < 1) return fail(KVT_ERR_RANGE, "keys: head dim d must be >= 1, got shape " + shape_str(k.shape, 3));
  if (N > 2147483647) return fail(KVT_ERR_RANGE, "keys: N must be < 2^31");
  const int64_t W = o.window == 0 ? Wq : o.window;
  KVT_TRY(check_range(double(W), 1, double(Wq), "window"));
  if (W >= N)
    return fail(KVT_ERR_RANGE, "window: must be smaller than N = " + std::to_string(N) + " (a prefix must remain), got " +
                                   std::to_string(W));
  KVT_TRY(check_opts(o));
  const float scale = o.scale == 0 ? float(1.0 / sqrt(double(d))) : float(o.scale);
  KVT_TRY(check_distinct(s, "out"));
  KVT_TRY(check_no_overlap(s, "out", k, "keys"));
  KVT_TRY(check_no_overlap(s, "out", q, "queries"));
  if (!k.on_cuda()) {
    const double hq = double(Hq), w = double(W), n = double(N);
    KVT_TRY(check_scratch(12.0 * hq * w * (n / 2048 + 1) + 4.0 * hq * w + 4.0 * hq * n + 4.0 * w * (double(d) + 64) * 64,
                          q.span_bytes() + k.span_bytes(), "queries", "snapkvScores", "per-query log-sum-exp partials and the [Hq, N] window means"));
  }
  // The window rows of the queries, as a view [Hq, W, d].
  View qw = q;
  qw.base += (Wq - W) * q.stride[1] * dtype_size(q.dtype);
  qw.shape[1] = W;
  cpu::SnapkvParams p{Hq, Hkv, Hq / Hkv, W, N, N - W, d, o.kernel, o.pool == KVT_POOL_MAX, scale};
#if defined(KVT_WITH_CUDA)
  if (k.on_cuda()) {
    KVT_CUDA_TRY(set_device(k.device_id));
    cuda::SnapkvParams cp{o.kernel, o.pool == KVT_POOL_MAX ? 1 : 0, scale, 0};
    return cuda_status(cuda::snapkv_scores(t3(qw), t3(k), cp, t2(s), static_cast<cudaStream_t>(stream)), "snapkvScores");
  }
#else
  (void)stream;
#endif
  cpu::snapkv(qw, k, p, s);
  return KVT_OK;
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): sequence b's last W_b queries over its keys; without a prefix (n_b <= W_b) every
// position is in the observation window and gets +Infinity.
extern "C" kvt_status kvt_snapkv_scores_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_seqs* qseqs,
                                                const kvt_tensor* queries, const kvt_snapkv_opts* opts,
                                                const kvt_tensor* scores, kvt_stream stream) try {
  (void)stream;
  Batch b, qb;
  View k, q, s;
  int64_t Hkv, d, Hq, dq;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &k, &Hkv, &d));
  KVT_TRY(check_seqs(qseqs, "qseqs", &qb));
  if (qb.t.layout != kSeqsRagged && qb.t.layout != kSeqsPadded)
    return fail(KVT_ERR_RANGE, "qseqs.layout: queries are ragged or padded, not paged");
  KVT_TRY(check_seq_data(qb, queries, "queries", kMaskFloat, &q, &Hq, &dq));
  KVT_TRY(check_same_device(k, "keys", q, "queries"));
  if (qb.B != b.B)
    return fail(KVT_ERR_RANGE, "queries: the query batch has " + std::to_string(qb.B) + " sequences, the cache " +
                                   std::to_string(b.B));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const kvt_snapkv_opts o = *opts;
  KVT_TRY(check_opts(o));
  if (o.window < 0) return fail(KVT_ERR_RANGE, "window: must be >= 0 (0 = every query of the sequence), got " + std::to_string(o.window));
  KVT_TRY(check_token_tensor(b, scores, "out", kMaskF32, Hkv, &s));
  if (dq != d) return fail(KVT_ERR_RANGE, "queries: head dim " + std::to_string(dq) + " does not match keys' head dim " + std::to_string(d));
  if (Hkv < 1 || Hq < 1 || Hq % Hkv != 0)
    return fail(KVT_ERR_RANGE, "queries: the number of query heads (" + std::to_string(Hq) +
                                   ") must be a positive multiple of the number of KV heads (" + std::to_string(Hkv) + ")");
  if (d < 1) return fail(KVT_ERR_RANGE, "keys: head dim d must be >= 1");
  KVT_TRY(check_distinct(s, "out"));
  KVT_TRY(check_not_table(b, s, "out"));
  KVT_TRY(check_not_table(qb, s, "out"));
  KVT_TRY(check_no_overlap(s, "out", k, "keys"));
  KVT_TRY(check_no_overlap(s, "out", q, "queries"));
  const float scale = o.scale == 0 ? float(1.0 / sqrt(double(d))) : float(o.scale);
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // W_b = min(window, the sequence's queries) on the device; no prefix (or no query): +Infinity
    KVT_CUDA_TRY(set_device(k.device_id));
    const cuda::Seqs sq = cuda_seqs(b, {&k}, {&s});
    const cuda::Seqs qs = cuda_seqs(qb, {&q}, {});
    cuda::SnapkvParams cp{o.kernel, o.pool == KVT_POOL_MAX ? 1 : 0, scale, 0};
    return cuda_status(cuda::snapkv_scores_batched(sq, batch_t3(b, k, sq), qs, batch_t3(qb, q, qs), o.window, cp,
                                                   batch_tok(b, s), static_cast<cudaStream_t>(stream)),
                       "snapkvScoresBatched");
  }
#endif
  auto window = [&](int64_t i) { return o.window == 0 ? qb.len(i) : int64_t(o.window); };
  for (int64_t i = 0; i < b.B; i++) {
    if (b.len(i) == 0) continue;
    if (window(i) < 1 || window(i) > qb.len(i))
      return fail(KVT_ERR_RANGE, "window: sequence " + std::to_string(i) + " has " + std::to_string(qb.len(i)) +
                                     " window queries, fewer than the window " + std::to_string(window(i)) +
                                     (window(i) < 1 ? " (it needs at least one)" : ""));
  }
  cpu::for_each_seq(b.B, [&](int64_t i) { return Hq * b.len(i); },
                    [&](int64_t i) {
                      const int64_t N = b.len(i), W = window(i);
                      if (N == 0) return;
                      View out = token_view(b, s, i);
                      if (W >= N) {  // no prefix: every position is protected
                        for (int64_t h = 0; h < Hkv; h++)
                          for (int64_t j = 0; j < N; j++) out.ptr<float>()[h * out.stride[0] + j * out.stride[1]] = INFINITY;
                        return;
                      }
                      View qw = seq_view(qb, q, i);  // [Hq, Wq_b, d]: the last W rows
                      qw.base += (qw.shape[1] - W) * qw.stride[1] * dtype_size(qw.dtype);
                      qw.shape[1] = W;
                      cpu::SnapkvParams p{Hq, Hkv, Hq / Hkv, W, N, N - W, d, o.kernel, o.pool == KVT_POOL_MAX, scale};
                      cpu::snapkv(qw, seq_view(b, k, i), p, out);
                    });
  return KVT_OK;
} KVT_API_CATCH
