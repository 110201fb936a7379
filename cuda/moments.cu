// MomentKV moment-state merge on CUDA (docs/methods/momentkv.md §4.3; docs/performance.md §5.4), the same function as the
// CPU backend (csrc/cpu/moments.cc) over the same fixed partition (csrc/math/momentkv.h):
//
//   segment kernel  grid (segments, M tiles, H), 256 threads. A block walks its segment's positions in windows of
//                   32; warp 0 finds the window's rows to merge (explicit list / complement of the kept list / round
//                   label), the block stages those rows' tile columns in shared memory as f32, takes the window mean
//                   (shifted: residual means about the segment shift), and adds the window's centred co-moment plus
//                   the pairwise correction to a 128×128 tile of M held in registers (8×8 per thread). The segment
//                   state (n, residual means, shifts, M) goes to a stream-ordered scratch buffer.
//                   With `fuse` (gatherKV with moments) the tile-(0,0) blocks also copy the kept rows of their slot
//                   range to the compacted outputs, so one launch reads every row once (evicted rows once per M tile:
//                   exactly once for d, dv <= 128).
//   final kernel    grid (value-row blocks, H): merges the segment states of a head, in segment order, into the
//                   persistent state in residual form about one common shift (deterministic, no atomics).
//   nonfinite       grid (heads): a (virtual) head whose statistics hold a NaN or ±Infinity (a merged row did, or an
//                   overflow) gets NaN in all of mu_k, mu_v and M (math/momentkv.h), as on the CPU backend.
// Batched (docs/runtime-caches.md §6): the grid's z dimension runs over virtual heads b·H + h, each with the partition
// of its own sequence length (merge_partition(n_b, H, ...), as the per-sequence op), rows read in place through the
// table. The segment states of all virtual heads of a launch live in scratch at once, so a batch whose bound on
// segments would need more than kBatchScratchBytes runs in groups of sequences (one launch pair per group).
#include "math/momentkv.h"
#include "common.cuh"
#include "dispatch.cuh"

