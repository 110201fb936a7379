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

const SimdOps ops = {KVT_SIMD_NAME, NR, gemm_packed, gemm_nn_f32, gemm_nn_f64, max, sum_exp, acc_exp, dots, axpys, fma_chains};

}  // namespace KVT_SIMD_NS
