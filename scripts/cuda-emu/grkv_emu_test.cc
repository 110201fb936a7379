// Runs the GRKV and SPD CUDA kernels under the CPU emulator and compares them with the CPU backend on the same inputs.
// Usage: grkv_emu_test [H G Qs N d dv keep dtype(f32|bf16|f16) mode(stratified|window) accept(best|joint) smem_optin
//                       gamma capKey cgIters cap_extra]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "../../csrc/grkv_math.h"
#include "../../csrc/kvtrim.h"
#include "../../cuda/kvt_cuda.h"


using namespace kvt;

static kvt_tensor tens(void* p, int dt, int nd, int64_t* shape, int64_t* strides) {
  kvt_tensor t{};
  t.data = p;
  t.device = {KVT_DEVICE_CPU, 0};
  t.ndim = nd;
  if (dt == kF32) t.dtype = {KVT_DTYPE_FLOAT, 32, 1};
  if (dt == kF16) t.dtype = {KVT_DTYPE_FLOAT, 16, 1};
  if (dt == kBF16) t.dtype = {KVT_DTYPE_BFLOAT, 16, 1};
  if (dt == kI32) t.dtype = {KVT_DTYPE_INT, 32, 1};
  t.shape = shape;
  t.strides = strides;
  return t;
}

static int fails = 0;
static void expect(bool ok, const char* what, double got, double tol) {
  printf("  %-58s %s  (%.3g, tol %.3g)\n", what, ok ? "ok" : "FAIL", got, tol);
  if (!ok) fails++;
}

static int spd_test(int n, int r, int B, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::vector<float> A(size_t(B * n * n)), Bm(size_t(B * n * r)), Xc(size_t(B * n * r)), Xg(size_t(B * n * r));
  for (int b = 0; b < B; b++) {
    std::vector<float> M(size_t(n * n));
    for (auto& x : M) x = nd(rng);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        double s = 0;
        for (int k = 0; k < n; k++) s += double(M[size_t(i * n + k)]) * M[size_t(j * n + k)];
        A[size_t((b * n + i) * n + j)] = float(s / n + (i == j ? 0.5 : 0.0));
      }
  }
  if (B > 2) A[size_t((2 * n + 3) * n + 3)] = -5.0f;  // system 2 is not SPD (pivot 3)
  for (auto& x : Bm) x = nd(rng);
  std::vector<int32_t> ic(static_cast<size_t>(B)), ig(static_cast<size_t>(B), 77);
  int64_t as[3] = {B, n, n}, bs[3] = {B, n, r}, is[1] = {B};
  kvt_tensor ta = tens(A.data(), kF32, 3, as, nullptr), tb = tens(Bm.data(), kF32, 3, bs, nullptr);
  kvt_tensor tx = tens(Xc.data(), kF32, 3, bs, nullptr), ti = tens(ic.data(), kI32, 1, is, nullptr);
  kvt_spd_opts o{0.01, 0};
  if (kvt_spd_solve(&ta, &tb, &o, &tx, &ti, nullptr) != KVT_OK) {
    printf("cpu spd failed: %s\n", kvt_last_error());
    return 1;
  }
  cuda::F3 fa{A.data(), B, n, n, int64_t(n) * n, n, 1}, fb{Bm.data(), B, n, r, int64_t(n) * r, r, 1};
  cuda::F3 fx{Xg.data(), B, n, r, int64_t(n) * r, r, 1};
  if (cuda::spd_solve(fa, fb, 0.01f, fx, ig.data(), 1, nullptr) != 0) {
    printf("emu spd launch failed\n");
    return 1;
  }
  double num = 0, den = 0;
  bool info_ok = true, nan_ok = true;
  for (int b = 0; b < B; b++) {
    info_ok &= ic[size_t(b)] == ig[size_t(b)];
    for (int e = 0; e < n * r; e++) {
      const float c = Xc[size_t(b * n * r + e)], g = Xg[size_t(b * n * r + e)];
      if (ic[size_t(b)]) {
        nan_ok &= std::isnan(g);
        continue;
      }
      num += (double(c) - g) * (double(c) - g);
      den += double(c) * c;
    }
  }
  char what[128];
  snprintf(what, sizeof what, "spd n=%d r=%d B=%d: X emu vs cpu (rel. Frobenius)", n, r, B);
  expect(sqrt(num / den) < 1e-4, what, sqrt(num / den), 1e-4);
  snprintf(what, sizeof what, "spd n=%d: info equal (cpu %d, emu %d for system 2)", n, B > 2 ? ic[2] : 0, B > 2 ? ig[2] : 0);
  expect(info_ok && (B <= 2 || ic[2] == 4), what, 0, 0);
  expect(nan_ok, "spd: rows of the failed system are NaN", 0, 0);
  return 0;
}

