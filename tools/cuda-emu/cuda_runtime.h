// A CPU emulator of the CUDA execution model, for running kvtrim's kernel sources on machines without a GPU
// (tools/cuda-emu/README.md). It is NOT a CUDA implementation:
//  - one block runs at a time, in grid order (or reversed / shuffled: KVTRIM_EMU_BLOCK_ORDER); every thread of the
//    block is a fiber on one OS thread; __syncthreads and every warp-collective intrinsic (shuffles, votes,
//    reductions, __syncwarp, mma.sync) are scheduling points, checked for divergence (same barrier site and count,
//    same collective kind and mask, all named lanes present);
//  - device memory is host memory: every allocation is poisoned with 0xff bytes (NaN / -1) and fenced by guard pages
//    (out-of-bounds and use-after-free accesses fault with a diagnostic naming the kernel, block and thread); shared
//    memory is one arena per block, poisoned at every block start, with its size limits checked;
//  - the runtime API (memory, copies, streams, events, device queries, attributes) is emulated synchronously: work
//    runs when it is issued, which is one legal schedule of the stream semantics;
//  - inline PTX used by the kernels (mma.sync m16n8k16, cp.async) is rewritten by emulate.py into calls of emulated
//    instructions with their documented semantics.
// It catches indexing and logic errors, reads of uninitialised memory, barrier/shuffle divergence, missing
// cp.async waits and resource-limit violations; not data races between legal interleavings, nor performance.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdio>
#include <limits>
#include <type_traits>

#include "cuda_runtime_api.h"

// ---- qualifiers (KVT_HD functions must stay inlined into the emulated kernels: see emulate.py / README)
#define __global__
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
#define __align__(n) alignas(n)
#define __constant__ static
#define __managed__ static

// ---- CUDA's global min/max overloads (integer and floating point)
#define KVT_EMU_MINMAX(T)                                     \
  inline T min(T a, T b) { return a < b ? a : b; }          \
  inline T max(T a, T b) { return a > b ? a : b; }
KVT_EMU_MINMAX(int)
KVT_EMU_MINMAX(unsigned)
KVT_EMU_MINMAX(long)
KVT_EMU_MINMAX(unsigned long)
KVT_EMU_MINMAX(long long)
KVT_EMU_MINMAX(unsigned long long)
#undef KVT_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---------------------------------------------------------------------------------------------------------
// Emulator core (emu.cc).
namespace emu {
extern uint3 g_block_idx;
extern dim3 g_block_dim, g_grid_dim;
extern uint3* g_tid;  // threadIdx of the running emulated thread

uint3& cur_tid();
int cur_lane();
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void block_barrier(const char* file, int line);

// Warp collectives: every lane of `mask` publishes `in` (n words), the scheduler resolves the collective once all
// of them have arrived (op-specific), the lane gets `out`.
enum WarpOp : int {
  kOpSync = 1,
  kOpShflIdx,
  kOpShflUp,
  kOpShflDown,
  kOpShflXor,
  kOpBallot,
  kOpAll,
  kOpAny,
  kOpReduceAdd,
  kOpReduceMinU,
  kOpReduceMaxU,
  kOpReduceMinS,
  kOpReduceMaxS,
  kOpReduceAnd,
  kOpReduceOr,
  kOpReduceXor,
  kOpMatchAny,
  kOpMatchAll,
  kOpMmaBf16,
  kOpMmaF16,
};
void warp_collective(int op, unsigned mask, int arg, const uint64_t* in, int n, uint64_t* out, int nout);
unsigned active_mask();

// Shared memory: `key` identifies a declaration (one static byte per __shared__ declaration and instantiation).
void* shared_alloc(const void* key, size_t bytes, size_t align);
char* dyn_smem_base();
size_t shared_offset(const void* p);
void* shared_ptr(uint64_t offset, size_t bytes);

// Per-launch entry of every kernel (emulate.py inserts it): name for diagnostics/coverage, __launch_bounds__.
void kernel_enter(const char* pretty, const char* file, long max_threads);

// Launch: runs fn for every thread of every block.
struct LaunchFn {
  void (*call)(void*);
  void* ctx;
};
cudaError_t launch(const char* name, const void* func, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   LaunchFn fn);
void set_last_error(cudaError_t e);
bool check_stream(cudaStream_t s, const char* what);

template <typename T>
T* dyn_smem() {
  return reinterpret_cast<T*>(dyn_smem_base());
}

template <typename T>
T& shared_var(const void* key) {
  static_assert(std::is_trivially_destructible<T>::value, "__shared__ variables must be trivial");
  return *static_cast<T*>(shared_alloc(key, sizeof(T), alignof(T) < 16 ? 16 : alignof(T)));
}

template <typename F>
struct Launcher {
  const char* name;
  F f;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  template <typename... A>
  void operator()(const A&... args) const {
    auto body = [&]() { f(args...); };
    using B = decltype(body);
    LaunchFn fn{[](void* c) { (*static_cast<B*>(c))(); }, &body};
    launch(name, reinterpret_cast<const void*>(f), grid, block, smem, stream, fn);
  }
};
template <typename F>
Launcher<F> make_launcher(const char* name, F f, dim3 g, dim3 b, size_t smem = 0, cudaStream_t st = nullptr) {
  return Launcher<F>{name, f, g, b, smem, st};
}

template <typename T>
inline uint64_t to_word(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp value wider than 8 bytes");
  uint64_t w = 0;
  memcpy(&w, &v, sizeof(T));
  return w;
}
template <typename T>
inline T from_word(uint64_t w) {
  T v;
  memcpy(&v, &w, sizeof(T));
  return v;
}
template <typename T>
inline T shfl(int op, unsigned mask, T v, int arg, int width) {
  if (width <= 0 || width > 32 || (width & (width - 1))) fatal("shuffle width %d is not a power of two <= 32", width);
  const uint64_t in[2] = {to_word(v), uint64_t(width)};
  uint64_t out = 0;
  warp_collective(op, mask, arg, in, 2, &out, 1);
  return from_word<T>(out);
}
inline uint64_t collective1(int op, unsigned mask, uint64_t v) {
  uint64_t out = 0;
  warp_collective(op, mask, 0, &v, 1, &out, 1);
  return out;
}

// Device-memory diagnostics (emu.cc): is [p, p + n) inside one live device allocation?
bool is_device_range(const void* p, size_t n);
}  // namespace emu

