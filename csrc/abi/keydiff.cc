// C ABI entry point of KeyDiff scoring (docs/methods/keydiff.md §3): validation, then the CUDA launcher or the CPU backend.
#include "abi/batch.h"
#include "abi/validate.h"
#include "cpu/batch.h"
#include "cpu/ops.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

extern "C" kvt_status kvt_keydiff_scores(const kvt_tensor* keys, const kvt_tensor* scores, kvt_stream stream) try {
  View k, s;
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[H, N, d]", &k));
  KVT_TRY(check_tensor(scores, "out", 2, kMaskF32, "[H, N]", &s));
  KVT_TRY(check_same_device(k, "keys", s, "out"));
  KVT_TRY(check_dim(s, "out", 0, k.shape[0], "H of keys"));
  KVT_TRY(check_dim(s, "out", 1, k.shape[1], "N of keys"));
  KVT_TRY(check_distinct(s, "out"));
  KVT_TRY(check_no_overlap(s, "out", k, "keys"));
  if (k.numel() == 0) return KVT_OK;
  const double H = double(k.shape[0]), N = double(k.shape[1]), d = double(k.shape[2]);
  if (!k.on_cuda()) KVT_TRY(check_scratch(8 * H * d * (N / 1024 + 1), k.span_bytes(), "keys", "keydiffScores", "per-chunk f64 anchor sums"));
#if defined(KVT_WITH_CUDA)
  if (k.on_cuda()) {
    KVT_CUDA_TRY(set_device(k.device_id));
    return cuda_status(cuda::keydiff_scores(t3(k), t2(s), static_cast<cudaStream_t>(stream)), "keydiffScores");
  }
#else
  (void)stream;
#endif
  cpu::keydiff(k, s);
  return KVT_OK;
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): every sequence's scores, read in place through its view.
extern "C" kvt_status kvt_keydiff_scores_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* scores,
                                                 kvt_stream stream) try {
  (void)stream;
  Batch b;
  View k, s;
  int64_t H, d;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &k, &H, &d));
  KVT_TRY(check_token_tensor(b, scores, "out", kMaskF32, H, &s));
  KVT_TRY(check_distinct(s, "out"));
  KVT_TRY(check_not_table(b, s, "out"));
  KVT_TRY(check_no_overlap(s, "out", k, "keys"));
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {
    KVT_CUDA_TRY(set_device(k.device_id));
    const cuda::Seqs sq = cuda_seqs(b, {&k}, {&s});
    return cuda_status(cuda::keydiff_scores_batched(sq, batch_t3(b, k, sq), batch_tok(b, s), static_cast<cudaStream_t>(stream)),
                       "keydiffScoresBatched");
  }
#endif
  cpu::for_each_seq(b.B, [&](int64_t i) { return H * b.len(i); },
                    [&](int64_t i) {
                      if (b.len(i) > 0) cpu::keydiff(seq_view(b, k, i), token_view(b, s, i));
                    });
  return KVT_OK;
} KVT_API_CATCH
