// The dispatched kernels of csrc/cpu/simd.h, written once: csrc/cpu/simd.cc includes this file once per instruction
// set, inside a namespace named by KVT_SIMD_NS and under that set's target attributes, with KVT_SIMD_BYTES the vector
// width and KVT_SIMD_MR the micro-kernel's rows. No include guard on purpose.
namespace KVT_SIMD_NS {

constexpr int VB = KVT_SIMD_BYTES;
constexpr int L = VB / 4;   // f32 lanes
constexpr int NR = 2 * L;   // micro-kernel columns: two vectors
constexpr int MR = KVT_SIMD_MR;
typedef float vf __attribute__((vector_size(VB)));
typedef int32_t vi __attribute__((vector_size(VB)));

inline vf vload(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf vsplat(float x) { return vf{} + x; }

// exp(x) for x <= 0 in f32 lanes: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by the degree-6 minimax polynomial of the Cephes
// library's expf (S. L. Moshier), 2^n through the exponent bits; below -87.3 (and at -inf) the result is 0.
inline vf vexp(vf x) {
  const vf lo = vsplat(-87.3f);
  const vi under = x < lo;
  x = x < lo ? lo : x;
  const vf magic = vsplat(12582912.f);  // 1.5 * 2^23: adding it rounds to an integer
  vf n = (x * 1.44269504088896341f + magic) - magic;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = vsplat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  vi e = __builtin_convertvector(n, vi);
  e = (e + 127) << 23;
  vf s;
  std::memcpy(&s, &e, sizeof s);
  vf y = p * s;
  return under ? vsplat(0.f) : y;
}

float max(const float* x, int64_t n) {
  vf m = vsplat(-INFINITY);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const vf v = vload(x + i);
    m = v > m ? v : m;
  }
  float r = -INFINITY;
  for (int k = 0; k < L; k++) r = m[k] > r ? m[k] : r;
  for (; i < n; i++) r = x[i] > r ? x[i] : r;
  return r;
}

double sum_exp(const float* x, int64_t n, float m) {
  vf s = {};
  const vf mv = vsplat(m);
  int64_t i = 0;
  for (; i + L <= n; i += L) s += vexp(vload(x + i) - mv);
  double r = 0;
  for (int k = 0; k < L; k++) r += double(s[k]);
  if (i < n) {
    float t[L];
    for (int k = 0; k < L; k++) t[k] = i + k < n ? x[i + k] - m : -INFINITY;
    const vf e = vexp(vload(t));
    for (int k = 0; k < L; k++) r += double(e[k]);
  }
  return r;
}

void acc_exp(const float* x, int64_t n, float m, float* acc) {
  const vf mv = vsplat(m);
  int64_t i = 0;
  for (; i + L <= n; i += L) vstore(acc + i, vload(acc + i) + vexp(vload(x + i) - mv));
  if (i < n) {
    float t[L];
    for (int k = 0; k < L; k++) t[k] = i + k < n ? x[i + k] - m : -INFINITY;
    const vf e = vexp(vload(t));
    for (int k = 0; i + k < n; k++) acc[i + k] += e[k];
  }
}

// One MR x NR tile (rows < mr, columns < nc stored) of alpha * A * panel. The k loop runs in blocks of KB whose
// register sums are added into a tile in L1: each output is a sum of k / KB block sums of KB terms, as accurate as
// the 8-way split dot products of csrc/cpu/rows.h rather than one running sum over all of k.
constexpr int64_t KB = 32;

template <int R>
inline void tile(int64_t k, float alpha, const float* A, int64_t lda, const float* panel, float* C, int64_t ldc, int64_t mr,
                 int64_t nc) {
  alignas(64) float t[R][NR] = {};  // the block sums, in L1
  for (int64_t pb = 0; pb < k; pb += KB) {
    const int64_t pe = pb + KB < k ? pb + KB : k;
    vf c0[R], c1[R];
    for (int i = 0; i < R; i++) c0[i] = c1[i] = vf{};
    for (int64_t p = pb; p < pe; p++) {
      const vf b0 = vload(panel + p * NR), b1 = vload(panel + p * NR + L);
      for (int i = 0; i < R; i++) {
        const float a = A[i * lda + p];
        c0[i] += a * b0;
        c1[i] += a * b1;
      }
    }
    for (int i = 0; i < R; i++) {
      vstore(t[i], vload(t[i]) + c0[i]);
      vstore(t[i] + L, vload(t[i] + L) + c1[i]);
    }
  }
  for (int i = 0; i < R && i < mr; i++) {
    float* o = C + i * ldc;
    const vf x0 = vload(t[i]) * alpha, x1 = vload(t[i] + L) * alpha;
    if (nc == NR) {
      vstore(o, x0);
      vstore(o + L, x1);
    } else {
      for (int64_t j = 0; j < nc; j++) o[j] = j < L ? x0[j] : x1[j - L];
    }
  }
}

void gemm_packed(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* Bp, float* C,
                 int64_t ldc) {
  for (int64_t j0 = 0; j0 < n; j0 += NR) {
    const float* panel = Bp + j0 * k;
    const int64_t nc = n - j0 < NR ? n - j0 : NR;
    int64_t i0 = 0;
    for (; i0 + MR <= m; i0 += MR) tile<MR>(k, alpha, A + i0 * lda, lda, panel, C + i0 * ldc + j0, ldc, MR, nc);
    for (; i0 < m; i0++) tile<1>(k, alpha, A + i0 * lda, lda, panel, C + i0 * ldc + j0, ldc, 1, nc);
  }
}

#if KVT_SIMD_FMA
void gemm_nn_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc, bool accumulate) {
  gemm_nn_body<float>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

void gemm_nn_f64(int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb, double* C,
                 int64_t ldc, bool accumulate) {
  gemm_nn_body<double>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}
#else
// Without FMA instructions: the same fused multiply-adds in the same order, through std::fma (the FMA instruction
// where the CPU has one, glibc's exact emulation otherwise), so GRKV's products are bit-identical at every level
// (its key step amplifies the last bit of a product).
template <typename T>
void gemm_nn_fused(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc,
                   bool accumulate) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      T c = 0;
      for (int64_t p = 0; p < k; p++) c = std::fma(A[i * lda + p], B[p * ldb + j], c);
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + c : c;
    }
}
void gemm_nn_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc, bool accumulate) {
  gemm_nn_fused<float>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}
