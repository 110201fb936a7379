// Radix top-k selection on CUDA (docs/performance.md §2.6): exact k-th largest of the unique 64-bit rank keys of
// math/common.h, found 8 bits at a time from the top, then a position-ordered collect that writes each head's
// indices already ascending. Several blocks cooperate on a row; the last block of a round to finish (atomic
// ticket) picks the digit, so no round needs a separate scan kernel and nothing synchronises with the host.
// A group whose remaining k equals its bucket size stops early: later rounds exit at once.
#include "common.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 8;
constexpr int kChunk = kThreads * kPerThread;  // elements of one row per block
constexpr int kRounds = 8;
constexpr int kBins = 256;

enum Mode : int { kActive = 0, kPrefix = 1, kAll = 2, kNone = 3 };

struct State {
  unsigned long long prefix;
  unsigned int k_rem;
  int bits;
  int mode;
};

struct Ctx {
  T2 scores;
  int64_t H, N;
  int32_t sinks, recent;
  const State* promote;  // adaptive phase 2: per-head safeguard states, or null
};

__device__ __forceinline__ bool kept(unsigned long long key, const State& s) {
  if (s.mode == kAll) return true;
  if (s.mode == kNone) return false;
  return s.bits == 0 || (key >> (64 - s.bits)) >= s.prefix;
}

__device__ __forceinline__ unsigned long long key_of(const Ctx& c, int64_t h, int64_t i) {
  const float s = static_cast<const float*>(c.scores.p)[h * c.scores.s0 + i * c.scores.s1];
  unsigned long long k = rank_key(s, is_forced_position(i, c.N, c.sinks, c.recent), i, h, c.H);
  if (c.promote && kept(k, c.promote[h])) k |= (unsigned long long)(kForcedKey) << 32;
  return k;
}

// One thread per group: initial state from k and the group size; zero histograms and tickets.
__global__ void init_kernel(State* st, int groups, int64_t group_size, int64_t k) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  State s;
  s.prefix = 0ull;
  s.bits = 0;
  s.k_rem = (unsigned int)(k);
  s.mode = k <= 0 ? kNone : (k >= group_size ? kAll : kActive);
  st[g] = s;
}

// Round r: histogram of digit r over the keys that match the group's prefix; the last block picks the digit.
// Grid: (chunks per row, H). Rows map to groups: group = per_row ? row : 0.
__global__ void __launch_bounds__(kThreads) round_kernel(Ctx c, int r, bool per_row, State* st, unsigned int* hist,
                                                         unsigned int* tickets, unsigned int blocks_per_group) {
  __shared__ unsigned int sh[kBins];
  __shared__ bool last;
  const int64_t h = blockIdx.y;
  const int g = per_row ? int(h) : 0;
  State s = st[g];
  if (s.mode != kActive) return;  // uniform across the block: state only changes between launches
  for (int b = threadIdx.x; b < kBins; b += kThreads) sh[b] = 0;
  __syncthreads();
  const int shift = 56 - 8 * r;
  const int64_t base = int64_t(blockIdx.x) * kChunk;
  for (int j = 0; j < kPerThread; j++) {
    const int64_t i = base + int64_t(j) * kThreads + threadIdx.x;
    if (i >= c.N) break;
    const unsigned long long key = key_of(c, h, i);
    if (r == 0 || (key >> (64 - 8 * r)) == s.prefix) atomicAdd(&sh[(key >> shift) & 0xffu], 1u);
  }
  __syncthreads();
  unsigned int* gh = hist + (size_t(g) * kRounds + r) * kBins;
  for (int b = threadIdx.x; b < kBins; b += kThreads)
    if (sh[b]) atomicAdd(&gh[b], sh[b]);
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&tickets[g * kRounds + r], 1u) == blocks_per_group - 1;
  __syncthreads();
  if (!last || threadIdx.x != 0) return;
  __threadfence();
  const volatile unsigned int* vh = gh;
  unsigned int cum = 0;
  int digit = 0;
  for (int b = kBins - 1; b >= 0; b--) {
    const unsigned int n = vh[b];
    if (cum + n >= s.k_rem) {
      digit = b;
      s.k_rem -= cum;
      if (n == s.k_rem) s.mode = kPrefix;
      break;
    }
    cum += n;
  }
  s.prefix = (s.prefix << 8) | (unsigned long long)(digit);
  s.bits += 8;
  if (s.bits == 64) s.mode = kPrefix;  // keys are unique: the bucket is a single key
  st[g] = s;
}

// Count of kept elements per (row, chunk).
__global__ void __launch_bounds__(kThreads) count_kernel(Ctx c, bool per_row, const State* st, unsigned int* chunk_cnt) {
  __shared__ unsigned int total;
  const int64_t h = blockIdx.y;
  const State s = st[per_row ? h : 0];
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  unsigned int n = 0;
  const int64_t base = int64_t(blockIdx.x) * kChunk;
  for (int j = 0; j < kPerThread; j++) {
    const int64_t i = base + int64_t(j) * kThreads + threadIdx.x;
    if (i < c.N && kept(key_of(c, h, i), s)) n++;
  }
  n = __reduce_add_sync(0xffffffffu, n);
  if ((threadIdx.x % kWarp) == 0 && n) atomicAdd(&total, n);
  __syncthreads();
  if (threadIdx.x == 0) chunk_cnt[h * gridDim.x + blockIdx.x] = total;
}

