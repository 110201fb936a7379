// C ABI entry point of in-place compaction (docs/runtime-caches.md §4): validation of the batch, its index lists and
// (paged) page ownership, then the CPU backend per sequence and the page bookkeeping (lengths, pages still used, the
// freed pages).
#include <algorithm>
#include <string>
#include <vector>

#include "abi/batch.h"
#include "abi/validate.h"
#include "cpu/batch.h"
#include "cpu/ops.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

namespace {

std::string S(int64_t v) { return std::to_string(v); }

// The optional i32 outputs of kvt_compact_out as views (`present` false when NULL).
struct Outs {
  View lengths, page_counts, last, freed, freed_count;
  bool has[5] = {false, false, false, false, false};
};

kvt_status check_out(Batch& b, const kvt_tensor* t, const char* name, int64_t n, const char* dims, View* v, bool* has) {
  *has = t != nullptr;
  if (!t) return KVT_OK;
  KVT_TRY(check_tensor(t, name, 1, kMaskI32, dims, v));
  KVT_TRY(check_same_device(b.ref, "the sequence table", *v, name));
  if (n >= 0) KVT_TRY(check_dim(*v, name, 0, n, dims));
  return KVT_OK;
}

// Host, paged: every page of the batch's page lists belongs to one place only (compaction writes them).
kvt_status check_page_owners(const Batch& b) {
  std::vector<int64_t> owner(size_t(b.P), -1);
  for (int64_t s = 0; s < b.B; s++)
    for (int64_t j = b.t.first(s); j < b.t.first(s + 1); j++) {
      const int64_t p = b.t.indices[j * b.t.indices_s];
      if (owner[size_t(p)] >= 0)
        return fail(KVT_ERR_RANGE, "indices: page " + S(p) + " is listed twice (entries " + S(owner[size_t(p)]) + " and " + S(j) +
                                       "); compactInPlace writes every page of the batch, so a page must belong to one sequence "
                                       "(copy shared prefix pages first)");
      owner[size_t(p)] = j;
    }
  return KVT_OK;
}

}  // namespace

