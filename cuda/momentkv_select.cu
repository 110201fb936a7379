// Multi-round moment-informed eviction on CUDA (docs/methods/momentkv.md §5.2-§5.3), the same function as the CPU backend
// (csrc/cpu/momentkv_select.cc; algorithm constants in csrc/math/momentkv.h). Per round (all host-side
// quantities: the number of rounds and of tokens evicted per round depend only on N, keep and rounds):
//   1. maxabs + gram:  Ĉ = M / max|M|, S = Ĉ Ĉᵀ [dv, dv] per head (scratch).
//   2. basis:          one block per head: subspace iteration on S (kSubspaceIters, block of p vectors, CGS2 with
//                      re-orthogonalisation and collapse replacement), Rayleigh–Ritz (Jacobi on p×p, one thread),
//                      σ_i = ‖Ĉᵀ u_i‖ thresholds, Gram–Schmidt of [mu_v, u_1..u_r] → basis [H][r+1][dv].
//   3. rho:            warp per alive candidate: ρ = ‖v − Σ (b·v) b‖; per-block partial sums (f64, fixed order).
//   4. keys:           key = score·(ρ + eps·mean ρ) (score while n = 0 or mi off), +inf protected, NaN evicted.
//   5. select:         the radix top-k of select.cu keeps N − evicted-so-far − m (ties keep the lower position).
//   6. labels:         alive tokens not kept get the round number; 7. merge the round's rows (label == round).
// The last round's selection is written straight into the caller's indices/counts.
#include "math/momentkv.h"
#include "common.cuh"
#include "dispatch.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int64_t kRowsPerBlock = 256;
constexpr int64_t kSelectMaxDv = 256;

__global__ void fill_kernel(T2 t, int32_t value) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, h = blockIdx.y;
  if (i < t.n1) static_cast<int32_t*>(t.p)[h * t.s0 + i * t.s1] = value;
}

__global__ void __launch_bounds__(kThreads) maxabs_kernel(Moments m, int64_t d, int64_t dv, float* inv) {
  __shared__ float red[kWarps];
  const int64_t h = blockIdx.x;
  const float* M = m.m + h * dv * d;
  float mx = 0.f;
  for (int64_t i = threadIdx.x; i < dv * d; i += kThreads) mx = fmaxf(mx, fabsf(M[i]));
  mx = warp_max(mx);
  if (threadIdx.x % kWarp == 0) red[threadIdx.x / kWarp] = mx;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (int w = 0; w < kWarps; w++) t = fmaxf(t, red[w]);
    inv[h] = t > 0.f && t < INFINITY ? 1.f / t : 0.f;
  }
}

// S[h][x][y] = Σ_c Ĉ[x][c] Ĉ[y][c] (sequential in c, the CPU's order; symmetric bit for bit).
__global__ void gram_kernel(Moments m, int64_t d, int64_t dv, const float* inv, float* S) {
  const int64_t h = blockIdx.z;
  const int64_t x = int64_t(blockIdx.y) * 16 + threadIdx.y, y = int64_t(blockIdx.x) * 16 + threadIdx.x;
  if (x >= dv || y >= dv) return;
  const float iv = inv[h];
  const float* M = m.m + h * dv * d;
  float s = 0.f;
  for (int64_t c = 0; c < d; c++) s += (M[x * d + c] * iv) * (M[y * d + c] * iv);
  S[(h * dv + x) * dv + y] = s;
}

struct BasisArgs {
  Moments m;
  int64_t d, dv;
  int r, p, mi;
  const float* inv;
  const float* S;
  float* basis;  // [H][kMaxR + 1][dv]
  int* nb;       // [H]
};

// Classical Gram–Schmidt pass of y against columns 0..k-1 of X [dv][p] (warps compute the projections).
__device__ void cgs_pass(const float* X, int64_t dv, int p, int k, float* y, float* proj) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  for (int j = warp; j < k; j += kWarps) {
    float s = 0.f;
    for (int64_t a = lane; a < dv; a += kWarp) s += X[a * p + j] * y[a];
    s = warp_sum(s);
    if (lane == 0) proj[j] = s;
  }
  __syncthreads();
  for (int64_t a = threadIdx.x; a < dv; a += kThreads) {
    float s = y[a];
    for (int j = 0; j < k; j++) s -= proj[j] * X[a * p + j];
    y[a] = s;
  }
  __syncthreads();
}

