// Glue between the C ABI entry points and the CUDA launchers (builds with CUDA only): CUDA errors as kvt_status,
// the current device, and checked views as the launchers' tensor descriptors (cuda/launch.h).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <initializer_list>
#include <string>

#include "abi/batch.h"
#include "abi/moment_state.h"
#include "abi/validate.h"
#include "launch.h"

namespace kvt {

inline kvt_status cuda_status(cudaError_t e, const char* where) {
  if (e == cudaSuccess) return KVT_OK;
  return fail(KVT_ERR_CUDA, std::string(where) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline cudaError_t set_device(int id) {
  int cur = -1;
  cudaError_t e = cudaGetDevice(&cur);
  if (e != cudaSuccess) return e;
  return cur == id ? cudaSuccess : cudaSetDevice(id);
}

inline cuda::T3 t3(const View& v) {
  return cuda::T3{v.base, v.dtype, v.shape[0], v.shape[1], v.shape[2], v.stride[0], v.stride[1], v.stride[2]};
}
inline cuda::O3 o3(const View& v) {
  return cuda::O3{v.base, v.dtype, v.shape[0], v.shape[1], v.shape[2], v.stride[0], v.stride[1], v.stride[2]};
}
inline cuda::T2 t2(const View& v) {
  return cuda::T2{v.base, v.dtype, v.shape[0], v.ndim > 1 ? v.shape[1] : 1, v.stride[0], v.ndim > 1 ? v.stride[1] : 1};
}
// An f32 3-D view as the launchers' F3 (mutable pointer; inputs are only read).
inline cuda::F3 f3(const View& v) {
  return cuda::F3{v.ptr<float>(), v.shape[0], v.shape[1], v.shape[2], v.stride[0], v.stride[1], v.stride[2]};
}
// The moment state's four f32 buffers.
inline cuda::Moments cuda_moments(const MomentViews& m) {
  return cuda::Moments{m.n().ptr<float>(), m.mu_k().ptr<float>(), m.mu_v().ptr<float>(), m.m().ptr<float>()};
}

// ---- Batches (docs/runtime-caches.md §6): the table as the kernels read it, clamped to bounds from the shapes of the
// tensors the call reads or writes: `data` (keys, values: rows of a ragged batch, L of a padded one, pages) and
// `tokens` (per-token tensors: their columns).
inline cuda::Seqs cuda_seqs(const Batch& b, std::initializer_list<const View*> data,
                            std::initializer_list<const View*> tokens) {
  cuda::Seqs s;
  s.B = std::max<int64_t>(b.B, 0);
  s.r.t = b.t;
  s.r.t.B = s.B;
  const int32_t layout = b.t.layout;
  int64_t bound = INT64_MAX;
  for (const View* x : data) {
    if (layout == kSeqsRagged) bound = std::min(bound, x->shape[0]);
    else if (layout == kSeqsPadded) bound = std::min(bound, x->shape[2]);
    else s.r.pages = x->shape[0];
  }
  for (const View* x : tokens) bound = std::min(bound, layout == kSeqsRagged ? x->shape[1] : x->shape[2]);
  if (b.paged()) {
    s.r.entries = b.page_table[0].shape[0];
    bound = std::min(bound, s.r.entries * int64_t(b.t.page_size));
    if (s.r.pages < 1) bound = 0;
    s.r.pages = std::max<int64_t>(s.r.pages, 1);
  }
  if (bound == INT64_MAX) bound = 0;
  s.r.rows = bound;
  s.r.max_len = layout == kSeqsPadded && !b.has_table ? std::min(bound, b.t.L) : bound;  // no lengths tensor: every n_b = L
  return s;
}

// A data tensor of a batch (ragged [T, H, d], padded [B, H, L, d], NHD / HND pages) as one sequence's [H, n, d] rows:
// n1 = the bound of every n_b, sq the stride between sequences or pages.
inline cuda::T3 batch_t3(const Batch& b, const View& x, const cuda::Seqs& s) {
  const SeqStrides st = seq_strides(b.t.layout, x.stride);
  const int32_t layout = b.t.layout;
  const int64_t H = layout == kSeqsRagged ? x.shape[1] : layout == kSeqsPagedNHD ? x.shape[2] : x.shape[1];
  const int64_t d = layout == kSeqsRagged ? x.shape[2] : x.shape[3];
  cuda::T3 t{x.base, x.dtype, H, s.r.max_len, d, st.head, st.token, st.elem};
  t.sq = st.seq;
  return t;
}
inline cuda::O3 batch_o3(const Batch& b, const View& x, const cuda::Seqs& s) {
  const cuda::T3 t = batch_t3(b, x, s);
  cuda::O3 o{x.base, t.dtype, t.n0, t.n1, t.n2, t.s0, t.s1, t.s2};
  o.sq = t.sq;
  return o;
}
// A per-token tensor of a batch: ragged [H, T'] (columns indptr[b] + i), otherwise [B, H, L'].
inline cuda::T2 batch_tok(const Batch& b, const View& x) {
  if (b.t.layout == kSeqsRagged) return t2(x);
  cuda::T2 t{x.base, x.dtype, x.shape[1], x.shape[2], x.stride[1], x.stride[2]};
  t.sq = x.stride[0];
  return t;
}
// A per-sequence tensor [B, X, ...] as its [X, ...] slice with sq the stride between sequences ([B, H, cap], [B, H]).
inline cuda::T2 seq_t2(const View& x) {
  cuda::T2 t{x.base, x.dtype, x.ndim > 1 ? x.shape[1] : 1, x.ndim > 2 ? x.shape[2] : 1, x.ndim > 1 ? x.stride[1] : 1,
             x.ndim > 2 ? x.stride[2] : 1};
  t.sq = x.stride[0];
  return t;
}
inline cuda::T3 seq_t3(const View& x) {
  cuda::T3 t{x.base, x.dtype, x.shape[1], x.shape[2], x.shape[3], x.stride[1], x.stride[2], x.stride[3]};
  t.sq = x.stride[0];
  return t;
}
inline cuda::O3 seq_o3(const View& x) {
  cuda::O3 t{x.base, x.dtype, x.shape[1], x.shape[2], x.shape[3], x.stride[1], x.stride[2], x.stride[3]};
  t.sq = x.stride[0];
  return t;
}

// An optional i32 [B] keep tensor (already checked by resolve_keep): its pointer and stride, or null.
inline const int32_t* keep_ptr(const kvt_tensor* keep, int64_t* stride) {
  View kt;
  *stride = 1;
  if (!keep || check_tensor(keep, "keep", 1, kMaskI32, "[B]", &kt) != KVT_OK) return nullptr;
  *stride = kt.stride[0];
  return kt.ptr<int32_t>();
}

}  // namespace kvt

#define KVT_CUDA_TRY(expr)                                                      \
  do {                                                                          \
    cudaError_t _e = (expr);                                                    \
    if (_e != cudaSuccess) return ::kvt::cuda_status(_e, #expr);                \
  } while (0)
