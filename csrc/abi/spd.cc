// C ABI entry point of the batched SPD solve (docs/performance.md §3): the defaults, validation, then the CUDA
// launcher or the CPU backend; on the CPU backend a non-SPD system can also fail the call (opts->check).
#include <sstream>

#include "abi/validate.h"
#include "cpu/ops.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

// True when a and b describe exactly the same elements (an in-place solve passes b as x).
static bool same_view(const View& a, const View& b) {
  if (a.base != b.base || a.ndim != b.ndim || a.dtype != b.dtype || a.device_type != b.device_type) return false;
  for (int i = 0; i < a.ndim; i++)
    if (a.shape[i] != b.shape[i] || (a.shape[i] > 1 && a.stride[i] != b.stride[i])) return false;
  return true;
}

extern "C" void kvt_spd_default_opts(kvt_spd_opts* o) {
  if (!o) return;
  o->lambda = 0;
  o->check = 1;
}

extern "C" kvt_status kvt_spd_solve(const kvt_tensor* a, const kvt_tensor* b, const kvt_spd_opts* opts,
                                    const kvt_tensor* x, const kvt_tensor* info, kvt_stream stream) try {
  View av, bv, xv, iv;
  KVT_TRY(check_tensor(a, "a", 3, kMaskF32, "[B, n, n]", &av));
  KVT_TRY(check_tensor(b, "b", 3, kMaskF32, "[B, n, r]", &bv));
  KVT_TRY(check_tensor(x, "out", 3, kMaskF32, "[B, n, r]", &xv));
  if (info) KVT_TRY(check_tensor(info, "info", 1, kMaskI32, "[B]", &iv));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  const double lambda = opts->lambda;
  if (!(lambda >= 0) || !(lambda < 1e30)) {
    std::ostringstream os;
    os << "lambda: must be finite and >= 0, got " << lambda;
    return fail(KVT_ERR_RANGE, os.str());
  }
  KVT_TRY(check_same_device(av, "a", bv, "b"));
  KVT_TRY(check_same_device(av, "a", xv, "out"));
  if (info) KVT_TRY(check_same_device(av, "a", iv, "info"));
  const int64_t B = av.shape[0], n = av.shape[1], r = bv.shape[2];
  KVT_TRY(check_dim(av, "a", 2, n, "n (dimension 1 of a)"));
  KVT_TRY(check_dim(bv, "b", 0, B, "B of a"));
  KVT_TRY(check_dim(bv, "b", 1, n, "n of a"));
  KVT_TRY(check_dim(xv, "out", 0, B, "B of a"));
  KVT_TRY(check_dim(xv, "out", 1, n, "n of a"));
  KVT_TRY(check_dim(xv, "out", 2, r, "r of b"));
  if (info) KVT_TRY(check_dim(iv, "info", 0, B, "B of a"));
  KVT_TRY(check_distinct(xv, "out"));
  if (info) KVT_TRY(check_distinct(iv, "info"));
  KVT_TRY(check_no_overlap(xv, "out", av, "a"));
  if (!same_view(xv, bv)) KVT_TRY(check_no_overlap(xv, "out", bv, "b"));
  if (info) {
    KVT_TRY(check_no_overlap(iv, "info", av, "a"));
    KVT_TRY(check_no_overlap(iv, "info", bv, "b"));
    KVT_TRY(check_no_overlap(iv, "info", xv, "out"));
  }
  if (B == 0) return KVT_OK;
  if (!av.on_cuda())
    KVT_TRY(check_scratch(4.0 * 4 * (double(n) * double(n) + double(n) * double(r)) + 12.0 * double(B),
                          av.span_bytes() + bv.span_bytes(), "a", "spdSolve", "per-thread factors"));
#if defined(KVT_WITH_CUDA)
  if (av.on_cuda()) {
    if (n > cuda::kSpdMaxN) {
      std::ostringstream os;
      os << "a: the CUDA backend solves systems of order n <= " << cuda::kSpdMaxN << ", got n = " << n;
      return fail(KVT_ERR_RANGE, os.str());
    }
    KVT_CUDA_TRY(set_device(av.device_id));
    int32_t* info_p = info ? iv.ptr<int32_t>() : nullptr;
    const int64_t info_s = info ? iv.stride[0] : 0;
    return cuda_status(cuda::spd_solve(f3(av), f3(bv), float(lambda), f3(xv), info_p, info_s,
                                       static_cast<cudaStream_t>(stream)),
                       "spdSolve");
  }
#else
  (void)stream;
#endif
  const cpu::SpdFailure f = cpu::spd_solve(av, bv, float(lambda), xv, info ? &iv : nullptr);
  if (f.system >= 0 && opts->check) {
    std::ostringstream os;
    os << "a: system " << f.system << " of " << B << " is not positive definite: pivot " << (f.minor - 1)
       << " (leading minor of order " << f.minor << ") is " << f.pivot;
    if (lambda > 0) os << " after adding lambda = " << lambda;
    os << "; info[" << f.system << "] = " << f.minor;
    return fail(KVT_ERR_RANGE, os.str());
  }
  return KVT_OK;
} KVT_API_CATCH
