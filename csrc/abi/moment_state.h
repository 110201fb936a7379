// A MomentKV moment-state argument (kvt_moments) as checked views, and its validation, shared by the entry points
// that take one (abi/moments.cc, gather.cc, decode.cc, momentkv_select.cc). Not part of the public ABI.
#pragma once

#include "abi/validate.h"

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

}  // namespace kvt
