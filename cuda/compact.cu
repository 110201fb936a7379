// In-place compaction on CUDA (docs/runtime-caches.md §4, §6): per virtual head (b, h), row j < counts[b, h] of the
// sequence's own storage becomes its old row indices[b, h, j], for keys and values; then the page bookkeeping.
//
//   move kernel   grid (B·H virtual heads, keys / values, column slices), 256 threads. A block walks its head's kept
//                 rows in chunks of R: it loads the chunk's source rows (its column slice) into shared memory,
//                 __syncthreads(), stores them to the destinations j0 .. j0 + R − 1, __syncthreads(), next chunk.
//   pages kernel  one block: lengths[b] = max_h counts[b, h], page counts, last page lengths and the freed page
//                 list (sequence by sequence, a block-wide prefix sum over B in tiles).
// With a moment state the evicted rows are merged first (moments_merge_batched over the complement of the kept
// lists: the rows, partition and update of gatherKVBatched with moments), a launch that completes before the moves.
//
// Why no row is overwritten before it is read, without a buffer proportional to N·d:
//  - Within a head the kept positions are strictly ascending, so indices[j] >= j: the destinations of a chunk
//    (rows j0 .. j0 + R − 1) lie below the sources of every later chunk (indices[j'] >= j' >= j0 + R). A chunk's
//    stores therefore never touch a row a later chunk has yet to read; earlier chunks have finished (the block runs
//    its chunks in order, separated by barriers); and inside a chunk every load precedes every store (the barrier).
//  - Different blocks touch disjoint bytes: another head's rows (heads are disjoint even inside an NHD page slot),
//    the other tensor, or another column slice of the same rows. Different sequences own disjoint rows (ragged, padded)
//    or pages: a page listed by two sequences would be written by both, which the CPU backend rejects and which the
//    caller must avoid on CUDA (the device table is never read by the host).
// More parallelism within a head (several blocks over its chunks) would be unsafe: a later chunk's destinations can
// be an earlier chunk's sources (a kept row far down the sequence moving into the first rows), so chunks of one head
// must run in order; the column slices and the two tensors are the parallelism that is free.
// A wrong table or list cannot cause an access outside the tensors: counts are clamped to [0, min(cap, n_b)], a
// source outside [0, n_b) leaves its destination unchanged, page ids are clamped (SeqRows).
#include "common.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kStageBytes = 32 * 1024;  // shared staging buffer of a move block
constexpr int kSliceBytes = 2048;       // row bytes per block (column slice)
constexpr int kPageThreads = 1024;

struct MoveArgs {
  Seqs seqs;
  T3 t[2];       // keys, values (one sequence's rows of the batch)
  int unit[2];   // bytes per moved unit: 16 (contiguous rows, 16-byte aligned), else the element size
  T2 idx, cnt;   // [B, H, cap], [B, H]
  int64_t H;
};

// The moves of one block with units of type T (uint4, uint32_t or uint16_t): row j0 + r <- row list[j0 + r] of
// columns [u0, u0 + w), chunk by chunk (see the file comment).
template <typename T>
__device__ __forceinline__ void move_rows(const MoveArgs& A, const T3& x, int64_t b, int64_t h, int64_t u0, int64_t w,
                                          int64_t us, unsigned char* stage_raw) {
  T* stage = reinterpret_cast<T*>(stage_raw);
  const int es = dtype_size(x.dtype);
  const int64_t R = imax(1, kStageBytes / (w * int64_t(sizeof(T))));
  const int64_t n = seq_len<true>(A.seqs, b);
  const int64_t c = imax(0, imin(int64_t(static_cast<const int32_t*>(A.cnt.p)[head_off(A.cnt, b, h)]), imin(A.idx.n1, n)));
  const int32_t* list = static_cast<const int32_t*>(A.idx.p) + head_off(A.idx, b, h);
  char* base = static_cast<char*>(const_cast<void*>(x.p));
  auto unit_at = [&](int64_t row, int64_t u) {
    return reinterpret_cast<T*>(base + row_off<true>(A.seqs, x, b, h, row) * es) + (u0 + u) * us;
  };
  // rows * w units fit the staging buffer (or one row of a slice): 32-bit index arithmetic, no 64-bit division
  // subroutine (docs/performance.md §10.3)
  const int32_t w32 = int32_t(w);
  for (int64_t j0 = 0; j0 < c; j0 += R) {
    const int32_t m = int32_t(imin(R, c - j0)) * w32;
    for (int32_t e = threadIdx.x; e < m; e += kThreads) {
      const int32_t r = e / w32, u = e - r * w32;
      const int64_t i = list[(j0 + r) * A.idx.s1];
      if (i != j0 + r && i >= 0 && i < n) stage[e] = *unit_at(i, u);
    }
    __syncthreads();  // every source of the chunk read before any destination is written
    for (int32_t e = threadIdx.x; e < m; e += kThreads) {
      const int32_t r = e / w32, u = e - r * w32;
      const int64_t i = list[(j0 + r) * A.idx.s1];
      if (i != j0 + r && i >= 0 && i < n) *unit_at(j0 + r, u) = stage[e];
    }
    __syncthreads();  // the staging buffer is reused by the next chunk
  }
}

