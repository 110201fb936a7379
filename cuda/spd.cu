// Batched SPD solves on CUDA (docs/performance.md §3): one CTA per system (n <= 256), packed factor in shared memory.
// Non-SPD systems are reported through `info` only (no host synchronisation); their solution rows are NaN.
#include "spd_device.cuh"

namespace kvt {
namespace cuda {

cudaError_t spd_solve(const F3& a, const F3& b, float lambda, const F3& x, int32_t* info, int64_t info_s,
                      cudaStream_t stream) {
  if (a.n1 > kSpdMaxN || b.n2 > 0x7fffffff) return cudaErrorInvalidValue;
  SpdPlan plan;
  KVT_CU_TRY(spd_plan(a.n1, &plan));
  Scratch factor(plan.global_factor ? size_t(a.n0 * (a.n1 * (a.n1 + 1) / 2)) * sizeof(float) : 0, stream);
  KVT_CU_TRY(factor.error());
  return spd_launch(a, b, lambda, x, info, info_s, plan, factor.as<float>(), stream);
}

}  // namespace cuda
}  // namespace kvt
