// C ABI entry point of compaction (docs/performance.md §5.5): validation, then the CUDA launcher or the CPU backend,
// which also merges the evicted rows into a moment state when one is given (docs/methods/momentkv.md §4.3).
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

// Tensors of kvt_gather_kv: shapes, devices, no overlap, and on the CPU backend every count and index.
static kvt_status check_gather_args(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                                    const kvt_tensor* counts, const kvt_tensor* keys_out, const kvt_tensor* values_out,
                                    const kvt_tensor* counts_out, View* k, View* v, View* idx, View* cnt, View* ko,
                                    View* vo, View* co) {
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[H, N, d]", k));
  KVT_TRY(check_tensor(values, "values", 3, kMaskFloat, "[H, N, dv]", v));
  KVT_TRY(check_tensor(indices, "indices", 2, kMaskI32, "[H, cap]", idx));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[H]", cnt));
  KVT_TRY(check_tensor(keys_out, "keysOut", 3, 1u << k->dtype, "[H, cap, d]", ko));
  KVT_TRY(check_tensor(values_out, "valuesOut", 3, 1u << v->dtype, "[H, cap, dv]", vo));
  KVT_TRY(check_tensor(counts_out, "countsOut", 1, kMaskI32, "[H]", co));
  const View* all[] = {v, idx, cnt, ko, vo, co};
  const char* names[] = {"values", "indices", "counts", "keysOut", "valuesOut", "countsOut"};
  for (int i = 0; i < 6; i++) KVT_TRY(check_same_device(*k, "keys", *all[i], names[i]));
  const int64_t H = k->shape[0], N = k->shape[1];
  KVT_TRY(check_dim(*v, "values", 0, H, "H of keys"));
  KVT_TRY(check_dim(*v, "values", 1, N, "N of keys"));
  KVT_TRY(check_dim(*idx, "indices", 0, H, "H of keys"));
  KVT_TRY(check_dim(*cnt, "counts", 0, H, "H of keys"));
  KVT_TRY(check_dim(*ko, "keysOut", 0, H, "H of keys"));
  KVT_TRY(check_dim(*ko, "keysOut", 2, k->shape[2], "d of keys"));
  KVT_TRY(check_dim(*vo, "valuesOut", 0, H, "H of keys"));
  KVT_TRY(check_dim(*vo, "valuesOut", 1, ko->shape[1], "cap of keysOut"));
  KVT_TRY(check_dim(*vo, "valuesOut", 2, v->shape[2], "dv of values"));
  KVT_TRY(check_dim(*co, "countsOut", 0, H, "H of keys"));
  if (ko->shape[1] < 1) return fail(KVT_ERR_RANGE, "keysOut: capacity (dimension 1) must be >= 1");
  const View* ins[] = {k, v, idx, cnt};
  const char* in_names[] = {"keys", "values", "indices", "counts"};
  const View* outs[] = {ko, vo, co};
  const char* out_names[] = {"keysOut", "valuesOut", "countsOut"};
  for (int o = 0; o < 3; o++) {
    KVT_TRY(check_distinct(*outs[o], out_names[o]));
    for (int i = 0; i < 4; i++) KVT_TRY(check_no_overlap(*outs[o], out_names[o], *ins[i], in_names[i]));
    for (int p = 0; p < o; p++) KVT_TRY(check_no_overlap(*outs[o], out_names[o], *outs[p], out_names[p]));
  }
  if (!k->on_cuda()) {  // host memory: check the index data itself (CUDA kernels clamp instead)
    const int64_t cap_in = idx->shape[1], cap_out = ko->shape[1];
    for (int64_t h = 0; h < H; h++) {
      int64_t c = cnt->ptr<int32_t>()[h * cnt->stride[0]];
      if (c < 0 || c > cap_in || c > cap_out)
        return fail(KVT_ERR_RANGE, "counts: counts[" + std::to_string(h) + "] = " + std::to_string(c) +
                                       " must be in [0, min(indices capacity " + std::to_string(cap_in) +
                                       ", output capacity " + std::to_string(cap_out) + ")]");
      int64_t prev = -1;
      for (int64_t j = 0; j < c; j++) {
        int64_t i = idx->ptr<int32_t>()[h * idx->stride[0] + j * idx->stride[1]];
        if (i < 0 || i >= N || i <= prev)
          return fail(KVT_ERR_RANGE, "indices: row " + std::to_string(h) + " must hold strictly ascending positions in [0, " +
                                         std::to_string(N) + ") before counts[h]; entry " + std::to_string(j) + " is " +
                                         std::to_string(i));
        prev = i;
      }
    }
  }
  return KVT_OK;
}