// Grid (B·H, 2, column slices): virtual head, tensor (keys, values), slice of kSliceBytes of the row.
__global__ void __launch_bounds__(kThreads) move_kernel(MoveArgs A) {
  extern __shared__ __align__(16) unsigned char stage_raw[];
  const int64_t vh = blockIdx.x, b = vh / A.H, h = vh % A.H;
  const T3& x = A.t[blockIdx.y];
  const int U = A.unit[blockIdx.y], es = dtype_size(x.dtype);
  const int64_t units = U == 16 ? x.n2 * es / 16 : x.n2, us = U == 16 ? 1 : x.s2;
  const int64_t u0 = int64_t(blockIdx.z) * (kSliceBytes / U), u1 = imin(units, u0 + kSliceBytes / U);
  if (u0 >= u1) return;  // uniform over the block
  if (U == 16) move_rows<uint4>(A, x, b, h, u0, u1 - u0, us, stage_raw);
  else if (U == 4) move_rows<uint32_t>(A, x, b, h, u0, u1 - u0, us, stage_raw);
  else move_rows<uint16_t>(A, x, b, h, u0, u1 - u0, us, stage_raw);
}

struct PageArgs {
  Seqs seqs;
  T2 cnt;  // [B, H]
  int64_t H;
  CompactOut o;
};

// One block: per sequence the rows still spanned (max_h of the clamped counts) and, for pages, the pages still used,
// the new last page length and the freed page ids in page-table order; a block-wide exclusive scan places each
// sequence's freed pages after those of the sequences before it.
__global__ void __launch_bounds__(kPageThreads) pages_kernel(PageArgs A) {
  __shared__ int64_t warp_tot[kPageThreads / kWarp];
  const SeqRows& r = A.seqs.r;
  const CompactOut& o = A.o;
  const bool paged = r.t.paged();
  const int64_t ps = r.t.page_size;
  int64_t carry = 0;  // freed pages of the tiles before (the same in every thread)
  for (int64_t b0 = 0; b0 < A.seqs.B; b0 += kPageThreads) {
    const int64_t b = b0 + threadIdx.x;
    int64_t nfree = 0, kept = 0, first = 0;
    if (b < A.seqs.B) {
      const int64_t n = r.length(b);
      int64_t len = 0;
      for (int64_t h = 0; h < A.H; h++)
        len = imax(len, imin(int64_t(static_cast<const int32_t*>(A.cnt.p)[head_off(A.cnt, b, h)]), n));
      if (o.lengths) o.lengths[b * o.lengths_s] = int32_t(len);
      if (paged) {
        kept = ceil_div(len, ps);
        first = r.first(b);
        const int64_t pages = r.clamp(int64_t(r.t.indptr[(b + 1) * r.t.indptr_s]), first, r.entries) - first;
        nfree = imax(0, pages - kept);
        if (o.page_counts) o.page_counts[b * o.page_counts_s] = int32_t(kept);
        if (o.last) o.last[b * o.last_s] = int32_t(kept == 0 ? 0 : len - (kept - 1) * ps);
      }
    }
    int64_t total;
    const int64_t before = carry + block_exclusive_scan<kPageThreads>(nfree, warp_tot, &total);
    if (o.freed)
      for (int64_t t = 0; t < nfree && before + t < o.freed_n; t++)
        o.freed[(before + t) * o.freed_s] = r.t.indices[(first + kept + t) * r.t.indices_s];
    carry += total;
  }
  if (o.freed)
    for (int64_t j = carry + threadIdx.x; j < o.freed_n; j += kPageThreads) o.freed[j * o.freed_s] = -1;
  if (o.freed_count && threadIdx.x == 0) *o.freed_count = int32_t(imin(carry, 0x7fffffff));
}

}  // namespace

cudaError_t compact_in_place(const Seqs& seqs, const T3& keys, const T3& values, const T2& indices, const T2& counts,
                             const Moments* moments, const CompactOut& out, cudaStream_t stream) {
  const int64_t H = keys.n0, B = seqs.B;
  if (B > 0 && H > 0 && seqs.r.max_len > 0) {
    if (moments) {  // every evicted row merged before any row moves
      const RowSel evicted{1, indices, counts, T2{nullptr, kI32, 0, 0, 0, 0}, 0};
      KVT_CU_TRY(moments_merge_batched(seqs, keys, values, evicted, *moments, stream));
    }
    if (B * H > 0x7fffffff) return cudaErrorInvalidConfiguration;
    MoveArgs A{seqs, {keys, values}, {0, 0}, indices, counts, H};
    int64_t slices = 0;
    for (int t = 0; t < 2; t++) {
      const T3& x = A.t[t];
      const int es = dtype_size(x.dtype);
      A.unit[t] = (x.n2 * es) % 16 == 0 && batch_vec_ok(x, 16 / es) ? 16 : es;
      const int64_t units = A.unit[t] == 16 ? x.n2 * es / 16 : x.n2;
      slices = imax(slices, ceil_div(units, kSliceBytes / A.unit[t]));
    }
    if (slices > 65535) return cudaErrorInvalidConfiguration;
    if (slices > 0) {
      move_kernel<<<dim3{unsigned(B * H), 2u, unsigned(slices)}, kThreads, kStageBytes, stream>>>(A);
      KVT_CU_TRY(cudaGetLastError());
    }
  }
  if (!out.lengths && !out.page_counts && !out.last && !out.freed && !out.freed_count) return cudaSuccess;
  const PageArgs P{seqs, counts, H, out};
  pages_kernel<<<1, kPageThreads, 0, stream>>>(P);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace kvt
