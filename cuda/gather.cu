// Compaction of retained K/V rows on CUDA (docs/performance.md §5.5): one warp per output row, 16-byte vector
// copies when rows are contiguous and aligned, element copies otherwise. Rows past counts[h] are zero-filled.
// Out-of-range indices or counts never cause out-of-bounds accesses (the row is zero-filled / the count
// clamped); the host-memory backend rejects them up front instead. Batched (docs/runtime-caches.md §6): one warp per
// output row of every sequence (B·H·cap rows), source rows read in place through the table.
#include "common.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;

struct RowCopy {
  bool vec16;  // both sides contiguous and 16-byte aligned, row bytes a multiple of 16
  int es;
};

__device__ __forceinline__ void copy_row(const char* src, int64_t ss, char* dst, int64_t ds, int64_t d, RowCopy rc,
                                         int lane) {
  if (rc.vec16) {
    const int64_t n = d * rc.es / 16;
    for (int64_t q = lane; q < n; q += kWarp)
      reinterpret_cast<uint4*>(dst)[q] = reinterpret_cast<const uint4*>(src)[q];
  } else if (rc.es == 4) {
    for (int64_t c = lane; c < d; c += kWarp)
      reinterpret_cast<uint32_t*>(dst)[c * ds] = reinterpret_cast<const uint32_t*>(src)[c * ss];
  } else {
    for (int64_t c = lane; c < d; c += kWarp)
      reinterpret_cast<uint16_t*>(dst)[c * ds] = reinterpret_cast<const uint16_t*>(src)[c * ss];
  }
}

// K and V rows of one output row together when both copy in 16-byte units: the K and V units are spread over the
// lanes as one list (a 256-byte K row and its V row keep all 32 lanes busy, not 16 twice); the pointers are
// __restrict__, so no V load has to wait behind a K store the compiler cannot prove apart.
__device__ __forceinline__ void copy_kv16(const char* __restrict__ ks, char* __restrict__ kd, int64_t nk,
                                          const char* __restrict__ vs, char* __restrict__ vd, int64_t nv, int lane) {
  const uint4* ksrc = reinterpret_cast<const uint4*>(ks);
  const uint4* vsrc = reinterpret_cast<const uint4*>(vs);
  for (int64_t u = lane; u < nk + nv; u += kWarp) {
    if (u < nk) reinterpret_cast<uint4*>(kd)[u] = ksrc[u];
    else reinterpret_cast<uint4*>(vd)[u - nk] = vsrc[u - nk];
  }
}

__device__ __forceinline__ void zero_row(char* dst, int64_t ds, int64_t d, RowCopy rc, int lane) {
  if (rc.vec16) {
    const int64_t n = d * rc.es / 16;
    for (int64_t q = lane; q < n; q += kWarp) reinterpret_cast<uint4*>(dst)[q] = make_uint4(0, 0, 0, 0);
  } else if (rc.es == 4) {
    for (int64_t c = lane; c < d; c += kWarp) reinterpret_cast<uint32_t*>(dst)[c * ds] = 0u;
  } else {
    for (int64_t c = lane; c < d; c += kWarp) reinterpret_cast<uint16_t*>(dst)[c * ds] = 0;
  }
}