extern "C" kvt_status kvt_compact_in_place(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* values,
                                           const kvt_tensor* indices, const kvt_tensor* counts, const kvt_moments* moments,
                                           const kvt_compact_out* out, kvt_stream stream) try {
  (void)stream;
  Batch b;
  View k, v, idx, cnt;
  int64_t H, d, Hv, dv;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &k, &H, &d));
  KVT_TRY(check_seq_data(b, values, "values", kMaskFloat, &v, &Hv, &dv));
  if (Hv != H) return fail(KVT_ERR_RANGE, "values: expected H = " + S(H) + " heads like keys, got " + S(Hv));
  if (k.base == v.base && k.dtype == v.dtype && k.stride[0] == v.stride[0] && k.stride[1] == v.stride[1])
    return fail(KVT_ERR_RANGE, "values: must not be the same tensor as keys");
  // keys and values are written in place: one location per element
  KVT_TRY(check_distinct(k, "keys"));
  KVT_TRY(check_distinct(v, "values"));
  KVT_TRY(check_seq_tensor(b, indices, "indices", 3, kMaskI32, "[B, H, cap]", H, &idx));
  KVT_TRY(check_seq_tensor(b, counts, "counts", 2, kMaskI32, "[B, H]", H, &cnt));
  // The data is written: nothing it reads may live inside it.
  const View* reads[] = {&idx, &cnt, &b.table, &b.page_table[0], &b.page_table[1]};
  const char* read_names[] = {"indices", "counts", "the sequence table", "the page list", "lastPageLen"};
  const int nreads = b.paged() ? 5 : b.has_table ? 3 : 2;
  for (const View* x : {&k, &v})
    for (int i = 0; i < nreads; i++) KVT_TRY(check_no_overlap(*x, x == &k ? "keys" : "values", *reads[i], read_names[i]));
  MomentViews m;
  if (moments) {
    KVT_TRY(check_batch_moments(b, moments, k, H, d, dv, &m));
    KVT_TRY(check_moments_not_table(b, m));
    const View* views[] = {&k, &v, &idx, &cnt};
    const char* names[] = {"keys", "values", "indices", "counts"};
    for (int i = 0; i < 4; i++) KVT_TRY(check_moments_no_overlap(m, *views[i], names[i]));
  }
  Outs o;
  const kvt_compact_out none{};
  const kvt_compact_out& w = out ? *out : none;
  KVT_TRY(check_out(b, w.lengths, "lengths", b.B, "[B]", &o.lengths, &o.has[0]));
  if (!b.paged() && (w.page_counts || w.last_page_len || w.freed || w.freed_count))
    return fail(KVT_ERR_TYPE, "pageCounts, lastPageLen, freed, freedCount: only for paged caches (this batch is " +
                                  std::string(b.t.layout == kSeqsRagged ? "ragged" : "padded") + ")");
  KVT_TRY(check_out(b, w.page_counts, "pageCounts", b.B, "[B]", &o.page_counts, &o.has[1]));
  KVT_TRY(check_out(b, w.last_page_len, "lastPageLen", b.B, "[B]", &o.last, &o.has[2]));
  KVT_TRY(check_out(b, w.freed, "freed", -1, "[F]", &o.freed, &o.has[3]));
  KVT_TRY(check_out(b, w.freed_count, "freedCount", 1, "[1]", &o.freed_count, &o.has[4]));
  if (o.has[3] && o.freed.shape[0] < seqs->indices->shape[0])
    return fail(KVT_ERR_RANGE, "freed: needs room for every entry of indices (" + S(seqs->indices->shape[0]) + "), got shape " +
                                   shape_str(o.freed.shape, 1));
  View* outs[] = {&o.lengths, &o.page_counts, &o.last, &o.freed, &o.freed_count};
  const char* out_names[] = {"lengths", "pageCounts", "lastPageLen", "freed", "freedCount"};
  for (int a = 0; a < 5; a++) {
    if (!o.has[a]) continue;
    KVT_TRY(check_distinct(*outs[a], out_names[a]));
    for (const View* x : {&k, &v, &idx, &cnt}) KVT_TRY(check_no_overlap(*outs[a], out_names[a], *x, "an input"));
    for (int i = 2; i < nreads; i++) KVT_TRY(check_no_overlap(*outs[a], out_names[a], *reads[i], read_names[i]));
    if (moments) KVT_TRY(check_moments_no_overlap(m, *outs[a], out_names[a]));
    for (int c = 0; c < a; c++)
      if (o.has[c]) KVT_TRY(check_no_overlap(*outs[a], out_names[a], *outs[c], out_names[c]));
  }
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // device tables and lists: clamped by the kernels; pages shared between sequences are the caller's to avoid
    KVT_CUDA_TRY(set_device(k.device_id));
    const cuda::Seqs sq = cuda_seqs(b, {&k, &v}, {});
    auto ptr = [&](int a, const View& x, int64_t* st) -> int32_t* {
      *st = o.has[a] ? x.stride[0] : 1;
      return o.has[a] ? x.ptr<int32_t>() : nullptr;
    };
    cuda::CompactOut co{};
    co.lengths = ptr(0, o.lengths, &co.lengths_s);
    co.page_counts = ptr(1, o.page_counts, &co.page_counts_s);
    co.last = ptr(2, o.last, &co.last_s);
    co.freed = ptr(3, o.freed, &co.freed_s);
    co.freed_n = o.has[3] ? o.freed.shape[0] : 0;
    int64_t unused;
    co.freed_count = ptr(4, o.freed_count, &unused);
    cuda::Moments cm{};
    if (moments) cm = cuda_moments(m);
    return cuda_status(cuda::compact_in_place(sq, batch_t3(b, k, sq), batch_t3(b, v, sq), seq_t2(idx), seq_t2(cnt),
                                              moments ? &cm : nullptr, co, static_cast<cudaStream_t>(stream)),
                       "compactInPlace");
  }
#endif
  KVT_TRY(check_index_lists(b, idx, "indices", cnt, idx.shape[2]));
  if (b.paged()) KVT_TRY(check_page_owners(b));
  cpu::for_each_seq(b.B, [&](int64_t s) { return H * b.len(s); },
                    [&](int64_t s) {
                      if (H == 0 || b.len(s) == 0) return;
                      const MomentViews ms = moments ? moments_slice(m, s, H) : MomentViews();
                      cpu::compact(seq_view(b, k, s), seq_view(b, v, s), seq_slice(idx, s), seq_slice(cnt, s),
                                   moments ? &ms : nullptr);
                    });
  // Bookkeeping: lengths, and for pages the pages still used and the freed ones.
  auto put = [](const View& x, int64_t i, int64_t val) { x.ptr<int32_t>()[i * x.stride[0]] = int32_t(val); };
  int64_t nfreed = 0;
  for (int64_t s = 0; s < b.B; s++) {
    int64_t len = 0;
    for (int64_t h = 0; h < H; h++) len = std::max<int64_t>(len, cnt.ptr<int32_t>()[s * cnt.stride[0] + h * cnt.stride[1]]);
    if (o.has[0]) put(o.lengths, s, len);
    if (!b.paged()) continue;
    const int64_t P = b.t.page_size, kept = (len + P - 1) / P;
    if (o.has[1]) put(o.page_counts, s, kept);
    if (o.has[2]) put(o.last, s, kept == 0 ? 0 : len - (kept - 1) * P);
    for (int64_t j = b.t.first(s) + kept; j < b.t.first(s + 1); j++, nfreed++)
      if (o.has[3]) put(o.freed, nfreed, b.t.indices[j * b.t.indices_s]);
  }
  if (o.has[3])
    for (int64_t j = nfreed; j < o.freed.shape[0]; j++) put(o.freed, j, -1);
  if (o.has[4]) put(o.freed_count, 0, nfreed);
  return KVT_OK;
} KVT_API_CATCH
