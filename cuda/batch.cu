// Per-sequence offsets of a batch (docs/runtime-caches.md §6) for the kernels' per-token scratch: sequence b's tokens
// at [tok0[b], tok0[b + 1]) of a compact buffer of seq_token_bound(s) tokens: the exclusive prefix sum of the lengths,
// on the device (the table is never read by the host), clamped to the bound. For a valid table tok0[b + 1] − tok0[b]
// is n_b; a wrong one (e.g. overlapping ragged ranges) can only shorten sequences, never reach past the buffer, and an
// op that uses these offsets takes that difference as the sequence's length in all of its kernels.
#include "common.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 1024;

// The query rows a sequence uses: the last `window` of its queries (all of them for window 0).
__device__ __forceinline__ int64_t window_rows(const Seqs& q, int64_t window, int64_t b) {
  const int64_t n = q.r.length(b);
  return window > 0 ? imin(window, n) : n;
}

// One block: tiles of kThreads sequences, a block scan per tile carried over the tiles. tok0 (and q0) have B + 1
// entries; q0 sums the window rows of the query batch q (when q0 is not null).
__global__ void __launch_bounds__(kThreads) offsets_kernel(Seqs s, int64_t bound, int64_t* tok0, Seqs q,
                                                           int64_t window, int64_t qbound, int64_t* q0) {
  __shared__ int64_t warp_tot[kThreads / kWarp];
  int64_t carry = 0, qcarry = 0;  // every thread holds the same carries
  for (int64_t b0 = 0; b0 < s.B; b0 += kThreads) {
    const int64_t b = b0 + threadIdx.x;
    int64_t total;
    const int64_t ex = block_exclusive_scan<kThreads>(b < s.B ? s.r.length(b) : 0, warp_tot, &total);
    if (b < s.B) tok0[b] = imin(carry + ex, bound);
    carry += total;
    if (q0) {
      const int64_t qex = block_exclusive_scan<kThreads>(b < s.B ? window_rows(q, window, b) : 0, warp_tot, &total);
      if (b < s.B) q0[b] = imin(qcarry + qex, qbound);
      qcarry += total;
    }
  }
  if (threadIdx.x == 0) {
    tok0[s.B] = imin(carry, bound);
    if (q0) q0[s.B] = imin(qcarry, qbound);
  }
}

}  // namespace

int64_t seq_token_bound(const Seqs& s) {
  switch (s.r.t.layout) {
    case kSeqsRagged: return s.r.rows;  // the sequences' rows are disjoint ranges of the data's rows
    case kSeqsPadded: return s.B * s.r.max_len;
    default: return imin(s.B * s.r.max_len, s.r.entries * s.r.t.page_size);  // a valid table lists each entry once
  }
}

int64_t seq_window_bound(const Seqs& q, int64_t window) {
  const int64_t all = seq_token_bound(q);
  return window > 0 ? imin(all, q.B * window) : all;
}

cudaError_t seq_token_offsets(const Seqs& s, int64_t* tok0, cudaStream_t stream) {
  offsets_kernel<<<1, kThreads, 0, stream>>>(s, seq_token_bound(s), tok0, s, 0, 0, nullptr);
  return cudaGetLastError();
}

cudaError_t seq_window_offsets(const Seqs& s, int64_t* tok0, const Seqs& q, int64_t window, int64_t* q0,
                               cudaStream_t stream) {
  offsets_kernel<<<1, kThreads, 0, stream>>>(s, seq_token_bound(s), tok0, q, window, seq_window_bound(q, window), q0);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace kvt
