// C ABI entry point of the normalisation-corrected decode attention (docs/methods/momentkv.md §4.4): the defaults,
// validation, then the CUDA launcher or the CPU backend.
#include <cmath>
#include <string>

#include "abi/moment_state.h"
#include "abi/batch.h"
#include "abi/validate.h"
#include "cpu/batch.h"
#include "cpu/ops.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

extern "C" void kvt_decode_default_opts(kvt_decode_opts* o) {
  if (!o) return;
  o->order = 1;
  o->use_clip = 0;
  o->scale = 0;
  o->clip = 0;
}

// The option checks shared by the per-sequence and the batched entry points; `*scale` receives the logit scale.
static kvt_status check_opts(const kvt_decode_opts& o, int64_t d, double* scale) {
  if (o.order != 0 && o.order != 1) return fail(KVT_ERR_RANGE, "order: must be 0 or 1, got " + std::to_string(o.order));
  double s = o.scale;
  if (s == 0.0) s = d > 0 ? 1.0 / std::sqrt(double(d)) : 1.0;
  if (!(s > 0.0 && s < 1e30)) return fail(KVT_ERR_RANGE, "scale: must be a finite number > 0, got " + std::to_string(o.scale));
  *scale = s;
  return KVT_OK;
}

// The clip: a per-head f32 tensor of n radii >= 0 (mode 2), the scalar radius of opts (mode 1), or none (0).
static kvt_status check_clip(const kvt_tensor* clip, const kvt_decode_opts& opts, const View& k, const View& out, int64_t n,
                             const char* dims, const char* what, View* cl, int* mode) {
  *mode = 0;
  if (clip) {
    KVT_TRY(check_tensor(clip, "clip", 1, kMaskF32, dims, cl));
    KVT_TRY(check_same_device(k, "keys", *cl, "clip"));
    KVT_TRY(check_dim(*cl, "clip", 0, n, what));
    KVT_TRY(check_no_overlap(out, "out", *cl, "clip"));
    *mode = 2;
    if (!cl->on_cuda())
      for (int64_t h = 0; h < n; h++) {
        const float x = cl->ptr<float>()[h * cl->stride[0]];
        if (!(x >= 0.f))
          return fail(KVT_ERR_RANGE, "clip: clip[" + std::to_string(h) + "] = " + std::to_string(x) + " must be >= 0");
      }
  } else if (opts.use_clip) {
    if (!(opts.clip >= 0.0)) return fail(KVT_ERR_RANGE, "clip: must be >= 0, got " + std::to_string(opts.clip));
    *mode = 1;
  }
  return KVT_OK;
}

