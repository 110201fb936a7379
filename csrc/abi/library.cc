// Library-level queries of the C ABI: ABI version, whether CUDA kernels were compiled in, CPU backend threads.
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kvtrim.h"

extern "C" int kvt_abi_version(void) { return KVT_ABI_VERSION; }

extern "C" int kvt_built_with_cuda(void) {
#if defined(KVT_WITH_CUDA)
  return 1;
#else
  return 0;
#endif
}

extern "C" int kvt_num_threads(void) {
  try {
    return kvt::cpu::num_threads();
  } catch (...) {  // the pool could not start its threads: every op runs on the caller's thread
    return 1;
  }
}

extern "C" const char* kvt_cpu_isa(void) { return kvt::cpu::simd().isa; }

extern "C" int kvt_cpu_isa_levels(const char** names, int cap) {
  if (!names || cap < 0) cap = 0;
  return kvt::cpu::simd_levels(names, cap);
}
