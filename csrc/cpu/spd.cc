// Batched SPD solves (spec/performance.md §3): C ABI entry point, validation and the CPU backend (fp32 Cholesky +
// triangular solves). The CUDA backend (cuda/spd.cu) runs one CTA per system with the packed factor in shared
// memory and reports non-SPD systems only through `info` (no host synchronisation).
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/rows.h"
#include "cpu/spd.h"
#include "grkv_math.h"
#include "kvt_internal.h"
#if defined(KVT_WITH_CUDA)
#include "cuda_grkv.h"
#endif

namespace kvt {
namespace cpu {

int64_t cholesky_inplace(float* L, int64_t n, float* pivot) {
  // Cholesky-Banachiewicz by rows: L_ij = (A_ij - sum_{k<j} L_ik L_jk) / L_jj, pivots L_jj^2 = A_jj - sum L_jk^2.
  std::vector<float> inv(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) {
    float* Li = L + i * n;
    for (int64_t j = 0; j < i; j++) {
      const float s = Li[j] - dot8(Li, L + j * n, j);
      Li[j] = s * inv[size_t(j)];
    }
    const float p = Li[i] - sumsq8(Li, i);
    if (!(p > 0.0f) || !finite_f(p)) {
      *pivot = p;
      return i + 1;
    }
    const float lii = sqrtf(p);
    Li[i] = lii;
    inv[size_t(i)] = 1.0f / lii;
  }
  return 0;
}

void cholesky_solve(const float* L, int64_t n, float* Y, int64_t r, int64_t ldy) {
  // forward: L Z = Y, row form (Y_i -= L_ik Z_k, then scale)
  for (int64_t i = 0; i < n; i++) {
    float* yi = Y + i * ldy;
    const float* Li = L + i * n;
    for (int64_t k = 0; k < i; k++) {
      const float l = Li[k];
      if (l == 0.0f) continue;
      const float* yk = Y + k * ldy;
      for (int64_t c = 0; c < r; c++) yi[c] -= l * yk[c];
    }
    const float inv = 1.0f / Li[i];
    for (int64_t c = 0; c < r; c++) yi[c] *= inv;
  }
  // back: L^T X = Z (column i of L below the diagonal)
  for (int64_t i = n - 1; i >= 0; i--) {
    float* yi = Y + i * ldy;
    for (int64_t k = i + 1; k < n; k++) {
      const float l = L[k * n + i];
      if (l == 0.0f) continue;
      const float* yk = Y + k * ldy;
      for (int64_t c = 0; c < r; c++) yi[c] -= l * yk[c];
    }
    const float inv = 1.0f / L[i * n + i];
    for (int64_t c = 0; c < r; c++) yi[c] *= inv;
  }
}

struct SpdFailure {
  int64_t system = -1;
  int64_t minor = 0;
  float pivot = 0;
};

static SpdFailure spd_solve(const View& a, const View& b, float lambda, const View& x, const View* info) {
  const int64_t B = a.shape[0], n = a.shape[1], r = b.shape[2];
  std::vector<int64_t> minor(static_cast<size_t>(B), 0);
  std::vector<float> pivots(static_cast<size_t>(B), 0.0f);
  parallel_for(B, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> L(static_cast<size_t>(n * n)), Y(static_cast<size_t>(n * r));
    for (int64_t s = lo; s < hi; s++) {
      const float* ap = a.ptr<float>() + s * a.stride[0];
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) L[size_t(i * n + j)] = ap[i * a.stride[1] + j * a.stride[2]];
      for (int64_t i = 0; i < n; i++) L[size_t(i * n + i)] += lambda;
      float piv = 0;
      const int64_t k = cholesky_inplace(L.data(), n, &piv);
      minor[size_t(s)] = k;
      pivots[size_t(s)] = piv;
      const float* bp = b.ptr<float>() + s * b.stride[0];
      if (k == 0) {
        for (int64_t i = 0; i < n; i++)
          for (int64_t c = 0; c < r; c++) Y[size_t(i * r + c)] = bp[i * b.stride[1] + c * b.stride[2]];
        cholesky_solve(L.data(), n, Y.data(), r, r);
      } else {
        std::fill(Y.begin(), Y.end(), std::numeric_limits<float>::quiet_NaN());
      }
      float* xp = x.ptr<float>() + s * x.stride[0];
      for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < r; c++) xp[i * x.stride[1] + c * x.stride[2]] = Y[size_t(i * r + c)];
      if (info) info->ptr<int32_t>()[s * info->stride[0]] = int32_t(k);
    }
  });
  SpdFailure f;
  for (int64_t s = 0; s < B; s++) {
    if (minor[size_t(s)]) {
      f.system = s;
      f.minor = minor[size_t(s)];
      f.pivot = pivots[size_t(s)];
      break;
    }
  }
  return f;
}

}  // namespace cpu

static bool same_view(const View& a, const View& b) {
  if (a.base != b.base || a.ndim != b.ndim || a.dtype != b.dtype || a.device_type != b.device_type) return false;
  for (int i = 0; i < a.ndim; i++)
    if (a.shape[i] != b.shape[i] || (a.shape[i] > 1 && a.stride[i] != b.stride[i])) return false;
  return true;
}

}  // namespace kvt

using namespace kvt;

extern "C" kvt_status kvt_spd_solve(const kvt_tensor* a, const kvt_tensor* b, const kvt_spd_opts* opts,
                                    const kvt_tensor* x, const kvt_tensor* info, kvt_stream stream) {
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
  KVT_TRY(check_no_overlap(xv, "out", av, "a"));
  if (!same_view(xv, bv)) KVT_TRY(check_no_overlap(xv, "out", bv, "b"));
  if (info) {
    KVT_TRY(check_no_overlap(iv, "info", av, "a"));
    KVT_TRY(check_no_overlap(iv, "info", bv, "b"));
    KVT_TRY(check_no_overlap(iv, "info", xv, "out"));
  }
  if (B == 0) return KVT_OK;
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
}