void gemm_nn_f64(int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B, int64_t ldb, double* C,
                 int64_t ldc, bool accumulate) {
  gemm_nn_fused<double>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}
#endif

// Sum of a vector's lanes, pairwise.
inline float hsum(vf v) {
  float t[L];
  vstore(t, v);
  for (int w = L / 2; w > 0; w /= 2)
    for (int k = 0; k < w; k++) t[k] += t[k + w];
  return t[0];
}

// Up to 4 dot products against x at once (x loaded once per step for all of them).
template <int Q>
inline void dots_n(const float* a, int64_t lda, const float* x, int64_t n, float* out) {
  vf s[Q] = {};
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const vf xv = vload(x + j);
    for (int q = 0; q < Q; q++) s[q] += vload(a + q * lda + j) * xv;
  }
  for (int q = 0; q < Q; q++) {
    float r = hsum(s[q]);
    for (int64_t t = j; t < n; t++) r += a[q * lda + t] * x[t];
    out[q] = r;
  }
}

void dots(const float* a, int64_t lda, int64_t nq, const float* x, int64_t n, float* out) {
  int64_t q = 0;
  for (; q + 4 <= nq; q += 4) dots_n<4>(a + q * lda, lda, x, n, out + q);
  switch (nq - q) {
    case 3: dots_n<3>(a + q * lda, lda, x, n, out + q); break;
    case 2: dots_n<2>(a + q * lda, lda, x, n, out + q); break;
    case 1: dots_n<1>(a + q * lda, lda, x, n, out + q); break;
    default: break;
  }
}

void axpys(const float* p, int64_t nq, const float* x, int64_t n, float* acc, int64_t ldacc) {
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const vf xv = vload(x + j);
    for (int64_t q = 0; q < nq; q++) vstore(acc + q * ldacc + j, vload(acc + q * ldacc + j) + xv * p[q]);
  }
  for (; j < n; j++)
    for (int64_t q = 0; q < nq; q++) acc[q * ldacc + j] += p[q] * x[j];
}

// NestedKV's row kernels (csrc/cpu/nestedkv.cc, docs/methods/nestedkv.md §9): f32 data, exact arithmetic where the
// scalar scheme is exact, so only the order of dotd's double sum depends on the level.
constexpr int LD = VB / 8;  // f64 lanes
typedef double vd __attribute__((vector_size(VB)));
typedef int64_t vl __attribute__((vector_size(VB)));
typedef float vfh __attribute__((vector_size(VB / 2)));  // LD f32 lanes, widened to vd

inline vd vwiden(const float* p) {
  vfh h;
  std::memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, vd);
}

// out[q] = sum x[j]·y[q][j] over j < n in double, for q < Q, x widened once for all of them. Every product of two f32
// values is exact in double; each sum runs in four vector accumulators (lanes of the level's width), summed pairwise,
// then the tail in order, so out[q] does not depend on Q or on which other vectors share the pass.
template <int Q>
inline void dotd_n(const float* x, const float* const* y, int64_t n, double* out) {
  vd s[Q][4] = {};
  int64_t j = 0;
  for (; j + 4 * LD <= n; j += 4 * LD)
    for (int k = 0; k < 4; k++) {
      const vd xv = vwiden(x + j + k * LD);
      for (int q = 0; q < Q; q++) s[q][k] += xv * vwiden(y[q] + j + k * LD);
    }
  for (; j + LD <= n; j += LD) {
    const vd xv = vwiden(x + j);
    for (int q = 0; q < Q; q++) s[q][0] += xv * vwiden(y[q] + j);
  }
  for (int q = 0; q < Q; q++) {
    const vd v = (s[q][0] + s[q][2]) + (s[q][1] + s[q][3]);
    double t[LD];
    std::memcpy(t, &v, sizeof t);
    for (int w = LD / 2; w > 0; w /= 2)
      for (int k = 0; k < w; k++) t[k] += t[k + w];
    double r = t[0];
    for (int64_t c = j; c < n; c++) r += double(x[c]) * double(y[q][c]);
    out[q] = r;
  }
}