template <bool BATCH>
__global__ void __launch_bounds__(kThreads, 5) gather_kernel(Seqs sq, T3 k, T3 v, T2 idx, T2 cnt, O3 ko, O3 vo, T2 co,
                                                          RowCopy kc, RowCopy vc) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t cap = ko.n1, H = k.n0;
  const int64_t row = int64_t(blockIdx.x) * kWarps + warp;
  if (row >= sq.B * H * cap) return;
  // a plain tensor (!BATCH): one sequence, so the head is the row's vh (no division by H)
  const int64_t vh = row / cap, j = row % cap, b = BATCH ? vh / H : 0, h = BATCH ? vh % H : vh;
  const int64_t n = seq_len<BATCH>(sq, b);
  // the count and this slot's index are loaded together (the index is used only below the count): one latency
  // before the row copies instead of two
  const int64_t i_at = j < idx.n1 ? static_cast<const int32_t*>(idx.p)[head_off(idx, b, h, j)] : -1;
  int64_t c = static_cast<const int32_t*>(cnt.p)[head_off(cnt, b, h)];
  c = imax(0, imin(c, imin(idx.n1, cap)));
  if (j == 0 && lane == 0) static_cast<int32_t*>(co.p)[head_off(co, b, h)] = int32_t(c);
  char* kd = static_cast<char*>(ko.p) + (b * ko.sq + h * ko.s0 + j * ko.s1) * kc.es;
  char* vd = static_cast<char*>(vo.p) + (b * vo.sq + h * vo.s0 + j * vo.s1) * vc.es;
  const int64_t i = j < c ? i_at : -1;
  if (i >= 0 && i < n) {
    const char* ks = static_cast<const char*>(k.p) + row_off<BATCH>(sq, k, b, h, i) * kc.es;
    const char* vs = static_cast<const char*>(v.p) + row_off<BATCH>(sq, v, b, h, i) * vc.es;
    if (kc.vec16 && vc.vec16) {
      copy_kv16(ks, kd, k.n2 * kc.es / 16, vs, vd, v.n2 * vc.es / 16, lane);
    } else {
      copy_row(ks, k.s2, kd, ko.s2, k.n2, kc, lane);
      copy_row(vs, v.s2, vd, vo.s2, v.n2, vc, lane);
    }
  } else {
    zero_row(kd, ko.s2, k.n2, kc, lane);
    zero_row(vd, vo.s2, v.n2, vc, lane);
  }
}

bool aligned16(const void* p, int64_t s0, int64_t s1, int es) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0 && (s0 * es) % 16 == 0 && (s1 * es) % 16 == 0;
}

RowCopy row_copy(const T3& src, const O3& dst) {
  const int es = src.dtype == kF32 ? 4 : 2;
  const bool contig = (src.s2 == 1 || src.n2 == 1) && (dst.s2 == 1 || dst.n2 == 1);
  const bool vec = contig && (src.n2 * es) % 16 == 0 && aligned16(src.p, src.s0, src.s1, es) &&
                   aligned16(dst.p, dst.s0, dst.s1, es) && (src.sq * es) % 16 == 0 && (dst.sq * es) % 16 == 0;
  return RowCopy{vec, es};
}

template <bool BATCH>
cudaError_t launch(const Seqs& sq, const T3& keys, const T3& values, const T2& indices, const T2& counts,
                   const O3& keys_out, const O3& values_out, const T2& counts_out, cudaStream_t stream) {
  const int64_t rows = sq.B * keys.n0 * keys_out.n1;
  if (rows == 0) return cudaSuccess;
  const int64_t blocks = ceil_div(rows, kWarps);
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  gather_kernel<BATCH><<<unsigned(blocks), kThreads, 0, stream>>>(sq, keys, values, indices, counts, keys_out,
                                                                  values_out, counts_out, row_copy(keys, keys_out),
                                                                  row_copy(values, values_out));
  return cudaGetLastError();
}

}  // namespace

cudaError_t gather_kv(const T3& keys, const T3& values, const T2& indices, const T2& counts, const O3& keys_out,
                      const O3& values_out, const T2& counts_out, const Moments* moments, cudaStream_t stream) {
  if (moments) return cudaErrorNotSupported;
  return launch<false>(dense_seqs(keys.n1), keys, values, indices, counts, keys_out, values_out, counts_out, stream);
}

cudaError_t gather_kv_batched(const Seqs& seqs, const T3& keys, const T3& values, const T2& indices, const T2& counts,
                              const O3& keys_out, const O3& values_out, const T2& counts_out, const Moments* moments,
                              cudaStream_t stream) {
  if (moments)
    return gather_kv_moments_batched(seqs, keys, values, indices, counts, keys_out, values_out, counts_out, *moments,
                                     stream);
  return launch<true>(seqs, keys, values, indices, counts, keys_out, values_out, counts_out, stream);
}

}  // namespace cuda
}  // namespace kvt