namespace kvt {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int kTile = 128;  // M tile: 128 value rows × 128 key columns
constexpr int kWin = mkv::kWindow;
constexpr int kFinalRows = 8;  // value rows of M per block of the final merge

// Scratch for the segment states of one launch of a batch (a group of sequences).
constexpr int64_t kBatchScratchBytes = int64_t(256) << 20;

struct MergeArgs {
  Seqs seqs;
  T3 k, v;
  RowSel sel;
  Moments m;       // per virtual head b·H + h
  float* seg;      // [heads of the launch][S][seg_state_floats]
  float* snap;     // [heads of the launch][1 + d + dv]: the persistent n, mu_k, mu_v before this merge
  int64_t S;       // segments per head in the scratch (a bound for a batch)
  int64_t vh0;     // first virtual head of this launch
  int tiles_c;     // ceil(d / kTile)
  // fused compaction (gatherKV with moments)
  int fuse;
  T2 idx, cnt;     // kept lists
  O3 ko, vo;
  T2 co;
  bool kvec, vvec;  // 16-byte row copies
};

// Virtual head of a block (grid z within the launch): its sequence, head and length, and the partition of its length.
struct Head {
  int64_t vh, b, h, n;
  mkv::Partition P;
};
template <bool BATCH>
__device__ __forceinline__ Head head_of(const MergeArgs& A, int64_t z) {
  Head x;
  const int64_t H = A.k.n0;
  x.vh = A.vh0 + z;
  x.b = BATCH ? x.vh / H : 0;  // a plain tensor: one sequence (vh0 = 0), no division
  x.h = BATCH ? x.vh % H : x.vh;
  x.n = seq_len<BATCH>(A.seqs, x.b);
  x.P = mkv::merge_partition(x.n, H, A.k.n2, A.v.n2);
  return x;
}

__device__ __forceinline__ float ld(const void* base, int dt, int64_t i) { return load_as_f32(base, dt, i); }

// Warp 0: the window's rows to merge as a bit mask (bit t = position p + t).
template <bool BATCH>
__device__ uint32_t window_mask(const MergeArgs& A, int64_t b, int64_t h, int64_t p, int w, int64_t* cursor, int64_t c,
                                int lane) {
  const uint32_t full = w == 32 ? 0xffffffffu : ((1u << w) - 1u);
  if (A.sel.mode == 2) {
    bool hit = false;
    if (lane < w) {
      const int32_t* L = static_cast<const int32_t*>(A.sel.label.p);
      hit = L[tok_off<BATCH>(A.seqs, A.sel.label, b, h, p + lane)] == A.sel.value;
    }
    return __ballot_sync(0xffffffffu, hit);
  }
  const int32_t* list = static_cast<const int32_t*>(A.sel.list.p) + head_off(A.sel.list, b, h);
  const int64_t j = *cursor + lane;
  uint32_t bit = 0u;
  if (j < c) {
    const int64_t x = list[j * A.sel.list.s1];
    if (x >= p && x < p + w) bit = 1u << (x - p);
  }
  const uint32_t in = __reduce_or_sync(0xffffffffu, bit);
  *cursor += __popc(in);
  return A.sel.mode == 0 ? in : (full & ~in);
}

// Kept-row copy of the fused gather (same semantics as gather.cu: rows past counts zero-filled, bad indices too);
// 16-byte vectors when both rows are contiguous and aligned (decided on the host, like gather.cu).
template <bool BATCH>
__device__ void copy_or_zero(const Seqs& sq, const T3& src, const O3& dst, int64_t b, int64_t h, int64_t n, int64_t i,
                             int64_t j, bool vec16, int lane) {
  const int es = dtype_size(src.dtype);
  char* o = static_cast<char*>(dst.p) + (b * dst.sq + h * dst.s0 + j * dst.s1) * es;
  const bool ok = i >= 0 && i < n;
  const char* s = static_cast<const char*>(src.p) + (ok ? row_off<BATCH>(sq, src, b, h, i) : 0) * es;
  if (vec16) {
    const int64_t n = src.n2 * es / 16;
    for (int64_t q = lane; q < n; q += kWarp)
      reinterpret_cast<uint4*>(o)[q] = ok ? reinterpret_cast<const uint4*>(s)[q] : make_uint4(0, 0, 0, 0);
  } else if (es == 4) {
    for (int64_t c = lane; c < src.n2; c += kWarp)
      reinterpret_cast<uint32_t*>(o)[c * dst.s2] = ok ? reinterpret_cast<const uint32_t*>(s)[c * src.s2] : 0u;
  } else {
    for (int64_t c = lane; c < src.n2; c += kWarp)
      reinterpret_cast<uint16_t*>(o)[c * dst.s2] = ok ? reinterpret_cast<const uint16_t*>(s)[c * src.s2] : uint16_t(0);
  }
}

bool aligned16(const void* p, int64_t s0, int64_t s1, int es) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0 && (s0 * es) % 16 == 0 && (s1 * es) % 16 == 0;
}
bool vec16_ok(const T3& src, const O3& dst) {
  const int es = dtype_size(src.dtype);
  const bool contig = (src.s2 == 1 || src.n2 == 1) && (dst.s2 == 1 || dst.n2 == 1);
  return contig && (src.n2 * es) % 16 == 0 && aligned16(src.p, src.s0, src.s1, es) && aligned16(dst.p, dst.s0, dst.s1, es) &&
         (src.sq * es) % 16 == 0 && (dst.sq * es) % 16 == 0;
}

