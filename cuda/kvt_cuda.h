// Launchers of the CUDA kernels. Framework-free: raw pointers, sizes, element strides and a stream; each returns
// the cudaError_t of its launches (no host synchronisation, no allocation except stream-ordered temporaries).
// Included by the C ABI layer only in builds with CUDA (KVT_WITH_CUDA).
#pragma once

#include <stdint.h>
#include <cuda_runtime_api.h>

namespace kvt {
namespace cuda {

// A strided 3-D tensor [n0, n1, n2] of dtype kF32/kF16/kBF16 (see kvt_math.h), strides in elements.
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

// Straightforward (unfused) implementations timed as baselines by `kvtrim bench` (cuda/baseline.cu).
cudaError_t baseline_keydiff(const T3& keys, const T2& scores, cudaStream_t stream);
cudaError_t baseline_select(const T2& scores, int64_t keep, const T2& indices, const T2& counts, cudaStream_t stream);
cudaError_t baseline_gather(const T3& keys, const T3& values, const T2& indices, const T2& counts, const O3& keys_out,
                            const O3& values_out, cudaStream_t stream);

// ==== NestedKV and SnapKV scoring ====================================================================
// NestedKV scores (spec/nestedkv.md §3): two streaming passes over K plus small statistics kernels on the
// L2-resident [3, H, N] raw anomalies. scores: [H, N] f32.
struct NestedkvParams {
  int64_t window, block, sinks, tail_m;
  double prior[3];
  double beta;
  float tau, kappa;
  int global;  // 1 = 'global' ablation (ã_s only)
};
cudaError_t nestedkv_scores(const T3& keys, const NestedkvParams& p, const T2& scores, cudaStream_t stream);

// SnapKV scores (spec/grkv.md §3.1): pass 1 per-query LSE, pass 2 window-summed probabilities, pooling + GQA mean.
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


// ==== GRKV ============================================================================================


}  // namespace cuda
}  // namespace kvt