extern "C" kvt_status kvt_decode_attention(const kvt_tensor* queries, const kvt_tensor* keys, const kvt_tensor* values,
                                           const kvt_tensor* counts, const kvt_moments* moments, const kvt_tensor* clip,
                                           const kvt_decode_opts* opts, const kvt_tensor* out, kvt_stream stream) try {
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  if (!queries) return fail(KVT_ERR_TYPE, "queries: missing tensor");
  const int qnd = queries->ndim;
  if (qnd != 2 && qnd != 3)
    return fail(KVT_ERR_TYPE, "queries: expected a 2-D [Hq, d] or 3-D [Hq, T, d] tensor, got " + std::to_string(qnd) + "-D");
  View q, k, v, cnt, o;
  KVT_TRY(check_tensor(queries, "queries", qnd, kMaskFloat, qnd == 2 ? "[Hq, d]" : "[Hq, T, d]", &q));
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[Hkv, cap, d]", &k));
  KVT_TRY(check_tensor(values, "values", 3, kMaskFloat, "[Hkv, cap, dv]", &v));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[Hkv]", &cnt));
  KVT_TRY(check_tensor(out, "out", qnd, kMaskF32, qnd == 2 ? "[Hq, dv]" : "[Hq, T, dv]", &o));
  if (v.dtype != k.dtype)
    return fail(KVT_ERR_TYPE, std::string("values: expected the dtype of keys (") + dtype_name(k.dtype) + "), got " +
                                  dtype_name(v.dtype));
  const View* all[] = {&v, &cnt, &o};
  const char* names[] = {"values", "counts", "out"};
  for (int i = 0; i < 3; i++) KVT_TRY(check_same_device(k, "keys", *all[i], names[i]));
  KVT_TRY(check_same_device(k, "keys", q, "queries"));
  // Views as [Hq, T, d] / [Hq, T, dv].
  if (qnd == 2) {
    q.shape[2] = q.shape[1];
    q.stride[2] = q.stride[1];
    q.shape[1] = 1;
    q.stride[1] = 0;
    q.ndim = 3;
    o.shape[2] = o.shape[1];
    o.stride[2] = o.stride[1];
    o.shape[1] = 1;
    o.stride[1] = 0;
    o.ndim = 3;
  }
  const int64_t Hq = q.shape[0], T = q.shape[1], d = q.shape[2];
  const int64_t Hkv = k.shape[0], cap = k.shape[1], dv = v.shape[2];
  if (Hkv < 1) return fail(KVT_ERR_RANGE, "keys: Hkv (dimension 0) must be >= 1");
  if (Hq % Hkv != 0)
    return fail(KVT_ERR_RANGE, "queries: Hq (" + std::to_string(Hq) + ") must be a multiple of Hkv (" +
                                   std::to_string(Hkv) + ", dimension 0 of keys) for grouped-query attention");
  KVT_TRY(check_dim(k, "keys", 2, d, "d of queries"));
  KVT_TRY(check_dim(v, "values", 0, Hkv, "Hkv of keys"));
  KVT_TRY(check_dim(v, "values", 1, cap, "cap of keys"));
  KVT_TRY(check_dim(cnt, "counts", 0, Hkv, "Hkv of keys"));
  if (o.shape[0] != Hq || o.shape[1] != T || o.shape[2] != dv) {
    const int64_t want[3] = {Hq, T, dv};
    const int64_t want2[2] = {Hq, dv};
    return fail(KVT_ERR_RANGE, "out: expected shape " + (qnd == 2 ? shape_str(want2, 2) : shape_str(want, 3)) +
                                   ", got " + shape_str(out->shape, qnd));
  }
  double scale;
  KVT_TRY(check_opts(*opts, d, &scale));
  KVT_TRY(check_distinct(o, "out"));
  const View* ins[] = {&q, &k, &v, &cnt};
  const char* in_names[] = {"queries", "keys", "values", "counts"};
  for (int i = 0; i < 4; i++) KVT_TRY(check_no_overlap(o, "out", *ins[i], in_names[i]));
  MomentViews m;
  if (moments) {
    KVT_TRY(check_moments(moments, k, "keys", Hkv, d, dv, &m));
    KVT_TRY(check_moments_no_overlap(m, o, "out"));
  }
  int clip_mode = 0;
  View cl;
  KVT_TRY(check_clip(clip, *opts, k, o, Hkv, "[Hkv]", "Hkv of keys", &cl, &clip_mode));
  if (!k.on_cuda()) {
    for (int64_t h = 0; h < Hkv; h++) {
      const int64_t c = cnt.ptr<int32_t>()[h * cnt.stride[0]];
      if (c < 0 || c > cap)
        return fail(KVT_ERR_RANGE, "counts: counts[" + std::to_string(h) + "] = " + std::to_string(c) + " must be in [0, " +
                                       std::to_string(cap) + "] (the capacity of keys)");
    }
  }
  if (Hq == 0 || T == 0 || dv == 0) return KVT_OK;
  // f32 clip radius: above the f32 range it is +Infinity (no clip)
  const float clipf = clip_mode == 1 ? (opts->clip > 3.4028234663852886e38 ? INFINITY : float(opts->clip)) : 0.f;
  if (!k.on_cuda()) {
    const double rows = double(Hq) * double(T);
    KVT_TRY(check_scratch(4.0 * rows * double(d) + 4.0 * rows * (double(cap) / 512 + 1) * (double(dv) + 2) +
                              4.0 * double(Hq / Hkv) * double(T) * 512,
                          q.span_bytes() + k.span_bytes() + v.span_bytes(), "queries", "decodeAttention", "scaled queries and per-chunk softmax states"));
  }
#if defined(KVT_WITH_CUDA)
  if (k.on_cuda()) {
    if (d > cuda::kDecodeMaxDim || dv > cuda::kDecodeMaxDim)
      return fail(KVT_ERR_RANGE, "keys: the CUDA decodeAttention supports d and dv up to 256, got d = " +
                                     std::to_string(d) + ", dv = " + std::to_string(dv));
    KVT_CUDA_TRY(set_device(k.device_id));
    cuda::DecodeParams p{opts->order, float(scale), clip_mode, clipf,
                         clip_mode == 2 ? t2(cl) : cuda::T2{nullptr, kF32, 0, 0, 0, 0}};
    cuda::Moments cm{};
    if (moments) cm = cuda_moments(m);
    return cuda_status(cuda::decode_attention(t3(q), t3(k), t3(v), t2(cnt), moments ? &cm : nullptr, p, o3(o),
                                              static_cast<cudaStream_t>(stream)),
                       "decodeAttention");
  }
#else
  (void)stream;
#endif
  cpu::DecodeArgs A;
  A.q = q;
  A.k = k;
  A.v = v;
  A.cnt = cnt;
  A.out = o;
  A.m = moments ? &m : nullptr;
  A.order = opts->order;
  A.scale = float(scale);
  A.clip_mode = clip_mode;
  A.clip = clipf;
  A.clip_t = cl;
  cpu::decode(A);
  return KVT_OK;
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): sequence b's queries over its rows j < counts[b, h] (<= n_b), read in place.
extern "C" kvt_status kvt_decode_attention_batched(const kvt_seqs* seqs, const kvt_tensor* queries, const kvt_tensor* keys,
                                                   const kvt_tensor* values, const kvt_tensor* counts,
                                                   const kvt_moments* moments, const kvt_tensor* clip,
                                                   const kvt_decode_opts* opts, const kvt_tensor* out, kvt_stream stream) try {
  (void)stream;
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  if (!queries) return fail(KVT_ERR_TYPE, "queries: missing tensor");
  const int qnd = queries->ndim;
  if (qnd != 3 && qnd != 4)
    return fail(KVT_ERR_TYPE, "queries: expected a 3-D [B, Hq, d] or 4-D [B, Hq, T, d] tensor, got " + std::to_string(qnd) + "-D");
  Batch b;
  View q, k, v, cnt, o, cl;
  int64_t Hkv, d, Hv, dv;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &k, &Hkv, &d));
  KVT_TRY(check_seq_data(b, values, "values", 1u << k.dtype, &v, &Hv, &dv));
  if (Hv != Hkv) return fail(KVT_ERR_RANGE, "values: expected Hkv = " + std::to_string(Hkv) + " heads like keys, got " + std::to_string(Hv));
  KVT_TRY(check_seq_tensor(b, queries, "queries", qnd, kMaskFloat, qnd == 3 ? "[B, Hq, d]" : "[B, Hq, T, d]", -1, &q));
  KVT_TRY(check_seq_tensor(b, counts, "counts", 2, kMaskI32, "[B, Hkv]", Hkv, &cnt));
  KVT_TRY(check_seq_tensor(b, out, "out", qnd, kMaskF32, qnd == 3 ? "[B, Hq, dv]" : "[B, Hq, T, dv]", q.shape[1], &o));
  const int64_t Hq = q.shape[1], T = qnd == 4 ? q.shape[2] : 1;
  if (Hkv < 1) return fail(KVT_ERR_RANGE, "keys: Hkv must be >= 1");
  if (Hq % Hkv != 0)
    return fail(KVT_ERR_RANGE, "queries: Hq (" + std::to_string(Hq) + ") must be a multiple of Hkv (" + std::to_string(Hkv) +
                                   ") for grouped-query attention");
  KVT_TRY(check_dim(q, "queries", qnd - 1, d, "d of keys"));
  if (qnd == 4) KVT_TRY(check_dim(o, "out", 2, T, "T of queries"));
  KVT_TRY(check_dim(o, "out", qnd - 1, dv, "dv of values"));
  double scale;
  KVT_TRY(check_opts(*opts, d, &scale));
  const View* ins[] = {&q, &k, &v, &cnt};
  const char* in_names[] = {"queries", "keys", "values", "counts"};
  KVT_TRY(check_distinct(o, "out"));
  KVT_TRY(check_not_table(b, o, "out"));
  for (int i = 0; i < 4; i++) KVT_TRY(check_no_overlap(o, "out", *ins[i], in_names[i]));
  MomentViews m;
  if (moments) {
    KVT_TRY(check_batch_moments(b, moments, k, Hkv, d, dv, &m));
    KVT_TRY(check_moments_no_overlap(m, o, "out"));
  }
  int clip_mode = 0;
  KVT_TRY(check_clip(clip, *opts, k, o, b.B * Hkv, "[B * Hkv]", "B * Hkv", &cl, &clip_mode));
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // device counts are clamped to [0, n_b] by the kernels
    if (d > cuda::kDecodeMaxDim || dv > cuda::kDecodeMaxDim)
      return fail(KVT_ERR_RANGE, "keys: the CUDA decodeAttentionBatched supports d and dv up to 256, got d = " +
                                     std::to_string(d) + ", dv = " + std::to_string(dv));
    KVT_CUDA_TRY(set_device(k.device_id));
    const cuda::Seqs sq = cuda_seqs(b, {&k, &v}, {});
    cuda::T3 qt = qnd == 4 ? seq_t3(q) : cuda::T3{q.base, q.dtype, q.shape[1], 1, q.shape[2], q.stride[1], 0, q.stride[2]};
    cuda::O3 ot = qnd == 4 ? seq_o3(o) : cuda::O3{o.base, o.dtype, o.shape[1], 1, o.shape[2], o.stride[1], 0, o.stride[2]};
    if (qnd == 3) {
      qt.sq = q.stride[0];
      ot.sq = o.stride[0];
    }
    cuda::DecodeParams p{opts->order, float(scale), clip_mode, float(opts->clip),
                         clip_mode == 2 ? t2(cl) : cuda::T2{nullptr, kF32, 0, 0, 0, 0}};
    cuda::Moments cm{};
    if (moments) cm = cuda_moments(m);
    return cuda_status(cuda::decode_attention_batched(sq, qt, batch_t3(b, k, sq), batch_t3(b, v, sq), seq_t2(cnt),
                                                      moments ? &cm : nullptr, p, ot, static_cast<cudaStream_t>(stream)),
                       "decodeAttentionBatched");
  }