template <bool BATCH>
__global__ void __launch_bounds__(kThreads) segment_kernel(MergeArgs A) {
  __shared__ float ks[kWin][kTile];
  __shared__ float vs[kWin][kTile];
  __shared__ float sk[kTile], sv[kTile], rk[kTile], rv[kTile], dk[kTile], dvv[kTile];
  __shared__ int64_t rows[kWin];
  __shared__ int nrows_s;
  __shared__ int64_t cursor_s;

  const Head hd = head_of<BATCH>(A, blockIdx.z);
  const int64_t s = blockIdx.x, b = hd.b, h = hd.h, vh = hd.vh, z = blockIdx.z;
  if (s >= hd.P.segments) return;  // past this head's segments (a batch's bound; uniform over the block)
  const int ta = int(blockIdx.y) / A.tiles_c, tc = int(blockIdx.y) % A.tiles_c;
  const int64_t d = A.k.n2, dv = A.v.n2, N = hd.n;
  const int64_t a0 = int64_t(ta) * kTile, c0 = int64_t(tc) * kTile;
  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const int tx = tid % 16, ty = tid / 16;
  const int64_t sf = mkv::seg_state_floats(d, dv);
  float* st = A.seg + (z * A.S + s) * sf;

  // Fused compaction: tile (0, 0) blocks copy their slot range of the kept rows.
  if (A.fuse && blockIdx.y == 0) {
    const int64_t cap = A.ko.n1, slots_per_seg = ceil_div(cap, hd.P.segments);
    int64_t cnt = static_cast<const int32_t*>(A.cnt.p)[head_off(A.cnt, b, h)];
    cnt = imax(0, imin(cnt, imin(A.idx.n1, cap)));
    if (s == 0 && tid == 0) static_cast<int32_t*>(A.co.p)[head_off(A.co, b, h)] = int32_t(cnt);
    const int64_t j0 = s * slots_per_seg, j1 = imin(cap, j0 + slots_per_seg);
    for (int64_t j = j0 + warp; j < j1; j += kWarps) {
      int64_t i = -1;
      if (j < cnt) i = static_cast<const int32_t*>(A.idx.p)[head_off(A.idx, b, h, j)];
      copy_or_zero<BATCH>(A.seqs, A.k, A.ko, b, h, N, i, j, A.kvec, lane);
      copy_or_zero<BATCH>(A.seqs, A.v, A.vo, b, h, N, i, j, A.vvec, lane);
    }
  }
  // Snapshot of the persistent state for the final merge (read before anything is written to it).
  if (s == 0 && blockIdx.y == 0) {
    float* sn = A.snap + z * (1 + d + dv);
    if (tid == 0) sn[0] = A.m.n[vh];
    for (int64_t x = tid; x < d; x += kThreads) sn[1 + x] = A.m.mu_k[vh * d + x];
    for (int64_t x = tid; x < dv; x += kThreads) sn[1 + d + x] = A.m.mu_v[vh * dv + x];
  }

  const int64_t seg_len = hd.P.seg_len, p0 = s * seg_len, p1 = imin(N, p0 + seg_len);
  const float n_state = A.m.n[vh];
  bool shifted = n_state > 0.f;
  // Per-thread column role: threads 0..127 key columns c0 + tid, 128..255 value rows a0 + tid - 128.
  const bool is_k = tid < kTile;
  const int col = is_k ? tid : tid - kTile;
  const int64_t gcol = is_k ? c0 + col : a0 + col;
  const bool col_ok = is_k ? gcol < d : gcol < dv;
  if (tid < kTile) {
    sk[tid] = 0.f; sv[tid] = 0.f; rk[tid] = 0.f; rv[tid] = 0.f;
  }
  __syncthreads();
  if (shifted && col_ok) {
    if (is_k) sk[col] = A.m.mu_k[vh * d + gcol];
    else sv[col] = A.m.mu_v[vh * dv + gcol];
  }
  // List cursor: first entry >= p0 (lists are strictly ascending; CPU-validated, memory-safe otherwise).
  int64_t c_list = 0;
  if (A.sel.mode != 2) {
    c_list = static_cast<const int32_t*>(A.sel.counts.p)[head_off(A.sel.counts, b, h)];
    c_list = imax(0, imin(c_list, A.sel.list.n1));
    if (A.fuse) c_list = imin(c_list, A.ko.n1);  // the kept rows gatherKV actually keeps
    if (tid == 0) {
      const int32_t* list = static_cast<const int32_t*>(A.sel.list.p) + head_off(A.sel.list, b, h);
      int64_t lo = 0, hi = c_list;
      while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (list[mid * A.sel.list.s1] < p0) lo = mid + 1;
        else hi = mid;
      }
      cursor_s = lo;
    }
  }
  __syncthreads();
  int64_t cursor = A.sel.mode != 2 ? cursor_s : 0;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int j = 0; j < 8; j++) acc[i][j] = 0.f;
  float n = 0.f;

  for (int64_t p = p0; p < p1; p += kWin) {
    const int w = int(imin(kWin, p1 - p));
    if (warp == 0) {
      const uint32_t mask = window_mask<BATCH>(A, b, h, p, w, &cursor, c_list, lane);
      if ((mask >> lane) & 1u) rows[__popc(mask & ((1u << lane) - 1u))] = p + lane;
      if (lane == 0) nrows_s = __popc(mask);
    }
    __syncthreads();
    const int nr = nrows_s;
    if (nr == 0) {
      __syncthreads();
      continue;
    }
    // Stage the rows' tile columns as f32.
    for (int e = tid; e < nr * kTile; e += kThreads) {
      const int r = e / kTile, c = e % kTile;
      const int64_t i = rows[r];
      ks[r][c] = c0 + c < d ? ld(A.k.p, A.k.dtype, row_off<BATCH>(A.seqs, A.k, b, h, i) + (c0 + c) * A.k.s2) : 0.f;
      vs[r][c] = a0 + c < dv ? ld(A.v.p, A.v.dtype, row_off<BATCH>(A.seqs, A.v, b, h, i) + (a0 + c) * A.v.s2) : 0.f;
    }
    __syncthreads();
    const float fn = float(nr);
    {
      float (*buf)[kTile] = is_k ? ks : vs;
      float* shv = is_k ? sk : sv;
      if (!shifted) {  // shift = mean of the segment's first window
        float t = 0.f;
        for (int r = 0; r < nr; r++) t += buf[r][col];
        shv[col] = t / fn;
      }
      const float sh = shv[col];
      float t = 0.f;
      for (int r = 0; r < nr; r++) t += (buf[r][col] -= sh);
      const float ybar = t / fn;
      for (int r = 0; r < nr; r++) buf[r][col] -= ybar;
      if (is_k) dk[col] = ybar - rk[col];
      else dvv[col] = ybar - rv[col];
    }
    shifted = true;
    __syncthreads();
    const mkv::Chan ch = mkv::chan(n, fn);
    // M tile update: acc[i][j] (value row ty + 16i, key column tx + 16j) += Σ_r v_r k_r + f·δv·δk.
#pragma unroll
    for (int half = 0; half < 2; half++) {
      float t[8][4];
#pragma unroll
      for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) t[i][j] = 0.f;
      for (int r = 0; r < nr; r++) {
        float vv[8], kk[4];
#pragma unroll
        for (int i = 0; i < 8; i++) vv[i] = vs[r][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; j++) kk[j] = ks[r][tx + 16 * (4 * half + j)];
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
          for (int j = 0; j < 4; j++) t[i][j] += vv[i] * kk[j];
      }
#pragma unroll
      for (int i = 0; i < 8; i++) {
        const float fdv = ch.f * dvv[ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][4 * half + j] += t[i][j] + fdv * dk[tx + 16 * (4 * half + j)];
      }
    }
    __syncthreads();
    if (tid < kTile) {
      rk[tid] += dk[tid] * ch.wb;
      rv[tid] += dvv[tid] * ch.wb;
    }
    n = ch.n;
    __syncthreads();
  }

  // Segment state: n, r_k[d], r_v[dv], s_k[d], s_v[dv], M[dv][d].
  const mkv::SegState<float> ss = mkv::seg_state(st, d, dv);
  float *srk = ss.rk, *srv = ss.rv, *ssk = ss.sk, *ssv = ss.sv, *sM = ss.M;
  if (ta == 0 && tc == 0 && tid == 0) st[0] = n;
  if (n == 0.f) return;
  if (ta == 0 && is_k && col_ok) {
    srk[gcol] = rk[col];
    ssk[gcol] = sk[col];
  }
  if (tc == 0 && !is_k && col_ok) {
    srv[gcol] = rv[col];
    ssv[gcol] = sv[col];
  }
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int64_t a = a0 + ty + 16 * i;
    if (a >= dv) continue;
