// Checked batches of sequences for the *_batched entry points (docs/runtime-caches.md §1-§2): the sequence table
// (kvt_seqs), the data, per-token and per-head tensors of a batch, and the views of one sequence's rows that the
// per-sequence CPU code runs on (strided for ragged and padded batches, paged views otherwise). Not public ABI.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

#include "abi/moment_state.h"
#include "abi/validate.h"
#include "math/batch.h"

namespace kvt {

struct Batch {
  SeqTable t;        // raw table (host or device pointers)
  int64_t B = -1;    // sequences (-1 until known: a padded batch without lengths takes B from its first tensor)
  int64_t P = -1;    // pages in the pool (paged, once a data tensor is checked)
  View table;        // indptr (ragged, paged) or lengths (padded), when has_table
  bool has_table = false;
  View page_table[2];  // paged: indices, last_page_len
  View ref;          // the device of the batch: the table, or the first tensor checked
  bool has_ref = false;
  bool on_cuda = false;
  // Host tables only: n_b, max_b n_b and the page-list range used (paged).
  std::vector<int64_t> n;
  int64_t max_n = 0;

  bool host() const { return !on_cuda; }
  bool paged() const { return t.paged(); }
  int64_t len(int64_t s) const { return n[size_t(s)]; }
};

// Checks the table of `seqs` (named `name`, e.g. "seqs") into `b`; on the host also every entry: indptr non-decreasing
// from >= 0, lengths >= 0, last_page_len in [0, page_size] for sequences with pages, indptr[B] within indices.
kvt_status check_seqs(const kvt_seqs* seqs, const char* name, Batch* b);

// A data tensor of the batch (keys, values, queries): ragged [T, H, d], padded [B, H, L, d], NHD [P, S, H, d] or
// HND [P, H, S, d], on the table's device. On the host also the table against its shape (rows, lengths, page ids).
// `*H` and `*d` receive its head count and row width.
kvt_status check_seq_data(Batch& b, const kvt_tensor* t, const char* name, uint32_t dtype_mask, View* v, int64_t* H,
                          int64_t* d);
// Sequence s of a checked data tensor as a [H, n_s, d] view (paged: rows through the page table).
View seq_view(const Batch& b, const View& data, int64_t s);

// A per-token tensor: [H, T'] for ragged batches (T' >= indptr[B]), [B, H, L'] otherwise (L' >= max n_b).
kvt_status check_token_tensor(Batch& b, const kvt_tensor* t, const char* name, uint32_t dtype_mask, int64_t H, View* v);
// Sequence s of a per-token tensor as an [H, n_s] view.
View token_view(const Batch& b, const View& x, int64_t s);

// A per-sequence tensor [B, ...] of rank `ndim` (dims as in "[B, H, cap]"); dim 1 must equal `H` when H >= 0. Check
// a data or per-token tensor first (a padded batch without lengths takes its size from them).
kvt_status check_seq_tensor(Batch& b, const kvt_tensor* t, const char* name, int ndim, uint32_t dtype_mask,
                            const char* dims, int64_t H, View* v);
// Entry s of a [B, ...] tensor, without its leading dimension.
View seq_slice(const View& x, int64_t s);

// A moment state of B*H virtual heads; sequence s's H heads as a state of its own.
kvt_status check_batch_moments(const Batch& b, const kvt_moments* m, const View& ref, int64_t H, int64_t d, int64_t dv,
                               MomentViews* out);
MomentViews moments_slice(const MomentViews& m, int64_t s, int64_t H);

// Outputs (and tensors written in place) never share memory with the tensors of the sequence table they are written
// under: indptr / lengths, and the page list and last-page lengths of a paged table. `moments` (optional) checks all
// four views of a moment state.
kvt_status check_not_table(const Batch& b, const View& v, const char* name);
kvt_status check_moments_not_table(const Batch& b, const MomentViews& m);

// Host: for every sequence s and head h, counts[s, h] in [0, min(cap of indices, cap_out)] and the first counts of
// indices[s, h] strictly ascending positions in [0, n_s).
kvt_status check_index_lists(const Batch& b, const View& idx, const char* idx_name, const View& cnt, int64_t cap_out);
// Host: keep_b = min(keep[b] (or `keep`), n_b) for every sequence; `*out` receives them. Every keep must be >= 1
// for a non-empty sequence.
kvt_status resolve_keep(const Batch& b, int32_t keep, const kvt_tensor* keep_t, std::vector<int32_t>* out);

// abi/select.cc, shared with the tensor-parallel selection (abi/tp_select.cc): the selection options other than keep,
// and the adaptive budget's per-head safeguard floor(keep * safeguard) (0 for uniform).
kvt_status check_select_opts(const kvt_select_opts& o);
int32_t select_n_safe(const kvt_select_opts& o);

}  // namespace kvt