#define threadIdx (*::emu::g_tid)
#define blockIdx (::emu::g_block_idx)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)
#define __syncthreads() ::emu::block_barrier(__FILE__, __LINE__)

// ---- warp intrinsics
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return emu::shfl(emu::kOpShflIdx, mask, v, src, width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shfl(emu::kOpShflUp, mask, v, int(delta), width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return emu::shfl(emu::kOpShflDown, mask, v, int(delta), width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return emu::shfl(emu::kOpShflXor, mask, v, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return unsigned(emu::collective1(emu::kOpBallot, mask, pred != 0)); }
inline int __all_sync(unsigned mask, int pred) { return int(emu::collective1(emu::kOpAll, mask, pred != 0)); }
inline int __any_sync(unsigned mask, int pred) { return int(emu::collective1(emu::kOpAny, mask, pred != 0)); }
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) { return unsigned(emu::collective1(emu::kOpReduceAdd, mask, v)); }
inline int __reduce_add_sync(unsigned mask, int v) { return int(emu::collective1(emu::kOpReduceAdd, mask, unsigned(v))); }
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) { return unsigned(emu::collective1(emu::kOpReduceMinU, mask, v)); }
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) { return unsigned(emu::collective1(emu::kOpReduceMaxU, mask, v)); }
inline int __reduce_min_sync(unsigned mask, int v) { return int(emu::collective1(emu::kOpReduceMinS, mask, uint32_t(v))); }
inline int __reduce_max_sync(unsigned mask, int v) { return int(emu::collective1(emu::kOpReduceMaxS, mask, uint32_t(v))); }
inline unsigned __reduce_and_sync(unsigned mask, unsigned v) { return unsigned(emu::collective1(emu::kOpReduceAnd, mask, v)); }
inline unsigned __reduce_or_sync(unsigned mask, unsigned v) { return unsigned(emu::collective1(emu::kOpReduceOr, mask, v)); }
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v) { return unsigned(emu::collective1(emu::kOpReduceXor, mask, v)); }
template <typename T>
inline unsigned __match_any_sync(unsigned mask, T v) { return unsigned(emu::collective1(emu::kOpMatchAny, mask, emu::to_word(v))); }
template <typename T>
inline unsigned __match_all_sync(unsigned mask, T v, int* pred) {
  const uint64_t r = emu::collective1(emu::kOpMatchAll, mask, emu::to_word(v));
  *pred = r != 0;
  return unsigned(r);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warp_collective(emu::kOpSync, mask, 0, nullptr, 0, nullptr, 0); }
inline unsigned __activemask() { return emu::active_mask(); }

// ---- memory fences (one block runs at a time: ordering is sequential) and clocks
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned) {}
long long clock64();
template <typename T>
inline T __ldg(const T* p) { return *p; }
template <typename T>
inline T __ldcg(const T* p) { return *p; }  // ld.global.cg: L2 only (no L1); one block at a time makes it a plain load

