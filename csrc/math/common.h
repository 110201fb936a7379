// Per-element and per-token math shared by the CPU backend and the CUDA kernels. Everything here is
// `__host__ __device__` under nvcc and plain inline C++ otherwise, so both backends compute the same function
// (reductions differ only in summation order).
#pragma once

#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__CUDACC__)
#define KVT_HD __host__ __device__ __forceinline__
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#else
#define KVT_HD inline
#endif

namespace kvt {

// Small epsilon used wherever a norm is clamped (docs/methods/nestedkv.md §3 S1, §9.13).
constexpr float kEps = 1e-12f;

enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2, kI32 = 3 };

// Non-contracting float ops: the same rounding on the host and the device (nvcc would fuse a*b+c into an FMA).
KVT_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
KVT_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
KVT_HD float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

KVT_HD int dtype_size(int dt) { return dt == kF16 || dt == kBF16 ? 2 : 4; }

KVT_HD float bits_to_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

KVT_HD uint32_t f32_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}

// bf16 -> f32 is exact (the upper half of an f32).
KVT_HD float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

// f16 -> f32 is exact; written out so the host needs no compiler support for _Float16.
KVT_HD float f16_to_f32(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf / NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;  // +-0
  } else {        // subnormal: normalise
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while ((man & 0x400u) == 0);
    bits = sign | (uint32_t(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  return bits_to_f32(bits);
#endif
}

// f32 -> bf16, round to nearest even; NaN stays NaN (quiet).
KVT_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// f32 -> f16, round to nearest even, overflow to inf, subnormals handled; NaN stays NaN (quiet).
KVT_HD uint16_t f32_to_f16(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  uint32_t u = f32_to_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf (and inf)
  if (a >= 0x38800000u) {                                   // normal f16 range (>= 2^-14)
    uint32_t r = a - 0x38000000u;                           // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return uint16_t(sign | (r >> 13));
  }
  if (a < 0x33000000u) return sign;  // < 2^-25 rounds to zero
  // subnormal f16: value = m * 2^-24
  uint32_t e = a >> 23;                      // 102..112
  uint32_t m = (a & 0x7fffffu) | 0x800000u;  // 24-bit significand
  uint32_t shift = 126u - e;                 // 14..24
  uint32_t half = 1u << (shift - 1);
  uint32_t rest = m & ((1u << shift) - 1u);
  uint32_t q = m >> shift;
  if (rest > half || (rest == half && (q & 1u))) q++;
  return uint16_t(sign | q);
#endif
}

// Element access by storage type. T is the storage type (float for f32, uint16_t for f16/bf16).
template <int DT>
struct Elem;
template <>
struct Elem<kF32> {
  using T = float;
  static KVT_HD float load(const T* p) { return *p; }
  static KVT_HD T from_f32(float f) { return f; }
};
template <>
struct Elem<kF16> {
  using T = uint16_t;
  static KVT_HD float load(const T* p) { return f16_to_f32(*p); }
  static KVT_HD T from_f32(float f) { return f32_to_f16(f); }
};
template <>
struct Elem<kBF16> {
  using T = uint16_t;
  static KVT_HD float load(const T* p) { return bf16_to_f32(*p); }
  static KVT_HD T from_f32(float f) { return f32_to_bf16(f); }
};

KVT_HD float load_as_f32(const void* base, int dt, int64_t idx) {
  switch (dt) {
    case kF16: return f16_to_f32(static_cast<const uint16_t*>(base)[idx]);
    case kBF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[idx]);
    default: return static_cast<const float*>(base)[idx];
  }
}

// ---------------------------------------------------------------------------------------------------------
// Selection order (docs/methods/selection.md §4, docs/methods/nestedkv.md §9.14). Every token of a layer gets a unique 64-bit rank key; the
// selected set is the `k` largest keys. High 32 bits: the score mapped to an order-preserving unsigned
// integer (NaN lowest, -0 == +0), or kForcedKey for forced tokens (sinks, recent window, adaptive safeguard).
// Low 32 bits: ~(i*H + h), so ties go to the lower position, then the lower head. Both backends use exactly
// this function, so they select identical sets from identical scores.
constexpr uint32_t kForcedKey = 0xffffffffu;

KVT_HD uint32_t score_order_bits(float s) {
  if (s != s) return 0u;  // NaN ranks below everything
  if (s == 0.0f) s = 0.0f;  // -0 == +0
  uint32_t b = f32_to_bits(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // max finite/inf stays below kForcedKey
}

KVT_HD uint64_t rank_key(float s, bool forced, int64_t i, int64_t h, int64_t H) {
  uint32_t hi = forced ? kForcedKey : score_order_bits(s);
  uint32_t lo = ~uint32_t(i * H + h);
  return (uint64_t(hi) << 32) | lo;
}

KVT_HD bool is_forced_position(int64_t i, int64_t N, int32_t sinks, int32_t recent) {
  return i < sinks || i >= N - recent;
}

// ---------------------------------------------------------------------------------------------------------
// KeyDiff (docs/methods/keydiff.md §3): score = -cos(k, anchor), anchor = mean of L2-normalised keys.
// True for a finite value (false for ±Infinity and NaN); the same test on the host and the device.
KVT_HD bool finite_f(float x) { return x - x == 0.0f; }

KVT_HD float inv_norm_clamped(float norm2) { return 1.0f / fmaxf(sqrtf(norm2), kEps); }

KVT_HD float neg_cosine(float dot, float knorm2, float anchor_norm) {
  return -dot / (fmaxf(sqrtf(knorm2), kEps) * fmaxf(anchor_norm, kEps));
}

}  // namespace kvt