#pragma unroll
    for (int j = 0; j < 8; j++) {
      const int64_t c = c0 + tx + 16 * j;
      if (c < d) sM[a * d + c] = acc[i][j];
    }
  }
}

// In-order merge of the segment states into the persistent state (residual form about one common shift).
template <bool BATCH>
__global__ void __launch_bounds__(kThreads) final_kernel(MergeArgs A) {
  extern __shared__ float sm[];  // ck[d], rkA[d], dk[d]
  __shared__ float cv[kFinalRows], rvA[kFinalRows], dvv[kFinalRows];
  // a plain tensor: the host's segment count (A.S), no partition computed here
  int64_t vh = A.vh0 + blockIdx.y, segments = A.S;
  if constexpr (BATCH) {
    const Head hd = head_of<BATCH>(A, blockIdx.y);
    vh = hd.vh;
    segments = hd.P.segments;
  }
  const int64_t z = blockIdx.y, d = A.k.n2, dv = A.v.n2;
  const int64_t a0 = int64_t(blockIdx.x) * kFinalRows;
  const int nrow = int(imin(kFinalRows, dv - a0));
  const int tid = threadIdx.x;
  float* ck = sm;
  float* rkA = ck + d;
  float* dk = rkA + d;
  const float* sn = A.snap + z * (1 + d + dv);
  float na = sn[0];
  for (int64_t x = tid; x < d; x += kThreads) {
    ck[x] = sn[1 + x];
    rkA[x] = 0.f;
  }
  if (tid < nrow) {
    cv[tid] = sn[1 + d + a0 + tid];
    rvA[tid] = 0.f;
  }
  __syncthreads();
  const int64_t sf = mkv::seg_state_floats(d, dv);
  float* M = A.m.m + vh * dv * d;
  bool any = false;
  for (int64_t s = 0; s < segments; s++) {
    const mkv::SegState<const float> sg = mkv::seg_state<const float>(A.seg + (z * A.S + s) * sf, d, dv);
    const float nb = *sg.n;
    if (nb == 0.f) continue;
    const float *srk = sg.rk, *srv = sg.rv, *ssk = sg.sk, *ssv = sg.sv, *sM = sg.M;
    if (!any && na == 0.f) {
      for (int64_t x = tid; x < d; x += kThreads) ck[x] = ssk[x] + srk[x];
      if (tid < nrow) cv[tid] = ssv[a0 + tid] + srv[a0 + tid];
      __syncthreads();
    }
    any = true;
    const mkv::Chan ch = mkv::chan(na, nb);
    for (int64_t x = tid; x < d; x += kThreads) dk[x] = mkv::seg_delta(ssk[x], ck[x], srk[x], rkA[x]);
    if (tid < nrow) dvv[tid] = mkv::seg_delta(ssv[a0 + tid], cv[tid], srv[a0 + tid], rvA[tid]);
    __syncthreads();
    for (int64_t e = tid; e < int64_t(nrow) * d; e += kThreads) {
      const int r = int(e / d);
      const int64_t x = e % d, a = a0 + r;
      M[a * d + x] += sM[a * d + x] + (ch.f * dvv[r]) * dk[x];
    }
    __syncthreads();
    for (int64_t x = tid; x < d; x += kThreads) rkA[x] += dk[x] * ch.wb;
    if (tid < nrow) rvA[tid] += dvv[tid] * ch.wb;
    na = ch.n;
    __syncthreads();
  }
  if (!any) return;
  if (blockIdx.x == 0) {
    for (int64_t x = tid; x < d; x += kThreads) A.m.mu_k[vh * d + x] = ck[x] + rkA[x];
    if (tid == 0) A.m.n[vh] = na;
  }
  if (tid < nrow) A.m.mu_v[vh * dv + a0 + tid] = cv[tid] + rvA[tid];
}

