// The shard side of the tensor-parallel adaptive selection on CUDA (docs/runtime-caches.md §5, §6); the state lives in
// the caller's i32 [B, words] tensor (math/tp_select.h), so nothing is held between calls and nothing synchronises
// with the host.
//   begin      the per-row safeguard pivot: the radix select of cuda/select.cu per row (k = floor(keep_b·safeguard)),
//              then the smallest kept key of each row (the exact pivot); one thread per sequence writes the header.
//   histogram  one pass over the shard's keys per round: digit r of the adaptive keys whose higher digits match the
//              prefix, counted in shared-memory bins (4 and 8 bits; 16-bit digits straight into the output).
//   advance    one block per sequence: the bin holding the k-th largest key of the summed histogram (per-thread
//              segments of bins from the top, a block scan, then a block scan of that segment's bins), prefix and k
//              updated.
//   finish     keys >= the pivot (after promotion above the row's safeguard pivot), position-ordered per row: the
//              collect of cuda/select.cu with one group per sequence.
#include "math/tp_select.h"
#include "select.cuh"

namespace kvt {
namespace cuda {
namespace {

using sel::Keys;
using sel::State;

constexpr int kThreads = 256;

__device__ __forceinline__ int32_t* state_row(const TpParams& p, int64_t b) { return p.state + b * p.st_s0; }
__device__ __forceinline__ int32_t& word(const TpParams& p, int64_t b, int w) { return state_row(p, b)[w * p.st_s1]; }
__device__ __forceinline__ uint64_t head_pivot(const TpParams& p, int64_t b, int64_t h) {
  return tp::join(word(p, b, tp::kHeader + 2 * int(h)), word(p, b, tp::kHeader + 2 * int(h) + 1));
}

__host__ __device__ __forceinline__ Keys keys_of(const TpParams& p) {
  return Keys{p.scores, p.seqs, p.Hs, p.Htot, p.hoff, p.sinks, p.recent, nullptr};
}

__device__ __forceinline__ int64_t keep_of(const TpParams& p, int64_t b) {
  const int64_t raw = p.keep ? int64_t(p.keep[b * p.keep_s]) : int64_t(p.keep_scalar);
  return imax(0, imin(raw, p.seqs.r.length(b)));
}

// begin: the header of each sequence's state and its rows' safeguard pivots.
__global__ void begin_kernel(TpParams p, const unsigned long long* pivots) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= p.seqs.B) return;
  word(p, b, tp::kRound) = 0;
  word(p, b, tp::kRemaining) = int32_t(int64_t(p.Htot) * keep_of(p, b));
  for (int w = tp::kPrefixHi; w < tp::kHeader; w++) word(p, b, w) = 0;
  for (int64_t h = 0; h < p.Hs; h++) {
    const uint64_t pv = pivots[b * p.Hs + h];
    word(p, b, tp::kHeader + 2 * int(h)) = tp::hi_word(pv);
    word(p, b, tp::kHeader + 2 * int(h) + 1) = tp::lo_word(pv);
  }
}

// Zeroes the [B, bins] histogram.
__global__ void zero_kernel(int32_t* hist, int64_t hs0, int64_t hs1, int64_t bins) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, b = blockIdx.y;
  if (e < bins) hist[b * hs0 + e * hs1] = 0;
}

// histogram, grid (chunks, Hs, B): digit `round` of the adaptive keys matching the prefix. SHARED: bins in shared
// memory (2^bits <= 256), else atomics on the output.
template <bool SHARED>
__global__ void __launch_bounds__(kThreads) hist_kernel(TpParams p, int round, int32_t* hist, int64_t hs0, int64_t hs1) {
  extern __shared__ int32_t sh[];  // [2^bits] when SHARED
  const Keys c = keys_of(p);
  const int64_t b = blockIdx.z, h = blockIdx.y, n = p.seqs.r.length(b);
  if (blockIdx.x >= ceil_div(n, sel::kChunk)) return;
  const int bins = 1 << p.bits;
  const uint64_t pv = head_pivot(p, b, h), pre = tp::join(word(p, b, tp::kPrefixHi), word(p, b, tp::kPrefixLo));
  int32_t* out = hist + b * hs0;
  if (SHARED) {
    for (int v = threadIdx.x; v < bins; v += kThreads) sh[v] = 0;
    __syncthreads();
  }
  const int64_t base = int64_t(blockIdx.x) * sel::kChunk;
  for (int j = 0; j < sel::kPerThread; j++) {
    const int64_t i = base + int64_t(j) * kThreads + threadIdx.x;
    if (i >= n) break;
    const uint64_t key = tp::adaptive_key(sel::key_at<true>(c, b, h, i, n), pv);
    if (!tp::matches(key, pre, p.bits, round)) continue;
    const uint32_t v = tp::digit(key, p.bits, round);
    if (SHARED) atomicAdd(&sh[v], 1);
    else atomicAdd(&out[v * hs1], 1);
  }
  if (SHARED) {
    __syncthreads();
    for (int v = threadIdx.x; v < bins; v += kThreads)
      if (sh[v]) atomicAdd(&out[v * hs1], sh[v]);
  }
}

