// The checks and sequence views of abi/batch.h: a kvt_seqs table and the tensors of a batch, validated once per call;
// on the host every table entry and index list before anything is written.
#include "abi/batch.h"

#include <algorithm>
#include <string>

namespace kvt {

namespace {

std::string S(int64_t v) { return std::to_string(v); }

int32_t at1(const View& v, int64_t i) { return v.ptr<int32_t>()[i * v.stride[0]]; }

// The batch size (and, for a padded batch without lengths, every length) from the first tensor that has them.
kvt_status set_extent(Batch& b, int64_t B, int64_t L, const char* name) {
  // every sequence has L tokens: the same limit as a table's lengths (an empty tensor can have any L)
  if (L >= (int64_t(1) << 31) - 1)
    return fail(KVT_ERR_RANGE, std::string(name) + ": a padded batch without lengths has L = " + S(L) +
                                   " tokens per sequence (dimension 2), more than 2^31 - 2");
  b.B = b.t.B = B;
  b.t.L = L;
  if (b.host()) {
    b.n.assign(size_t(B), L);
    b.max_n = B > 0 ? L : 0;
  }
  return KVT_OK;
}

// Requires the leading dimension of a [B, ...] tensor to be the batch size.
kvt_status match_B(const Batch& b, const View& v, const char* name) {
  if (v.shape[0] != b.B)
    return fail(KVT_ERR_RANGE, std::string(name) + ": expected " + S(b.B) + " sequences (the batch size, dimension 0), got shape " +
                                   shape_str(v.shape, v.ndim));
  return KVT_OK;
}

// Every tensor of a batch lives on one device: the table's, or the first tensor's when there is no table.
kvt_status same_device(Batch& b, const View& v, const char* name) {
  if (!b.has_ref) {
    b.ref = v;
    b.has_ref = true;
    b.on_cuda = v.on_cuda();
    return KVT_OK;
  }
  return check_same_device(b.ref, "the sequence table", v, name);
}

}  // namespace

kvt_status check_seqs(const kvt_seqs* seqs, const char* name, Batch* b) {
  const std::string nm(name);
  if (!seqs) return fail(KVT_ERR_TYPE, nm + ": missing sequence table");
  const int32_t layout = seqs->layout;
  if (layout < kSeqsRagged || layout > kSeqsPagedHND)
    return fail(KVT_ERR_RANGE, nm + ".layout: must be ragged, padded, NHD or HND, got " + S(layout));
  b->t = SeqTable();
  b->t.layout = layout;
  View ip, ln, ix, lp;
  const bool paged = layout >= kSeqsPagedNHD;
  if (layout == kSeqsRagged || paged) {
    KVT_TRY(check_tensor(seqs->indptr, (nm + ".indptr").c_str(), 1, kMaskI32, "[B + 1]", &ip));
    if (ip.shape[0] < 1) return fail(KVT_ERR_RANGE, nm + ".indptr: needs B + 1 >= 1 entries, got 0");
    b->B = ip.shape[0] - 1;
    b->table = b->ref = ip;
    b->has_ref = b->has_table = true;
    b->t.indptr = ip.ptr<int32_t>();
    b->t.indptr_s = ip.stride[0];
  }
  if (layout == kSeqsPadded) {
    b->B = -1;
    b->has_ref = b->has_table = false;
    if (seqs->lengths) {
      KVT_TRY(check_tensor(seqs->lengths, (nm + ".lengths").c_str(), 1, kMaskI32, "[B]", &ln));
      b->B = ln.shape[0];
      b->table = b->ref = ln;
      b->has_ref = b->has_table = true;
      b->t.lengths = ln.ptr<int32_t>();
      b->t.lengths_s = ln.stride[0];
    }
  }
  if (paged) {
    if (seqs->page_size < 1) return fail(KVT_ERR_RANGE, nm + ".pageSize: must be >= 1, got " + S(seqs->page_size));
    b->t.page_size = seqs->page_size;
    KVT_TRY(check_tensor(seqs->indices, (nm + ".indices").c_str(), 1, kMaskI32, "[pages]", &ix));
    KVT_TRY(check_tensor(seqs->last_page_len, (nm + ".lastPageLen").c_str(), 1, kMaskI32, "[B]", &lp));
    KVT_TRY(check_same_device(ip, (nm + ".indptr").c_str(), ix, (nm + ".indices").c_str()));
    KVT_TRY(check_same_device(ip, (nm + ".indptr").c_str(), lp, (nm + ".lastPageLen").c_str()));
    KVT_TRY(check_dim(lp, (nm + ".lastPageLen").c_str(), 0, b->B, "B (entries of indptr - 1)"));
    b->page_table[0] = ix;
    b->page_table[1] = lp;
    b->t.indices = ix.ptr<int32_t>();
    b->t.indices_s = ix.stride[0];
    b->t.last = lp.ptr<int32_t>();
    b->t.last_s = lp.stride[0];
  }
  b->t.B = b->B;
  b->on_cuda = b->has_ref && b->ref.on_cuda();
  b->n.clear();
  b->max_n = 0;
  if (b->on_cuda || b->B < 0) return KVT_OK;  // device tables are read by the kernels only
  // Host tables: every entry.
  if (layout == kSeqsRagged || paged) {
    const char* what = paged ? ".indptr (offsets into indices)" : ".indptr (token offsets)";
    if (at1(ip, 0) < 0) return fail(KVT_ERR_RANGE, nm + what + ": indptr[0] = " + S(at1(ip, 0)) + " must be >= 0");
    for (int64_t s = 0; s < b->B; s++)
      if (at1(ip, s + 1) < at1(ip, s))
        return fail(KVT_ERR_RANGE, nm + what + ": must be non-decreasing, indptr[" + S(s + 1) + "] = " +
                                       S(at1(ip, s + 1)) + " < indptr[" + S(s) + "] = " + S(at1(ip, s)));
  }
  if (paged && at1(ip, b->B) > ix.shape[0])
    return fail(KVT_ERR_RANGE, nm + ".indptr: indptr[B] = " + S(at1(ip, b->B)) + " exceeds the " + S(ix.shape[0]) +
                                   " entries of indices");
  b->n.resize(size_t(b->B));
  for (int64_t s = 0; s < b->B; s++) {
    if (layout == kSeqsPadded && ln.base) {
      if (at1(ln, s) < 0)
        return fail(KVT_ERR_RANGE, nm + ".lengths: lengths[" + S(s) + "] = " + S(at1(ln, s)) + " must be >= 0");
    }
    if (paged && b->t.pages(s) > 0) {
      const int64_t last = at1(lp, s);
      if (last < 0 || last > seqs->page_size)
        return fail(KVT_ERR_RANGE, nm + ".lastPageLen: lastPageLen[" + S(s) + "] = " + S(last) + " must be in [0, " +
                                       S(seqs->page_size) + "] (sequence " + S(s) + " has pages)");
    }
    const int64_t len = layout == kSeqsPadded && !ln.base ? 0 : b->t.length(s);
    if (len >= (int64_t(1) << 31) - 1)
      return fail(KVT_ERR_RANGE, nm + ": sequence " + S(s) + " has " + S(len) + " tokens, more than 2^31 - 2");
    b->n[size_t(s)] = len;
    b->max_n = std::max(b->max_n, len);
  }
  return KVT_OK;
}

kvt_status check_seq_data(Batch& b, const kvt_tensor* t, const char* name, uint32_t dtype_mask, View* v, int64_t* H,
                          int64_t* d) {
  const int32_t layout = b.t.layout;
  const char* dims = layout == kSeqsRagged   ? "[T, H, d] (ragged batch)"
                     : layout == kSeqsPadded ? "[B, H, L, d] (padded batch)"
                     : layout == kSeqsPagedNHD ? "[pages, pageSize, H, d] (NHD pages)"
                                             : "[pages, H, pageSize, d] (HND pages)";
  KVT_TRY(check_tensor(t, name, layout == kSeqsRagged ? 3 : 4, dtype_mask, dims, v));
  KVT_TRY(same_device(b, *v, name));
  const std::string nm(name);
  switch (layout) {
    case kSeqsRagged:
      *H = v->shape[1];
      *d = v->shape[2];
      if (b.host() && at1(b.table, b.B) > v->shape[0])
        return fail(KVT_ERR_RANGE, nm + ": indptr[B] = " + S(at1(b.table, b.B)) + " exceeds its " + S(v->shape[0]) +
                                       " rows (dimension 0)");
      break;
    case kSeqsPadded: {
      *H = v->shape[1];
      *d = v->shape[3];
      if (!b.has_table) {  // no lengths tensor (an empty one has no pointer but is given)
        if (b.B < 0) KVT_TRY(set_extent(b, v->shape[0], v->shape[2], name));
        else if (v->shape[2] != b.t.L)
          return fail(KVT_ERR_RANGE, nm + ": without lengths every padded tensor needs the same L, expected " +
                                         S(b.t.L) + ", got shape " + shape_str(v->shape, 4));
      }
      KVT_TRY(match_B(b, *v, name));
      if (b.host() && b.max_n > v->shape[2])
        return fail(KVT_ERR_RANGE, nm + ": a sequence of length " + S(b.max_n) + " does not fit its L = " +
                                       S(v->shape[2]) + " (dimension 2)");
      break;
    }
    default: {
      const bool nhd = layout == kSeqsPagedNHD;
      *H = nhd ? v->shape[2] : v->shape[1];
      *d = v->shape[3];
      KVT_TRY(check_dim(*v, name, nhd ? 1 : 2, b.t.page_size, "pageSize"));
      if (b.P >= 0 && b.P != v->shape[0])
        return fail(KVT_ERR_RANGE, nm + ": expected " + S(b.P) + " pages like the other page pools, got shape " +
                                       shape_str(v->shape, 4));
      b.P = v->shape[0];
      if (b.host()) {
        const View& ip = b.table;
        for (int64_t s = 0; s < b.B; s++)
          for (int64_t j = at1(ip, s); j < at1(ip, s + 1); j++) {
            const int64_t p = b.t.indices[j * b.t.indices_s];
            if (p < 0 || p >= b.P)
              return fail(KVT_ERR_RANGE, "indices: page id " + S(p) + " of sequence " + S(s) + " (entry " + S(j) +
                                             ") is outside [0, " + S(b.P) + "), the pages of " + nm);
          }
      }
    }
  }
  return KVT_OK;
}

View seq_view(const Batch& b, const View& x, int64_t s) {
  const SeqStrides st = seq_strides(b.t.layout, x.stride);
  const int es = dtype_size(x.dtype);
  View v = x;
  v.ndim = 3;
  const int32_t layout = b.t.layout;
  v.shape[0] = layout == kSeqsRagged ? x.shape[1] : layout == kSeqsPagedNHD ? x.shape[2] : x.shape[1];
  v.shape[1] = b.len(s);
  v.shape[2] = layout == kSeqsRagged ? x.shape[2] : x.shape[3];
  v.shape[3] = 1;
  v.stride[0] = st.head;
  v.stride[1] = st.token;
  v.stride[2] = st.elem;
  v.stride[3] = 0;
  if (layout == kSeqsRagged) {
    v.base += b.t.first(s) * st.token * es;
  } else if (layout == kSeqsPadded) {
    v.base += s * st.seq * es;
  } else {
    v.pages = b.t.indices + b.t.first(s) * b.t.indices_s;
    v.pages_stride = b.t.indices_s;
    v.page_size = b.t.page_size;
    v.page_stride = st.seq;
  }
  return v;
}

kvt_status check_token_tensor(Batch& b, const kvt_tensor* t, const char* name, uint32_t dtype_mask, int64_t H, View* v) {
  const std::string nm(name);
  if (b.t.layout == kSeqsRagged) {
    KVT_TRY(check_tensor(t, name, 2, dtype_mask, "[H, T] (per token of a ragged batch)", v));
    KVT_TRY(same_device(b, *v, name));
    if (H >= 0) KVT_TRY(check_dim(*v, name, 0, H, "H (heads)"));
    if (b.host() && at1(b.table, b.B) > v->shape[1])
      return fail(KVT_ERR_RANGE, nm + ": indptr[B] = " + S(at1(b.table, b.B)) + " exceeds its " + S(v->shape[1]) +
                                     " columns (dimension 1)");
  } else {
    KVT_TRY(check_tensor(t, name, 3, dtype_mask, "[B, H, L] (per token of a padded or paged batch)", v));
    KVT_TRY(same_device(b, *v, name));
    // a padded batch without lengths and without a data tensor (e.g. selection) spans the whole tensor
    if (b.t.layout == kSeqsPadded && !b.t.lengths && b.B < 0) KVT_TRY(set_extent(b, v->shape[0], v->shape[2], name));
    KVT_TRY(match_B(b, *v, name));
    if (H >= 0) KVT_TRY(check_dim(*v, name, 1, H, "H (heads)"));
    if (b.host() && b.max_n > v->shape[2])
      return fail(KVT_ERR_RANGE, nm + ": a sequence of length " + S(b.max_n) + " does not fit its " + S(v->shape[2]) +
                                     " columns (dimension 2)");
    return KVT_OK;
  }
  return same_device(b, *v, name);
}

View token_view(const Batch& b, const View& x, int64_t s) {
  View v = x;
  const int es = dtype_size(x.dtype);
  v.ndim = 2;
  if (b.t.layout == kSeqsRagged) {
    v.base += b.t.first(s) * x.stride[1] * es;
  } else {
    v.base += s * x.stride[0] * es;
    v.shape[0] = x.shape[1];
    v.stride[0] = x.stride[1];
    v.stride[1] = x.stride[2];
  }
  v.shape[1] = b.len(s);
  v.shape[2] = v.shape[3] = 1;
  v.stride[2] = v.stride[3] = 0;
  return v;
}

kvt_status check_seq_tensor(Batch& b, const kvt_tensor* t, const char* name, int ndim, uint32_t dtype_mask,
                            const char* dims, int64_t H, View* v) {
  KVT_TRY(check_tensor(t, name, ndim, dtype_mask, dims, v));
  KVT_TRY(same_device(b, *v, name));
  if (b.B < 0) return fail(KVT_ERR_INTERNAL, std::string(name) + ": checked before the batch size is known");
  KVT_TRY(match_B(b, *v, name));
  if (H >= 0 && ndim > 1) KVT_TRY(check_dim(*v, name, 1, H, "H (heads)"));
  return KVT_OK;
}

View seq_slice(const View& x, int64_t s) {
  View v = x;
  v.base += s * x.stride[0] * dtype_size(x.dtype);
  v.ndim = x.ndim - 1;
  for (int i = 0; i < 3; i++) {
    v.shape[i] = x.shape[i + 1];
    v.stride[i] = x.stride[i + 1];
  }
  v.shape[3] = 1;
  v.stride[3] = 0;
  return v;
}

kvt_status check_batch_moments(const Batch& b, const kvt_moments* m, const View& ref, int64_t H, int64_t d, int64_t dv,
                               MomentViews* out) {
  return check_moments(m, ref, "keys", b.B * H, d, dv, out);
}

MomentViews moments_slice(const MomentViews& m, int64_t s, int64_t H) {
  MomentViews r = m;
  for (int i = 0; i < 4; i++) {
    r.v[i].base += s * H * m.v[i].stride[0] * dtype_size(m.v[i].dtype);
    r.v[i].shape[0] = H;
  }
  return r;
}

kvt_status check_not_table(const Batch& b, const View& v, const char* name) {
  if (b.has_table) KVT_TRY(check_no_overlap(v, name, b.table, b.t.layout == kSeqsPadded ? "seqs.lengths" : "seqs.indptr"));
  if (b.paged()) {
    KVT_TRY(check_no_overlap(v, name, b.page_table[0], "seqs.indices"));
    KVT_TRY(check_no_overlap(v, name, b.page_table[1], "seqs.lastPageLen"));
  }
  return KVT_OK;
}

kvt_status check_moments_not_table(const Batch& b, const MomentViews& m) {
  static const char* names[4] = {"moments.n", "moments.muK", "moments.muV", "moments.m"};
  for (int i = 0; i < 4; i++) KVT_TRY(check_not_table(b, m.v[i], names[i]));
  return KVT_OK;
}

kvt_status check_index_lists(const Batch& b, const View& idx, const char* idx_name, const View& cnt, int64_t cap_out) {
  const int64_t H = idx.shape[1], cap = idx.shape[2];
  const int32_t* I = idx.ptr<int32_t>();
  const int32_t* C = cnt.ptr<int32_t>();
  for (int64_t s = 0; s < b.B; s++) {
    const int64_t n = b.len(s);
    for (int64_t h = 0; h < H; h++) {
      const int64_t c = C[s * cnt.stride[0] + h * cnt.stride[1]];
      const int64_t hi = std::min({cap, cap_out, n});
      if (c < 0 || c > hi)
        return fail(KVT_ERR_RANGE, "counts: counts[" + S(s) + ", " + S(h) + "] = " + S(c) + " must be in [0, " + S(hi) +
                                       "] (min of the capacity " + S(cap) + " of " + idx_name +
                                       (cap_out < cap ? ", the output capacity " + S(cap_out) : std::string()) +
                                       " and the sequence length " + S(n) + ")");
      int64_t prev = -1;
      for (int64_t j = 0; j < c; j++) {
        const int64_t i = I[s * idx.stride[0] + h * idx.stride[1] + j * idx.stride[2]];
        if (i < 0 || i >= n || i <= prev)
          return fail(KVT_ERR_RANGE, std::string(idx_name) + ": row [" + S(s) + ", " + S(h) +
                                         "] must hold strictly ascending positions in [0, " + S(n) +
                                         ") before its count; entry " + S(j) + " is " + S(i));
        prev = i;
      }
    }
  }
  return KVT_OK;
}

kvt_status resolve_keep(const Batch& b, int32_t keep, const kvt_tensor* keep_t, std::vector<int32_t>* out) {
  View kt;
  if (keep_t) {
    KVT_TRY(check_tensor(keep_t, "keep", 1, kMaskI32, "[B]", &kt));
    KVT_TRY(check_dim(kt, "keep", 0, b.B, "B (sequences)"));
    KVT_TRY(check_same_device(b.ref, "the sequence table", kt, "keep"));
  }
  out->assign(size_t(std::max<int64_t>(b.B, 0)), 0);
  if (!b.host()) return KVT_OK;
  for (int64_t s = 0; s < b.B; s++) {
    const int64_t k = keep_t ? int64_t(at1(kt, s)) : int64_t(keep);
    if (b.len(s) > 0 && k < 1)
      return fail(KVT_ERR_RANGE, keep_t ? "keep: keep[" + S(s) + "] = " + S(k) + " must be >= 1 (sequence " + S(s) +
                                              " has " + S(b.len(s)) + " tokens)"
                                        : "keep: must be >= 1, got " + S(k));
    (*out)[size_t(s)] = int32_t(std::min<int64_t>(std::max<int64_t>(k, 0), b.len(s)));
  }
  return KVT_OK;
}

}  // namespace kvt