// NaN throughout the statistics of a (virtual) head that has a non-finite one. A head that merged nothing (a
// sequence of a batch without rows, an empty list) is left as it is, as on the CPU backend.
template <bool BATCH>
__global__ void __launch_bounds__(kThreads) nonfinite_kernel(MergeArgs A) {
  __shared__ float red[kWarps];
  const int64_t d = A.k.n2, dv = A.v.n2;
  const int64_t vh = A.vh0 + blockIdx.x, n = seq_len<BATCH>(A.seqs, vh / A.k.n0);
  if (n == 0 || (!A.fuse && A.sel.mode == 0 && A.sel.list.n1 == 0)) return;
  float* mk = A.m.mu_k + vh * d;
  float* mv = A.m.mu_v + vh * dv;
  float* M = A.m.m + vh * dv * d;
  float bad = 0.f;
  for (int64_t x = threadIdx.x; x < d; x += kThreads) bad += finite_f(mk[x]) ? 0.f : 1.f;
  for (int64_t x = threadIdx.x; x < dv; x += kThreads) bad += finite_f(mv[x]) ? 0.f : 1.f;
  for (int64_t x = threadIdx.x; x < dv * d; x += kThreads) bad += finite_f(M[x]) ? 0.f : 1.f;
  if (!(block_sum<kWarps>(bad, red) > 0.f)) return;
  for (int64_t x = threadIdx.x; x < d; x += kThreads) mk[x] = NAN;
  for (int64_t x = threadIdx.x; x < dv; x += kThreads) mv[x] = NAN;
  for (int64_t x = threadIdx.x; x < dv * d; x += kThreads) M[x] = NAN;
}

