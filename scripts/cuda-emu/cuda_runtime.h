// A tiny CPU emulator of the CUDA execution model, for running kvtrim's kernel sources on machines without a GPU
// (scripts/cuda-emu/README.md). It is NOT a CUDA implementation: one block runs at a time; every thread of the block is
// a fiber (ucontext) on one OS thread; __syncthreads and warp shuffles are scheduling barriers; device memory is host
// memory, poisoned with 0xff bytes on allocation. It catches indexing and logic errors and reads of uninitialised
// memory, not data races between legal interleavings, nor anything about performance or resource limits.
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

// ---- qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

// ---- vector types
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct uint4 {
  unsigned x, y, z, w;
};
struct uint2 {
  unsigned x, y;
};
struct float4 {
  float x, y, z, w;
};
struct float2 {
  float x, y;
};
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }

// ---- runtime API subset
typedef int cudaError_t;
typedef void* cudaStream_t;
enum {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNotSupported = 801,
};
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

// CUDA's integer min/max overloads
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

namespace emu {
extern uint3 g_block_idx;
extern dim3 g_block_dim, g_grid_dim;
extern int g_sms, g_smem_optin;
extern cudaError_t g_last_error;
extern char* g_dyn_smem;
uint3& cur_tid();
void block_barrier();
void warp_barrier();
uint64_t* warp_slots();
int cur_lane();
// Runs fn for every thread of every block of the grid.
void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()>& fn);
}  // namespace emu

#define threadIdx (::emu::cur_tid())
#define blockIdx (::emu::g_block_idx)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)

inline void __syncthreads() { emu::block_barrier(); }

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int o) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  uint64_t* slots = emu::warp_slots();
  const int lane = emu::cur_lane();
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof(T));
  slots[lane] = bits;
  emu::warp_barrier();
  const uint64_t got = slots[lane ^ o];
  emu::warp_barrier();
  T r;
  memcpy(&r, &got, sizeof(T));
  return r;
}

inline float __int_as_float(int i) {
  float f;
  memcpy(&f, &i, 4);
  return f;
}

inline cudaError_t cudaGetLastError() {
  cudaError_t e = emu::g_last_error;
  emu::g_last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::g_last_error; }
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? emu::g_sms : emu::g_smem_optin;
  return cudaSuccess;
}
template <typename K>
inline cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int v) {
  return v <= emu::g_smem_optin ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) {
  *p = malloc(bytes);
  if (!*p) return cudaErrorMemoryAllocation;
  memset(*p, 0xff, bytes);  // uninitialised device memory: NaN / -1 everywhere
  return cudaSuccess;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  free(p);
  return cudaSuccess;
}

// kernel<<<grid, block, smem, stream>>>(args...) is rewritten by emulate.py into EMU_LAUNCH((kernel), grid, block, smem,
// stream)(args...).
namespace emu {
template <typename F>
struct Launcher {
  F f;
  dim3 grid, block;
  size_t smem;
  template <typename... A>
  void operator()(A&&... args) const {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.x > 1024 || grid.y > 65535 || grid.z > 65535) {
      fprintf(stderr, "emu: invalid launch configuration grid (%u, %u, %u) block %u\n", grid.x, grid.y, grid.z, block.x);
      g_last_error = cudaErrorInvalidConfiguration;
      return;
    }
    if (smem > size_t(g_smem_optin)) {
      fprintf(stderr, "emu: dynamic shared memory %zu above the opt-in limit %d\n", smem, g_smem_optin);
      g_last_error = cudaErrorInvalidValue;
      return;
    }
    auto fn = f;
    run_grid(grid, block, smem, [&]() { fn(args...); });
  }
};
template <typename F>
Launcher<F> make_launcher(F f, dim3 g, dim3 b, size_t smem) {
  return Launcher<F>{f, g, b, smem};
}
template <typename T>
T* dyn_smem() {
  return reinterpret_cast<T*>(g_dyn_smem);
}
}  // namespace emu
#define EMU_LAUNCH(k, g, b, s, st) ::emu::make_launcher(k, dim3(g), dim3(b), size_t(s))
