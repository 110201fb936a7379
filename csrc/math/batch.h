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

// Page and slot of token i of a paged sequence: i / page_size and i % page_size. Page sizes are usually powers of two
// (16, 64): a shift and a mask instead of a division.
KVT_HD void page_slot(int64_t i, int64_t page_size, int64_t* page, int64_t* slot) {
  if ((page_size & (page_size - 1)) == 0) {
#if defined(__CUDA_ARCH__)
    const int shift = __ffsll(page_size) - 1;
#else
    const int shift = __builtin_ctzll(uint64_t(page_size));
#endif
    *page = i >> shift;
    *slot = i & (page_size - 1);
  } else {
    *page = i / page_size;
    *slot = i - *page * page_size;
  }
}

// Element offset of slot `i` of a paged sequence whose page list starts at `ids` (stride ids_s), relative to the
// pool's base: page ids[(i / page_size)], slot i % page_size. Add h * (head stride) for the row of head h.
KVT_HD int64_t paged_slot_offset(const int32_t* ids, int64_t ids_s, int64_t page_size, int64_t page_stride,
                                 int64_t slot_stride, int64_t i) {
  int64_t page, slot;
  page_slot(i, page_size, &page, &slot);
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


// The table of a batch as the CUDA kernels read it (docs/runtime-caches.md §6): the tables are device data that the
// host never sees, so every entry is clamped to bounds taken from the tensors' shapes: a wrong table gives unspecified
// values but never an access outside a tensor. `length(b)` and `offset(...)` are the kernels' row map; a single
// strided [H, N, d] tensor (the per-sequence ops) is the padded batch B = 1 without lengths, L = N.
struct SeqRows {
  SeqTable t;
  int64_t rows = 0;     // ragged: indptr entries clamped to [0, rows] (the rows of every tensor read or written)
  int64_t entries = 0;  // paged: indptr entries clamped to [0, entries] (the entries of indices)
  int64_t pages = 1;    // paged: page ids clamped to [0, pages)
  int64_t max_len = 0;  // every n_b clamped to [0, max_len] (padded: L; paged: the per-token tensors' L')

  KVT_HD int64_t clamp(int64_t x, int64_t lo, int64_t hi) const { return x < lo ? lo : (x > hi ? hi : x); }
  // indptr[b] clamped (ragged: to the rows; paged: to the entries of indices).
  KVT_HD int64_t first(int64_t b) const {
    return clamp(int64_t(t.indptr[b * t.indptr_s]), 0, t.layout == kSeqsRagged ? rows : entries);
  }
  // n_b, clamped: first(b) + n_b stays within the rows (ragged), n_b within max_len.
  KVT_HD int64_t length(int64_t b) const {
    int64_t n;
    switch (t.layout) {
      case kSeqsRagged: {
        const int64_t lo = first(b);
        n = clamp(int64_t(t.indptr[(b + 1) * t.indptr_s]), lo, rows) - lo;
        break;
      }
      case kSeqsPadded: n = t.lengths ? int64_t(t.lengths[b * t.lengths_s]) : t.L; break;
      default: {
        const int64_t lo = first(b), p = clamp(int64_t(t.indptr[(b + 1) * t.indptr_s]), lo, entries) - lo;
        const int64_t ps = t.page_size;
        n = p == 0 ? 0 : (p - 1) * ps + clamp(int64_t(t.last[b * t.last_s]), 0, ps);
      }
    }
    return clamp(n, 0, max_len);
  }
  // Page id of entry e of the page list (clamped).
  KVT_HD int64_t page(int64_t e) const { return clamp(int64_t(t.indices[e * t.indices_s]), 0, pages - 1); }
  // Element offset of row (b, h, i), i < length(b), of a data tensor with the given strides; `seq` is the stride
  // between sequences (padded) or pages (paged), unused for ragged batches.
  KVT_HD int64_t offset(int64_t seq, int64_t head, int64_t token, int64_t b, int64_t h, int64_t i) const {
    if (t.layout == kSeqsRagged) return (first(b) + i) * token + h * head;
    if (t.layout == kSeqsPadded) return b * seq + h * head + i * token;
    int64_t pg, slot;
    page_slot(i, t.page_size, &pg, &slot);
    return page(first(b) + pg) * seq + slot * token + h * head;
  }
  // Element offset of token (b, h, i) of a per-token tensor (docs/runtime-caches.md §2): ragged [H, T'] at column
  // indptr[b] + i (`seq` unused), otherwise [B, H, L'].
  KVT_HD int64_t tok_offset(int64_t seq, int64_t head, int64_t token, int64_t b, int64_t h, int64_t i) const {
    if (t.layout == kSeqsRagged) return (first(b) + i) * token + h * head;
    return b * seq + h * head + i * token;
  }
};

}  // namespace kvt