// Position-ordered collect: thread t owns the kPerThread consecutive elements [t*kPerThread, ...) of the chunk.
__global__ void __launch_bounds__(kThreads) write_kernel(Ctx c, bool per_row, const State* st,
                                                         const unsigned int* chunk_cnt, T2 idx, T2 cnt) {
  __shared__ unsigned int warp_tot[kThreads / kWarp];
  const int64_t h = blockIdx.y;
  const State s = st[per_row ? h : 0];
  const int64_t cap = idx.n1;
  unsigned int offset = 0;
  for (unsigned int q = 0; q < blockIdx.x; q++) offset += chunk_cnt[h * gridDim.x + q];
  const int64_t first = int64_t(blockIdx.x) * kChunk + int64_t(threadIdx.x) * kPerThread;
  unsigned int mask = 0;
  for (int j = 0; j < kPerThread; j++) {
    const int64_t i = first + j;
    if (i < c.N && kept(key_of(c, h, i), s)) mask |= 1u << j;
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
  int32_t* out = static_cast<int32_t*>(idx.p) + h * idx.s0;
  for (int j = 0; j < kPerThread; j++)
    if (mask & (1u << j)) {
      if (int64_t(pos) < cap) out[int64_t(pos) * idx.s1] = int32_t(first + j);
      pos++;
    }
  if (blockIdx.x == gridDim.x - 1) {  // last chunk: the row total is known; write the count and the padding
    const unsigned int total = offset + block_total;
    if (threadIdx.x == 0) static_cast<int32_t*>(cnt.p)[h * cnt.s0] = int32_t(total);
    for (int64_t q = int64_t(total) + threadIdx.x; q < cap; q += kThreads) out[q * idx.s1] = -1;
  }
}

cudaError_t run_select(const Ctx& c, bool per_row, int64_t k, State* st, unsigned int* hist, unsigned int* tickets,
                       int64_t chunks, cudaStream_t stream) {
  const int groups = per_row ? int(c.H) : 1;
  const int64_t group_size = per_row ? c.N : c.H * c.N;
  init_kernel<<<unsigned(ceil_div(groups, 128)), 128, 0, stream>>>(st, groups, group_size, k);
  KVT_CU_TRY(cudaGetLastError());
  const dim3 grid{static_cast<unsigned>(chunks), static_cast<unsigned>(c.H)};
  const unsigned int blocks_per_group = per_row ? unsigned(chunks) : unsigned(chunks * c.H);
  for (int r = 0; r < kRounds; r++) {
    round_kernel<<<grid, kThreads, 0, stream>>>(c, r, per_row, st, hist, tickets, blocks_per_group);
    KVT_CU_TRY(cudaGetLastError());
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t select_tokens(const T2& scores, const SelectParams& p, const T2& indices, const T2& counts,
                          cudaStream_t stream) {
  const int64_t H = scores.n0, N = scores.n1;
  if (H > 65535) return cudaErrorInvalidConfiguration;
  const int64_t chunks = ceil_div(N, kChunk);
  const bool adaptive = p.budget == 1;
  // Workspace: two state sets (safeguard per head, then the layer), histograms and tickets for both phases,
  // per-chunk counts.
  const size_t n_state = size_t(H) + 1;
  const size_t hist_words = size_t(H + 1) * kRounds * kBins;
  const size_t ticket_words = size_t(H + 1) * kRounds;
  const size_t cnt_words = size_t(H * chunks);
  const size_t bytes = n_state * sizeof(State) + (hist_words + ticket_words + cnt_words) * sizeof(unsigned int);
  Scratch ws(bytes, stream);
  KVT_CU_TRY(ws.error());
  State* st_head = ws.as<State>();
  State* st_layer = st_head + H;
  unsigned int* words = reinterpret_cast<unsigned int*>(st_head + n_state);
  unsigned int* hist = words;
  unsigned int* tickets = hist + hist_words;
  unsigned int* chunk_cnt = tickets + ticket_words;
  KVT_CU_TRY(cudaMemsetAsync(hist, 0, (hist_words + ticket_words) * sizeof(unsigned int), stream));
  Ctx c{scores, H, N, p.sinks, p.recent, nullptr};
  const dim3 grid{static_cast<unsigned>(chunks), static_cast<unsigned>(H)};
  const State* final_state;
  bool per_row;
  if (!adaptive) {
    KVT_CU_TRY(run_select(c, true, p.keep, st_head, hist, tickets, chunks, stream));
    final_state = st_head;
    per_row = true;
  } else {
    // Phase 1: per-head safeguard (top n_safe of each head). Phase 2: the layer's top H*keep with the safeguard
    // tokens promoted to forced. Phase 2 uses the last histogram/ticket slot set (group index H).
    KVT_CU_TRY(run_select(c, true, p.n_safe, st_head, hist, tickets, chunks, stream));
    if (p.n_safe > 0) c.promote = st_head;
    KVT_CU_TRY(run_select(c, false, H * int64_t(p.keep), st_layer, hist + size_t(H) * kRounds * kBins,
                          tickets + size_t(H) * kRounds, chunks, stream));
    final_state = st_layer;
    per_row = false;
  }
  count_kernel<<<grid, kThreads, 0, stream>>>(c, per_row, final_state, chunk_cnt);
  KVT_CU_TRY(cudaGetLastError());
  write_kernel<<<grid, kThreads, 0, stream>>>(c, per_row, final_state, chunk_cnt, indices, counts);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace kvt
