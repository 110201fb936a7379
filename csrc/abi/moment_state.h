// MomentKV internals shared by the C ABI implementations (momentkv.cc, gather.cc). Not part of the public ABI.
#pragma once

#include "kvt_internal.h"

namespace kvt {

// The four moment tensors as checked views: [0] n [H], [1] mu_k [H, d], [2] mu_v [H, dv], [3] m [H, dv, d].
struct MomentViews {
  View v[4];
  View& n() { return v[0]; }
  View& mu_k() { return v[1]; }
  View& mu_v() { return v[2]; }
  View& m() { return v[3]; }
  const View& n() const { return v[0]; }
  const View& mu_k() const { return v[1]; }
  const View& mu_v() const { return v[2]; }
  const View& m() const { return v[3]; }
};

// Checks a moment state against H, d, dv and the device of `ref` (dtype f32, contiguous, no overlap between its
// parts; on the CPU backend every n[h] must be a finite count >= 0).
kvt_status check_moments(const kvt_moments* m, const View& ref, const char* ref_name, int64_t H, int64_t d, int64_t dv,
                         MomentViews* out);
// Requires the state not to overlap `v` (an input or output of the same call).
kvt_status check_moments_no_overlap(const MomentViews& m, const View& v, const char* name);

namespace cpu {
// Rows to merge, per head: an explicit ascending list, the complement of an ascending list (gather), or the
// positions whose label equals `value` (the rounds of momentkvSelect).
struct RowSource {
  enum Mode { kList = 0, kComplement = 1, kLabel = 2 } mode;
  const View* idx = nullptr;  // [H, cap] i32 (list modes)
  const View* cnt = nullptr;  // [H] i32 (list modes)
  const View* label = nullptr;  // [H, N] i32 (label mode)
  int32_t value = 0;
};
void moments_merge(const View& k, const View& v, const RowSource& src, const MomentViews& m);
}  // namespace cpu

}  // namespace kvt

#if defined(KVT_WITH_CUDA)
#include "../cuda/kvt_cuda.h"
namespace kvt {
inline cuda::Moments cuda_moments(const MomentViews& m) {
  return cuda::Moments{m.n().ptr<float>(), m.mu_k().ptr<float>(), m.mu_v().ptr<float>(), m.m().ptr<float>()};
}
}  // namespace kvt
#endif
