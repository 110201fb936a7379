// NestedKV scoring on CUDA (docs/methods/nestedkv.md §3; docs/performance.md §5.1): two streaming passes over K, then
// small statistics kernels over the [3, H, N] f32 raw anomalies (L2-resident), no host synchronisation.
//
//   pass 1  (reads K once)  warp per contiguous row range: ‖k‖ -> inv_norm [H, N]; k̂ in 32.32 fixed point summed
//                           per block and per head with int64 atomics (exact, so the order does not matter).
//   pass 2  (reads K again) warp per contiguous row range: anchors from the exact sums (block anchor reloaded at
//                           block changes), the causal window sum carried along the rows in two f32 accumulators
//                           (math/nestedkv.h; the subtracted row i-W was read W rows earlier and is re-read from
//                           L1/L2), three cosines per row -> raw [3, H, N], per-(scale, head) min/max (atomics on
//                           order-preserving keys).
//   radix   (4 launches)    exact m-th largest and m-th smallest raw value per (scale, head): 8-bit digits over the
//                           32-bit order keys, both tails in one read per round; the last block of a round picks
//                           the digit (atomic ticket), as in select.cu.
//   stats   (1 launch)      tail sums of ã and the surprise sum/min/max per head (fixed-point atomics); the last
//                           block of a head turns them into the head's blend weights and surprise normalisation.
//   final   (1 launch)      a* per token (shared token_score), sinks +Infinity, strided output; NaN everywhere for a
//                           head whose keys hold a non-finite value (flagged by pass 1, math/nestedkv.h).
// The 'global' ablation runs pass 1, a cosine-only pass 2 and the final kernel.
// Batched (docs/runtime-caches.md §6): the grid's z dimension runs over the sequences, each with its own length, block
// size and tail count (Geo, from the table on the device), its rows read in place; the per-token scratch is compact
// (seq_token_offsets). Every reduction is exact or per row, so a sequence's scores do not depend on how its rows are
// chunked: they equal the per-sequence op's on a contiguous copy (same element-to-lane assignment of the rows).
#include <tuple>
#include <type_traits>

#include "common.cuh"
#include "dispatch.cuh"
#include "math/nestedkv.h"

