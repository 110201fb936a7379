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
// Rounds and evictions per round are computed per sequence on the device (plan_kernel: a batch's lengths and budgets
// are device data); a round's kept set is the radix state of select.cu (labels from the state, no kept list), and the
// final selection of each sequence (the round that reaches its budget) is collected into the caller's indices/counts
// after the last round. Batched (docs/runtime-caches.md §6): every kernel runs over the virtual heads b·H + h of all
// sequences at once, rows read in place through the table; a plain [H, N] call is the batch of one.
#include "math/momentkv.h"
#include "common.cuh"
#include "dispatch.cuh"
#include "select.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int64_t kRowsPerBlock = 256;
constexpr int64_t kSelectMaxDv = 256;

// The round plan of a sequence (math of the per-sequence driver, from its own n_b and keep_b): round rd evicts mc tokens
// (ceil of what is left over the rounds left), keeping K; `last` when it reaches the budget.
struct Plan {
  int32_t K;       // the round's selection keeps K (0 when inactive)
  int32_t active;  // 1 when the round evicts tokens
  int32_t last;    // 1 when this round's selection is the final one
};

struct SelArgs {
  Seqs seqs;
  int64_t H;
  const int32_t* keep;  // [B] (stride keep_s) or null: keep_scalar
  int64_t keep_s;
  int32_t keep_scalar;
  int rounds;
};

__device__ __forceinline__ Plan plan_of(const SelArgs& a, int64_t b, int rd) {
  const int64_t n = seq_len<true>(a.seqs, b);
  const int64_t raw = a.keep ? int64_t(a.keep[b * a.keep_s]) : int64_t(a.keep_scalar);
  const int64_t excess = n - imax(0, imin(raw, n));
  Plan p{0, 0, 0};
  int64_t done = 0;
  for (int r = 0; r <= rd; r++) {
    const int64_t mc = (excess - done + (a.rounds - r) - 1) / (a.rounds - r);
    if (mc <= 0) return Plan{0, 0, 0};
    if (r == rd) p = Plan{int32_t(n - done - mc), 1, done + mc == excess ? 1 : 0};
    done += mc;
  }
  return p;
}

// Round rd's plan of every sequence, and its keep K as the selection's per-sequence budget.
__global__ void plan_kernel(SelArgs a, int rd, Plan* plan, int32_t* K) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= a.seqs.B) return;
  const Plan p = plan_of(a, b, rd);
  plan[b] = p;
  K[b] = p.K;
}

// Labels -1 (alive) for every token of every sequence; the final states keep everything (a sequence without excess).
template <bool BATCH>
__global__ void fill_kernel(Seqs sq, T2 t, int32_t value, sel::State* final_st, int64_t H) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, h = blockIdx.y, b = blockIdx.z;
  if (i < seq_len<BATCH>(sq, b)) static_cast<int32_t*>(t.p)[tok_off<BATCH>(sq, t, b, h, i)] = value;
  if (i == 0) final_st[b * H + h] = sel::State{0ull, 0u, 0, sel::kAll};
}