#endif
  for (int64_t i = 0; i < b.B; i++)
    for (int64_t h = 0; h < Hkv; h++) {
      const int64_t c = cnt.ptr<int32_t>()[i * cnt.stride[0] + h * cnt.stride[1]];
      if (c < 0 || c > b.len(i))
        return fail(KVT_ERR_RANGE, "counts: counts[" + std::to_string(i) + ", " + std::to_string(h) + "] = " + std::to_string(c) +
                                       " must be in [0, " + std::to_string(b.len(i)) + "] (the rows of sequence " + std::to_string(i) + ")");
    }
  if (Hq == 0 || T == 0 || dv == 0) return KVT_OK;
  cpu::for_each_seq(b.B, [&](int64_t i) { return Hq * T * b.len(i) / Hkv; },
                    [&](int64_t i) {
                      cpu::DecodeArgs A;
                      A.q = seq_slice(q, i);
                      A.out = seq_slice(o, i);
                      if (qnd == 3) {  // [Hq, d] as [Hq, 1, d]
                        for (View* x : {&A.q, &A.out}) {
                          x->shape[2] = x->shape[1];
                          x->stride[2] = x->stride[1];
                          x->shape[1] = 1;
                          x->stride[1] = 0;
                          x->ndim = 3;
                        }
                      }
                      A.k = seq_view(b, k, i);
                      A.v = seq_view(b, v, i);
                      A.cnt = seq_slice(cnt, i);
                      const MomentViews mi = moments ? moments_slice(m, i, Hkv) : MomentViews();
                      A.m = moments ? &mi : nullptr;
                      A.order = opts->order;
                      A.scale = float(scale);
                      A.clip_mode = clip_mode;
                      A.clip = float(opts->clip);
                      if (clip_mode == 2) {
                        A.clip_t = cl;
                        A.clip_t.base += i * Hkv * cl.stride[0] * 4;
                        A.clip_t.shape[0] = Hkv;
                      }
                      cpu::decode(A);
                    });
  return KVT_OK;
} KVT_API_CATCH