namespace kvt {
namespace cuda {
namespace {

using namespace nkv;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int kBins = 256;
constexpr int kRounds = 4;
constexpr unsigned kFull = 0xffffffffu;

struct Ctx {
  T3 k;
  Seqs seqs;
  int64_t H, N, d, W, b, nb, sinks, m;  // N, b, nb, m: of a plain tensor (a batch's are per sequence, Geo)
  int global;
  bool vec;            // vector loads allowed (a batch: rows aligned)
  int64_t block_opt;   // batch: the block size option (0: default_block(n_b)), the smallest block, the tail fraction
  int64_t block_min;
  int64_t rpw;         // a plain tensor's rows per warp (passes 1/2; set by the host, a batch's are per sequence)
  double tail;
  const int64_t* tok0;  // batch: [B + 1] compact token offsets (seq_token_offsets)
  int64_t tot;         // tokens of the per-token scratch (N, or seq_token_bound)
  // workspace
  float* inv_norm;     // [tokens][H]: per sequence [H, n_b] at tok0·H
  long long* bsum;     // per sequence [H, nb, d] fixed-point block sums of k̂ (at blk0·H·d)
  long long* gsum;     // [B·H, d] fixed-point head sums
  float* raw;          // [3][tot·H]: per sequence [H, n_b] at tok0·H
  unsigned* mm;        // [3, B·H, 2]: (~key of min, key of max), atomicMax
  unsigned* bad;       // [B·H]: nonzero when a k̂ element of the (virtual) head is not finite
};

// Contiguous rows per warp of pass 1/2 for a head of n tokens: about four blocks per SM of the reference device
// (kRefSMs) over the layer, at least 64 rows; a multiple of W when W is short (window-state initialisation then reads
// exactly one chunk).
__host__ __device__ __forceinline__ int64_t rows_per_warp(int64_t H, int64_t n, int64_t W, int global) {
  int64_t rpw = imax(64, ceil_div(H * n, kRefSMs * 4 * kWarps));
  if (!global && W <= rpw) rpw = ceil_div(rpw, W) * W;
  return rpw;
}

// One sequence of the call: length, episodic block size and count, tail count, offsets of its per-token scratch
// (tok0) and block sums (blk0), rows per warp.
struct Geo {
  int64_t n, blk, nb, m, tok0, blk0, rpw;
};
template <bool BATCH>
__device__ __forceinline__ Geo geo(const Ctx& c, int64_t b) {
  Geo g;
  if constexpr (!BATCH) {
    g.n = c.N;
    g.blk = c.b;
    g.nb = c.nb;
    g.m = c.m;
    g.tok0 = g.blk0 = 0;
  } else {
    g.tok0 = c.tok0[b];
    g.n = c.tok0[b + 1] - g.tok0;
    g.blk = c.block_opt > 0 ? c.block_opt : default_block(g.n);
    g.nb = ceil_div(g.n, g.blk);
    g.m = tail_count(c.tail, g.n);
    g.blk0 = g.tok0 / c.block_min + b;  // sum over earlier sequences of ceil(n / blk) <= tok0 / block_min + b
  }
  // a plain tensor: the host's rows per warp (no division here, the per-sequence op's registers)
  g.rpw = BATCH ? rows_per_warp(c.H, g.n, c.W, c.global) : c.rpw;
  return g;
}
// Index of token i of head h in the per-token scratch.
__device__ __forceinline__ int64_t tix(const Ctx& c, const Geo& g, int64_t h, int64_t i) {
  return g.tok0 * c.H + h * g.n + i;
}

// Element c of the lane-owned slot (j, v).
template <int V>
__device__ __forceinline__ int64_t elem(int j, int v, int lane) {
  return (int64_t(j) * kWarp + lane) * V + v;
}

// Loads row (b, h, i) into registers: V*STEPS values per lane (zeros beyond d).
template <bool BATCH, int DT, int V, int STEPS>
__device__ __forceinline__ void load_key(const Ctx& c, int64_t b, int64_t h, int64_t i, int lane, float* x) {
  constexpr int ES = DT == kF32 ? 4 : 2;
  const char* row = static_cast<const char*>(c.k.p) + row_off<BATCH>(c.seqs, c.k, b, h, i) * ES;
  warp_load_row<DT, V, STEPS>(row, c.k.n2, c.k.s2, lane, x, !BATCH || c.vec);
}

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Sums four per-lane values over the warp (butterfly: 10 shuffles instead of 20); every lane gets all four.
__device__ __forceinline__ void warp_sum4(float& a, float& b, float& c, float& e, int lane) {
  const bool u16 = lane & 16;
  float k0 = u16 ? c : a, k1 = u16 ? e : b;
  const float s0 = u16 ? a : c, s1 = u16 ? b : e;
  k0 += __shfl_xor_sync(kFull, s0, 16);
  k1 += __shfl_xor_sync(kFull, s1, 16);
  const bool u8 = lane & 8;
  float k = u8 ? k1 : k0;
  const float s = u8 ? k0 : k1;
  k += __shfl_xor_sync(kFull, s, 8);
  k += __shfl_xor_sync(kFull, k, 4);
  k += __shfl_xor_sync(kFull, k, 2);
  k += __shfl_xor_sync(kFull, k, 1);
  // lanes 0-7 hold a, 8-15 b, 16-23 c, 24-31 e
  a = __shfl_sync(kFull, k, 0);
  b = __shfl_sync(kFull, k, 8);
  c = __shfl_sync(kFull, k, 16);
  e = __shfl_sync(kFull, k, 24);
}

// ---------------------------------------------------------------------------------------------------------
// Pass 1: inverse norms and exact fixed-point block / head sums of k̂.
template <bool BATCH, int DT, int V, int STEPS>
__global__ void __launch_bounds__(kThreads) pass1_kernel(Ctx c) {
  constexpr int VS = V * STEPS;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, vh = b * c.H + h;
  const Geo g = geo<BATCH>(c, b);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t r0 = (int64_t(blockIdx.x) * kWarps + warp) * g.rpw;
  const int64_t r1 = imin(g.n, r0 + g.rpw);
  if (r0 >= r1) return;
  long long acc[VS];
#pragma unroll
  for (int j = 0; j < VS; j++) acc[j] = 0;
  int64_t blk = r0 / g.blk;
  auto flush = [&](int64_t bk) {
#pragma unroll
    for (int j = 0; j < STEPS; j++)
#pragma unroll
      for (int v = 0; v < V; v++) {
        const int64_t e = elem<V>(j, v, lane);
        if (e < c.d && acc[j * V + v] != 0) {
          if (!c.global)
            atomicAdd(reinterpret_cast<unsigned long long*>(&c.bsum[((g.blk0 * c.H) + h * g.nb + bk) * c.d + e]),
                      static_cast<unsigned long long>(acc[j * V + v]));
          atomicAdd(reinterpret_cast<unsigned long long*>(&c.gsum[vh * c.d + e]),
                    static_cast<unsigned long long>(acc[j * V + v]));
        }
        acc[j * V + v] = 0;
      }
  };
  float x[VS], xn[VS];
  bool finite = true;
  load_key<BATCH, DT, V, STEPS>(c, b, h, r0, lane, x);
  for (int64_t i = r0; i < r1; i++) {
    if (i + 1 < r1) load_key<BATCH, DT, V, STEPS>(c, b, h, i + 1, lane, xn);  // prefetch the next row
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < VS; j++) ss = fmaf(x[j], x[j], ss);
    const float inv = inv_norm_clamped(warp_sum(ss));
    if (lane == 0) c.inv_norm[tix(c, g, h, i)] = inv;
    if (i / g.blk != blk) {
      flush(blk);
      blk = i / g.blk;
    }
#pragma unroll
    for (int j = 0; j < VS; j++) {
      const float kh = fmul(x[j], inv);
      finite &= finite_f(kh);
      acc[j] += to_fixed(kh);
    }
#pragma unroll
    for (int j = 0; j < VS; j++) x[j] = xn[j];
  }
  flush(blk);
  if (__any_sync(kFull, !finite) && lane == 0) atomicOr(&c.bad[vh], 1u);
}

// ---------------------------------------------------------------------------------------------------------
// Pass 2: raw anomalies a_s, a_e, a_c and their per-(scale, head) min / max.

// k̂ of row (b, h, i) in registers (inverse norm from pass 1).
template <bool BATCH, int DT, int V, int STEPS>
__device__ __forceinline__ void load_khat(const Ctx& c, const Geo& g, int64_t b, int64_t h, int64_t i, int lane, float* y) {
  constexpr int VS = V * STEPS;
  load_key<BATCH, DT, V, STEPS>(c, b, h, i, lane, y);
  const float inv = c.inv_norm[tix(c, g, h, i)];
#pragma unroll
  for (int j = 0; j < VS; j++) y[j] = fmul(y[j], inv);
}

// A lane's anchor slots in shared memory (d > 256: pass2_kernel's register arrays of 32 slots would spill): slot i of
// the lane at p[i * 32]; every lane reads and writes only its own slots.
struct LaneSlots {
  float* p;
  __device__ __forceinline__ float& operator[](int i) const { return p[i * kWarp]; }
};
constexpr int kLargeVS = 8;  // V * STEPS above this: d > 256

// Anchor vector (lane slice) from a fixed-point sum, and its norm (double, fixed order) rounded to f32. `mu`: the
// lane's register array, or its LaneSlots.
template <int V, int STEPS, typename M>
__device__ __forceinline__ float load_anchor(const long long* sum, int64_t d, int lane, M mu) {
  double nn = 0;
#pragma unroll
  for (int j = 0; j < STEPS; j++)
#pragma unroll
    for (int v = 0; v < V; v++) {
      const int64_t e = elem<V>(j, v, lane);
      const float m = e < d ? from_fixed(sum[e]) : 0.f;
      mu[j * V + v] = m;
      nn += double(m) * double(m);
    }
  return float(sqrt(warp_sum_d(nn)));
}

template <bool BATCH, int DT, int V, int STEPS>
__global__ void __launch_bounds__(kThreads, (V * STEPS <= 4) ? 3 : (V * STEPS <= kLargeVS ? 2 : 1)) pass2_kernel(Ctx c) {
  constexpr int VS = V * STEPS;
  // d > 256: the two anchors live in shared memory (dynamic, [kWarps][2][VS][32]) and the next row is not prefetched,
  // so the four remaining register arrays fit without spilling; the arithmetic is the same.
  constexpr bool kLarge = VS > kLargeVS;
  extern __shared__ float lane_slots[];
  __shared__ float red_lo[3][kWarps], red_hi[3][kWarps];
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, vh = b * c.H + h, BH = c.seqs.B * c.H;
  const Geo g = geo<BATCH>(c, b);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t r0 = (int64_t(blockIdx.x) * kWarps + warp) * g.rpw;
  const int64_t r1 = imin(g.n, r0 + g.rpw);
  float lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  if (r0 < r1) {
    const int64_t HN = c.H * c.tot, W = c.W;
    float mus_r[kLarge ? 1 : VS], mue_r[kLarge ? 1 : VS], A[VS], B[VS], x[VS], y[VS], xn[kLarge ? 1 : VS],
        yn[kLarge ? 1 : VS];
    using Anchor = std::conditional_t<kLarge, LaneSlots, float*>;
    Anchor mus, mue;
    if constexpr (kLarge) {
      mus = LaneSlots{lane_slots + size_t(warp * 2) * VS * kWarp + lane};
      mue = LaneSlots{lane_slots + size_t(warp * 2 + 1) * VS * kWarp + lane};
    } else {
      mus = mus_r;
      mue = mue_r;
    }
    const float nrm_s = load_anchor<V, STEPS>(c.gsum + vh * c.d, c.d, lane, mus);
    int64_t blk = -1;
    float nrm_e = 0.f, cnt_e = 0.f;
#pragma unroll
    for (int j = 0; j < VS; j++) A[j] = B[j] = 0.f;
    if (!c.global) {
      // Window state before row r0 (same operation sequence as the CPU backend, math/nestedkv.h).
      const int64_t ch = r0 / W;
      if (ch >= 1)
        for (int64_t q = (ch - 1) * W; q < ch * W; q++) {
          load_khat<BATCH, DT, V, STEPS>(c, g, b, h, q, lane, y);
#pragma unroll
          for (int j = 0; j < VS; j++) A[j] = fadd(A[j], y[j]);
        }
      if (r0 != ch * W) {
#pragma unroll
        for (int j = 0; j < VS; j++) {
          B[j] = A[j];
          A[j] = 0.f;
        }
        if (ch >= 1)
          for (int64_t q = (ch - 1) * W; q <= r0 - 1 - W; q++) {
            load_khat<BATCH, DT, V, STEPS>(c, g, b, h, q, lane, y);
#pragma unroll
            for (int j = 0; j < VS; j++) B[j] = fsub(B[j], y[j]);
          }
        for (int64_t q = ch * W; q < r0; q++) {
          load_khat<BATCH, DT, V, STEPS>(c, g, b, h, q, lane, y);
#pragma unroll
          for (int j = 0; j < VS; j++) A[j] = fadd(A[j], y[j]);
        }
      }
    }
    float* raw_s = c.raw + tix(c, g, h, 0);
    float* raw_e = raw_s + HN;
    float* raw_c = raw_s + 2 * HN;
    // Row i and the row leaving the window (i - W), with their inverse norms; row i + 1 is prefetched.
    float inv = 0.f, invy = 0.f, invn = 0.f, invyn = 0.f;
    auto fetch = [&](int64_t i, float* xa, float* ya, float& ia, float& iya) {
      load_key<BATCH, DT, V, STEPS>(c, b, h, i, lane, xa);
      ia = c.inv_norm[tix(c, g, h, i)];
      if (!c.global && i >= W) {
        load_key<BATCH, DT, V, STEPS>(c, b, h, i - W, lane, ya);
        iya = c.inv_norm[tix(c, g, h, i - W)];
      }
    };
    if constexpr (!kLarge) fetch(r0, x, y, inv, invy);
    for (int64_t i = r0; i < r1; i++) {
      if constexpr (kLarge) fetch(i, x, y, inv, invy);
      else if (i + 1 < r1) fetch(i + 1, xn, yn, invn, invyn);
      float ps = 0.f, pe = 0.f, pc = 0.f, nc = 0.f;
      if (c.global) {
#pragma unroll
        for (int j = 0; j < VS; j++) ps = fmaf(x[j], mus[j], ps);
        ps = warp_sum(ps);
      } else {
        if (i / g.blk != blk) {  // block change: reload the episodic anchor
          blk = i / g.blk;
          nrm_e = load_anchor<V, STEPS>(c.bsum + ((g.blk0 * c.H) + h * g.nb + blk) * c.d, c.d, lane, mue);
          cnt_e = float(imin(g.blk, g.n - blk * g.blk));
        }
        if (i > 0 && i % W == 0) {
#pragma unroll
          for (int j = 0; j < VS; j++) {
            B[j] = A[j];
            A[j] = 0.f;
          }
        }
        if (i >= W) {
#pragma unroll
          for (int j = 0; j < VS; j++) B[j] = fsub(B[j], fmul(y[j], invy));
        }
#pragma unroll
        for (int j = 0; j < VS; j++) {
          A[j] = fadd(A[j], fmul(x[j], inv));
          const float s = fadd(A[j], B[j]);
          ps = fmaf(x[j], mus[j], ps);
          pe = fmaf(x[j], mue[j], pe);
          pc = fmaf(x[j], s, pc);
          nc = fmaf(s, s, nc);
        }
        warp_sum4(ps, pe, pc, nc, lane);
      }
      const float as = anchor_neg_cos(ps * inv, nrm_s, float(g.n));
      lo[0] = fminf(lo[0], as);
      hi[0] = fmaxf(hi[0], as);
      if (lane == 0) raw_s[i] = as;
      if (!c.global) {
        const float ae = anchor_neg_cos(pe * inv, nrm_e, cnt_e);
        const float ac = anchor_neg_cos(pc * inv, sqrtf(nc), float(imin(i + 1, W)));
        lo[1] = fminf(lo[1], ae);
        hi[1] = fmaxf(hi[1], ae);
        lo[2] = fminf(lo[2], ac);
        hi[2] = fmaxf(hi[2], ac);
        if (lane == 0) {
          raw_e[i] = ae;
          raw_c[i] = ac;
        }
      }
      if constexpr (!kLarge) {
#pragma unroll
        for (int j = 0; j < VS; j++) {
          x[j] = xn[j];
          y[j] = yn[j];
        }
        inv = invn;
        invy = invyn;
      }
    }
  }
  if (lane == 0)
    for (int x = 0; x < 3; x++) {
      red_lo[x][warp] = lo[x];
      red_hi[x][warp] = hi[x];
    }
  __syncthreads();
  if (threadIdx.x < 3) {
    const int x = threadIdx.x;
    if (c.global && x > 0) return;
    float l = INFINITY, u = -INFINITY;
    for (int w = 0; w < kWarps; w++) {
      l = fminf(l, red_lo[x][w]);
      u = fmaxf(u, red_hi[x][w]);
    }
    if (l <= u) {
      atomicMax(&c.mm[(x * BH + vh) * 2 + 0], ~order_key(l));
      atomicMax(&c.mm[(x * BH + vh) * 2 + 1], order_key(u));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Exact tail thresholds: per group g = (x*B*H + b*H + h)*2 + side, the k-th largest order key of raw[x][b, h][:] with
// k = m (side 0, top) or k = N - m + 1 (side 1, i.e. the m-th smallest). Grid (blocks, 3·H, B); every block of a
// row takes a ticket (blocks past the row's tokens count nothing).
struct Radix {
  unsigned prefix;    // digits found so far (bits = 8 * round)
  unsigned consumed;  // elements known to be larger than the prefix bucket
};

template <bool BATCH>
__global__ void __launch_bounds__(kThreads) radix_kernel(Ctx c, int r, Radix* st, unsigned* hist, unsigned* tickets) {
  __shared__ unsigned sh[2][kBins];
  __shared__ unsigned warp_tot[kWarps];
  __shared__ bool last;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, xs = blockIdx.y / c.H, h = blockIdx.y % c.H;
  const Geo g = geo<BATCH>(c, b);
  if (g.n == 0) return;
  const int64_t N = g.n, m = g.m, row = xs * c.seqs.B * c.H + b * c.H + h;
  const Radix s0 = st[row * 2], s1 = st[row * 2 + 1];
  for (int q = threadIdx.x; q < 2 * kBins; q += kThreads) (&sh[0][0])[q] = 0;
  __syncthreads();
  const int hi_shift = 32 - 8 * r, shift = 24 - 8 * r;
  const float* x = c.raw + xs * c.H * c.tot + tix(c, g, h, 0);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < N; i += int64_t(gridDim.x) * kThreads) {
    const unsigned key = order_key(x[i]);
    const unsigned dig = (key >> shift) & 0xffu;
    if (r == 0 || (key >> hi_shift) == s0.prefix) atomicAdd(&sh[0][dig], 1u);
    if (r == 0 || (key >> hi_shift) == s1.prefix) atomicAdd(&sh[1][dig], 1u);
  }
  __syncthreads();
  for (int q = threadIdx.x; q < 2 * kBins; q += kThreads) {
    const int side = q / kBins, bin = q % kBins;
    if (sh[side][bin]) atomicAdd(&hist[((row * 2 + side) * kRounds + r) * kBins + bin], sh[side][bin]);
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&tickets[row * kRounds + r], 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;  // uniform across the block
  __threadfence();
  // the digit of each tail, picked by the whole block (block_radix_pick); both tails' bins are loaded first (one L2
  // round trip)
  static_assert(kThreads == kBins, "the pick gives one bin to each thread");
  const unsigned cnt[2] = {radix_bin<kThreads>(hist + ((row * 2 + 0) * kRounds + r) * kBins),
                           radix_bin<kThreads>(hist + ((row * 2 + 1) * kRounds + r) * kBins)};
#pragma unroll
  for (int side = 0; side < 2; side++) {
    Radix s = side ? s1 : s0;
    const unsigned k = unsigned(side ? N - m + 1 : m);
    unsigned digit, above;
    if (block_radix_pick<kThreads>(cnt[side], s.consumed, k, warp_tot, &digit, &above) != kIdle) {
      s.consumed = above;
      s.prefix = (s.prefix << 8) | digit;
      st[row * 2 + side] = s;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Statistics of the outer learner per head (fixed-point sums, exact), and the head parameters.
struct Stats {
  unsigned long long sum_gt[3], sum_lt[3], sum_s;
  unsigned cnt_gt[3], cnt_lt[3];
  unsigned s_lo_inv, s_hi;  // ~key of the min surprise, key of the max (atomicMax)
  unsigned ticket;
};

struct Learner {
  const double* prior;
  double beta;
};

// Min / max of scale x of virtual head vh (of BH).
__device__ __forceinline__ MinMax head_minmax(const unsigned* mm, int64_t BH, int x, int64_t vh) {
  const unsigned lo = ~mm[(x * BH + vh) * 2], hi = mm[(x * BH + vh) * 2 + 1];
  return make_minmax(key_value(lo), key_value(hi));
}

template <typename T>
__device__ __forceinline__ T block_sum(T v, T* sh) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  __syncthreads();
  if (threadIdx.x % kWarp == 0) sh[threadIdx.x / kWarp] = v;
  __syncthreads();
  T t = 0;
  for (int w = 0; w < kWarps; w++) t += sh[w];
  return t;
}

__device__ __forceinline__ unsigned block_max(unsigned v, unsigned* sh) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if (threadIdx.x % kWarp == 0) sh[threadIdx.x / kWarp] = v;
  __syncthreads();
  unsigned t = 0;
  for (int w = 0; w < kWarps; w++) t = max(t, sh[w]);
  return t;
}

struct HeadArgs {
  double prior[3];
  double beta;
};

template <bool BATCH>
__global__ void __launch_bounds__(kThreads) stats_kernel(Ctx c, const Radix* st, HeadArgs ha, Stats* stats,
                                                         HeadParams* params) {
  __shared__ unsigned long long sh64[kWarps];
  __shared__ unsigned sh32[kWarps];
  __shared__ bool last;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, vh = b * c.H + h, BH = c.seqs.B * c.H, HN = c.H * c.tot;
  const Geo g = geo<BATCH>(c, b);
  if (g.n == 0) return;
  const int64_t N = g.n, m = g.m;
  const float* raw = c.raw + tix(c, g, h, 0);
  const unsigned* mm = c.mm;
  MinMax mmx[3];
  unsigned top[3], bot[3];
  for (int x = 0; x < 3; x++) {
    mmx[x] = head_minmax(mm, BH, x, vh);
    top[x] = st[(x * BH + vh) * 2].prefix;
    bot[x] = st[(x * BH + vh) * 2 + 1].prefix;
  }
  unsigned long long sgt[3] = {0, 0, 0}, slt[3] = {0, 0, 0}, ss = 0;
  unsigned cgt[3] = {0, 0, 0}, clt[3] = {0, 0, 0}, slo_inv = 0, shi = 0;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < N; i += int64_t(gridDim.x) * kThreads) {
    float t[3];
    for (int x = 0; x < 3; x++) {
      const float a = raw[x * HN + i];
      const unsigned key = order_key(a);
      t[x] = apply_minmax(a, mmx[x]);
      if (key > top[x]) {
        sgt[x] += to_ufixed(t[x]);
        cgt[x]++;
      }
      if (key < bot[x]) {
        slt[x] += to_ufixed(t[x]);
        clt[x]++;
      }
    }
    const float s = spread3(t[0], t[1], t[2]);
    const unsigned ks = order_key(s);
    slo_inv = max(slo_inv, ~ks);
    shi = max(shi, ks);
    ss += to_ufixed(s);
  }
  Stats& o = stats[vh];
  for (int x = 0; x < 3; x++) {
    const unsigned long long a = block_sum(sgt[x], sh64), b = block_sum(slt[x], sh64);
    const unsigned ca = block_sum(cgt[x], sh32), cb = block_sum(clt[x], sh32);
    if (threadIdx.x == 0) {
      if (a) atomicAdd(&o.sum_gt[x], a);
      if (b) atomicAdd(&o.sum_lt[x], b);
      if (ca) atomicAdd(&o.cnt_gt[x], ca);
      if (cb) atomicAdd(&o.cnt_lt[x], cb);
    }
  }
  const unsigned long long tss = block_sum(ss, sh64);
  const unsigned tlo = block_max(slo_inv, sh32), thi = block_max(shi, sh32);
  if (threadIdx.x == 0) {
    if (tss) atomicAdd(&o.sum_s, tss);
    atomicMax(&o.s_lo_inv, tlo);
    atomicMax(&o.s_hi, thi);
    __threadfence();
    last = atomicAdd(&o.ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last || threadIdx.x != 0) return;
  __threadfence();
  // Last block of this head: turn the (now complete) sums into the head parameters.
  const volatile Stats& v = o;
  HeadStats hs;
  float rlo[3], rhi[3];
  for (int x = 0; x < 3; x++) {
    hs.key_top[x] = top[x];
    hs.key_bot[x] = bot[x];
    hs.sum_gt[x] = v.sum_gt[x];
    hs.sum_lt[x] = v.sum_lt[x];
    hs.cnt_gt[x] = v.cnt_gt[x];
    hs.cnt_lt[x] = v.cnt_lt[x];
    rlo[x] = key_value(~mm[(x * BH + vh) * 2]);
    rhi[x] = key_value(mm[(x * BH + vh) * 2 + 1]);
  }
  hs.sum_s = v.sum_s;
  hs.s_lo_key = ~v.s_lo_inv;
  hs.s_hi_key = v.s_hi;
  params[vh] = head_params(rlo, rhi, hs, N, m, ha.prior, ha.beta, false);
}

// Final score per token.
template <bool BATCH>
__global__ void __launch_bounds__(kThreads) final_kernel(Ctx c, const HeadParams* params, float tau, float kappa, T2 out) {
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y, vh = b * c.H + h, HN = c.H * c.tot;
  const Geo g = geo<BATCH>(c, b);
  const int64_t N = g.n;
  const int global = c.global;
  const float* raw = c.raw + tix(c, g, h, 0);
  const unsigned* mm = c.mm;
  const bool bad = c.bad[vh] != 0;
  HeadParams p;
  if (N == 0) return;
  if (global) {
    const float rlo[3] = {key_value(~mm[vh * 2]), 0.f, 0.f}, rhi[3] = {key_value(mm[vh * 2 + 1]), 0.f, 0.f};
    const double prior[3] = {1, 0, 0};
    p = head_params(rlo, rhi, HeadStats{}, N, 1, prior, 0.0, true);
  } else {
    p = params[vh];
  }
  float* o = static_cast<float*>(out.p);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < N; i += int64_t(gridDim.x) * kThreads) {
    const float as = raw[i];
    const float v = bad ? NAN
                    : i < c.sinks ? INFINITY
                                  : token_score(as, global ? 0.f : raw[HN + i], global ? 0.f : raw[2 * HN + i], p, tau,
                                                kappa, global != 0);
    o[tok_off<BATCH>(c.seqs, out, b, h, i)] = v;
  }
}

// ---------------------------------------------------------------------------------------------------------
template <bool BATCH>
struct Launch {
  Ctx c;
  cudaStream_t stream;
  unsigned chunks;  // pass 1/2 blocks per head (a bound over the sequences of a batch)
  template <int DT, int V, int STEPS>
  cudaError_t run() const {
    const dim3 grid{chunks, static_cast<unsigned>(c.H), static_cast<unsigned>(c.seqs.B)};
    pass1_kernel<BATCH, DT, V, STEPS><<<grid, kThreads, 0, stream>>>(c);
    KVT_CU_TRY(cudaGetLastError());
    // d > 256: the anchors' lane slots (pass2_kernel), 64 KB at VS = 32 (opt-in above 48 KB; every sm_80+ part has it)
    const size_t smem = V * STEPS > kLargeVS ? size_t(kWarps) * 2 * V * STEPS * kWarp * sizeof(float) : 0;
    if (smem > 48 * 1024)
      KVT_CU_TRY(cudaFuncSetAttribute(pass2_kernel<BATCH, DT, V, STEPS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      int(smem)));
    pass2_kernel<BATCH, DT, V, STEPS><<<grid, kThreads, smem, stream>>>(c);
    return cudaGetLastError();
  }
};

// Bump allocator over one scratch buffer (256-byte aligned pieces).
struct Carve {
  char* base;
  size_t off = 0;
  template <typename T>
  T* take(size_t n) {
    off = (off + 255) & ~size_t(255);
    T* p = reinterpret_cast<T*>(base ? base + off : nullptr);
    off += n * sizeof(T);
    return p;
  }
};

// Both forms: c.N (a plain tensor's N, or the bound of every n_b), c.H, c.seqs and the options set by the caller.
template <bool BATCH>
cudaError_t run(Ctx c, const NestedkvParams& p, const T2& scores, int vec, cudaStream_t stream) {
  const int64_t H = c.H, N = c.N, d = c.d, B = c.seqs.B, BH = B * H;
  if (d > kMaxHeadDim || 3 * H > 65535 || B > 65535) return cudaErrorInvalidValue;  // grid limits
  if (BH == 0 || N == 0) return cudaSuccess;
  c.W = p.window;
  c.sinks = p.sinks;
  c.global = p.global;
  // pass 1/2 chunks: a plain tensor's (rows_per_warp of N), or the bound over every n_b <= N of a batch (rows per
  // warp >= 64 and >= H n / (4 kRefSMs warps))
  if (!BATCH) c.rpw = rows_per_warp(H, N, c.W, c.global);
  const int64_t chunks = BATCH ? imax(1, imin(ceil_div(N, 64 * kWarps), ceil_div(4 * kRefSMs, H)))
                               : ceil_div(N, c.rpw * kWarps);
  // block sums: a plain tensor's nb blocks per head, or per sequence at blk0 (tok0 / block_min + b) of the bound
  c.tot = BATCH ? seq_token_bound(c.seqs) : N;
  const int64_t blocks = BATCH ? c.tot / c.block_min + B : c.nb;
  // Workspace: zeroed region first (sums, min/max, radix state, histograms, tickets, stats), then the rest.
  const int64_t groups = 3 * BH * 2;
  int64_t* tok0 = nullptr;
  auto layout = [&](char* base, size_t* zero_bytes, size_t* total) {
    Carve cv{base};
    c.bsum = cv.take<long long>(size_t(H * blocks * d));
    c.gsum = cv.take<long long>(size_t(BH * d));
    c.mm = cv.take<unsigned>(size_t(3 * BH * 2));
    c.bad = cv.take<unsigned>(size_t(BH));
    Radix* st = cv.take<Radix>(size_t(groups));
    unsigned* hist = cv.take<unsigned>(size_t(groups) * kRounds * kBins);
    unsigned* tickets = cv.take<unsigned>(size_t(3 * BH) * kRounds);
    Stats* stats = cv.take<Stats>(size_t(BH));
    *zero_bytes = cv.off;
    c.inv_norm = cv.take<float>(size_t(H * c.tot));
    c.raw = cv.take<float>(size_t((p.global ? 1 : 3) * H * c.tot));
    HeadParams* params = cv.take<HeadParams>(size_t(BH));
    tok0 = BATCH ? cv.take<int64_t>(size_t(B + 1)) : nullptr;
    *total = cv.off;
    return std::make_tuple(st, hist, tickets, stats, params);
  };
  size_t zero_bytes = 0, total = 0;
  layout(nullptr, &zero_bytes, &total);
  Scratch ws(total, stream);
  KVT_CU_TRY(ws.error());
  auto [st, hist, tickets, stats, params] = layout(ws.as<char>(), &zero_bytes, &total);
  KVT_CU_TRY(cudaMemsetAsync(ws.as<char>(), 0, zero_bytes, stream));
  if (BATCH) {
    KVT_CU_TRY(seq_token_offsets(c.seqs, tok0, stream));
    c.tok0 = tok0;
  }
  // d > 256: V = 1 and 32 steps (pass2_kernel keeps its anchors in shared memory then)
  KVT_CU_TRY(dispatch_vec<32>(c.k.dtype, vec, d, Launch<BATCH>{c, stream, static_cast<unsigned>(chunks)}));
  // Statistics over the L2-resident raw anomalies: about two blocks per SM in all.
  const unsigned sblocks = static_cast<unsigned>(imax(1, imin(ceil_div(N, kThreads), ceil_div(2 * kRefSMs, 3 * H))));
  const unsigned ub = static_cast<unsigned>(B);
  if (!p.global) {
    for (int r = 0; r < kRounds; r++) {
      radix_kernel<BATCH><<<dim3{sblocks, static_cast<unsigned>(3 * H), ub}, kThreads, 0, stream>>>(c, r, st, hist, tickets);
      KVT_CU_TRY(cudaGetLastError());
    }
    HeadArgs ha{{p.prior[0], p.prior[1], p.prior[2]}, p.beta};
    stats_kernel<BATCH><<<dim3{sblocks, static_cast<unsigned>(H), ub}, kThreads, 0, stream>>>(c, st, ha, stats, params);
    KVT_CU_TRY(cudaGetLastError());
  }
  const unsigned fblocks = static_cast<unsigned>(imax(1, imin(ceil_div(N, kThreads), ceil_div(4 * kRefSMs, H))));
  final_kernel<BATCH><<<dim3{fblocks, static_cast<unsigned>(H), ub}, kThreads, 0, stream>>>(c, params, p.tau, p.kappa,
                                                                                            scores);
  return cudaGetLastError();
}

}  // namespace

cudaError_t nestedkv_scores(const T3& keys, const NestedkvParams& p, const T2& scores, cudaStream_t stream) {
  Ctx c{};
  c.k = keys;
  c.seqs = dense_seqs(keys.n1);
  c.H = keys.n0;
  c.N = keys.n1;
  c.d = keys.n2;
  c.b = p.block;
  c.nb = ceil_div(keys.n1, p.block);
  c.m = p.tail_m;
  c.vec = true;
  return run<false>(c, p, scores, row_vec_width(keys), stream);
}

cudaError_t nestedkv_scores_batched(const Seqs& seqs, const T3& keys, const NestedkvParams& p, double tail,
                                   const T2& scores, cudaStream_t stream) {
  Ctx c{};
  c.k = keys;
  c.seqs = seqs;
  c.H = keys.n0;
  c.N = seqs.r.max_len;
  c.d = keys.n2;
  c.block_opt = p.block;
  c.block_min = p.block > 0 ? p.block : default_block(0);
  c.tail = tail;
  const int vec = contiguous_vec_width(keys.dtype, keys.n2);
  c.vec = batch_vec_ok(keys, vec);
  return run<true>(c, p, scores, vec, stream);
}

}  // namespace cuda
}  // namespace kvt
