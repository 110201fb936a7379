// Launchers of the CUDA kernels. Framework-free: raw pointers, sizes, element strides and a stream; each returns
// the cudaError_t of its launches (no host synchronisation, no allocation except stream-ordered temporaries).
// Included by the C ABI layer only in builds with CUDA (KVT_WITH_CUDA).
#pragma once

#include <stdint.h>
#include <cuda_runtime_api.h>

#include "math/batch.h"

namespace kvt {
namespace cuda {

// A strided 3-D tensor [n0, n1, n2] of dtype kF32/kF16/kBF16 (see math/common.h), strides in elements. In a batch
// (docs/runtime-caches.md §1, SeqRows below) it is one sequence's [H, n_b, d] rows: n1 bounds every n_b, s0 and s1 are
// the head and token (page slot) strides and `sq` the stride between sequences (padded) or pages (paged).
struct T3 {
  const void* p;
  int dtype;
  int64_t n0, n1, n2;
  int64_t s0, s1, s2;
  int64_t sq = 0;
};
// A strided 2-D tensor [n0, n1]; in a batch one sequence's [H, ...] slice, `sq` the stride between sequences (for a
// ragged per-token tensor [H, T] the columns of every sequence: sq unused).
struct T2 {
  void* p;
  int dtype;
  int64_t n0, n1;
  int64_t s0, s1;
  int64_t sq = 0;
};
// Mutable 3-D output.
struct O3 {
  void* p;
  int dtype;
  int64_t n0, n1, n2;
  int64_t s0, s1, s2;
  int64_t sq = 0;
};

// The sequence table of a batched call, clamped (math/batch.h SeqRows), and its batch size. A per-sequence call is
// the batch of one padded sequence without lengths (dense_seqs).
struct Seqs {
  SeqRows r;
  int64_t B = 1;
};
// Compact per-token scratch of a batch (cuda/batch.cu): its size in tokens, and the offsets tok0 [B + 1] (device) of
// each sequence's tokens in it; an op using them takes tok0[b + 1] - tok0[b] (n_b for a valid table) as the length.
int64_t seq_token_bound(const Seqs& s);
cudaError_t seq_token_offsets(const Seqs& s, int64_t* tok0, cudaStream_t stream);
// The same plus, for a query batch q of the same B sequences, the offsets q0 [B + 1] of each sequence's window rows
// (its last `window` queries, all for window 0) in a buffer of seq_window_bound(q, window) rows.
int64_t seq_window_bound(const Seqs& q, int64_t window);
cudaError_t seq_window_offsets(const Seqs& s, int64_t* tok0, const Seqs& q, int64_t window, int64_t* q0,
                               cudaStream_t stream);
// The batch of one sequence of N tokens (a plain [H, N, ...] tensor).
inline Seqs dense_seqs(int64_t N) {
  Seqs s;
  s.r.t.layout = kSeqsPadded;
  s.r.t.B = 1;
  s.r.t.L = N;
  s.r.max_len = N;
  return s;
}

// KeyDiff scores (two streaming passes over K). scores: [H, N] f32.
cudaError_t keydiff_scores(const T3& keys, const T2& scores, cudaStream_t stream);
// The same for every sequence of a batch (docs/runtime-caches.md §3): keys one sequence's rows (T3 of a batch), scores
// per token.
cudaError_t keydiff_scores_batched(const Seqs& seqs, const T3& keys, const T2& scores, cudaStream_t stream);

// Radix top-k selection (see kvtrim.h kvt_select_tokens). scores f32 [H, N]; indices i32 [H, cap]; counts i32 [H].
struct SelectParams {
  int32_t keep, budget, sinks, recent, n_safe;
  double safeguard = 0;  // batched: n_safe = floor(keep_b * safeguard) per sequence
};
cudaError_t select_tokens(const T2& scores, const SelectParams& p, const T2& indices, const T2& counts,
                          cudaStream_t stream);
// Batched (docs/runtime-caches.md §3): scores per token of a batch, indices [B, H, cap] and counts [B, H] as T2 slices
// (sq between sequences); keep_b = min(keep[b] (stride keep_s; or p.keep when keep is null), n_b).
cudaError_t select_tokens_batched(const Seqs& seqs, const T2& scores, const SelectParams& p, const int32_t* keep,
                                  int64_t keep_s, const T2& indices, const T2& counts, cudaStream_t stream);

// Moment state pointers (all f32 contiguous): n [H], mu_k [H, d], mu_v [H, dv], m [H, dv, d].
struct Moments {
  float* n;
  float* mu_k;
  float* mu_v;
  float* m;
};

// Warp-per-row compaction of K and V; optional fused moment update of the evicted rows.
cudaError_t gather_kv(const T3& keys, const T3& values, const T2& indices, const T2& counts, const O3& keys_out,
                      const O3& values_out, const T2& counts_out, const Moments* moments, cudaStream_t stream);
// Batched: keys / values a batch's rows, indices [B, H, cap], counts [B, H], outputs [B, H, cap, d] (sq between
// sequences); moments of B·H virtual heads (gather_kv_moments_batched).
cudaError_t gather_kv_batched(const Seqs& seqs, const T3& keys, const T3& values, const T2& indices, const T2& counts,
                              const O3& keys_out, const O3& values_out, const T2& counts_out, const Moments* moments,
                              cudaStream_t stream);

// Straightforward (unfused) implementations timed as baselines by `kvtrim bench` (cuda/bench_baselines.cu).
cudaError_t baseline_keydiff(const T3& keys, const T2& scores, cudaStream_t stream);
cudaError_t baseline_select(const T2& scores, int64_t keep, const T2& indices, const T2& counts, cudaStream_t stream);
cudaError_t baseline_gather(const T3& keys, const T3& values, const T2& indices, const T2& counts, const O3& keys_out,
                            const O3& values_out, cudaStream_t stream);

// The tensor-parallel adaptive selection of one shard (docs/runtime-caches.md §5): its scores (per token of a batch, or
// a plain [Hs, N] as the batch of one), the key's global heads, the budget and the caller's state tensor [B, words].
struct TpParams {
  Seqs seqs;
  T2 scores;
  int64_t Hs;
  int32_t hoff, Htot, sinks, recent, bits;
  const int32_t* keep;  // [B] (stride keep_s) or null: keep_scalar
  int64_t keep_s;
  int32_t keep_scalar;
  double safeguard;
  int32_t* state;
  int64_t st_s0, st_s1;
};
cudaError_t tp_select_begin(const TpParams& p, cudaStream_t stream);
cudaError_t tp_select_histogram(const TpParams& p, int round, int32_t* hist, int64_t hs0, int64_t hs1, cudaStream_t stream);
cudaError_t tp_select_advance(const TpParams& p, int round, const int32_t* hist, int64_t hs0, int64_t hs1,
                              cudaStream_t stream);
cudaError_t tp_select_finish(const TpParams& p, const T2& indices, const T2& counts, cudaStream_t stream);

// In-place compaction of a batch (docs/runtime-caches.md §4): keys / values a batch's rows (written in place), indices
// [B, H, cap], counts [B, H]; with moments the evicted rows merged first. The optional i32 outputs (null: not written)
// with their strides; freed_n entries of freed.
struct CompactOut {
  int32_t* lengths;
  int64_t lengths_s;
  int32_t* page_counts;
  int64_t page_counts_s;
  int32_t* last;
  int64_t last_s;
  int32_t* freed;
  int64_t freed_s, freed_n;
  int32_t* freed_count;
};
cudaError_t compact_in_place(const Seqs& seqs, const T3& keys, const T3& values, const T2& indices, const T2& counts,
                             const Moments* moments, const CompactOut& out, cudaStream_t stream);

// ==== NestedKV and SnapKV scoring ====================================================================
// NestedKV scores (docs/methods/nestedkv.md §3): two streaming passes over K plus small statistics kernels on the
// L2-resident [3, H, N] raw anomalies. scores: [H, N] f32.
struct NestedkvParams {
  int64_t window, block, sinks, tail_m;
  double prior[3];
  double beta;
  float tau, kappa;
  int global;  // 1 = 'global' ablation (ã_s only)
};
cudaError_t nestedkv_scores(const T3& keys, const NestedkvParams& p, const T2& scores, cudaStream_t stream);
// Batched: per sequence the block size (p.block, 0 = default_block(n_b)) and tail count (tail fraction) of its length.
cudaError_t nestedkv_scores_batched(const Seqs& seqs, const T3& keys, const NestedkvParams& p, double tail,
                                   const T2& scores, cudaStream_t stream);

// SnapKV scores (docs/methods/snapkv.md §3.1): pass 1 per-query LSE, pass 2 window-summed probabilities, pooling + GQA mean.
// queries [Hq, W, d] (the window rows only), keys [Hkv, N, d], scores [Hkv, N] f32.
struct SnapkvParams {
  int kernel;
  int max_pool;
  float scale;
  int force_simt;  // 1: SIMT f32 logit tiles even where tensor cores apply (benchmark baseline)
};
cudaError_t snapkv_scores(const T3& queries, const T3& keys, const SnapkvParams& p, const T2& scores,
                          cudaStream_t stream);
// Batched: keys a batch's rows, queries one sequence's [Hq, Wq_b, d] rows of the query batch qseqs (ragged or padded),
// the last W_b = min(window, Wq_b) (window 0: all) used; sequences without a prefix get +Infinity.
cudaError_t snapkv_scores_batched(const Seqs& seqs, const T3& keys, const Seqs& qseqs, const T3& queries,
                                  int64_t window, const SnapkvParams& p, const T2& scores, cudaStream_t stream);


// ==== MomentKV ========================================================================================
// Rows merged into the moment state, per head (see csrc/math/momentkv.h for the fixed merge partition).
struct RowSel {
  int mode;        // 0: explicit ascending list; 1: complement of an ascending list; 2: label == value
  T2 list;         // [H, cap] i32 (modes 0, 1)
  T2 counts;       // [H] i32 (modes 0, 1)
  T2 label;        // [H, N] i32 (mode 2)
  int32_t value;
};
// Exact pairwise merge of the selected rows into the state (segment kernel + in-order segment merge).
cudaError_t moments_merge(const T3& keys, const T3& values, const RowSel& sel, const Moments& m, cudaStream_t stream);
// Batched: sequence b's rows into virtual heads b·H + h; the lists [B, H, cap] / counts [B, H] (or labels per token)
// as T2 slices of the batch.
cudaError_t moments_merge_batched(const Seqs& seqs, const T3& keys, const T3& values, const RowSel& sel,
                                  const Moments& m, cudaStream_t stream);
// gather_kv with the moment update fused in: one pass over all positions copies retained rows and merges evicted
// ones (each evicted row read once when d, dv <= 128).
cudaError_t gather_kv_moments(const T3& keys, const T3& values, const T2& indices, const T2& counts,
                              const O3& keys_out, const O3& values_out, const T2& counts_out, const Moments& m,
                              cudaStream_t stream);
cudaError_t gather_kv_moments_batched(const Seqs& seqs, const T3& keys, const T3& values, const T2& indices,
                                      const T2& counts, const O3& keys_out, const O3& values_out, const T2& counts_out,
                                      const Moments& m, cudaStream_t stream);

// Corrected decode attention: split-K partial softmax states per KV chunk, then one merge kernel per query that
// folds in the moment summary as one extra LSE state. queries [Hq, T, d], out [Hq, T, dv] f32; d, dv <= 256.
struct DecodeParams {
  int order;
  float scale;
  int clip_mode;  // 0 none, 1 scalar, 2 per-head tensor
  float clip;
  T2 clip_t;      // [Hkv] f32 (clip_mode 2)
};
constexpr int64_t kDecodeMaxDim = 256;
cudaError_t decode_attention(const T3& queries, const T3& keys, const T3& values, const T2& counts,
                             const Moments* m, const DecodeParams& p, const O3& out, cudaStream_t stream);
// Batched: queries / out [Hq, T, .] slices of [B, Hq, T, .] (sq between sequences), keys / values a batch's rows, counts
// [B, Hkv], moments and clip per virtual head b·Hkv + h.
cudaError_t decode_attention_batched(const Seqs& seqs, const T3& queries, const T3& keys, const T3& values,
                                     const T2& counts, const Moments* m, const DecodeParams& p, const O3& out,
                                     cudaStream_t stream);

// Multi-round moment-informed eviction (kvtrim.h kvt_momentkv_select). `evicted_round` [H, N] i32 is optional
// (null: stream-ordered scratch).
struct MkvSelectParams {
  int32_t keep, rounds, r, mi;
  float eps;
};
cudaError_t momentkv_select(const T2& scores, const T3& keys, const T3& values, const MkvSelectParams& p,
                            const T2& indices, const T2& counts, const Moments& m, const T2* evicted_round,
                            cudaStream_t stream);
// Batched: scores / evicted_round per token, keys / values a batch's rows, keep_b = min(keep[b] or p.keep, n_b),
// indices [B, H, cap] / counts [B, H] slices, moments per virtual head.
cudaError_t momentkv_select_batched(const Seqs& seqs, const T2& scores, const T3& keys, const T3& values,
                                    const MkvSelectParams& p, const int32_t* keep, int64_t keep_s, const T2& indices,
                                    const T2& counts, const Moments& m, const T2* evicted_round, cudaStream_t stream);


// ==== GRKV ============================================================================================

// An f32 3-D tensor [n0, n1, n2] with element strides (scratch, SPD systems and right-hand sides).
struct F3 {
  float* p;
  int64_t n0, n1, n2;
  int64_t s0, s1, s2;
};

// Largest system order of the one-CTA-per-system SPD solver.
constexpr int64_t kSpdMaxN = 256;

// Batched SPD solve X_b = (A_b + lambda I)^-1 B_b (lower triangle of A read), one CTA per system; info[b*info_s] = 0 or
// the order of the first non-positive leading minor (X rows NaN then); info may be NULL. x may alias b exactly.
cudaError_t spd_solve(const F3& a, const F3& b, float lambda, const F3& x, int32_t* info, int64_t info_s,
                      cudaStream_t stream);

// GRKV merge limits of the CUDA backend: G*Qs query rows per KV head (one SPD system each) and head dims.
constexpr int64_t kGrkvMaxRows = 256;
constexpr int64_t kGrkvMaxDim = 256;

// A plain call: the tensors below. A batch (docs/runtime-caches.md §3): keys / values / scores a batch's (seqs), queries
// one sequence's [Hq, Qs_b, d] rows of the query batch qseqs, positions / weights per query ([Tq] ragged, [B, Qs]
// padded: *_sq the sequence stride), indices / counts / outputs / diagnostics [B, H, ...] slices (sq).
struct GrkvParams {
  T3 keys, values;         // [H, N, d], [H, N, dv], same dtype
  T2 indices, counts;      // [H, cap_in] i32, [H] i32
  T3 queries;              // [Hq, Qs, d]
  const int32_t* qpos;     // [Qs]
  int64_t qpos_s;
  const float* weights;    // [Qs] or NULL (all 1)
  int64_t weights_s;
  T2 scores;               // [H, N] f32
  O3 keys_out, values_out; // [H, cap, d], [H, cap, dv]
  T2 counts_out;           // [H] i32
  float* diag;             // [H, 14] f32 or NULL
  int64_t diag_s0, diag_s1;
  int32_t window, cg_iters;
  double gamma, lambda, cap_key, cap_value, tol;
  float scale;
  int32_t accept;
  Seqs seqs, qseqs;        // the batch (dense_seqs(N) / dense_seqs(Qs) for a plain call)
  int64_t qpos_sq = 0, weights_sq = 0, diag_sq = 0;
};

// The whole merge on `stream` (stream-ordered scratch, no host synchronisation).
cudaError_t grkv_merge(const GrkvParams& p, cudaStream_t stream);
// Batched: every sequence of p.seqs, its queries (at most kGrkvMaxRows / G per sequence: more are clamped).
cudaError_t grkv_merge_batched(const GrkvParams& p, cudaStream_t stream);


}  // namespace cuda
}  // namespace kvt
