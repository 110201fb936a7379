// Row addressing of runtime-shaped caches (docs/runtime-caches.md §1): a batch of sequences laid out ragged, padded or
// in pages (FlashInfer's indptr / indices / last_page_len), as raw pointers and element strides that the CPU backend
// and the CUDA kernels both read. A sequence's heads are "virtual heads" of the batch, each with its own length and
// row map; the per-token math does not change.
#pragma once

#include <stdint.h>

#include "math/common.h"

namespace kvt {

enum SeqsLayout : int32_t { kSeqsRagged = 0, kSeqsPadded = 1, kSeqsPagedNHD = 2, kSeqsPagedHND = 3 };

// The sequence table of a batch (host or device pointers; strides in elements).
struct SeqTable {
  int32_t layout = kSeqsRagged;
  int32_t page_size = 0;
  int64_t B = 0;
  int64_t L = 0;  // padded: the data's sequence dimension (every length when `lengths` is null)
  const int32_t* indptr = nullptr;
  int64_t indptr_s = 1;
  const int32_t* lengths = nullptr;
  int64_t lengths_s = 1;
  const int32_t* indices = nullptr;
  int64_t indices_s = 1;
  const int32_t* last = nullptr;
  int64_t last_s = 1;

  KVT_HD bool paged() const { return layout == kSeqsPagedNHD || layout == kSeqsPagedHND; }
  // Pages of sequence b (paged layouts).
  KVT_HD int64_t pages(int64_t b) const { return int64_t(indptr[(b + 1) * indptr_s]) - int64_t(indptr[b * indptr_s]); }
  // n_b: the tokens of sequence b.
  KVT_HD int64_t length(int64_t b) const {
    switch (layout) {
      case kSeqsRagged: return int64_t(indptr[(b + 1) * indptr_s]) - int64_t(indptr[b * indptr_s]);
      case kSeqsPadded: return lengths ? int64_t(lengths[b * lengths_s]) : L;
      default: {
        const int64_t p = pages(b);
        return p == 0 ? 0 : (p - 1) * int64_t(page_size) + int64_t(last[b * last_s]);
      }
    }
  }
  // First entry of sequence b's page list in `indices` (paged) or its first data row (ragged).
  KVT_HD int64_t first(int64_t b) const { return int64_t(indptr[b * indptr_s]); }
};

// Element offset of slot `i` of a paged sequence whose page list starts at `ids` (stride ids_s), relative to the
// pool's base: page ids[(i / page_size)], slot i % page_size. Add h * (head stride) for the row of head h.
// Page sizes are usually powers of two (16, 64): a shift and a mask instead of a division.
KVT_HD int64_t paged_slot_offset(const int32_t* ids, int64_t ids_s, int64_t page_size, int64_t page_stride,
                                 int64_t slot_stride, int64_t i) {
  int64_t page, slot;
  if ((page_size & (page_size - 1)) == 0) {
#if defined(__CUDA_ARCH__)
    const int shift = __ffsll(page_size) - 1;
#else
    const int shift = __builtin_ctzll(uint64_t(page_size));
#endif
    page = i >> shift;
    slot = i & (page_size - 1);
  } else {
    page = i / page_size;
    slot = i - page * page_size;
  }
  return int64_t(ids[page * ids_s]) * page_stride + slot * slot_stride;
}

// The data tensor's strides of one batch layout as the three strides of a sequence's [H, n, d] view: head, token
// (slot, for pages) and element; `seq_stride` is the stride between sequences (padded) or pages (paged).
struct SeqStrides {
  int64_t seq = 0, head = 0, token = 0, elem = 1;
};

// Strides of a data tensor with strides s[] in the given layout (ragged [T, H, d], padded [B, H, L, d], NHD
// [P, S, H, d], HND [P, H, S, d]).
KVT_HD SeqStrides seq_strides(int32_t layout, const int64_t* s) {
  SeqStrides r;
  switch (layout) {
    case kSeqsRagged: r.seq = 0; r.token = s[0]; r.head = s[1]; r.elem = s[2]; break;
    case kSeqsPadded: r.seq = s[0]; r.head = s[1]; r.token = s[2]; r.elem = s[3]; break;
    case kSeqsPagedNHD: r.seq = s[0]; r.token = s[1]; r.head = s[2]; r.elem = s[3]; break;
    default: r.seq = s[0]; r.head = s[1]; r.token = s[2]; r.elem = s[3]; break;
  }
  return r;
}

// Element offset of row (b, h, i) of a batch's data tensor (docs/runtime-caches.md §1).
KVT_HD int64_t seq_row_offset(const SeqTable& t, const SeqStrides& s, int64_t b, int64_t h, int64_t i) {
  switch (t.layout) {
    case kSeqsRagged: return (t.first(b) + i) * s.token + h * s.head;
    case kSeqsPadded: return b * s.seq + h * s.head + i * s.token;
    default:
      return paged_slot_offset(t.indices + t.first(b) * t.indices_s, t.indices_s, t.page_size, s.seq, s.token, i) +
             h * s.head;
  }
}

}  // namespace kvt
