// Launchers of the CUDA kernels. Framework-free: raw pointers, sizes, element strides and a stream; each returns
// the cudaError_t of its launches (no host synchronisation, no allocation except stream-ordered temporaries).
// Included by the C ABI layer only in builds with CUDA (KVT_WITH_CUDA).
#pragma once

#include <stdint.h>
#include <cuda_runtime_api.h>

namespace kvt {
namespace cuda {

// A strided 3-D tensor [n0, n1, n2] of dtype kF32/kF16/kBF16 (see math/common.h), strides in elements.
struct T3 {
  const void* p;
  int dtype;
  int64_t n0, n1, n2;
  int64_t s0, s1, s2;
};
// A strided 2-D tensor [n0, n1].
struct T2 {
  void* p;
  int dtype;
  int64_t n0, n1;
  int64_t s0, s1;
};
// Mutable 3-D output.
struct O3 {
  void* p;
  int dtype;
  int64_t n0, n1, n2;
  int64_t s0, s1, s2;
};

// KeyDiff scores (two streaming passes over K). scores: [H, N] f32.
cudaError_t keydiff_scores(const T3& keys, const T2& scores, cudaStream_t stream);

// Radix top-k selection (see kvtrim.h kvt_select_tokens). scores f32 [H, N]; indices i32 [H, cap]; counts i32 [H].
struct SelectParams {
  int32_t keep, budget, sinks, recent, n_safe;
};
cudaError_t select_tokens(const T2& scores, const SelectParams& p, const T2& indices, const T2& counts,
                          cudaStream_t stream);

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

// Straightforward (unfused) implementations timed as baselines by `kvtrim bench` (cuda/bench_baselines.cu).
cudaError_t baseline_keydiff(const T3& keys, const T2& scores, cudaStream_t stream);
cudaError_t baseline_select(const T2& scores, int64_t keep, const T2& indices, const T2& counts, cudaStream_t stream);
cudaError_t baseline_gather(const T3& keys, const T3& values, const T2& indices, const T2& counts, const O3& keys_out,
                            const O3& values_out, cudaStream_t stream);

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
// gather_kv with the moment update fused in: one pass over all positions copies retained rows and merges evicted
// ones (each evicted row read once when d, dv <= 128).
cudaError_t gather_kv_moments(const T3& keys, const T3& values, const T2& indices, const T2& counts,
                              const O3& keys_out, const O3& values_out, const T2& counts_out, const Moments& m,
                              cudaStream_t stream);

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

// Multi-round moment-informed eviction (kvtrim.h kvt_momentkv_select). `evicted_round` [H, N] i32 is optional
// (null: stream-ordered scratch).
struct MkvSelectParams {
  int32_t keep, rounds, r, mi;
  float eps;
};
cudaError_t momentkv_select(const T2& scores, const T3& keys, const T3& values, const MkvSelectParams& p,
                            const T2& indices, const T2& counts, const Moments& m, const T2* evicted_round,
                            cudaStream_t stream);


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
};

// The whole merge on `stream` (stream-ordered scratch, no host synchronisation).
cudaError_t grkv_merge(const GrkvParams& p, cudaStream_t stream);


}  // namespace cuda
}  // namespace kvt