__device__ void orthonormalize(const float* Y, float* X, int64_t dv, int p, int it, float* y, float* proj, float* red) {
  for (int k = 0; k < p; k++) {
    for (int64_t a = threadIdx.x; a < dv; a += kThreads) y[a] = Y[a * p + k];
    __syncthreads();
    float q = 0.f;
    for (int64_t a = threadIdx.x; a < dv; a += kThreads) q += y[a] * y[a];
    const float n0 = sqrtf(block_sum<kWarps>(q, red));
    float n1 = 0.f;
    if (n0 > 0.f && n0 < INFINITY) {
      cgs_pass(X, dv, p, k, y, proj);
      cgs_pass(X, dv, p, k, y, proj);
      q = 0.f;
      for (int64_t a = threadIdx.x; a < dv; a += kThreads) q += y[a] * y[a];
      n1 = sqrtf(block_sum<kWarps>(q, red));
    }
    if (!(n1 > mkv::kCollapseRel * n0)) {
      for (int64_t a = threadIdx.x; a < dv; a += kThreads) y[a] = mkv::det_uniform(uint32_t(a), uint32_t(k), uint32_t(it + 1));
      __syncthreads();
      cgs_pass(X, dv, p, k, y, proj);
      cgs_pass(X, dv, p, k, y, proj);
      q = 0.f;
      for (int64_t a = threadIdx.x; a < dv; a += kThreads) q += y[a] * y[a];
      n1 = sqrtf(block_sum<kWarps>(q, red));
    }
    const float iv = n1 > 0.f ? 1.f / n1 : 0.f;
    for (int64_t a = threadIdx.x; a < dv; a += kThreads) X[a * p + k] = y[a] * iv;
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kThreads) basis_kernel(BasisArgs A) {
  extern __shared__ float sm[];
  __shared__ float red[kWarps], proj[mkv::kMaxP];
  __shared__ float B[mkv::kMaxP * mkv::kMaxP], W[mkv::kMaxP * mkv::kMaxP], lam[mkv::kMaxP];
  __shared__ int order[mkv::kMaxP];
  __shared__ int ncand;
  const int64_t h = blockIdx.x, d = A.d, dv = A.dv;
  const int p = A.p, tid = threadIdx.x;
  float* X = sm;                   // [dv][p]
  float* Y = X + dv * p;           // [dv][p]
  float* y = Y + dv * p;           // [dv]
  float* cand = y + dv;            // [kMaxR + 1][dv]
  const float n = A.m.n[h];
  if (!(A.mi && n > 0.f)) {
    if (tid == 0) A.nb[h] = 0;
    return;
  }
  for (int64_t a = tid; a < dv; a += kThreads) cand[a] = A.m.mu_v[h * dv + a];
  if (tid == 0) ncand = 1;
  const float iv = A.inv[h];
  __syncthreads();
  if (A.r > 0 && iv > 0.f) {
    const float* S = A.S + h * dv * dv;
    for (int64_t e = tid; e < dv * p; e += kThreads)
      Y[e] = mkv::det_uniform(uint32_t(e / p), uint32_t(e % p), 0u);
    __syncthreads();
    orthonormalize(Y, X, dv, p, 0, y, proj, red);
    for (int it = 1; it <= mkv::kSubspaceIters + 1; it++) {
      for (int64_t e = tid; e < dv * p; e += kThreads) {  // Y = S X
        const int64_t a = e / p, k = e % p;
        float s = 0.f;
        for (int64_t b = 0; b < dv; b++) s += S[a * dv + b] * X[b * p + k];
        Y[e] = s;
      }
      __syncthreads();
      if (it <= mkv::kSubspaceIters) orthonormalize(Y, X, dv, p, it, y, proj, red);
    }
    // Rayleigh–Ritz: B = Xᵀ S X (symmetrised), Jacobi on one thread.
    for (int e = tid; e < p * p; e += kThreads) {
      const int k = e / p, l = e % p;
      float s = 0.f;
      for (int64_t a = 0; a < dv; a++) s += X[a * p + k] * Y[a * p + l];
      B[e] = s;
    }
    __syncthreads();
    if (tid == 0) {
      for (int k = 0; k < p; k++)
        for (int l = 0; l < k; l++) B[k * p + l] = B[l * p + k] = 0.5f * (B[k * p + l] + B[l * p + k]);
      mkv::jacobi_eigen(p, B, W, lam, order);
    }
    __syncthreads();
    float sigma0 = 0.f;
    const int rr = A.r < p ? A.r : p;
    for (int i = 0; i < rr; i++) {
      const int col = order[i];
      for (int64_t a = tid; a < dv; a += kThreads) {
        float s = 0.f;
        for (int k = 0; k < p; k++) s += X[a * p + k] * W[k * p + col];
        y[a] = s;
      }
      __syncthreads();
      const float* M = A.m.m + h * dv * d;
      float q = 0.f;
      for (int64_t c = tid; c < d; c += kThreads) {
        float t = 0.f;
        for (int64_t a = 0; a < dv; a++) t += (M[a * d + c] * iv) * y[a];
        q += t * t;
      }
      const float sigma = sqrtf(block_sum<kWarps>(q, red));
      if (i == 0) sigma0 = sigma;
      if (sigma > 0.f && sigma >= mkv::kSigmaRel * sigma0) {
        const int slot = ncand;
        for (int64_t a = tid; a < dv; a += kThreads) cand[slot * dv + a] = y[a];
        __syncthreads();
        if (tid == 0) ncand = slot + 1;
      }
      __syncthreads();
    }
  }
  // Gram–Schmidt (two modified passes) of the candidates into the basis.
  float* out = A.basis + h * (mkv::kMaxR + 1) * dv;
  int nb = 0;
  const int nc = ncand;
  for (int ci = 0; ci < nc; ci++) {
    const float* c = cand + ci * dv;
    float q = 0.f;
    for (int64_t a = tid; a < dv; a += kThreads) {
      y[a] = c[a];
      q += c[a] * c[a];
    }
    const float cn = sqrtf(block_sum<kWarps>(q, red));
    if (!(cn > 0.f)) continue;
    for (int pass = 0; pass < 2; pass++)
      for (int b = 0; b < nb; b++) {
        q = 0.f;
        for (int64_t a = tid; a < dv; a += kThreads) q += out[b * dv + a] * y[a];
        const float pr = block_sum<kWarps>(q, red);
        for (int64_t a = tid; a < dv; a += kThreads) y[a] -= pr * out[b * dv + a];
        __syncthreads();
      }
    q = 0.f;
    for (int64_t a = tid; a < dv; a += kThreads) q += y[a] * y[a];
    const float wn = sqrtf(block_sum<kWarps>(q, red));
    if (!(wn > mkv::kGsRel * cn)) continue;
    for (int64_t a = tid; a < dv; a += kThreads) out[nb * dv + a] = y[a] / wn;
    __syncthreads();
    nb++;
  }
  if (tid == 0) A.nb[h] = nb;
}

struct RoundArgs {
  T2 scores;
  T3 v;
  T2 label;
  Moments m;
  int mi;
  float eps;
  const float* basis;
  const int* nb;
  float* rho;        // [H, N]
  double* psum;      // [H][nblk]
  int64_t* pcnt;     // [H][nblk]
  float* keys;       // [H, N]
  int64_t nblk;
};

__device__ __forceinline__ bool alive(const RoundArgs& A, int64_t h, int64_t i, float* score) {
  *score = static_cast<const float*>(A.scores.p)[h * A.scores.s0 + i * A.scores.s1];
  return static_cast<const int32_t*>(A.label.p)[h * A.label.s0 + i * A.label.s1] == -1;
}

__global__ void __launch_bounds__(kThreads) rho_kernel(RoundArgs A) {
  extern __shared__ float bs[];  // [nb][dv]
  __shared__ double wsum[kWarps];
  __shared__ long long wcnt[kWarps];
  const int64_t h = blockIdx.y, blk = blockIdx.x, N = A.scores.n1, dv = A.v.n2;
  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const bool use = A.mi && A.m.n[h] > 0.f;
  const int nb = use ? A.nb[h] : 0;
  for (int64_t e = tid; e < int64_t(nb) * dv; e += kThreads) bs[e] = A.basis[h * (mkv::kMaxR + 1) * dv + e];
  __syncthreads();
  double sum = 0.0;
  long long cnt = 0;
  const int64_t i0 = blk * kRowsPerBlock, i1 = imin(N, i0 + kRowsPerBlock);
  for (int64_t i = i0 + warp; i < i1; i += kWarps) {
    float sc;
    if (!alive(A, h, i, &sc) || sc == INFINITY) continue;
    cnt++;
    if (!use) continue;
    const int64_t base = h * A.v.s0 + i * A.v.s1;
    // pr is indexed by compile-time constants only (unrolled over kMaxR + 1, guarded by nb), so it stays in registers
    float pr[mkv::kMaxR + 1];
#pragma unroll
    for (int b = 0; b < mkv::kMaxR + 1; b++) {
      if (b >= nb) break;
      float t = 0.f;
      for (int64_t c = lane; c < dv; c += kWarp) t += bs[b * dv + c] * load_as_f32(A.v.p, A.v.dtype, base + c * A.v.s2);
      pr[b] = warp_sum(t);
    }
    float q = 0.f;
    for (int64_t c = lane; c < dv; c += kWarp) {
      float w = load_as_f32(A.v.p, A.v.dtype, base + c * A.v.s2);
#pragma unroll
      for (int b = 0; b < mkv::kMaxR + 1; b++) {
        if (b >= nb) break;
        w -= pr[b] * bs[b * dv + c];
      }
      q += w * w;
    }
    const float rho = sqrtf(warp_sum(q));
    if (lane == 0) A.rho[h * N + i] = rho;
    sum += double(rho);
  }
  if (lane == 0) {
    wsum[warp] = sum;
    wcnt[warp] = cnt;
  }
  __syncthreads();
  if (tid == 0) {
    double s = 0.0;
    long long c = 0;
    for (int w = 0; w < kWarps; w++) {
      s += wsum[w];
      c += wcnt[w];
    }
    A.psum[h * A.nblk + blk] = s;
    A.pcnt[h * A.nblk + blk] = c;
  }
}

__global__ void __launch_bounds__(kThreads) key_kernel(RoundArgs A) {
  __shared__ float eps_mean;
  const int64_t h = blockIdx.y, N = A.scores.n1;
  const bool use = A.mi && A.m.n[h] > 0.f;
  if (threadIdx.x == 0) {
    double s = 0.0;
    long long c = 0;
    for (int64_t b = 0; b < A.nblk; b++) {
      s += A.psum[h * A.nblk + b];
      c += A.pcnt[h * A.nblk + b];
    }
    eps_mean = c > 0 ? float(double(A.eps) * (s / double(c))) : 0.f;
  }
  __syncthreads();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  float sc;
  float key;
  if (!alive(A, h, i, &sc)) key = __int_as_float(0x7fc00000);  // evicted earlier: NaN ranks lowest
  else if (sc == INFINITY || !use) key = mkv::candidate_key(sc);
  else key = mkv::candidate_key(mkv::mi_key(sc, A.rho[h * N + i], eps_mean));
  A.keys[h * N + i] = key;
}

// Alive tokens that the round's selection did not keep get the round number.
__global__ void label_kernel(T2 label, const int32_t* kept, int64_t K, int32_t round) {
  const int64_t h = blockIdx.y, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= label.n1) return;
  int32_t* L = static_cast<int32_t*>(label.p) + h * label.s0 + i * label.s1;
  if (*L != -1) return;
  const int32_t* row = kept + h * K;
  int64_t lo = 0, hi = K;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (row[mid] < i) lo = mid + 1;
    else hi = mid;
  }
  if (!(lo < K && row[lo] == i)) *L = round;
}

}  // namespace

