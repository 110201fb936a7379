// C ABI entry points of SnapKV scoring (docs/methods/snapkv.md §3.1, kvpress SnapKVPress.score): the defaults, validation,
// then the CUDA launcher or the CPU backend.
#include <cmath>
#include <string>

#include "abi/validate.h"
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
  if (o.kernel < 1 || o.kernel % 2 == 0)
    return fail(KVT_ERR_RANGE, "kernel: must be a positive odd integer, got " + std::to_string(o.kernel));
  if (o.pool != KVT_POOL_AVG && o.pool != KVT_POOL_MAX) return fail(KVT_ERR_RANGE, "pool: must be 'avg' or 'max'");
  if (!(std::fabs(o.scale) <= 3.4028234663852886e38))
    return fail(KVT_ERR_RANGE, "scale: must be finite (within the f32 range; 0 = 1/sqrt(d)), got " +
                                   std::to_string(o.scale));
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
