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

// The geometry of one virtual head b·H + h: its sequence's keys N, queries Qs and query rows G·Qs, and the target's
// split (chunks, keys per chunk); the same for every head of a sequence. A plain call is the batch of one sequence.
struct GrkvGeo {
  int64_t b, N, Qs;
  int32_t rows;  // G·Qs (an int32 field: the SPD solve reads the per-system order from it)
  int32_t pad_;
  int64_t ncht, cht;
};

// The context passed by value to every kernel. Per-head scratch is laid out over the VH = B·H virtual heads with the
// strides of the bounds (rows, cap); a head's own extents are in geo[vh].
struct Ctx {
  GrkvParams p;
  int64_t H, N, d, dv, Qs, G, rows, cap_in, cap;  // N, Qs, rows: bounds over the sequences of a batch
  int64_t B, VH;      // sequences, virtual heads B·H
  int64_t ncht;       // target: chunks (the bound over the heads)
  int64_t nchs;       // retained split-K chunks (kChunkSlots each)
  GrkvGeo* geo;       // [VH]
  float* Qf;          // [VH, rows, d]
  int32_t* spos;      // [VH, cap] position or -1
  uint64_t* skey;     // [VH, cap] anchor keys (partition)
  uint8_t* smut;      // [VH, cap] 1 = mutable
  GrkvHead* st;       // [VH]
  float *ostar, *o, *o1, *X, *A, *Gm, *Dv, *part;
  double *x, *res, *pv, *Y, *uo, *T, *partd;
};

// The target's split of N keys for a sequence of `rows` query rows in a layer of H heads: about four CTAs per SM of
// the reference device (kRefSMs) over the layer (the per-sequence op's rule, applied to each sequence of a batch).
__host__ __device__ __forceinline__ void target_split(int64_t H, int64_t rows, int64_t N, int64_t* ncht, int64_t* cht) {
  const int64_t rb = ceil_div(imax(rows, 1), kTl);
  int64_t n = imax(1, imin(ceil_div(kRefSMs * 4, H * rb), ceil_div(N, kTl)));
  *cht = imax(kTl, ceil_div(ceil_div(N, n), kTl) * kTl);  // (N = 0: an empty sequence of a batch)
  *ncht = ceil_div(N, *cht);
}

// Query row i (g·Qs + j) of virtual head vh: its position and weight (per query j of the head's sequence).
__device__ __forceinline__ int64_t query_at(const Ctx& c, const GrkvGeo& g, const int64_t s_seq, int64_t s, int64_t i) {
  return c.p.qseqs.r.tok_offset(s_seq, 0, s, g.b, 0, i % g.Qs);
}
__device__ __forceinline__ int32_t qpos_of(const Ctx& c, int64_t vh, int64_t i) {
  const GrkvGeo& g = c.geo[vh];
  return c.p.qpos[query_at(c, g, c.p.qpos_sq, c.p.qpos_s, i)];
}
__device__ __forceinline__ float w_of(const Ctx& c, int64_t vh, int64_t i) {
  return c.p.weights ? c.p.weights[query_at(c, c.geo[vh], c.p.weights_sq, c.p.weights_s, i)] : 1.0f;
}
__device__ __forceinline__ float sw_of(const Ctx& c, int64_t vh, int64_t i) { return sqrtf(w_of(c, vh, i)); }
// Query rows of virtual head vh.
__device__ __forceinline__ int64_t rows_of(const Ctx& c, int64_t vh) { return c.geo[vh].rows; }
// Element offset of row (position) i of virtual head vh of an input ([H, N, .] or a batch's rows).
__device__ __forceinline__ int64_t in_row(const Ctx& c, const T3& x, int64_t vh, int64_t i) {
  return c.p.seqs.r.offset(x.sq, x.s0, x.s1, vh / c.H, vh % c.H, i);
}
// Element offset of slot s of virtual head vh of an output ([H, cap, .] or [B, H, cap, .]).
__device__ __forceinline__ int64_t out_row(const Ctx& c, const O3& x, int64_t vh, int64_t s) {
  return (vh / c.H) * x.sq + (vh % c.H) * x.s0 + s * x.s1;
}

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
inline unsigned row_warps(const Ctx& c) { return blocks_for(c.VH * c.rows * kWarp, kT); }

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

// grkv_partition.cu: the geometry of every virtual head; queries -> f32 rows [VH, rows, d]; per head the retained
// slots, prefix, anchors, mutable slots and the initial head state.
cudaError_t launch_geometry(const Ctx& c, cudaStream_t s);
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