cudaError_t momentkv_select(const T2& scores, const T3& keys, const T3& values, const MkvSelectParams& p,
                            const T2& indices, const T2& counts, const Moments& m, const T2* evicted_round,
                            cudaStream_t stream) {
  const int64_t H = scores.n0, N = scores.n1, d = keys.n2, dv = values.n2;
  if (dv > kSelectMaxDv || d > kMaxHeadDim) return cudaErrorInvalidValue;
  if (H > 65535 || N >= (int64_t(1) << 31)) return cudaErrorInvalidConfiguration;
  const int64_t excess = N - p.keep;
  const int rounds = p.mi ? p.rounds : 1;
  const int pp = mkv::subspace_p(dv, p.r);
  const int64_t nblk = ceil_div(N, kRowsPerBlock);
  const int64_t K_max = N;  // intermediate selections keep at most N
  // Scratch: label (unless given), rho, keys, S, basis, inv, nb, partial sums/counts, intermediate indices/counts.
  const size_t f_label = evicted_round ? 0 : size_t(H * N);
  const size_t bytes = (f_label + 2 * size_t(H * N) + size_t(H * dv * dv) + size_t(H * (mkv::kMaxR + 1) * dv) +
                        size_t(H)) * 4 + size_t(H) * 4 + size_t(H * nblk) * 16 + size_t(H * K_max + H) * 4 + 256;
  Scratch ws(bytes, stream);
  KVT_CU_TRY(ws.error());
  char* base = ws.as<char>();
  auto take = [&](size_t n) {
    char* r = base;
    base += (n + 15) / 16 * 16;
    return r;
  };
  double* psum = reinterpret_cast<double*>(take(size_t(H * nblk) * 8));
  int64_t* pcnt = reinterpret_cast<int64_t*>(take(size_t(H * nblk) * 8));
  int32_t* label_buf = evicted_round ? nullptr : reinterpret_cast<int32_t*>(take(f_label * 4));
  float* rho = reinterpret_cast<float*>(take(size_t(H * N) * 4));
  float* keyb = reinterpret_cast<float*>(take(size_t(H * N) * 4));
  float* S = reinterpret_cast<float*>(take(size_t(H * dv * dv) * 4));
  float* basis = reinterpret_cast<float*>(take(size_t(H * (mkv::kMaxR + 1) * dv) * 4));
  float* inv = reinterpret_cast<float*>(take(size_t(H) * 4));
  int* nb = reinterpret_cast<int*>(take(size_t(H) * 4));
  int32_t* kidx = reinterpret_cast<int32_t*>(take(size_t(H * K_max) * 4));
  int32_t* kcnt = reinterpret_cast<int32_t*>(take(size_t(H) * 4));
  const T2 label = evicted_round ? *evicted_round : T2{label_buf, kI32, H, N, N, 1};
  const dim3 rows_grid(unsigned(ceil_div(N, 256)), unsigned(H));
  fill_kernel<<<rows_grid, 256, 0, stream>>>(label, -1);
  KVT_CU_TRY(cudaGetLastError());
  const T2 key_t{keyb, kF32, H, N, N, 1};
  if (excess <= 0) {  // nothing to evict: keep everything
    return select_tokens(scores, SelectParams{int32_t(N), 0, 0, 0, 0}, indices, counts, stream);
  }
  RoundArgs R{scores, values, label, m, p.mi, p.eps, basis, nb, rho, psum, pcnt, keyb, nblk};
  BasisArgs B{m, d, dv, p.r, pp, p.mi, inv, S, basis, nb};
  const size_t basis_smem = size_t(2 * dv * pp + dv + (mkv::kMaxR + 1) * dv) * sizeof(float);
  if (basis_smem > 48 * 1024) KVT_CU_TRY(cudaFuncSetAttribute(basis_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(basis_smem)));
  int64_t done = 0;
  for (int rd = 0; rd < rounds; rd++) {
    const int64_t mc = (excess - done + (rounds - rd) - 1) / (rounds - rd);
    if (mc <= 0) break;
    const int64_t K = N - done - mc;
    const bool last = done + mc == excess;
    if (p.mi) {
      if (p.r > 0) {
        maxabs_kernel<<<unsigned(H), kThreads, 0, stream>>>(m, d, dv, inv);
        KVT_CU_TRY(cudaGetLastError());
        gram_kernel<<<dim3(unsigned(ceil_div(dv, 16)), unsigned(ceil_div(dv, 16)), unsigned(H)), dim3(16, 16), 0, stream>>>(m, d, dv, inv, S);
        KVT_CU_TRY(cudaGetLastError());
      }
      basis_kernel<<<unsigned(H), kThreads, basis_smem, stream>>>(B);
      KVT_CU_TRY(cudaGetLastError());
    }
    rho_kernel<<<dim3(unsigned(nblk), unsigned(H)), kThreads, size_t((mkv::kMaxR + 1) * dv) * sizeof(float), stream>>>(R);
    KVT_CU_TRY(cudaGetLastError());
    key_kernel<<<rows_grid, kThreads, 0, stream>>>(R);
    KVT_CU_TRY(cudaGetLastError());
    const T2 out_idx = last ? indices : T2{kidx, kI32, H, K, K, 1};
    const T2 out_cnt = last ? counts : T2{kcnt, kI32, H, 1, 1, 1};
    KVT_CU_TRY(select_tokens(key_t, SelectParams{int32_t(K), 0, 0, 0, 0}, out_idx, out_cnt, stream));
    // Labels need the kept list contiguous [H, K]: the final indices may be strided or wider (cap > keep).
    const int32_t* kept = kidx;
    if (last) {
      if (indices.s1 == 1 && indices.s0 == K) kept = static_cast<const int32_t*>(indices.p);
      else KVT_CU_TRY(select_tokens(key_t, SelectParams{int32_t(K), 0, 0, 0, 0}, T2{kidx, kI32, H, K, K, 1},
                                    T2{kcnt, kI32, H, 1, 1, 1}, stream));
    }
    label_kernel<<<rows_grid, 256, 0, stream>>>(label, kept, K, rd);
    KVT_CU_TRY(cudaGetLastError());
    KVT_CU_TRY(moments_merge(keys, values, RowSel{2, T2{nullptr, kI32, 0, 0, 0, 0}, T2{nullptr, kI32, 0, 0, 0, 0}, label, rd},
                             m, stream));
    done += mc;
  }
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace kvt