// ---- atomics (blocks and threads never run concurrently: plain read-modify-write, alignment checked)
namespace emu {
/** *p = f(*p) after the alignment check a GPU makes; returns the old value. */
template <typename T, typename F>
inline T atomic_rmw(T* p, F f) {
  if (reinterpret_cast<uintptr_t>(p) % sizeof(T)) fatal("misaligned atomic on %p (%zu-byte operand)", (void*)p, sizeof(T));
  const T old = *p;
  *p = f(old);
  return old;
}
}  // namespace emu
template <typename T>
inline T atomicAdd(T* p, T v) {
  static_assert(std::is_same<T, int>::value || std::is_same<T, unsigned>::value || std::is_same<T, unsigned long long>::value ||
                    std::is_same<T, float>::value || std::is_same<T, double>::value,
                "atomicAdd: no such overload in CUDA");
  return emu::atomic_rmw(p, [v](T x) { return x + v; });
}
template <typename T>
inline T atomicSub(T* p, T v) {
  static_assert(std::is_same<T, int>::value || std::is_same<T, unsigned>::value, "atomicSub: no such overload in CUDA");
  return emu::atomic_rmw(p, [v](T x) { return x - v; });
}
template <typename T>
inline T atomicExch(T* p, T v) { return emu::atomic_rmw(p, [v](T) { return v; }); }
template <typename T>
inline T atomicMax(T* p, T v) {
  static_assert(std::is_integral<T>::value, "atomicMax: integer overloads only");
  return emu::atomic_rmw(p, [v](T x) { return v > x ? v : x; });
}
template <typename T>
inline T atomicMin(T* p, T v) {
  static_assert(std::is_integral<T>::value, "atomicMin: integer overloads only");
  return emu::atomic_rmw(p, [v](T x) { return v < x ? v : x; });
}
template <typename T>
inline T atomicCAS(T* p, T cmp, T v) { return emu::atomic_rmw(p, [cmp, v](T x) { return x == cmp ? v : x; }); }
template <typename T>
inline T atomicAnd(T* p, T v) { return emu::atomic_rmw(p, [v](T x) { return T(x & v); }); }
template <typename T>
inline T atomicOr(T* p, T v) { return emu::atomic_rmw(p, [v](T x) { return T(x | v); }); }
template <typename T>
inline T atomicXor(T* p, T v) { return emu::atomic_rmw(p, [v](T x) { return T(x ^ v); }); }
inline unsigned atomicInc(unsigned* p, unsigned v) {
  return emu::atomic_rmw(p, [v](unsigned x) { return x >= v ? 0u : x + 1u; });
}
inline unsigned atomicDec(unsigned* p, unsigned v) {
  return emu::atomic_rmw(p, [v](unsigned x) { return (x == 0u || x > v) ? v : x - 1u; });
}

