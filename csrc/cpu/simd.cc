// The instruction-set levels of csrc/cpu/simd.h: csrc/cpu/simd_body.h compiled once per level under the compiler's
// target attributes, and the pick at load time (CPU features, capped by KVTRIM_CPU_ISA).
#include "cpu/simd.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "cpu/gemm.h"
#include "math/nestedkv.h"

namespace kvt {
namespace cpu {

#define KVT_SIMD_NS isa_base
#define KVT_SIMD_NAME "baseline"
#define KVT_SIMD_BYTES 16
#define KVT_SIMD_MR 4
#if defined(__FMA__) || defined(__aarch64__)  // arm64: NEON has fused multiply-add
#define KVT_SIMD_FMA 1
#else
#define KVT_SIMD_FMA 0
#endif
#include "cpu/simd_body.h"
#undef KVT_SIMD_NS
#undef KVT_SIMD_NAME
#undef KVT_SIMD_BYTES
#undef KVT_SIMD_MR
#undef KVT_SIMD_FMA

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KVT_SIMD_X86 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#endif
#define KVT_SIMD_NS isa_avx2
#define KVT_SIMD_NAME "avx2"
#define KVT_SIMD_BYTES 32
#define KVT_SIMD_MR 6
#define KVT_SIMD_FMA 1
#include "cpu/simd_body.h"
#undef KVT_SIMD_NS
#undef KVT_SIMD_NAME
#undef KVT_SIMD_BYTES
#undef KVT_SIMD_MR
#undef KVT_SIMD_FMA
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2")
#endif
#define KVT_SIMD_NS isa_avx512
#define KVT_SIMD_NAME "avx512"
#define KVT_SIMD_BYTES 64
#define KVT_SIMD_MR 8
#define KVT_SIMD_FMA 1
#include "cpu/simd_body.h"
#undef KVT_SIMD_NS
#undef KVT_SIMD_NAME
#undef KVT_SIMD_BYTES
#undef KVT_SIMD_MR
#undef KVT_SIMD_FMA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace {

// Levels the CPU (and the OS, for the wider register state) supports, best first.
int available(const SimdOps** out) {
  int n = 0;
#if defined(KVT_SIMD_X86)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    out[n++] = &isa_avx512::ops;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"))
    out[n++] = &isa_avx2::ops;
#endif
  out[n++] = &isa_base::ops;
  return n;
}

const SimdOps& pick() {
  const SimdOps* lv[3];
  const int n = available(lv);
  const char* want = std::getenv("KVTRIM_CPU_ISA");
  if (want && *want)
    for (int i = 0; i < n; i++)
      if (std::strcmp(lv[i]->isa, want) == 0) return *lv[i];
  return *lv[0];  // unset, unknown, or a level this CPU lacks: the best it has
}

}  // namespace

const SimdOps& simd() {
  static const SimdOps& s = pick();
  return s;
}

int simd_levels(const char** names, int cap) {
  const SimdOps* lv[3];
  const int n = available(lv);
  for (int i = 0; i < n && i < cap; i++) names[i] = lv[i]->isa;
  return n;
}

}  // namespace cpu
}  // namespace kvt