extern "C" kvt_status kvt_gather_kv(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                                    const kvt_tensor* counts, const kvt_tensor* keys_out, const kvt_tensor* values_out,
                                    const kvt_tensor* counts_out, const kvt_moments* moments, kvt_stream stream) try {
  View k, v, idx, cnt, ko, vo, co;
  KVT_TRY(check_gather_args(keys, values, indices, counts, keys_out, values_out, counts_out, &k, &v, &idx, &cnt, &ko,
                            &vo, &co));
  // MomentKV (docs/methods/momentkv.md §4.3): every row of head h not in indices[h, :counts[h]] is merged into the state.
  MomentViews m;
  if (moments) {
    KVT_TRY(check_moments(moments, k, "keys", k.shape[0], k.shape[2], v.shape[2], &m));
    const View* views[] = {&k, &v, &idx, &cnt, &ko, &vo, &co};
    const char* names[] = {"keys", "values", "indices", "counts", "keysOut", "valuesOut", "countsOut"};
    for (int i = 0; i < 7; i++) KVT_TRY(check_moments_no_overlap(m, *views[i], names[i]));
  }
#if defined(KVT_WITH_CUDA)
  if (k.on_cuda()) {
    KVT_CUDA_TRY(set_device(k.device_id));
    if (moments) {
      return cuda_status(cuda::gather_kv_moments(t3(k), t3(v), t2(idx), t2(cnt), o3(ko), o3(vo), t2(co), cuda_moments(m),
                                                 static_cast<cudaStream_t>(stream)),
                         "gatherKV");
    }
    return cuda_status(cuda::gather_kv(t3(k), t3(v), t2(idx), t2(cnt), o3(ko), o3(vo), t2(co), nullptr,
                                       static_cast<cudaStream_t>(stream)),
                       "gatherKV");
  }
#else
  (void)stream;
#endif
  cpu::gather(k, v, idx, cnt, ko, vo, co, moments ? &m : nullptr);
  return KVT_OK;
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): sequence b's kept rows into keys_out[b] / values_out[b], evicted rows into the
// moment state's virtual heads b*H .. b*H + H - 1.
extern "C" kvt_status kvt_gather_kv_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* values,
                                            const kvt_tensor* indices, const kvt_tensor* counts, const kvt_tensor* keys_out,
                                            const kvt_tensor* values_out, const kvt_tensor* counts_out,
                                            const kvt_moments* moments, kvt_stream stream) try {
  (void)stream;
  Batch b;
  View k, v, idx, cnt, ko, vo, co;
  int64_t H, d, Hv, dv;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &k, &H, &d));
  KVT_TRY(check_seq_data(b, values, "values", kMaskFloat, &v, &Hv, &dv));
  if (Hv != H) return fail(KVT_ERR_RANGE, "values: expected H = " + std::to_string(H) + " heads like keys, got " + std::to_string(Hv));
  KVT_TRY(check_seq_tensor(b, indices, "indices", 3, kMaskI32, "[B, H, cap]", H, &idx));
  KVT_TRY(check_seq_tensor(b, counts, "counts", 2, kMaskI32, "[B, H]", H, &cnt));
  KVT_TRY(check_seq_tensor(b, keys_out, "keysOut", 4, 1u << k.dtype, "[B, H, cap, d]", H, &ko));
  KVT_TRY(check_seq_tensor(b, values_out, "valuesOut", 4, 1u << v.dtype, "[B, H, cap, dv]", H, &vo));
  KVT_TRY(check_seq_tensor(b, counts_out, "countsOut", 2, kMaskI32, "[B, H]", H, &co));
  KVT_TRY(check_dim(ko, "keysOut", 3, d, "d of keys"));
  KVT_TRY(check_dim(vo, "valuesOut", 2, ko.shape[2], "cap of keysOut"));
  KVT_TRY(check_dim(vo, "valuesOut", 3, dv, "dv of values"));
  if (ko.shape[2] < 1) return fail(KVT_ERR_RANGE, "keysOut: capacity (dimension 2) must be >= 1");
  const View* ins[] = {&k, &v, &idx, &cnt};
  const char* in_names[] = {"keys", "values", "indices", "counts"};
  const View* outs[] = {&ko, &vo, &co};
  const char* out_names[] = {"keysOut", "valuesOut", "countsOut"};
  for (int o = 0; o < 3; o++) {
    KVT_TRY(check_distinct(*outs[o], out_names[o]));
    KVT_TRY(check_not_table(b, *outs[o], out_names[o]));
    for (int i = 0; i < 4; i++) KVT_TRY(check_no_overlap(*outs[o], out_names[o], *ins[i], in_names[i]));
    for (int p = 0; p < o; p++) KVT_TRY(check_no_overlap(*outs[o], out_names[o], *outs[p], out_names[p]));
  }
  MomentViews m;
  if (moments) {
    KVT_TRY(check_batch_moments(b, moments, k, H, d, dv, &m));
    KVT_TRY(check_moments_not_table(b, m));
    const View* views[] = {&k, &v, &idx, &cnt, &ko, &vo, &co};
    const char* names[] = {"keys", "values", "indices", "counts", "keysOut", "valuesOut", "countsOut"};
    for (int i = 0; i < 7; i++) KVT_TRY(check_moments_no_overlap(m, *views[i], names[i]));
  }
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // counts and indices are clamped by the kernels (rows past a bad count or index zero-filled)
    KVT_CUDA_TRY(set_device(k.device_id));
    const cuda::Seqs sq = cuda_seqs(b, {&k, &v}, {});
    cuda::Moments cm{};
    if (moments) cm = cuda_moments(m);
    return cuda_status(cuda::gather_kv_batched(sq, batch_t3(b, k, sq), batch_t3(b, v, sq), seq_t2(idx), seq_t2(cnt), seq_o3(ko),
                                               seq_o3(vo), seq_t2(co), moments ? &cm : nullptr, static_cast<cudaStream_t>(stream)),
                       "gatherKVBatched");
  }
#endif
  KVT_TRY(check_index_lists(b, idx, "indices", cnt, ko.shape[2]));
  cpu::for_each_seq(b.B, [&](int64_t i) { return H * b.len(i); },
                    [&](int64_t i) {
                      const MomentViews mi = moments ? moments_slice(m, i, H) : MomentViews();
                      cpu::gather(seq_view(b, k, i), seq_view(b, v, i), seq_slice(idx, i), seq_slice(cnt, i),
                                  seq_slice(ko, i), seq_slice(vo, i), seq_slice(co, i), moments ? &mi : nullptr);
                    });
  return KVT_OK;
} KVT_API_CATCH