// advance, one block per sequence, in two levels: thread t sums segment t of `per` bins counted from the top (one bin
// when bits <= 8), a block scan gives every segment the count above it, and the segment where the running count
// reaches k is kept; then its bins, one per thread from its top, are scanned the same way and the bin where the count
// reaches the k left is the digit — tp::choose_bin's bin (the highest whose running count reaches k), found without
// a serial scan.
__global__ void __launch_bounds__(kThreads) advance_kernel(TpParams p, int round, const int32_t* hist, int64_t hs0,
                                                           int64_t hs1) {
  __shared__ int64_t warp_tot[kThreads / kWarp];
  __shared__ int64_t seg_k;
  __shared__ int seg_pick, bin_pick;
  const int64_t b = blockIdx.x;
  const int bins = 1 << p.bits, per = bins > kThreads ? bins / kThreads : 1, segs = bins / per;
  const int t = threadIdx.x;
  const int32_t* row = hist + b * hs0;
  const int64_t k0 = word(p, b, tp::kRemaining);
  // segment t covers bins [hi_t - per, hi_t) with hi_t = bins - t·per (segment 0 holds the top bins)
  int64_t s = 0;
  if (t < segs)
    for (int v = bins - t * per - per; v < bins - t * per; v++) s += row[v * hs1];
  if (t == 0) {
    seg_pick = kThreads;
    bin_pick = kThreads;
  }
  int64_t total;
  const int64_t above = block_exclusive_scan<kThreads>(s, warp_tot, &total);
  // the first segment whose running count reaches k holds the k-th largest key (the top one when k <= 0); the lowest
  // such t wins, so counts that are not a histogram (negative) still give one deterministic pick
  const bool seg_hit = t < segs && (t == 0 || above < k0) && above + s >= k0;
  if (seg_hit) atomicMin(&seg_pick, t);
  __syncthreads();
  const int seg = seg_pick;
  if (seg == kThreads) {  // uniform; fewer keys than k: digit 0, k unchanged (as the CPU)
    if (t == 0) {
      word(p, b, tp::kFlags) |= tp::kFlagShort;
      word(p, b, tp::kRound) = round + 1;
    }
    return;
  }
  if (t == seg) seg_k = k0 - above;
  const int top = bins - seg * per - 1;  // the segment's highest bin
  const int64_t c = t < per ? int64_t(row[int64_t(top - t) * hs1]) : 0;
  const int64_t in = block_exclusive_scan<kThreads>(c, warp_tot, &total);  // its barriers publish seg_k
  const int64_t k = seg_k;
  // a histogram's segment reaches k, so one of its bins is picked
  const bool bin_hit = t < per && (t == 0 || in < k) && in + c >= k;
  if (bin_hit) atomicMin(&bin_pick, t);
  __syncthreads();
  if (bin_hit && t == bin_pick) {
    const uint64_t pre = tp::join(word(p, b, tp::kPrefixHi), word(p, b, tp::kPrefixLo)) |
                         (uint64_t(uint32_t(top - t)) << (64 - p.bits * (round + 1)));
    word(p, b, tp::kPrefixHi) = tp::hi_word(pre);
    word(p, b, tp::kPrefixLo) = tp::lo_word(pre);
    word(p, b, tp::kRemaining) = int32_t(k - in);
  }
  if (t == 0) word(p, b, tp::kRound) = round + 1;
}