static uint16_t to16(float x, int dt) { return dt == kBF16 ? f32_to_bf16(x) : f32_to_f16(x); }
static float from16(uint16_t x, int dt) { return dt == kBF16 ? bf16_to_f32(x) : f16_to_f32(x); }

int main(int argc, char** argv) {
  int H = argc > 1 ? atoi(argv[1]) : 2, G = argc > 2 ? atoi(argv[2]) : 2, Qs = argc > 3 ? atoi(argv[3]) : 16;
  int N = argc > 4 ? atoi(argv[4]) : 400, d = argc > 5 ? atoi(argv[5]) : 64, dv = argc > 6 ? atoi(argv[6]) : 48;
  int keep = argc > 7 ? atoi(argv[7]) : 120;
  std::string dts = argc > 8 ? argv[8] : "f32", mode = argc > 9 ? argv[9] : "stratified";
  std::string acc = argc > 10 ? argv[10] : "best";
  if (argc > 11) setenv("KVTRIM_EMU_SMEM_OPTIN", argv[11], 1);
  const char* optin = getenv("KVTRIM_EMU_SMEM_OPTIN");
  const double gamma = argc > 12 ? atof(argv[12]) : 0.1, capKey = argc > 13 ? atof(argv[13]) : 0.025;
  const int cgIters = argc > 14 ? atoi(argv[14]) : 16, capExtra = argc > 15 ? atoi(argv[15]) : 3;
  const int dt = dts == "bf16" ? kBF16 : dts == "f16" ? kF16 : kF32;
  const int Hq = H * G, W = 16;
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> ud;
  printf("emulated CUDA vs CPU: H=%d G=%d Qs=%d N=%d d=%d dv=%d keep=%d %s %s %s smem_optin=%s\n", H, G, Qs, N, d, dv,
         keep, dts.c_str(), mode.c_str(), acc.c_str(), optin ? optin : "default");
  spd_test(32, 40, 3, rng);
  spd_test(128, 70, 3, rng);
  spd_test(256, 33, 2, rng);
  // clustered keys with a shared bias, queries in a per-head subspace, random values
  std::vector<float> K(size_t(H) * N * d), V(size_t(H) * N * dv), Q(size_t(Hq) * Qs * d), S(size_t(H) * N);
  std::vector<float> centers(size_t(H) * 8 * d), bias(static_cast<size_t>(d));
  for (auto& x : centers) x = nd(rng);
  for (auto& x : bias) x = nd(rng);
  for (int h = 0; h < H; h++)
    for (int n = 0; n < N; n++) {
      const int c = int(ud(rng) * 8) % 8;
      for (int e = 0; e < d; e++) K[(size_t(h) * N + n) * d + e] = 0.6f * bias[size_t(e)] + centers[size_t((h * 8 + c) * d + e)] + 0.5f * nd(rng);
    }
  for (auto& x : V) x = nd(rng);
  std::vector<float> basis(size_t(Hq) * 4 * d);
  for (auto& x : basis) x = nd(rng);
  for (int j = 0; j < Hq; j++)
    for (int t = 0; t < Qs; t++) {
      float al[4];
      for (auto& a : al) a = nd(rng);
      for (int e = 0; e < d; e++) {
        float s = 0;
        for (int i = 0; i < 4; i++) s += al[i] * basis[size_t((j * 4 + i) * d + e)];
        Q[(size_t(j) * Qs + t) * d + e] = 0.8f * s;
      }
    }
  for (auto& x : S) x = ud(rng);
  if (dt != kF32)
    for (auto* vec : {&K, &V})
      for (auto& x : *vec) x = from16(to16(x, dt), dt);
  // ragged selection: window + top prefix by score, head h keeps keep - 7h
  const int cap = keep + capExtra;  // padding rows beyond every count
  std::vector<int32_t> idx(size_t(H) * cap, -1), cnt(static_cast<size_t>(H));
  for (int h = 0; h < H; h++) {
    std::vector<int> pre(static_cast<size_t>(N - W));
    for (int i = 0; i < N - W; i++) pre[size_t(i)] = i;
    std::sort(pre.begin(), pre.end(), [&](int a, int b) { return S[size_t(h) * N + a] > S[size_t(h) * N + b]; });
    std::vector<int> kept(pre.begin(), pre.begin() + (keep - W - 7 * h));
    for (int i = N - W; i < N; i++) kept.push_back(i);
    std::sort(kept.begin(), kept.end());
    for (size_t j = 0; j < kept.size(); j++) idx[size_t(h) * cap + j] = kept[j];
    cnt[size_t(h)] = int32_t(kept.size());
  }
  std::vector<int32_t> qpos(static_cast<size_t>(Qs));
  std::vector<float> w(static_cast<size_t>(Qs));
  for (int j = 0; j < Qs; j++) {
    qpos[size_t(j)] = mode == "window" ? N - Qs + j : N - 1;
    w[size_t(j)] = mode == "window" ? 1.0f : 6.0f / Qs;
  }
  // storage tensors (f16/bf16 as uint16)
  const int es = dt == kF32 ? 4 : 2;
  std::vector<char> Ks(K.size() * es), Vs(V.size() * es);
  for (size_t i = 0; i < K.size(); i++)
    if (dt == kF32) memcpy(&Ks[i * 4], &K[i], 4); else { uint16_t u = to16(K[i], dt); memcpy(&Ks[i * 2], &u, 2); }
  for (size_t i = 0; i < V.size(); i++)
    if (dt == kF32) memcpy(&Vs[i * 4], &V[i], 4); else { uint16_t u = to16(V[i], dt); memcpy(&Vs[i * 2], &u, 2); }
  std::vector<char> koC(size_t(H) * cap * d * es), voC(size_t(H) * cap * dv * es), koG(koC.size(), 0x7f), voG(voC.size(), 0x7f);
  std::vector<int32_t> coC(static_cast<size_t>(H)), coG(static_cast<size_t>(H), -5);
  std::vector<float> dgC(size_t(H) * kGrkvDiagCols), dgG(size_t(H) * kGrkvDiagCols, NAN);
  int64_t sk[3] = {H, N, d}, sv[3] = {H, N, dv}, si[2] = {H, cap}, sc[1] = {H}, sq[3] = {Hq, Qs, d}, sqp[1] = {Qs};
  int64_t ss[2] = {H, N}, sko[3] = {H, cap, d}, svo[3] = {H, cap, dv}, sdg[2] = {H, kGrkvDiagCols};
  kvt_tensor tk = tens(Ks.data(), dt, 3, sk, nullptr), tv = tens(Vs.data(), dt, 3, sv, nullptr);
  kvt_tensor ti = tens(idx.data(), kI32, 2, si, nullptr), tc = tens(cnt.data(), kI32, 1, sc, nullptr);
  kvt_tensor tq = tens(Q.data(), kF32, 3, sq, nullptr), tqp = tens(qpos.data(), kI32, 1, sqp, nullptr);
  kvt_tensor tw = tens(w.data(), kF32, 1, sqp, nullptr), ts = tens(S.data(), kF32, 2, ss, nullptr);
  kvt_tensor tko = tens(koC.data(), dt, 3, sko, nullptr), tvo = tens(voC.data(), dt, 3, svo, nullptr);
  kvt_tensor tco = tens(coC.data(), kI32, 1, sc, nullptr), tdg = tens(dgC.data(), kF32, 2, sdg, nullptr);
  kvt_grkv_opts o;
  kvt_grkv_default_opts(&o);
  o.window = W;
  o.gamma = gamma;
  o.cap_key = capKey;
  o.cg_iters = cgIters;
  o.accept = acc == "joint" ? KVT_GRKV_ACCEPT_JOINT : KVT_GRKV_ACCEPT_BEST;
  if (kvt_grkv_merge(&tk, &tv, &ti, &tc, &tq, &tqp, &tw, &ts, &o, &tko, &tvo, &tco, &tdg, nullptr) != KVT_OK) {
    printf("cpu grkv failed: %s\n", kvt_last_error());
    return 1;
  }
  cuda::GrkvParams p{};
  p.keys = cuda::T3{Ks.data(), dt, H, N, d, int64_t(N) * d, d, 1};
  p.values = cuda::T3{Vs.data(), dt, H, N, dv, int64_t(N) * dv, dv, 1};
  p.indices = cuda::T2{idx.data(), kI32, H, cap, cap, 1};
  p.counts = cuda::T2{cnt.data(), kI32, H, 1, 1, 1};
  p.queries = cuda::T3{Q.data(), kF32, Hq, Qs, d, int64_t(Qs) * d, d, 1};
  p.qpos = qpos.data();
  p.qpos_s = 1;
  p.weights = w.data();
  p.weights_s = 1;
  p.scores = cuda::T2{S.data(), kF32, H, N, N, 1};
  p.keys_out = cuda::O3{koG.data(), dt, H, cap, d, int64_t(cap) * d, d, 1};
  p.values_out = cuda::O3{voG.data(), dt, H, cap, dv, int64_t(cap) * dv, dv, 1};
  p.counts_out = cuda::T2{coG.data(), kI32, H, 1, 1, 1};
  p.diag = dgG.data();
  p.diag_s0 = kGrkvDiagCols;
  p.diag_s1 = 1;
  p.window = o.window;
  p.cg_iters = o.cg_iters;
  p.gamma = o.gamma;
  p.lambda = o.lambda;
  p.cap_key = o.cap_key;
  p.cap_value = o.cap_value;
  p.tol = o.tol;
  p.scale = float(1.0 / sqrt(double(d)));
  p.accept = o.accept;
  const int err = cuda::grkv_merge(p, nullptr);
  expect(err == 0, "grkv_merge emulated launch status", err, 0);
  // compare
  auto val = [&](const std::vector<char>& b, size_t i) {
    if (dt == kF32) { float f; memcpy(&f, &b[i * 4], 4); return double(f); }
    uint16_t u; memcpy(&u, &b[i * 2], 2); return double(from16(u, dt));
  };
  bool counts_ok = coC == coG;
  expect(counts_ok, "counts_out equal", 0, 0);
  int chosen_diff = 0;
  double objdiff = 0;
  for (int h = 0; h < H; h++) {
    const float* a = &dgC[size_t(h) * kGrkvDiagCols];
    const float* b = &dgG[size_t(h) * kGrkvDiagCols];
    printf("  head %d cpu: chosen %g L [%.6g %.6g %.6g] sV %.4g sK %.4g shr %g/%g cg %g res %.3g stop %g R %g F %g flags %g\n", h,
           a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]);
    printf("  head %d emu: chosen %g L [%.6g %.6g %.6g] sV %.4g sK %.4g shr %g/%g cg %g res %.3g stop %g R %g F %g flags %g\n", h,
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13]);
    chosen_diff += a[0] != b[0];
    for (int k = 1; k <= 3; k++)
      if (!(std::isnan(a[k]) && std::isnan(b[k]))) objdiff = std::max(objdiff, fabs(double(a[k]) - b[k]) / fabs(double(a[1])));
    for (int k : {11, 12, 13, 8, 10})
      if (a[k] != b[k]) {
        printf("  head %d: diagnostics column %d differs (%g vs %g)\n", h, k, a[k], b[k]);
        fails++;
      }
  }
  expect(chosen_diff == 0, "chosen candidate equal on every head", chosen_diff, 0);
  // The key step's truncated CG is ill-conditioned: 1e-7 differences of the fp32 attention (summation order) move its
  // iterate by up to a few percent, so the key+value objective is compared at that level; the rest is tight.
  double obj01 = 0;
  for (int h = 0; h < H; h++)
    for (int k = 1; k <= 2; k++) {
      const float a = dgC[size_t(h) * kGrkvDiagCols + k], b = dgG[size_t(h) * kGrkvDiagCols + k];
      if (!(std::isnan(a) && std::isnan(b))) obj01 = std::max(obj01, fabs(double(a) - b) / fabs(double(dgC[size_t(h) * kGrkvDiagCols + 1])));
    }
  expect(obj01 < 1e-4, "objectives L0, L1 (relative to L0)", obj01, 1e-4);
  expect(objdiff < 0.05, "objectives incl. key+value (relative to L0)", objdiff, 0.05);
  double kn = 0, kd = 0, vn = 0, vd = 0;
  size_t bitdiff = 0;
  for (int h = 0; h < H; h++)
    for (int j = 0; j < cap; j++) {
      for (int e = 0; e < d; e++) {
        const size_t i = (size_t(h) * cap + j) * d + e;
        const double a = val(koC, i), b = val(koG, i);
        const double k0 = j < cnt[size_t(h)] ? K[(size_t(h) * N + idx[size_t(h) * cap + j]) * d + e] : 0.0;
        kn += (a - b) * (a - b);
        kd += (a - k0) * (a - k0);
        bitdiff += memcmp(&koC[i * es], &koG[i * es], size_t(es)) != 0;
      }
      for (int e = 0; e < dv; e++) {
        const size_t i = (size_t(h) * cap + j) * dv + e;
        const double a = val(voC, i), b = val(voG, i);
        const double v0 = j < cnt[size_t(h)] ? V[(size_t(h) * N + idx[size_t(h) * cap + j]) * dv + e] : 0.0;
        vn += (a - b) * (a - b);
        vd += (a - v0) * (a - v0);
        bitdiff += memcmp(&voC[i * es], &voG[i * es], size_t(es)) != 0;
      }
    }
  const double tolkv = dt == kF32 ? 1e-3 : 5e-2;
  expect(sqrt(vn / std::max(vd, 1e-30)) < tolkv, "values_out: ||emu - cpu|| / ||dV||", sqrt(vn / std::max(vd, 1e-30)), tolkv);
  expect(sqrt(kn / std::max(kd, 1e-30)) < 0.2 || kd == 0, "keys_out: ||emu - cpu|| / ||dK|| (CG-sensitive)", kd == 0 ? 0 : sqrt(kn / kd), 0.2);
  // rows the CPU left as plain eviction (fixed, evicted-padding, rejected) must be bit-identical on both
  size_t unchanged_diff = 0;
  for (int h = 0; h < H; h++)
    for (int j = 0; j < cap; j++) {
      const bool live = j < cnt[size_t(h)];
      const int64_t pos = live ? idx[size_t(h) * cap + j] : -1;
      for (int side = 0; side < 2; side++) {
        const int w = side ? dv : d;
        const std::vector<char>& C = side ? voC : koC;
        const std::vector<char>& Gd = side ? voG : koG;
        const std::vector<char>& In = side ? Vs : Ks;
        bool cpu_same = true, emu_same = true;
        for (int e = 0; e < w; e++) {
          const size_t o = ((size_t(h) * cap + j) * w + e) * es;
          std::vector<char> zero(size_t(es), 0);
          const char* src = live ? &In[((size_t(h) * N + pos) * w + e) * es] : zero.data();
          cpu_same &= memcmp(&C[o], src, size_t(es)) == 0;
          emu_same &= memcmp(&Gd[o], src, size_t(es)) == 0;
        }
        unchanged_diff += cpu_same != emu_same;
      }
    }
  expect(unchanged_diff == 0, "rows left as plain eviction are the same rows, bit-identical", double(unchanged_diff), 0);
  printf("  elements differing bitwise: %zu of %zu\n", bitdiff, koC.size() / es + voC.size() / es);
  printf("%s (%d failures)\n", fails ? "FAILED" : "PASSED", fails);
  return fails ? 1 : 0;
}