__global__ void __launch_bounds__(kThreads) maxabs_kernel(Moments m, int64_t d, int64_t dv, float* inv, const Plan* plan,
                                                          int64_t H) {
  __shared__ float red[kWarps];
  const int64_t h = blockIdx.x;
  if (!plan[h / H].active) return;
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
__global__ void gram_kernel(Moments m, int64_t d, int64_t dv, const float* inv, float* S, const Plan* plan, int64_t H) {
  const int64_t h = blockIdx.z;
  const int64_t x = int64_t(blockIdx.y) * 16 + threadIdx.y, y = int64_t(blockIdx.x) * 16 + threadIdx.x;
  if (x >= dv || y >= dv || !plan[h / H].active) return;
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
  float* basis;  // [B·H][kMaxR + 1][dv]
  int* nb;       // [B·H]
  const Plan* plan;
  int64_t H;
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

__global__ void __launch_bounds__(kThreads, 4) basis_kernel(BasisArgs A) {
  extern __shared__ float sm[];
  __shared__ float red[kWarps], proj[mkv::kMaxP];
  __shared__ float B[mkv::kMaxP * mkv::kMaxP], W[mkv::kMaxP * mkv::kMaxP], lam[mkv::kMaxP];
  __shared__ int order[mkv::kMaxP];
  __shared__ int ncand;
  const int64_t h = blockIdx.x, d = A.d, dv = A.dv;
  const int p = A.p, tid = threadIdx.x;
  if (!A.plan[uint32_t(h) / uint32_t(A.H)].active) return;  // 32-bit: no 64-bit division subroutine (docs/performance.md §10.3)
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
  Seqs seqs;
  T2 scores;
  T3 v;
  T2 label;
  Moments m;
  int mi;
  float eps;
  const float* basis;
  const int* nb;
  T2 rho;            // per token, the scores' shape (f32)
  double* psum;      // [B·H][nblk]
  int64_t* pcnt;     // [B·H][nblk]
  T2 keys;           // per token, the scores' shape (f32)
  int64_t nblk;
  const Plan* plan;
};

template <bool BATCH>
__device__ __forceinline__ bool alive(const RoundArgs& A, int64_t b, int64_t h, int64_t i, float* score) {
  *score = static_cast<const float*>(A.scores.p)[tok_off<BATCH>(A.seqs, A.scores, b, h, i)];
  return static_cast<const int32_t*>(A.label.p)[tok_off<BATCH>(A.seqs, A.label, b, h, i)] == -1;
}

template <bool BATCH>
__global__ void __launch_bounds__(kThreads) rho_kernel(RoundArgs A) {
  extern __shared__ float bs[];  // [nb][dv]
  __shared__ double wsum[kWarps];
  __shared__ long long wcnt[kWarps];
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, vh = b * A.v.n0 + h, blk = blockIdx.x, dv = A.v.n2;
  const int64_t N = seq_len<BATCH>(A.seqs, b);
  if (!A.plan[b].active || blk * kRowsPerBlock >= N) return;
  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const bool use = A.mi && A.m.n[vh] > 0.f;
  const int nb = use ? A.nb[vh] : 0;
  for (int64_t e = tid; e < int64_t(nb) * dv; e += kThreads) bs[e] = A.basis[vh * (mkv::kMaxR + 1) * dv + e];
  __syncthreads();
  double sum = 0.0;
  long long cnt = 0;
  const int64_t i0 = blk * kRowsPerBlock, i1 = imin(N, i0 + kRowsPerBlock);
  for (int64_t i = i0 + warp; i < i1; i += kWarps) {
    float sc;
    if (!alive<BATCH>(A, b, h, i, &sc) || sc == INFINITY) continue;
    cnt++;
    if (!use) continue;
    const int64_t base = row_off<BATCH>(A.seqs, A.v, b, h, i);
    // pr is indexed by compile-time constants only (unrolled over kMaxR + 1, guarded by nb), so it stays in registers
    float pr[mkv::kMaxR + 1];
#pragma unroll
    for (int r = 0; r < mkv::kMaxR + 1; r++) {
      if (r >= nb) break;
      float t = 0.f;
      for (int64_t c = lane; c < dv; c += kWarp) t += bs[r * dv + c] * load_as_f32(A.v.p, A.v.dtype, base + c * A.v.s2);
      pr[r] = warp_sum(t);
    }
    float q = 0.f;
    for (int64_t c = lane; c < dv; c += kWarp) {
      float w = load_as_f32(A.v.p, A.v.dtype, base + c * A.v.s2);
#pragma unroll
      for (int r = 0; r < mkv::kMaxR + 1; r++) {
        if (r >= nb) break;
        w -= pr[r] * bs[r * dv + c];
      }
      q += w * w;
    }
    const float rho = sqrtf(warp_sum(q));
    if (lane == 0) static_cast<float*>(A.rho.p)[tok_off<BATCH>(A.seqs, A.rho, b, h, i)] = rho;
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
    A.psum[vh * A.nblk + blk] = s;
    A.pcnt[vh * A.nblk + blk] = c;
  }
}

template <bool BATCH>
__global__ void __launch_bounds__(kThreads) key_kernel(RoundArgs A) {
  __shared__ float eps_mean;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, vh = b * A.v.n0 + h;
  const int64_t N = seq_len<BATCH>(A.seqs, b);
  if (!A.plan[b].active || int64_t(blockIdx.x) * blockDim.x >= N) return;
  const bool use = A.mi && A.m.n[vh] > 0.f;
  if (threadIdx.x == 0) {
    double s = 0.0;
    long long c = 0;
    const int64_t nblk = ceil_div(N, kRowsPerBlock);
    for (int64_t q = 0; q < nblk; q++) {
      s += A.psum[vh * A.nblk + q];
      c += A.pcnt[vh * A.nblk + q];
    }
    eps_mean = c > 0 ? float(double(A.eps) * (s / double(c))) : 0.f;
  }
  __syncthreads();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  float sc;
  float key;
  if (!alive<BATCH>(A, b, h, i, &sc)) key = __int_as_float(0x7fc00000);  // evicted earlier: NaN ranks lowest
  else if (sc == INFINITY || !use) key = mkv::candidate_key(sc);
  else key = mkv::candidate_key(
        mkv::mi_key(sc, static_cast<const float*>(A.rho.p)[tok_off<BATCH>(A.seqs, A.rho, b, h, i)], eps_mean));
  static_cast<float*>(A.keys.p)[tok_off<BATCH>(A.seqs, A.keys, b, h, i)] = key;
}

// Alive tokens that the round's selection (per-row radix states over the round's keys) did not keep get the round
// number; rows of the sequences whose selection is final keep their state for the collect.
template <bool BATCH>
__global__ void label_kernel(sel::Keys c, T2 label, const sel::State* st, sel::State* final_st, const Plan* plan,
                             int32_t round) {
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const Plan p = plan[b];
  if (!p.active) return;
  const sel::State s = st[b * c.H + h];
  if (i == 0 && p.last) final_st[b * c.H + h] = s;
  const int64_t n = seq_len<BATCH>(c.seqs, b);
  if (i >= n) return;
  int32_t* L = static_cast<int32_t*>(label.p) + tok_off<BATCH>(c.seqs, label, b, h, i);
  if (*L != -1) return;
  if (!sel::kept(sel::key_at<BATCH>(c, b, h, i, n), s)) *L = round;
}

// A per-token f32 scratch tensor of the scores' shape (contiguous): [H, N] (or [H, T] ragged), [B, H, L] otherwise.
T2 token_scratch(void* p, int dtype, const Seqs& sq, int64_t H) {
  const int64_t L = sq.r.t.layout == kSeqsRagged ? sq.r.rows : sq.r.max_len;
  T2 t{p, dtype, H, L, L, 1};
  t.sq = sq.r.t.layout == kSeqsRagged ? 0 : H * L;
  return t;
}
int64_t token_scratch_size(const Seqs& sq, int64_t H) {
  return sq.r.t.layout == kSeqsRagged ? H * sq.r.rows : sq.B * H * sq.r.max_len;
}

// Both forms: a plain [H, N] call is the batch of one padded sequence (BATCH false: its own addressing).
template <bool BATCH>
cudaError_t run(const Seqs& seqs, const T2& scores, const T3& keys, const T3& values, const MkvSelectParams& p,
                const int32_t* keep, int64_t keep_s, const T2& indices, const T2& counts, const Moments& m,
                const T2* evicted_round, cudaStream_t stream) {
  const int64_t H = values.n0, N = seqs.r.max_len, d = keys.n2, dv = values.n2, B = seqs.B, BH = B * H;
  if (dv > kSelectMaxDv || d > kMaxHeadDim) return cudaErrorInvalidValue;
  if (H > 65535 || B > 65535 || N >= (int64_t(1) << 31)) return cudaErrorInvalidConfiguration;
  if (BH == 0) return cudaSuccess;
  const int rounds = p.mi ? p.rounds : 1;
  const int pp = mkv::subspace_p(dv, p.r);
  const int64_t nblk = imax(1, ceil_div(N, kRowsPerBlock));
  const int64_t ntok = token_scratch_size(seqs, H);
  // Scratch: label (unless given), rho, keys, S, basis, inv, nb, partial sums/counts, plans, K, radix states.
  const size_t f_label = evicted_round ? 0 : size_t(ntok);
  const size_t bytes = (f_label + 2 * size_t(ntok) + size_t(BH * dv * dv) + size_t(BH * (mkv::kMaxR + 1) * dv) +
                        size_t(BH)) * 4 + size_t(BH) * 4 + size_t(BH * nblk) * 16 + size_t(B) * (sizeof(Plan) + 4) +
                       size_t(2 * BH) * sizeof(sel::State) + 256;
  Scratch ws(bytes, stream);
  KVT_CU_TRY(ws.error());
  char* base = ws.as<char>();
  auto take = [&](size_t n) {
    char* r = base;
    base += (n + 15) / 16 * 16;
    return r;
  };
  double* psum = reinterpret_cast<double*>(take(size_t(BH * nblk) * 8));
  int64_t* pcnt = reinterpret_cast<int64_t*>(take(size_t(BH * nblk) * 8));
  sel::State* st = reinterpret_cast<sel::State*>(take(size_t(BH) * sizeof(sel::State)));
  sel::State* final_st = reinterpret_cast<sel::State*>(take(size_t(BH) * sizeof(sel::State)));
  int32_t* label_buf = evicted_round ? nullptr : reinterpret_cast<int32_t*>(take(f_label * 4));
  float* rho = reinterpret_cast<float*>(take(size_t(ntok) * 4));
  float* keyb = reinterpret_cast<float*>(take(size_t(ntok) * 4));
  float* S = reinterpret_cast<float*>(take(size_t(BH * dv * dv) * 4));
  float* basis = reinterpret_cast<float*>(take(size_t(BH * (mkv::kMaxR + 1) * dv) * 4));
  float* inv = reinterpret_cast<float*>(take(size_t(BH) * 4));
  int* nb = reinterpret_cast<int*>(take(size_t(BH) * 4));
  Plan* plan = reinterpret_cast<Plan*>(take(size_t(B) * sizeof(Plan)));
  int32_t* K = reinterpret_cast<int32_t*>(take(size_t(B) * 4));
  const T2 label = evicted_round ? *evicted_round : token_scratch(label_buf, kI32, seqs, H);
  const T2 key_t = token_scratch(keyb, kF32, seqs, H);
  const dim3 rows_grid(unsigned(imax(1, ceil_div(N, 256))), unsigned(H), unsigned(B));
  fill_kernel<BATCH><<<rows_grid, 256, 0, stream>>>(seqs, label, -1, final_st, H);
  KVT_CU_TRY(cudaGetLastError());
  const SelArgs sa{seqs, H, keep, keep_s, p.keep, rounds};
  RoundArgs R{seqs, scores, values, label, m, p.mi, p.eps, basis, nb, token_scratch(rho, kF32, seqs, H), psum, pcnt,
              key_t, nblk, plan};
  BasisArgs Ba{m, d, dv, p.r, pp, p.mi, inv, S, basis, nb, plan, H};
  const sel::Keys kc{key_t, seqs, H, H, 0, 0, 0, nullptr};
  const size_t basis_smem = size_t(2 * dv * pp + dv + (mkv::kMaxR + 1) * dv) * sizeof(float);
  if (basis_smem > 48 * 1024) KVT_CU_TRY(cudaFuncSetAttribute(basis_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(basis_smem)));
  const RowSel merged{2, T2{nullptr, kI32, 0, 0, 0, 0}, T2{nullptr, kI32, 0, 0, 0, 0}, label, 0};
  for (int rd = 0; rd < rounds; rd++) {
    plan_kernel<<<unsigned(ceil_div(B, 128)), 128, 0, stream>>>(sa, rd, plan, K);
    KVT_CU_TRY(cudaGetLastError());
    if (p.mi) {
      if (p.r > 0) {
        maxabs_kernel<<<unsigned(BH), kThreads, 0, stream>>>(m, d, dv, inv, plan, H);
        KVT_CU_TRY(cudaGetLastError());
        gram_kernel<<<dim3(unsigned(ceil_div(dv, 16)), unsigned(ceil_div(dv, 16)), unsigned(BH)), dim3(16, 16), 0, stream>>>(
            m, d, dv, inv, S, plan, H);
        KVT_CU_TRY(cudaGetLastError());
      }
      basis_kernel<<<unsigned(BH), kThreads, basis_smem, stream>>>(Ba);
      KVT_CU_TRY(cudaGetLastError());
    }
    rho_kernel<BATCH><<<dim3(unsigned(nblk), unsigned(H), unsigned(B)), kThreads,
                        size_t((mkv::kMaxR + 1) * dv) * sizeof(float), stream>>>(R);
    KVT_CU_TRY(cudaGetLastError());
    key_kernel<BATCH><<<dim3(unsigned(imax(1, ceil_div(N, kThreads))), unsigned(H), unsigned(B)), kThreads, 0, stream>>>(R);
    KVT_CU_TRY(cudaGetLastError());
    KVT_CU_TRY(sel::radix_select<BATCH>(kc, true, sel::Budget{K, 1, 0, 0, sel::kUniform}, st, stream));
    label_kernel<BATCH><<<rows_grid, 256, 0, stream>>>(kc, label, st, final_st, plan, rd);
    KVT_CU_TRY(cudaGetLastError());
    RowSel mr = merged;
    mr.value = rd;
    KVT_CU_TRY(BATCH ? moments_merge_batched(seqs, keys, values, mr, m, stream) : moments_merge(keys, values, mr, m, stream));
  }
  // The final selections: scores of the last round (rounds of a sequence without excess: everything) per row.
  return sel::collect<BATCH>(kc, true, final_st, indices, counts, stream);
}

}  // namespace

cudaError_t momentkv_select(const T2& scores, const T3& keys, const T3& values, const MkvSelectParams& p,
                            const T2& indices, const T2& counts, const Moments& m, const T2* evicted_round,
                            cudaStream_t stream) {
  return run<false>(dense_seqs(scores.n1), scores, keys, values, p, nullptr, 1, indices, counts, m, evicted_round, stream);
}

cudaError_t momentkv_select_batched(const Seqs& seqs, const T2& scores, const T3& keys, const T3& values,
                                    const MkvSelectParams& p, const int32_t* keep, int64_t keep_s, const T2& indices,
                                    const T2& counts, const Moments& m, const T2* evicted_round, cudaStream_t stream) {
  return run<true>(seqs, scores, keys, values, p, keep, keep_s, indices, counts, m, evicted_round, stream);
}

}  // namespace cuda
}  // namespace kvt