// finish: the rows' promotion states (key >= the row's safeguard pivot) and each sequence's final state (keys >= the
// pivot; none for keep_b = 0).
__global__ void finish_kernel(TpParams p, State* rows, State* seqs) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < p.seqs.B * p.Hs) rows[e] = State{head_pivot(p, e / p.Hs, e % p.Hs), 0u, 64, sel::kPrefix};
  if (e < p.seqs.B) {
    const uint64_t pivot = tp::join(word(p, e, tp::kPrefixHi), word(p, e, tp::kPrefixLo));
    seqs[e] = keep_of(p, e) > 0 ? State{pivot, 0u, 64, sel::kPrefix} : State{0ull, 0u, 0, sel::kNone};
  }
}

unsigned grid1(int64_t n, int threads) { return unsigned(imax(1, ceil_div(n, threads))); }

cudaError_t check(const TpParams& p) {
  if (p.Hs > 65535 || p.seqs.B > 65535) return cudaErrorInvalidConfiguration;
  return cudaSuccess;
}

}  // namespace

cudaError_t tp_select_begin(const TpParams& p, cudaStream_t stream) {
  KVT_CU_TRY(check(p));
  if (p.seqs.B == 0) return cudaSuccess;
  const int64_t rows = p.seqs.B * p.Hs;
  Scratch ws(size_t(rows) * (sizeof(State) + sizeof(unsigned long long)), stream);
  KVT_CU_TRY(ws.error());
  unsigned long long* pivots = ws.as<unsigned long long>();
  State* st = reinterpret_cast<State*>(pivots + rows);
  const Keys c = keys_of(p);
  if (rows > 0) {
    KVT_CU_TRY(sel::radix_select<true>(c, true, sel::Budget{p.keep, p.keep_s, p.keep_scalar, p.safeguard, sel::kSafeguard},
                                       st, stream));
    KVT_CU_TRY(sel::row_pivots<true>(c, st, pivots, stream));
  }
  begin_kernel<<<grid1(p.seqs.B, 128), 128, 0, stream>>>(p, pivots);
  return cudaGetLastError();
}

cudaError_t tp_select_histogram(const TpParams& p, int round, int32_t* hist, int64_t hs0, int64_t hs1,
                                cudaStream_t stream) {
  KVT_CU_TRY(check(p));
  if (p.seqs.B == 0) return cudaSuccess;
  const int64_t bins = int64_t(1) << p.bits;
  zero_kernel<<<dim3{grid1(bins, kThreads), unsigned(p.seqs.B)}, kThreads, 0, stream>>>(hist, hs0, hs1, bins);
  KVT_CU_TRY(cudaGetLastError());
  if (p.Hs == 0 || p.seqs.r.max_len == 0) return cudaSuccess;
  const dim3 grid{grid1(p.seqs.r.max_len, sel::kChunk), unsigned(p.Hs), unsigned(p.seqs.B)};
  if (bins <= 256) hist_kernel<true><<<grid, kThreads, size_t(bins) * sizeof(int32_t), stream>>>(p, round, hist, hs0, hs1);
  else hist_kernel<false><<<grid, kThreads, 0, stream>>>(p, round, hist, hs0, hs1);
  return cudaGetLastError();
}

cudaError_t tp_select_advance(const TpParams& p, int round, const int32_t* hist, int64_t hs0, int64_t hs1,
                              cudaStream_t stream) {
  KVT_CU_TRY(check(p));
  if (p.seqs.B == 0) return cudaSuccess;
  advance_kernel<<<unsigned(p.seqs.B), kThreads, 0, stream>>>(p, round, hist, hs0, hs1);
  return cudaGetLastError();
}

cudaError_t tp_select_finish(const TpParams& p, const T2& indices, const T2& counts, cudaStream_t stream) {
  KVT_CU_TRY(check(p));
  const int64_t rows = p.seqs.B * p.Hs;
  if (rows == 0) return cudaSuccess;
  Scratch ws(size_t(rows + p.seqs.B) * sizeof(State), stream);
  KVT_CU_TRY(ws.error());
  State* st_rows = ws.as<State>();
  State* st_seqs = st_rows + rows;
  finish_kernel<<<grid1(rows, 128), 128, 0, stream>>>(p, st_rows, st_seqs);
  KVT_CU_TRY(cudaGetLastError());
  Keys c = keys_of(p);
  c.promote = st_rows;
  return sel::collect<true>(c, false, st_seqs, indices, counts, stream);
}

}  // namespace cuda
}  // namespace kvt
