// GRKV merge on CUDA, what its phase files (cuda/grkv_*.cu) share: the launch constants, the context every kernel
// receives by value, the per-row accessors, the dtype / head-dim dispatch of the templated kernels, and the host
// launchers of the phases, which grkv_merge (cuda/grkv.cu) calls in order. Each launcher enqueues its kernels on the
// stream and returns the launch error (no host synchronisation).
#pragma once

#include <stdint.h>

#include <type_traits>

#include "common.cuh"
#include "math/grkv.h"

namespace kvt {
namespace cuda {
namespace grkv {


constexpr int kT = 256;           // threads of every tile kernel
constexpr int kTl = 32;           // tile edge (rows, slots, dims)
constexpr int kTp = kTl + 1;      // padded shared-memory row
constexpr int64_t kChunkSlots = 512;  // retained slots per CTA in the split-K kernels
constexpr int kRedThreads = 256;  // per-head reduction kernels
constexpr int kStepThreads = 1024;  // per-head capped-step kernel (several passes over all mutable rows)

// The context passed by value to every kernel.
struct Ctx {
  GrkvParams p;
  int64_t H, N, d, dv, Qs, G, rows, cap_in, cap;
  int64_t ncht, cht;  // target: chunks, keys per chunk
  int64_t nchs;       // retained split-K chunks (kChunkSlots each)
  float* Qf;          // [H, rows, d]
  int32_t* spos;      // [H, cap] position or -1
  uint64_t* skey;     // [H, cap] anchor keys (partition)
  uint8_t* smut;      // [H, cap] 1 = mutable
  GrkvHead* st;       // [H]
  float *ostar, *o, *o1, *X, *A, *Gm, *Dv, *part;
  double *x, *res, *pv, *Y, *uo, *T, *partd;
};

__device__ __forceinline__ int32_t qpos_of(const Ctx& c, int64_t i) {
  return c.p.qpos[(i % c.Qs) * c.p.qpos_s];
}
__device__ __forceinline__ float w_of(const Ctx& c, int64_t i) {
  return c.p.weights ? c.p.weights[(i % c.Qs) * c.p.weights_s] : 1.0f;
}
__device__ __forceinline__ float sw_of(const Ctx& c, int64_t i) { return sqrtf(w_of(c, i)); }

// Which heads a phase runs on.
enum HeadSel : int { kAllHeads = 0, kFitHeads = 1, kCgHeads = 2 };
__device__ __forceinline__ bool head_on(const Ctx& c, int64_t h, int sel) {
  if (sel == kAllHeads) return true;
  if (sel == kFitHeads) return c.st[h].active != 0;
  return c.st[h].active && c.st[h].cg_active;
}

inline unsigned blocks_for(int64_t n, int threads) { return unsigned(imax(ceil_div(n, threads), 1)); }
// Grid sizes shared by several phases: 32-row tiles of the query rows, and one warp per (head, query row).
inline unsigned row_tiles(const Ctx& c) { return unsigned(ceil_div(c.rows, kTl)); }
inline unsigned row_warps(const Ctx& c) { return blocks_for(c.H * c.rows * kWarp, kT); }

// Calls f(std::integral_constant<int, DT>()) for the cache dtype DT (kernels are templates on it).
template <typename F>
cudaError_t with_dtype(int dt, const F& f) {
  switch (dt) {
    case kF32: return f(std::integral_constant<int, kF32>());
    case kF16: return f(std::integral_constant<int, kF16>());
    case kBF16: return f(std::integral_constant<int, kBF16>());
    default: return cudaErrorInvalidValue;
  }
}
// Calls f(std::integral_constant<int, M>()) with M = 64, 128 or 256, the smallest that holds a head dim n (the
// register tiles of the kernels are sized by it).
template <typename F>
cudaError_t with_dim(int64_t n, const F& f) {
  if (n <= 64) return f(std::integral_constant<int, 64>());
  if (n <= 128) return f(std::integral_constant<int, 128>());
  return f(std::integral_constant<int, 256>());
}

// ---- the phases, in the order grkv_merge runs them

// grkv_partition.cu: queries -> f32 rows [H, rows, d]; per head the retained slots, prefix, anchors, mutable slots
// and the initial head state.
cudaError_t launch_prep(const Ctx& c, cudaStream_t s);
cudaError_t launch_partition(const Ctx& c, cudaStream_t s);
// grkv_target.cu: o* = full causal attention over all N keys (split-K online softmax, LSE merge).
cudaError_t launch_target(const Ctx& c, cudaStream_t s);
// grkv_attention.cu: A = softmax of the query rows over the retained slots of the current candidate; then `out` =
// A V and the objective of candidate k (0 unchanged, 1 value-only, 2 key+value). sel: a HeadSel.
cudaError_t launch_attention(const Ctx& c, int sel, cudaStream_t s);
cudaError_t launch_output(const Ctx& c, int sel, float* out, int k, cudaStream_t s);
// grkv_value.cu: the value step's dual ridge: Gram + lambda I, one SPD solve per head, dV = Aw^T X.
cudaError_t launch_value_step(const Ctx& c, cudaStream_t s);
// grkv_key.cu: the key step's CG (fp64): start, one iteration, and T = J^T U (U = p during CG, x for dK).
cudaError_t launch_cg_init(const Ctx& c, cudaStream_t s);
cudaError_t launch_cg_iteration(const Ctx& c, cudaStream_t s);
cudaError_t launch_vjp(const Ctx& c, const double* U, int sel, cudaStream_t s);
// grkv_candidates.cu: the capped, rounded step into the output rows (which = 0 values from dV, 1 keys from dK), the
// choice per head with its diagnostics, and the restore of rejected rows from the inputs.
cudaError_t launch_step(const Ctx& c, int which, cudaStream_t s);
cudaError_t launch_finalize(const Ctx& c, int run_key, cudaStream_t s);
cudaError_t launch_restore(const Ctx& c, cudaStream_t s);

}  // namespace grkv
}  // namespace cuda
}  // namespace kvt
