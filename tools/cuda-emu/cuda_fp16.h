// Half-precision types and conversions of the CUDA emulator (the subset kvtrim's shared math uses under __CUDA_ARCH__),
// with the device's rounding: f32 -> f16 round to nearest even (overflow to inf, subnormals kept, NaN -> 0x7fff);
// f16 -> f32 exact (NaN -> canonical 0x7fffffff).
#pragma once

#include <stdint.h>
#include <string.h>

struct __half {
  unsigned short __x;
};

inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }

inline float __half2float(__half h) {
  const uint32_t x = h.__x, sign = (x & 0x8000u) << 16, e = (x >> 10) & 0x1fu, m = x & 0x3ffu;
  uint32_t bits;
  if (e == 0x1f) {
    bits = m ? 0x7fffffffu : (sign | 0x7f800000u);
  } else if (e) {
    bits = sign | ((e + 112u) << 23) | (m << 13);
  } else if (!m) {
    bits = sign;
  } else {
    int sh = 0;
    uint32_t mm = m;
    while (!(mm & 0x400u)) {
      mm <<= 1;
      sh++;
    }
    bits = sign | (uint32_t(113 - sh) << 23) | ((mm & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

inline __half __float2half_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return __half{0x7fffu};
  if (a >= 0x477ff000u) return __half{uint16_t(sign | 0x7c00u)};
  if (a >= 0x38800000u) {
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return __half{uint16_t(sign | (r >> 13))};
  }
  if (a <= 0x33000000u) return __half{sign};  // <= 2^-25 (a tie with 0) rounds to zero
  const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126u - e;
  const uint32_t half = 1u << (shift - 1), rest = m & ((1u << shift) - 1u);
  uint32_t q = m >> shift;
  if (rest > half || (rest == half && (q & 1u))) q++;
  return __half{uint16_t(sign | q)};
}
inline __half __float2half(float f) { return __float2half_rn(f); }