// ---- integer intrinsics
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline int __mulhi(int a, int b) { return int((int64_t(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)((unsigned __int128)a * b >> 64);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t v = (uint64_t(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; i++) r |= unsigned((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
  return r;
}

// ---- bit casts
namespace emu {
template <typename To, typename From>
inline To bitcast(From f) {
  static_assert(sizeof(To) == sizeof(From), "bit cast size");
  To t;
  memcpy(&t, &f, sizeof(To));
  return t;
}
}  // namespace emu
inline float __int_as_float(int i) { return emu::bitcast<float>(i); }
inline float __uint_as_float(unsigned i) { return emu::bitcast<float>(i); }
inline int __float_as_int(float f) { return emu::bitcast<int>(f); }
inline unsigned __float_as_uint(float f) { return emu::bitcast<unsigned>(f); }
inline double __longlong_as_double(long long i) { return emu::bitcast<double>(i); }
inline long long __double_as_longlong(double d) { return emu::bitcast<long long>(d); }
inline int __double2hiint(double d) { return int(emu::bitcast<uint64_t>(d) >> 32); }
inline int __double2loint(double d) { return int(emu::bitcast<uint64_t>(d) & 0xffffffffu); }
inline double __hiloint2double(int hi, int lo) { return emu::bitcast<double>((uint64_t(unsigned(hi)) << 32) | unsigned(lo)); }

// ---- floating-point intrinsics with explicit rounding (the _rn forms are plain IEEE operations; the emulated
// translation units are compiled without FP contraction of these calls: they are out-of-line-equivalent volatile-free
// single operations). Conversions to integers follow the PTX rules: round per suffix, NaN -> 0 for 32-bit / the
// most negative value for 64-bit signed, out-of-range values saturate.
namespace emu {
template <typename I>
inline I f2i_sat(double x) {
  if (x != x) return std::is_signed<I>::value && sizeof(I) == 8 ? std::numeric_limits<I>::min() : I(0);
  if (x <= double(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (x >= double(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return I(x);
}
}  // namespace emu
__attribute__((noinline)) inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
__attribute__((noinline)) inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
__attribute__((noinline)) inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
__attribute__((noinline)) inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
__attribute__((noinline)) inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
__attribute__((noinline)) inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline double rsqrt(double a) { return 1.0 / sqrt(a); }
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline float __log2f(float a) { return log2f(a); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float a) { return sinf(a); }
inline float __cosf(float a) { return cosf(a); }
inline float exp10f(float a) { return powf(10.0f, a); }
inline float __saturatef(float a) { return a != a ? 0.0f : (a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a)); }
inline long long __float2ll_rn(float x) { return emu::f2i_sat<long long>(nearbyint(double(x))); }
inline long long __float2ll_rz(float x) { return emu::f2i_sat<long long>(trunc(double(x))); }
inline unsigned long long __float2ull_rn(float x) { return emu::f2i_sat<unsigned long long>(nearbyint(double(x))); }
inline unsigned long long __float2ull_rz(float x) { return emu::f2i_sat<unsigned long long>(trunc(double(x))); }
inline int __float2int_rn(float x) { return emu::f2i_sat<int>(nearbyint(double(x))); }
inline int __float2int_rz(float x) { return emu::f2i_sat<int>(trunc(double(x))); }
inline int __float2int_rd(float x) { return emu::f2i_sat<int>(floor(double(x))); }
inline int __float2int_ru(float x) { return emu::f2i_sat<int>(ceil(double(x))); }
inline unsigned __float2uint_rn(float x) { return emu::f2i_sat<unsigned>(nearbyint(double(x))); }
inline unsigned __float2uint_rz(float x) { return emu::f2i_sat<unsigned>(trunc(double(x))); }
inline long long __double2ll_rn(double x) { return emu::f2i_sat<long long>(nearbyint(x)); }
inline int __double2int_rn(double x) { return emu::f2i_sat<int>(nearbyint(x)); }
inline float __double2float_rn(double x) { return float(x); }
inline float __ll2float_rn(long long x) { return float(x); }  // the host conversion rounds to nearest even
inline float __ull2float_rn(unsigned long long x) { return float(x); }
inline float __int2float_rn(int x) { return float(x); }
inline float __uint2float_rn(unsigned x) { return float(x); }
inline double __ll2double_rn(long long x) { return double(x); }

// ---- address spaces
inline size_t __cvta_generic_to_shared(const void* p) { return emu::shared_offset(p); }
inline bool __isShared(const void* p) {
  return emu::shared_offset(p) != size_t(-1);
}

// ---- inline PTX (emulate.py rewrites `asm volatile("instr ..." : ...)` into these calls)
namespace emu {
namespace ptx {
void cp_async(unsigned dst_shared, const void* src, int cp_size, int src_size, bool cg);
inline void cp_async_cg_shared_global(unsigned dst, const void* src, int n) { cp_async(dst, src, n, n, true); }
inline void cp_async_cg_shared_global(unsigned dst, const void* src, int n, int src_size) { cp_async(dst, src, n, src_size, true); }
inline void cp_async_ca_shared_global(unsigned dst, const void* src, int n) { cp_async(dst, src, n, n, false); }
inline void cp_async_ca_shared_global(unsigned dst, const void* src, int n, int src_size) { cp_async(dst, src, n, src_size, false); }
void cp_async_commit_group();
void cp_async_wait_group(int n);
inline void cp_async_wait_all() {
  cp_async_commit_group();
  cp_async_wait_group(0);
}
void mma_m16n8k16(int op, float& d0, float& d1, float& d2, float& d3, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                  unsigned b0, unsigned b1, float c0, float c1, float c2, float c3);
inline void mma_sync_aligned_m16n8k16_row_col_f32_bf16_bf16_f32(float& d0, float& d1, float& d2, float& d3, unsigned a0,
                                                                unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                                                unsigned b1, float c0, float c1, float c2, float c3) {
  mma_m16n8k16(kOpMmaBf16, d0, d1, d2, d3, a0, a1, a2, a3, b0, b1, c0, c1, c2, c3);
}
inline void mma_sync_aligned_m16n8k16_row_col_f32_f16_f16_f32(float& d0, float& d1, float& d2, float& d3, unsigned a0,
                                                              unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                                              unsigned b1, float c0, float c1, float c2, float c3) {
  mma_m16n8k16(kOpMmaF16, d0, d1, d2, d3, a0, a1, a2, a3, b0, b1, c0, c1, c2, c3);
}
}  // namespace ptx
}  // namespace emu