void dotds(const float* x, const float* const* y, int ny, int64_t n, double* out) {
  int q = 0;
  for (; q + 3 <= ny; q += 3) dotd_n<3>(x, y + q, n, out + q);
  if (ny - q == 2) dotd_n<2>(x, y + q, n, out + q);
  if (ny - q == 1) dotd_n<1>(x, y + q, n, out + q);
}

// NestedKV's window step (csrc/cpu/nestedkv.cc): B −= old (when old is not null), A += kh, S = A + B, f32 lane by lane
// (single roundings, as the scalar fsub / fadd).
void window_step(float* A, float* B, const float* kh, const float* old, float* S, int64_t n) {
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    vf b = vload(B + j);
    if (old) b = b - vload(old + j);
    const vf a = vload(A + j) + vload(kh + j);
    vstore(B + j, b);
    vstore(A + j, a);
    vstore(S + j, a + b);
  }
  for (; j < n; j++) {
    if (old) B[j] = B[j] - old[j];
    A[j] = A[j] + kh[j];
    S[j] = A[j] + B[j];
  }
}

// out[j] = row[j] · s in f32 (the scalar product exactly, lane by lane); false when an out[j] is not finite.
bool scale_finite(const float* row, int64_t n, float s, float* out) {
  vi ok = vi{} - 1;
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const vf x = vload(row + j) * s;
    vstore(out + j, x);
    ok &= (x - x == 0.f);
  }
  bool fin = true;
  for (int k = 0; k < L; k++) fin &= ok[k] != 0;
  for (; j < n; j++) {
    out[j] = row[j] * s;
    fin &= out[j] - out[j] == 0.f;
  }
  return fin;
}

// acc[j] += to_fixed(x[j]) (math/nestedkv.h: x clamped to [-1, 1], NaN as 0, then x·2^32 rounded to the nearest
// integer, ties to even). x·2^32 is exact in double, and adding 1.5·2^52 rounds it to an integer held in the low bits
// of the sum (|x·2^32| <= 2^32 < 2^51), so the lanes give the scalar rintf's integers exactly.
void fixed_add(const float* x, int64_t n, int64_t* acc) {
  const vd magic = vd{} + 6755399441055744.0;  // 1.5 * 2^52
  vl mbits;
  std::memcpy(&mbits, &magic, sizeof mbits);
  const vfh one = vfh{} + 1.f, mone = vfh{} - 1.f, zero = vfh{};
  int64_t j = 0;
  for (; j + LD <= n; j += LD) {
    vfh h;
    std::memcpy(&h, x + j, sizeof h);
    h = h >= mone ? (h <= one ? h : one) : (h < mone ? mone : zero);
    const vd v = __builtin_convertvector(h, vd) * 4294967296.0 + magic;
    vl bits, a;
    std::memcpy(&bits, &v, sizeof bits);
    std::memcpy(&a, acc + j, sizeof a);
    a += bits - mbits;
    std::memcpy(acc + j, &a, sizeof a);
  }
  for (; j < n; j++) acc[j] += nkv::to_fixed(x[j]);
}

// The FMA yardstick: 2 * MR independent chains of c = c * x + y (one fused multiply-add per lane where the level has
// it, a multiply and an add otherwise), as many as the micro-kernel keeps in flight; returns their sum.
double fma_chains(int64_t iters, double* flops) {
  constexpr int CH = 2 * MR;
  vf c[CH];
  for (int i = 0; i < CH; i++) c[i] = vsplat(1.f + 1e-3f * float(i));
  const vf x = vsplat(0.999999f), y = vsplat(1e-6f);
  for (int64_t it = 0; it < iters; it++)
    for (int i = 0; i < CH; i++) c[i] = c[i] * x + y;
  double s = 0;
  for (int i = 0; i < CH; i++)
    for (int k = 0; k < L; k++) s += double(c[i][k]);
  *flops = 2.0 * double(iters) * CH * L;
  return s;
}

const SimdOps ops = {KVT_SIMD_NAME, NR, gemm_packed, gemm_nn_f32, gemm_nn_f64, max, sum_exp, acc_exp, dots, axpys,
                     dotds, scale_finite, fixed_add, window_step, fma_chains};

}  // namespace KVT_SIMD_NS
