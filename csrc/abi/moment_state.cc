// Validation of a MomentKV moment-state argument (kvt_moments), shared by the entry points that take one.
#include "abi/moment_state.h"

#include <string>

namespace kvt {

kvt_status check_moments(const kvt_moments* m, const View& ref, const char* ref_name, int64_t H, int64_t d, int64_t dv,
                         MomentViews* out) {
  if (!m) return fail(KVT_ERR_TYPE, "moments: missing");
  KVT_TRY(check_tensor(&m->n, "moments.n", 1, kMaskF32, "[H]", &out->n()));
  KVT_TRY(check_tensor(&m->mu_k, "moments.muK", 2, kMaskF32, "[H, d]", &out->mu_k()));
  KVT_TRY(check_tensor(&m->mu_v, "moments.muV", 2, kMaskF32, "[H, dv]", &out->mu_v()));
  KVT_TRY(check_tensor(&m->m, "moments.m", 3, kMaskF32, "[H, dv, d]", &out->m()));
  static const char* names[4] = {"moments.n", "moments.muK", "moments.muV", "moments.m"};
  for (int i = 0; i < 4; i++) {
    KVT_TRY(check_same_device(ref, ref_name, out->v[i], names[i]));
    if (!out->v[i].contiguous())
      return fail(KVT_ERR_TYPE, std::string(names[i]) + ": must be contiguous (the moment state is a packed f32 buffer)");
  }
  KVT_TRY(check_dim(out->n(), "moments.n", 0, H, "H (heads)"));
  KVT_TRY(check_dim(out->mu_k(), "moments.muK", 0, H, "H (heads)"));
  KVT_TRY(check_dim(out->mu_k(), "moments.muK", 1, d, "d (key dim)"));
  KVT_TRY(check_dim(out->mu_v(), "moments.muV", 0, H, "H (heads)"));
  KVT_TRY(check_dim(out->mu_v(), "moments.muV", 1, dv, "dv (value dim)"));
  KVT_TRY(check_dim(out->m(), "moments.m", 0, H, "H (heads)"));
  KVT_TRY(check_dim(out->m(), "moments.m", 1, dv, "dv (value dim)"));
  KVT_TRY(check_dim(out->m(), "moments.m", 2, d, "d (key dim)"));
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < i; j++) KVT_TRY(check_no_overlap(out->v[i], names[i], out->v[j], names[j]));
  if (!ref.on_cuda()) {
    for (int64_t h = 0; h < H; h++) {
      const float x = out->n().ptr<float>()[h];
      if (!(x >= 0.f && x < 3e38f))
        return fail(KVT_ERR_RANGE, "moments.n: n[" + std::to_string(h) + "] = " + std::to_string(x) +
                                       " must be a finite count >= 0 (is the state initialised?)");
    }
  }
  return KVT_OK;
}

kvt_status check_moments_no_overlap(const MomentViews& m, const View& v, const char* name) {
  static const char* names[4] = {"moments.n", "moments.muK", "moments.muV", "moments.m"};
  for (int i = 0; i < 4; i++) KVT_TRY(check_no_overlap(m.v[i], names[i], v, name));
  return KVT_OK;
}

}  // namespace kvt
