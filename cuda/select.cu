// Radix top-k selection on CUDA (docs/performance.md §2.6): exact k-th largest of the unique 64-bit rank keys of
// math/common.h, found 8 bits at a time from the top, then a position-ordered collect that writes each head's
// indices already ascending. Several blocks cooperate on a row; the last block of a round to finish (atomic
// ticket) picks the digit with all its threads (one coalesced load of the 256 bins and a block scan), so no round
// needs a separate scan kernel and nothing synchronises with the host. Round 0 computes each group's initial state
// itself: a selection is 8 round launches, then the collect's 2.
// A group whose remaining k equals its bucket size stops early: later rounds exit at once.
// Batched (docs/runtime-caches.md §6): grid (chunks, H, B); each sequence has its own length, chunk count, budget
// and groups (its rows, or the sequence for the adaptive layer budget), so a batch is B selections side by side.
// The shared pieces (keys, state, launchers) are declared in select.cuh; the tensor-parallel protocol reuses them.
#include "select.cuh"

namespace kvt {
namespace cuda {
namespace sel {
namespace {

// The rank a group seeks (see Budget) and the size of the group.
template <bool BATCH>
__device__ __forceinline__ void group_rank(const Keys& c, bool per_row, const Budget& bg, int64_t b, int64_t* k,
                                           int64_t* size) {
  const int64_t n = seq_len<BATCH>(c.seqs, b);
  const int64_t raw = bg.keep ? int64_t(bg.keep[b * bg.keep_s]) : int64_t(bg.keep_scalar);
  const int64_t keep = imax(0, imin(raw, n));
  if (bg.kind == kSafeguard) *k = int64_t(floor(double(keep) * bg.safeguard + 1e-9));
  else if (bg.kind == kLayer) *k = c.H * keep;
  else *k = keep;
  *size = per_row ? n : c.H * n;
}

// Initial state of group g from its rank and size.
template <bool BATCH>
__device__ __forceinline__ State initial_state(const Keys& c, bool per_row, const Budget& bg, int64_t g) {
  int64_t k, size;
  group_rank<BATCH>(c, per_row, bg, per_row ? g / c.H : g, &k, &size);
  State s;
  s.prefix = 0ull;
  s.bits = 0;
  s.k_rem = (unsigned int)(k);
  s.mode = k <= 0 ? kNone : (k >= size ? kAll : kActive);
  return s;
}

// Round r: histogram of digit r over the keys that match the group's prefix; the last block picks the digit with all
// its threads (block_radix_pick). Round 0 starts from the initial state (every block computes it; the group's first
// block stores it when the group needs no rounds, e.g. an empty sequence), later rounds from the state stored by the
// previous round's last block. Grid: (chunks, H, B); a block past its sequence's chunks returns at once.
// Full occupancy (KVT_FULL_SM_CTAS_256, common.cuh): 32 registers and no spill in both forms on sm_80 / sm_90 (left to
// itself ptxas took 40 on sm_80, 75 %: the initial state's budget arithmetic, the batched form's per-sequence offsets).
static_assert(kThreads == 256, "KVT_FULL_SM_CTAS_256 is for 256-thread blocks");
template <bool BATCH>
__global__ void __launch_bounds__(kThreads, KVT_FULL_SM_CTAS_256) round_kernel(Keys c, int r, bool per_row, Budget bg,
                                                                               State* st, unsigned int* hist,
                                                                               unsigned int* tickets) {
  __shared__ unsigned int sh[kBins];
  __shared__ unsigned int warp_tot[kThreads / kWarp];
  __shared__ bool last;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y;
  const int64_t g = per_row ? b * c.H + h : b;
  State s = r == 0 ? initial_state<BATCH>(c, per_row, bg, g) : st[g];
  if (r == 0 && s.mode != kActive && blockIdx.x == 0 && (per_row || h == 0) && threadIdx.x == 0) st[g] = s;
  if (s.mode != kActive) return;  // uniform across the block: state only changes between launches
  const int64_t n = seq_len<BATCH>(c.seqs, b), chunks = ceil_div(n, kChunk);
  if (blockIdx.x >= chunks) return;
  const unsigned int blocks_per_group = unsigned(per_row ? chunks : chunks * c.H);
  for (int q = threadIdx.x; q < kBins; q += kThreads) sh[q] = 0;
  __syncthreads();
  const int shift = 56 - 8 * r;
  const int64_t base = int64_t(blockIdx.x) * kChunk;
  for (int j = 0; j < kPerThread; j++) {
    const int64_t i = base + int64_t(j) * kThreads + threadIdx.x;
    if (i >= n) break;
    const unsigned long long key = key_at<BATCH>(c, b, h, i, n);
    if (r == 0 || (key >> (64 - 8 * r)) == s.prefix) atomicAdd(&sh[(key >> shift) & 0xffu], 1u);
  }
  __syncthreads();
  unsigned int* gh = hist + (size_t(g) * kRounds + r) * kBins;
  for (int q = threadIdx.x; q < kBins; q += kThreads)
    if (sh[q]) atomicAdd(&gh[q], sh[q]);
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&tickets[g * kRounds + r], 1u) == blocks_per_group - 1;
  __syncthreads();
  if (!last) return;  // uniform across the block
  __threadfence();
  static_assert(kThreads == kBins, "the pick gives one bin to each thread");
  const unsigned int cnt = radix_bin<kThreads>(gh);
  unsigned int digit, above;
  const int picked = block_radix_pick<kThreads>(cnt, 0u, s.k_rem, warp_tot, &digit, &above);
  if (picked == kIdle) return;
  if (picked == kPicked) {
    s.k_rem -= above;
    if (cnt == s.k_rem) s.mode = kPrefix;
  }
  s.prefix = (s.prefix << 8) | (unsigned long long)(digit);
  s.bits += 8;
  if (s.bits == 64) s.mode = kPrefix;  // keys are unique: the bucket is a single key
  st[g] = s;
}

// Count of kept elements per (row, chunk).
template <bool BATCH>
__global__ void __launch_bounds__(kThreads) count_kernel(Keys c, bool per_row, const State* st, unsigned int* chunk_cnt) {
  __shared__ unsigned int total;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y;
  const int64_t n = seq_len<BATCH>(c.seqs, b);
  if (blockIdx.x >= ceil_div(n, kChunk)) return;
  const State s = st[per_row ? b * c.H + h : b];
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  unsigned int cnt = 0;
  const int64_t base = int64_t(blockIdx.x) * kChunk;
  for (int j = 0; j < kPerThread; j++) {
    const int64_t i = base + int64_t(j) * kThreads + threadIdx.x;
    if (i < n && kept(key_at<BATCH>(c, b, h, i, n), s)) cnt++;
  }
  cnt = __reduce_add_sync(0xffffffffu, cnt);
  if ((threadIdx.x % kWarp) == 0 && cnt) atomicAdd(&total, cnt);
  __syncthreads();
  if (threadIdx.x == 0) chunk_cnt[(b * c.H + h) * gridDim.x + blockIdx.x] = total;
}

// Position-ordered collect: thread t owns the kPerThread consecutive elements [t*kPerThread, ...) of the chunk.
template <bool BATCH>
__global__ void __launch_bounds__(kThreads) write_kernel(Keys c, bool per_row, const State* st,
                                                         const unsigned int* chunk_cnt, T2 idx, T2 cnt) {
  __shared__ unsigned int warp_tot[kThreads / kWarp];
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y;
  const int64_t n = seq_len<BATCH>(c.seqs, b), chunks = ceil_div(n, kChunk);
  const int64_t cap = idx.n1;
  int32_t* out = static_cast<int32_t*>(idx.p) + head_off(idx, b, h);
  int32_t* count = static_cast<int32_t*>(cnt.p) + head_off(cnt, b, h);
  if (chunks == 0) {  // an empty sequence: count 0, every index -1
    if (blockIdx.x != 0) return;
    if (threadIdx.x == 0) *count = 0;
    for (int64_t q = threadIdx.x; q < cap; q += kThreads) out[q * idx.s1] = -1;
    return;
  }
  if (blockIdx.x >= chunks) return;
  const State s = st[per_row ? b * c.H + h : b];
  unsigned int offset = 0;
  for (unsigned int q = 0; q < blockIdx.x; q++) offset += chunk_cnt[(b * c.H + h) * gridDim.x + q];
  const int64_t first = int64_t(blockIdx.x) * kChunk + int64_t(threadIdx.x) * kPerThread;
  unsigned int mask = 0;
  for (int j = 0; j < kPerThread; j++) {
    const int64_t i = first + j;
    if (i < n && kept(key_at<BATCH>(c, b, h, i, n), s)) mask |= 1u << j;
  }
  const unsigned int mine = __popc(mask);
  // Block exclusive scan of `mine`.
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  unsigned int incl = mine;
#pragma unroll
  for (int o = 1; o < kWarp; o <<= 1) {
    const unsigned int t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == kWarp - 1) warp_tot[warp] = incl;
  __syncthreads();
  unsigned int before = 0, block_total = 0;
  for (int w = 0; w < kThreads / kWarp; w++) {
    if (w < warp) before += warp_tot[w];
    block_total += warp_tot[w];
  }
  unsigned int pos = offset + before + incl - mine;
  for (int j = 0; j < kPerThread; j++)
    if (mask & (1u << j)) {
      if (int64_t(pos) < cap) out[int64_t(pos) * idx.s1] = int32_t(first + j);
      pos++;
    }
  if (blockIdx.x == chunks - 1) {  // last chunk: the row total is known; write the count and the padding
    const unsigned int total = offset + block_total;
    if (threadIdx.x == 0) *count = int32_t(total);
    for (int64_t q = int64_t(total) + threadIdx.x; q < cap; q += kThreads) out[q * idx.s1] = -1;
  }
}

// The smallest kept key of each row (per-row states): the exact k-th largest key. Rows start at ~0 (none kept).
template <bool BATCH>
__global__ void __launch_bounds__(kThreads) pivot_kernel(Keys c, const State* st, unsigned long long* piv) {
  __shared__ unsigned long long block_min;
  const int64_t b = BATCH ? int64_t(blockIdx.z) : 0, h = blockIdx.y;
  const int64_t n = seq_len<BATCH>(c.seqs, b);
  if (blockIdx.x >= ceil_div(n, kChunk)) return;
  const State s = st[b * c.H + h];
  if (threadIdx.x == 0) block_min = ~0ull;
  __syncthreads();
  unsigned long long m = ~0ull;
  const int64_t base = int64_t(blockIdx.x) * kChunk;
  for (int j = 0; j < kPerThread; j++) {
    const int64_t i = base + int64_t(j) * kThreads + threadIdx.x;
    if (i >= n) break;
    const unsigned long long key = key_at<BATCH>(c, b, h, i, n);
    if (kept(key, s) && key < m) m = key;
  }
  if (m != ~0ull) atomicMin(&block_min, m);
  __syncthreads();
  if (threadIdx.x == 0 && block_min != ~0ull) atomicMin(&piv[b * c.H + h], block_min);
}

// Grid of the per-row kernels: chunks of the longest sequence (at least one block, for empty selections).
dim3 row_grid(const Keys& c) {
  return dim3{static_cast<unsigned>(imax(1, ceil_div(c.seqs.r.max_len, kChunk))), static_cast<unsigned>(c.H),
              static_cast<unsigned>(c.seqs.B)};
}

cudaError_t check_grid(const Keys& c) {
  if (c.H > 65535 || c.seqs.B > 65535 || ceil_div(c.seqs.r.max_len, kChunk) > 0x7fffffff)
    return cudaErrorInvalidConfiguration;
  return cudaSuccess;
}

}  // namespace

template <bool BATCH>
cudaError_t radix_select(const Keys& c, bool per_row, const Budget& budget, State* st, cudaStream_t stream) {
  KVT_CU_TRY(check_grid(c));
  const int64_t groups = per_row ? c.seqs.B * c.H : c.seqs.B;
  if (groups == 0) return cudaSuccess;
  const size_t hist_words = size_t(groups) * kRounds * kBins, ticket_words = size_t(groups) * kRounds;
  Scratch ws((hist_words + ticket_words) * sizeof(unsigned int), stream);
  KVT_CU_TRY(ws.error());
  unsigned int* hist = ws.as<unsigned int>();
  unsigned int* tickets = hist + hist_words;
  KVT_CU_TRY(cudaMemsetAsync(hist, 0, (hist_words + ticket_words) * sizeof(unsigned int), stream));
  for (int r = 0; r < kRounds; r++) {
    round_kernel<BATCH><<<row_grid(c), kThreads, 0, stream>>>(c, r, per_row, budget, st, hist, tickets);
    KVT_CU_TRY(cudaGetLastError());
  }
  return cudaSuccess;
}

template <bool BATCH>
cudaError_t row_pivots(const Keys& c, const State* st, unsigned long long* pivots, cudaStream_t stream) {
  KVT_CU_TRY(check_grid(c));
  if (c.seqs.B * c.H == 0) return cudaSuccess;
  KVT_CU_TRY(cudaMemsetAsync(pivots, 0xff, size_t(c.seqs.B * c.H) * sizeof(unsigned long long), stream));
  pivot_kernel<BATCH><<<row_grid(c), kThreads, 0, stream>>>(c, st, pivots);
  return cudaGetLastError();
}

template <bool BATCH>
cudaError_t collect(const Keys& c, bool per_row, const State* st, const T2& idx, const T2& cnt, cudaStream_t stream) {
  KVT_CU_TRY(check_grid(c));
  if (c.seqs.B * c.H == 0) return cudaSuccess;
  const dim3 grid = row_grid(c);
  Scratch ws(size_t(c.seqs.B * c.H) * grid.x * sizeof(unsigned int), stream);
  KVT_CU_TRY(ws.error());
  count_kernel<BATCH><<<grid, kThreads, 0, stream>>>(c, per_row, st, ws.as<unsigned int>());
  KVT_CU_TRY(cudaGetLastError());
  write_kernel<BATCH><<<grid, kThreads, 0, stream>>>(c, per_row, st, ws.as<unsigned int>(), idx, cnt);
  return cudaGetLastError();
}

template cudaError_t radix_select<true>(const Keys&, bool, const Budget&, State*, cudaStream_t);
template cudaError_t radix_select<false>(const Keys&, bool, const Budget&, State*, cudaStream_t);
template cudaError_t row_pivots<true>(const Keys&, const State*, unsigned long long*, cudaStream_t);
template cudaError_t collect<true>(const Keys&, bool, const State*, const T2&, const T2&, cudaStream_t);
template cudaError_t collect<false>(const Keys&, bool, const State*, const T2&, const T2&, cudaStream_t);

namespace {

// Uniform: per-row top-k. Adaptive: per-row safeguard states, then per sequence the layer's top H·keep_b with the
// safeguard tokens promoted to forced (`promote`: rows whose safeguard is empty have state kNone and promote nothing).
template <bool BATCH>
cudaError_t run(const Keys& c, const Budget& keep, const Budget& safe, bool adaptive, bool promote, const T2& indices,
                const T2& counts, cudaStream_t stream) {
  const int64_t rows = c.seqs.B * c.H;
  Scratch ws(size_t(rows + c.seqs.B) * sizeof(State), stream);
  KVT_CU_TRY(ws.error());
  State* st_row = ws.as<State>();
  State* st_seq = st_row + rows;
  if (!adaptive) {
    KVT_CU_TRY(radix_select<BATCH>(c, true, keep, st_row, stream));
    return collect<BATCH>(c, true, st_row, indices, counts, stream);
  }
  KVT_CU_TRY(radix_select<BATCH>(c, true, safe, st_row, stream));
  Keys c2 = c;
  if (promote) c2.promote = st_row;
  Budget layer = keep;
  layer.kind = kLayer;
  KVT_CU_TRY(radix_select<BATCH>(c2, false, layer, st_seq, stream));
  return collect<BATCH>(c2, false, st_seq, indices, counts, stream);
}

}  // namespace
}  // namespace sel

cudaError_t select_tokens(const T2& scores, const SelectParams& p, const T2& indices, const T2& counts,
                          cudaStream_t stream) {
  using namespace sel;
  const int64_t H = scores.n0, N = scores.n1;
  const Keys c{scores, dense_seqs(N), H, H, 0, p.sinks, p.recent, nullptr};
  // keep <= N: the safeguard phase seeks n_safe per head (computed on the host)
  return run<false>(c, Budget{nullptr, 0, p.keep, 0, kUniform}, Budget{nullptr, 0, p.n_safe, 0, kUniform}, p.budget == 1,
                    p.n_safe > 0, indices, counts, stream);
}

cudaError_t select_tokens_batched(const Seqs& seqs, const T2& scores, const SelectParams& p, const int32_t* keep,
                                  int64_t keep_s, const T2& indices, const T2& counts, cudaStream_t stream) {
  using namespace sel;
  const Keys c{scores, seqs, scores.n0, scores.n0, 0, p.sinks, p.recent, nullptr};
  return run<true>(c, Budget{keep, keep_s, p.keep, p.safeguard, kUniform},
                   Budget{keep, keep_s, p.keep, p.safeguard, kSafeguard}, p.budget == 1, true, indices, counts, stream);
}

}  // namespace cuda
}  // namespace kvt