// The segment and final kernels over the virtual heads [vh0, vh0 + heads), segment states in one scratch buffer.
template <bool BATCH>
cudaError_t launch_heads(MergeArgs A, int64_t heads, int64_t tiles, cudaStream_t stream) {
  const int64_t d = A.k.n2, dv = A.v.n2, sf = mkv::seg_state_floats(d, dv);
  Scratch ws(size_t(heads * A.S * sf + heads * (1 + d + dv)) * sizeof(float), stream);
  KVT_CU_TRY(ws.error());
  A.seg = ws.as<float>();
  A.snap = A.seg + heads * A.S * sf;
  segment_kernel<BATCH><<<dim3(unsigned(A.S), unsigned(tiles), unsigned(heads)), kThreads, 0, stream>>>(A);
  KVT_CU_TRY(cudaGetLastError());
  const size_t smem = size_t(3 * d) * sizeof(float);
  if (smem > 48 * 1024)
    KVT_CU_TRY(cudaFuncSetAttribute(final_kernel<BATCH>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  final_kernel<BATCH><<<dim3(unsigned(ceil_div(dv, kFinalRows)), unsigned(heads)), kThreads, smem, stream>>>(A);
  KVT_CU_TRY(cudaGetLastError());
  nonfinite_kernel<BATCH><<<unsigned(heads), kThreads, 0, stream>>>(A);
  return cudaGetLastError();
}

template <bool BATCH>
cudaError_t launch(MergeArgs A, cudaStream_t stream) {
  const int64_t H = A.k.n0, d = A.k.n2, dv = A.v.n2, B = A.seqs.B;
  const int64_t N = A.seqs.r.max_len;  // a plain tensor's N, or the bound of every n_b of a batch
  if (H == 0 || N == 0 || B == 0) return cudaSuccess;
  if (H > 65535) return cudaErrorInvalidConfiguration;
  // Segments per head: the partition of N (a plain tensor), or a bound over every length of a batch (the count grows
  // with the length up to the scratch cap of merge_partition).
  const int64_t cap = imax(1, mkv::kSegScratchFloats / (H * mkv::seg_state_floats(d, dv)));
  A.S = BATCH ? imax(1, imin(ceil_div(N, mkv::kSegMinLen), cap)) : mkv::merge_partition(N, H, d, dv).segments;
  A.tiles_c = int(ceil_div(d, kTile));
  const int64_t tiles = ceil_div(dv, kTile) * A.tiles_c;
  if (A.S > 0x7fffffff || tiles > 65535) return cudaErrorInvalidConfiguration;
  if (!BATCH) return launch_heads<false>(A, H, tiles, stream);
  // Whole sequences per launch, within the scratch budget.
  const int64_t per_seq = H * (A.S * mkv::seg_state_floats(d, dv) + 1 + d + dv) * int64_t(sizeof(float));
  const int64_t group = imax(1, imin(B, imin(kBatchScratchBytes / imax(per_seq, 1), 65535 / H)));
  for (int64_t b0 = 0; b0 < B; b0 += group) {
    A.vh0 = b0 * H;
    KVT_CU_TRY(launch_heads<true>(A, imin(group, B - b0) * H, tiles, stream));
  }
  return cudaSuccess;
}

MergeArgs merge_args(const Seqs& seqs, const T3& keys, const T3& values, const RowSel& sel, const Moments& m) {
  MergeArgs A{};
  A.seqs = seqs;
  A.k = keys;
  A.v = values;
  A.sel = sel;
  A.m = m;
  return A;
}

MergeArgs fused_args(const Seqs& seqs, const T3& keys, const T3& values, const T2& indices, const T2& counts,
                     const O3& keys_out, const O3& values_out, const T2& counts_out, const Moments& m) {
  MergeArgs A = merge_args(seqs, keys, values, RowSel{1, indices, counts, T2{nullptr, kI32, 0, 0, 0, 0}, 0}, m);
  A.fuse = 1;
  A.idx = indices;
  A.cnt = counts;
  A.ko = keys_out;
  A.vo = values_out;
  A.co = counts_out;
  A.kvec = vec16_ok(keys, keys_out);
  A.vvec = vec16_ok(values, values_out);
  return A;
}

}  // namespace

cudaError_t moments_merge(const T3& keys, const T3& values, const RowSel& sel, const Moments& m, cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim || values.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  return launch<false>(merge_args(dense_seqs(keys.n1), keys, values, sel, m), stream);
}

cudaError_t moments_merge_batched(const Seqs& seqs, const T3& keys, const T3& values, const RowSel& sel,
                                  const Moments& m, cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim || values.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  return launch<true>(merge_args(seqs, keys, values, sel, m), stream);
}

cudaError_t gather_kv_moments(const T3& keys, const T3& values, const T2& indices, const T2& counts,
                              const O3& keys_out, const O3& values_out, const T2& counts_out, const Moments& m,
                              cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim || values.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  if (keys.n0 == 0 || keys_out.n1 == 0) return cudaSuccess;
  if (keys.n1 == 0) return gather_kv(keys, values, indices, counts, keys_out, values_out, counts_out, nullptr, stream);
  return launch<false>(fused_args(dense_seqs(keys.n1), keys, values, indices, counts, keys_out, values_out, counts_out, m),
                       stream);
}

cudaError_t gather_kv_moments_batched(const Seqs& seqs, const T3& keys, const T3& values, const T2& indices,
                                      const T2& counts, const O3& keys_out, const O3& values_out, const T2& counts_out,
                                      const Moments& m, cudaStream_t stream) {
  if (keys.n2 > kMaxHeadDim || values.n2 > kMaxHeadDim) return cudaErrorInvalidValue;
  if (seqs.B == 0 || keys.n0 == 0 || keys_out.n1 == 0) return cudaSuccess;
  // Every length 0 (no rows at all): the plain compaction writes the counts and zero rows.
  if (seqs.r.max_len == 0)
    return gather_kv_batched(seqs, keys, values, indices, counts, keys_out, values_out, counts_out, nullptr, stream);
  return launch<true>(fused_args(seqs, keys, values, indices, counts, keys_out, values_out, counts_out, m), stream);
}

}  // namespace cuda
}  // namespace kvt
