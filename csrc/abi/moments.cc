// C ABI entry point of the moment-state merge (docs/methods/momentkv.md §4.3): validation, then the CUDA launcher or the CPU
// backend.
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

// counts in [0, cap] and, for j < counts[h], strictly ascending positions in [0, N) (host memory only).
static kvt_status check_index_lists(const View& idx, const View& cnt, int64_t N, const char* idx_name) {
  const int64_t H = idx.shape[0], cap = idx.shape[1];
  for (int64_t h = 0; h < H; h++) {
    const int64_t c = cnt.ptr<int32_t>()[h * cnt.stride[0]];
    if (c < 0 || c > cap)
      return fail(KVT_ERR_RANGE, "counts: counts[" + std::to_string(h) + "] = " + std::to_string(c) +
                                     " must be in [0, " + std::to_string(cap) + "] (the capacity of " + idx_name + ")");
    int64_t prev = -1;
    for (int64_t j = 0; j < c; j++) {
      const int64_t i = idx.ptr<int32_t>()[h * idx.stride[0] + j * idx.stride[1]];
      if (i < 0 || i >= N || i <= prev)
        return fail(KVT_ERR_RANGE, std::string(idx_name) + ": row " + std::to_string(h) + " must hold strictly ascending positions in [0, " +
                                       std::to_string(N) + ") before counts[h]; entry " + std::to_string(j) + " is " +
                                       std::to_string(i));
      prev = i;
    }
  }
  return KVT_OK;
}

extern "C" kvt_status kvt_moments_merge(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* evicted_indices,
                                        const kvt_tensor* counts, const kvt_moments* moments, kvt_stream stream) try {
  View k, v, idx, cnt;
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[H, N, d]", &k));
  KVT_TRY(check_tensor(values, "values", 3, kMaskFloat, "[H, N, dv]", &v));
  KVT_TRY(check_tensor(evicted_indices, "evictedIndices", 2, kMaskI32, "[H, cap]", &idx));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[H]", &cnt));
  KVT_TRY(check_same_device(k, "keys", v, "values"));
  KVT_TRY(check_same_device(k, "keys", idx, "evictedIndices"));
  KVT_TRY(check_same_device(k, "keys", cnt, "counts"));
  const int64_t H = k.shape[0], N = k.shape[1], d = k.shape[2], dv = v.shape[2];
  KVT_TRY(check_dim(v, "values", 0, H, "H of keys"));
  KVT_TRY(check_dim(v, "values", 1, N, "N of keys"));
  KVT_TRY(check_dim(idx, "evictedIndices", 0, H, "H of keys"));
  KVT_TRY(check_dim(cnt, "counts", 0, H, "H of keys"));
  MomentViews m;
  KVT_TRY(check_moments(moments, k, "keys", H, d, dv, &m));
  KVT_TRY(check_moments_no_overlap(m, k, "keys"));
  KVT_TRY(check_moments_no_overlap(m, v, "values"));
  KVT_TRY(check_moments_no_overlap(m, idx, "evictedIndices"));
  KVT_TRY(check_moments_no_overlap(m, cnt, "counts"));
  if (!k.on_cuda()) KVT_TRY(check_index_lists(idx, cnt, N, "evictedIndices"));
  if (H == 0 || N == 0 || idx.shape[1] == 0) return KVT_OK;
#if defined(KVT_WITH_CUDA)
  if (k.on_cuda()) {
    KVT_CUDA_TRY(set_device(k.device_id));
    cuda::RowSel sel{0, t2(idx), t2(cnt), cuda::T2{nullptr, kI32, 0, 0, 0, 0}, 0};
    return cuda_status(cuda::moments_merge(t3(k), t3(v), sel, cuda_moments(m), static_cast<cudaStream_t>(stream)),
                       "MomentState.merge");
  }
#else
  (void)stream;
#endif
  cpu::RowSource src;
  src.mode = cpu::RowSource::kList;
  src.idx = &idx;
  src.cnt = &cnt;
  cpu::moments_merge(k, v, src, m);
  return KVT_OK;
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): sequence b's listed rows into virtual heads b*H .. b*H + H - 1.
extern "C" kvt_status kvt_moments_merge_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* values,
                                                const kvt_tensor* evicted_indices, const kvt_tensor* counts,
                                                const kvt_moments* moments, kvt_stream stream) try {
  (void)stream;
  Batch b;
  View k, v, idx, cnt;
  int64_t H, d, Hv, dv;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &k, &H, &d));
  KVT_TRY(check_seq_data(b, values, "values", kMaskFloat, &v, &Hv, &dv));
  if (Hv != H) return fail(KVT_ERR_RANGE, "values: expected H = " + std::to_string(H) + " heads like keys, got " + std::to_string(Hv));
  KVT_TRY(check_seq_tensor(b, evicted_indices, "evictedIndices", 3, kMaskI32, "[B, H, cap]", H, &idx));
  KVT_TRY(check_seq_tensor(b, counts, "counts", 2, kMaskI32, "[B, H]", H, &cnt));
  MomentViews m;
  KVT_TRY(check_batch_moments(b, moments, k, H, d, dv, &m));
  KVT_TRY(check_moments_not_table(b, m));
  const View* views[] = {&k, &v, &idx, &cnt};
  const char* names[] = {"keys", "values", "evictedIndices", "counts"};
  for (int i = 0; i < 4; i++) KVT_TRY(check_moments_no_overlap(m, *views[i], names[i]));
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // device lists: the kernels clamp counts and skip entries outside the sequence
    KVT_CUDA_TRY(set_device(k.device_id));
    const cuda::Seqs sq = cuda_seqs(b, {&k, &v}, {});
    cuda::RowSel sel{0, seq_t2(idx), seq_t2(cnt), cuda::T2{nullptr, kI32, 0, 0, 0, 0}, 0};
    return cuda_status(cuda::moments_merge_batched(sq, batch_t3(b, k, sq), batch_t3(b, v, sq), sel, cuda_moments(m),
                                                   static_cast<cudaStream_t>(stream)),
                       "MomentState.mergeBatched");
  }
#endif
  KVT_TRY(check_index_lists(b, idx, "evictedIndices", cnt, idx.shape[2]));
  cpu::for_each_seq(b.B, [&](int64_t i) { return H * b.len(i); },
                    [&](int64_t i) {
                      if (H == 0 || b.len(i) == 0 || idx.shape[2] == 0) return;
                      const View ii = seq_slice(idx, i), ci = seq_slice(cnt, i);
                      cpu::RowSource src;
                      src.mode = cpu::RowSource::kList;
                      src.idx = &ii;
                      src.cnt = &ci;
                      cpu::moments_merge(seq_view(b, k, i), seq_view(b, v, i), src, moments_slice(m, i, H));
                    });
  return KVT_OK;
} KVT_API_CATCH
