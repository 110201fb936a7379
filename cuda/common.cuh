// Device helpers shared by the kernels: warp reductions, vectorised strided row loads, launch utilities.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "math/common.h"
#include "launch.h"

namespace kvt {
namespace cuda {

constexpr int kWarp = 32;

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
// c = (j*32 + lane)*V + v for j < STEPS, v < V (zero beyond d). V > 1 requires s == 1 and alignment (checked
// on the host by row_vec_width).
template <int DT, int V, int STEPS>
__device__ __forceinline__ void warp_load_row(const char* row, int64_t d, int64_t s, int lane, float* x) {
  constexpr int ES = DT == kF32 ? 4 : 2;
#pragma unroll
  for (int j = 0; j < STEPS; j++) {
    const int64_t c0 = (int64_t(j) * kWarp + lane) * V;
    if (c0 < d) {
      if constexpr (V > 1) {
        load_vec<DT, V>(row + c0 * ES, x + j * V);
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

inline int current_device() {
  int d = 0;
  cudaGetDevice(&d);
  return d;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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
