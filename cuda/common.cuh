// Device helpers shared by the kernels: warp reductions, vectorised strided row loads, launch utilities.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "math/common.h"
#include "launch.h"

namespace kvt {
namespace cuda {

constexpr int kWarp = 32;

// The minimum CTAs per SM for `__launch_bounds__(256, KVT_FULL_SM_CTAS_256)`, full occupancy at 256 threads (32
// registers): 8 where an SM holds 2048 threads, 6 on sm_86 / sm_87 / sm_89 (1536 threads; ptxas rejects a larger
// minimum there).
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 860 || __CUDA_ARCH__ == 870 || __CUDA_ARCH__ == 890)
#define KVT_FULL_SM_CTAS_256 6
#else
#define KVT_FULL_SM_CTAS_256 8
#endif

__host__ __device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum over Warps warps in a fixed order (warp tree, then the warps in order), every thread gets it. `red`
// holds Warps floats; the leading barrier makes back-to-back calls on the same `red` safe.
template <int Warps>
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = 0.f;
#pragma unroll
  for (int w = 0; w < Warps; w++) t += red[w];
  return t;
}

template <int DT>
__device__ __forceinline__ float cvt16(uint16_t h) {
  return DT == kF16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// Loads V consecutive elements at p (aligned to V elements when V > 1) into out[0..V).
template <int DT, int V>
__device__ __forceinline__ void load_vec(const void* p, float* out) {
  if constexpr (DT == kF32) {
    if constexpr (V == 4) {
      float4 t = *reinterpret_cast<const float4*>(p);
      out[0] = t.x; out[1] = t.y; out[2] = t.z; out[3] = t.w;
    } else if constexpr (V == 2) {
      float2 t = *reinterpret_cast<const float2*>(p);
      out[0] = t.x; out[1] = t.y;
    } else {
      out[0] = *reinterpret_cast<const float*>(p);
    }
  } else {
    if constexpr (V == 8) {
      uint4 t = *reinterpret_cast<const uint4*>(p);
      uint32_t w[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
      for (int i = 0; i < 4; i++) {
        out[2 * i] = cvt16<DT>(uint16_t(w[i] & 0xffffu));
        out[2 * i + 1] = cvt16<DT>(uint16_t(w[i] >> 16));
      }
    } else if constexpr (V == 4) {
      uint2 t = *reinterpret_cast<const uint2*>(p);
      out[0] = cvt16<DT>(uint16_t(t.x & 0xffffu)); out[1] = cvt16<DT>(uint16_t(t.x >> 16));
      out[2] = cvt16<DT>(uint16_t(t.y & 0xffffu)); out[3] = cvt16<DT>(uint16_t(t.y >> 16));
    } else if constexpr (V == 2) {
      uint32_t t = *reinterpret_cast<const uint32_t*>(p);
      out[0] = cvt16<DT>(uint16_t(t & 0xffffu)); out[1] = cvt16<DT>(uint16_t(t >> 16));
    } else {
      out[0] = cvt16<DT>(*reinterpret_cast<const uint16_t*>(p));
    }
  }
}

// One warp loads a row of d elements (element stride s) into registers: lane handles elements
// c = (j*32 + lane)*V + v for j < STEPS, v < V (zero beyond d). V > 1 uses vector loads, which require s == 1 and
// alignment (checked on the host by row_vec_width), unless `vec` is false: then the same elements are loaded one by one
// (a batch whose rows are not aligned keeps the element-to-lane assignment, hence the sums, of contiguous rows).
template <int DT, int V, int STEPS>
__device__ __forceinline__ void warp_load_row(const char* row, int64_t d, int64_t s, int lane, float* x,
                                              bool vec = true) {
  constexpr int ES = DT == kF32 ? 4 : 2;
#pragma unroll
  for (int j = 0; j < STEPS; j++) {
    const int64_t c0 = (int64_t(j) * kWarp + lane) * V;
    if (c0 < d) {
      if constexpr (V > 1) {
        if (vec) {
          load_vec<DT, V>(row + c0 * ES, x + j * V);
        } else {
#pragma unroll
          for (int v = 0; v < V; v++) load_vec<DT, 1>(row + (c0 + v) * s * ES, x + j * V + v);
        }
      } else {
        load_vec<DT, 1>(row + c0 * s * ES, x + j * V);
      }
    } else {
#pragma unroll
      for (int v = 0; v < V; v++) x[j * V + v] = 0.f;
    }
  }
}

// Element index of register slot (j, v) for a lane.
template <int V>
__device__ __forceinline__ int64_t slot_elem(int j, int v, int lane) {
  return (int64_t(j) * kWarp + lane) * V + v;
}

// ---- Batches of sequences (docs/runtime-caches.md §6). Kernels are templates on BATCH: false for one plain [H, N, ...]
// tensor (b = 0; the addressing of the per-sequence ops), true for a batch read through its clamped table (Seqs).

// n_b: the tokens of sequence b (N of the plain tensor when !BATCH).
template <bool BATCH>
__device__ __forceinline__ int64_t seq_len(const Seqs& s, int64_t b) {
  if constexpr (BATCH) return s.r.length(b);
  else return s.r.t.L;
}
// Element offset of row (b, h, i) of a data tensor ([H, N, d] or a batch's keys / values).
template <bool BATCH>
__device__ __forceinline__ int64_t row_off(const Seqs& s, const T3& t, int64_t b, int64_t h, int64_t i) {
  if constexpr (BATCH) return s.r.offset(t.sq, t.s0, t.s1, b, h, i);
  else return h * t.s0 + i * t.s1;
}
// Element offset of token (b, h, i) of a per-token tensor ([H, N], or a batch's [H, T] / [B, H, L']).
template <bool BATCH>
__device__ __forceinline__ int64_t tok_off(const Seqs& s, const T2& t, int64_t b, int64_t h, int64_t i) {
  if constexpr (BATCH) return s.r.tok_offset(t.sq, t.s0, t.s1, b, h, i);
  else return h * t.s0 + i * t.s1;
}
// Element offset of entry (b, h, j) of a per-head tensor ([H, cap] / [H], or [B, H, cap] / [B, H]).
__device__ __forceinline__ int64_t head_off(const T2& t, int64_t b, int64_t h, int64_t j = 0) {
  return b * t.sq + h * t.s0 + j * t.s1;
}

// Block-wide scan of one value per thread (NT threads, every thread calls it): returns the thread's exclusive
// prefix; *total receives the block's sum. `warp_tot` holds NT / 32 shared entries. Two barriers.
template <int NT, typename T = int64_t>
__device__ __forceinline__ T block_exclusive_scan(T v, T* warp_tot, T* total) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  T incl = v;
#pragma unroll
  for (int o = 1; o < kWarp; o <<= 1) {
    const T t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == kWarp - 1) warp_tot[warp] = incl;
  __syncthreads();
  T before = 0, sum = 0;
#pragma unroll
  for (int q = 0; q < NT / kWarp; q++) {
    if (q < warp) before += warp_tot[q];
    sum += warp_tot[q];
  }
  *total = sum;
  __syncthreads();  // warp_tot may be reused
  return before + incl - v;
}

// The digit pick of a radix round (select.cu, nestedkv.cu), by a whole block of NT threads over NT bins: thread t holds
// `n`, the count of bin NT-1-t (bins counted from the top), a block scan gives every bin the count above it, and the
// digit is the highest bin at which the running count from the top, starting at `above0`, reaches k — what one thread
// scanning the bins from the top finds. Returns kPicked on the thread that holds that bin (*digit, and *above: above0
// plus the keys in higher bins); when no bin reaches k, kShort on thread NT-1 (*digit 0, *above: above0 plus every
// key); else kIdle. Every thread of the block calls it (two barriers); `warp_tot` holds NT / 32 shared entries.
enum PickResult : int { kIdle = 0, kPicked = 1, kShort = 2 };
template <int NT>
__device__ __forceinline__ int block_radix_pick(unsigned n, unsigned above0, unsigned k, unsigned* warp_tot,
                                                unsigned* digit, unsigned* above) {
  const int t = threadIdx.x;
  unsigned total;
  const unsigned before = above0 + block_exclusive_scan<NT, unsigned>(n, warp_tot, &total);
  *digit = unsigned(NT - 1 - t);
  *above = before;
  if (before + n >= k && (t == 0 || before < k)) return kPicked;
  if (t == NT - 1 && before + n < k) {
    *digit = 0;
    *above = before + n;
    return kShort;
  }
  return kIdle;
}

// This thread's bin of a round's histogram for block_radix_pick: bin NT-1-t, read through L2 (ld.global.cg, not L1),
// where the other blocks' atomics landed (the caller's ticket and fence order them); one coalesced load per warp.
template <int NT>
__device__ __forceinline__ unsigned radix_bin(const unsigned* hist) {
  return __ldcg(hist + (NT - 1 - int(threadIdx.x)));
}

// Widest vector (elements) usable for rows of a 3-D view: unit element stride, d a multiple of V, base and row
// strides aligned to V*elem bytes. At most 16 bytes.
inline int row_vec_width(const T3& t) {
  const int es = t.dtype == kF32 ? 4 : 2;
  if (t.s2 != 1 && t.n2 > 1) return 1;
  for (int v = 16 / es; v > 1; v >>= 1) {
    const int64_t bytes = int64_t(v) * es;
    if (t.n2 % v) continue;
    if (reinterpret_cast<uintptr_t>(t.p) % bytes) continue;
    if ((t.s0 * es) % bytes || (t.s1 * es) % bytes) continue;
    return v;
  }
  return 1;
}

// Partitions — how rows, keys or query chunks are split between blocks, and so the order in which every partial sum
// is combined — are functions of the shapes only, never of the device: results are bit-identical on every GPU and
// under the emulator (docs/performance.md §10). Grids are sized for a reference device of kRefSMs multiprocessors
// (H100 / H200, the largest supported part): e.g. "four blocks per SM" is 4 * kRefSMs blocks over the layer; a smaller
// GPU runs the same blocks in more waves. No launcher reads the multiprocessor count (test/ptxas-budget.test.ts).
constexpr int64_t kRefSMs = 132;

// Vector width of contiguous rows of d elements: what row_vec_width gives a contiguous [H, n, d] copy of a sequence.
// A batch uses this width (the element-to-lane assignment of the per-sequence op on that copy), with vector loads
// only when its own rows allow them (batch_vec_ok).
inline int contiguous_vec_width(int dtype, int64_t d) {
  const int es = dtype == kF32 ? 4 : 2;
  for (int v = 16 / es; v > 1; v >>= 1)
    if (d % v == 0) return v;
  return 1;
}
// Whether a batch tensor's rows allow vector loads of `vec` elements: unit element stride, base and the head, token and
// sequence (page) strides aligned.
inline bool batch_vec_ok(const T3& t, int vec) {
  const int64_t es = t.dtype == kF32 ? 4 : 2, bytes = es * vec;
  if (vec <= 1) return true;
  if (t.s2 != 1 && t.n2 > 1) return false;
  return reinterpret_cast<uintptr_t>(t.p) % bytes == 0 && (t.s0 * es) % bytes == 0 && (t.s1 * es) % bytes == 0 &&
         (t.sq * es) % bytes == 0;
}

inline int current_device() {
  int d = 0;
  cudaGetDevice(&d);
  return d;
}

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Stream-ordered scratch memory, freed on the same stream when it goes out of scope.
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t s) : s_(s) {
    err_ = bytes ? cudaMallocAsync(&p_, bytes, s) : cudaSuccess;
  }
  ~Scratch() {
    if (p_) cudaFreeAsync(p_, s_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  cudaError_t error() const { return err_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  cudaStream_t s_;
  cudaError_t err_;
};

}  // namespace cuda
}  // namespace kvt

#define KVT_CU_TRY(expr)                  \
  do {                                    \
    cudaError_t _e = (expr);              \
    if (_e != cudaSuccess) return _e;     \
  } while (0)
