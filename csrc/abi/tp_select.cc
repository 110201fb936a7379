// C ABI entry points of the tensor-parallel adaptive selection (docs/runtime-caches.md §5): the protocol's sizes, the
// checks of a shard's problem (shared by the four calls), then the CPU backend; the state lives in the caller's
// tensor, so the calls hold nothing between them.
#include <string>
#include <vector>

#include "abi/batch.h"
#include "abi/validate.h"
#include "cpu/ops.h"
#include "math/tp_select.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

namespace {

std::string S(int64_t v) { return std::to_string(v); }

// A [X, ...] view with a leading dimension of 1 (the one sequence of the unbatched form).
View with_batch_dim(const View& v) {
  View r = v;
  r.ndim = v.ndim + 1;
  for (int i = v.ndim; i > 0; i--) {
    r.shape[i] = v.shape[i - 1];
    r.stride[i] = v.stride[i - 1];
  }
  r.shape[0] = 1;
  r.stride[0] = 0;
  return r;
}

struct Tp {
  Batch b;
  bool batched = false;
  View scores;
  cpu::TpSelectArgs a;
};

// Everything but the per-call tensors: the scores and table, options, keep, the state's shape.
kvt_status check_problem(const kvt_tp_select* p, Tp* t) {
  if (!p) return fail(KVT_ERR_TYPE, "tp: missing problem description");
  t->batched = p->seqs != nullptr;
  cpu::TpSelectArgs& a = t->a;
  if (t->batched) {
    KVT_TRY(check_seqs(p->seqs, "seqs", &t->b));
    KVT_TRY(check_token_tensor(t->b, p->scores, "scores", kMaskF32, -1, &t->scores));
    a.Hs = t->b.t.layout == kSeqsRagged ? t->scores.shape[0] : t->scores.shape[1];
  } else {
    KVT_TRY(check_tensor(p->scores, "scores", 2, kMaskF32, "[Hs, N]", &t->scores));
    a.Hs = t->scores.shape[0];
    Batch& b = t->b;
    b.B = b.t.B = 1;
    b.ref = t->scores;
    b.has_ref = true;
    b.on_cuda = t->scores.on_cuda();
    b.n.assign(1, t->scores.shape[1]);
    b.max_n = t->scores.shape[1];
  }
  a.o = p->select;
  if (a.o.budget != KVT_BUDGET_ADAPTIVE)
    return fail(KVT_ERR_RANGE, "budget: the tensor-parallel protocol is for the adaptive budget (uniform budgets need no communication)");
  KVT_TRY(check_select_opts(a.o));
  if (tp::rounds(p->radix_bits) == 0) return fail(KVT_ERR_RANGE, "radixBits: must be 4, 8 or 16, got " + S(p->radix_bits));
  a.bits = p->radix_bits;
  if (p->head_offset < 0 || p->total_heads < 1 || int64_t(p->head_offset) + a.Hs > p->total_heads)
    return fail(KVT_ERR_RANGE, "headOffset, totalHeads: this shard's heads [" + S(p->head_offset) + ", " + S(p->head_offset + a.Hs) +
                                   ") must lie in [0, totalHeads = " + S(p->total_heads) + ")");
  a.off = p->head_offset;
  a.Htot = p->total_heads;
  const Batch& b = t->b;
  KVT_TRY(resolve_keep(b, p->select.keep, p->keep, &a.keep));
  KVT_TRY(check_tensor(p->state, "state", 2, kMaskI32, "[B, words]", &a.state));
  KVT_TRY(check_same_device(b.ref, "scores", a.state, "state"));
  KVT_TRY(check_dim(a.state, "state", 0, b.B, "B (sequences)"));
  KVT_TRY(check_dim(a.state, "state", 1, kvt_tp_select_state_words(a.Hs), "kvt_tp_select_state_words(Hs)"));
  KVT_TRY(check_distinct(a.state, "state"));
  KVT_TRY(check_no_overlap(a.state, "state", t->scores, "scores"));
  KVT_TRY(check_not_table(b, a.state, "state"));
  if (b.host()) {
    a.scores.resize(size_t(b.B));
    a.n_safe.resize(size_t(b.B));
    for (int64_t s = 0; s < b.B; s++) {
      if (a.Htot * b.len(s) >= (int64_t(1) << 31))
        return fail(KVT_ERR_RANGE, "totalHeads: totalHeads * N must be < 2^31 (the histogram counts are i32), sequence " + S(s) +
                                       " has " + S(b.len(s)) + " tokens");
      a.scores[size_t(s)] = t->batched ? token_view(b, t->scores, s) : t->scores;
      kvt_select_opts ob = a.o;
      ob.keep = a.keep[size_t(s)];
      a.n_safe[size_t(s)] = select_n_safe(ob);
    }
  }
  return KVT_OK;
}

// The state's round of every sequence must be `round` (the calls come in protocol order).
kvt_status check_round(const Tp& t, int32_t round, const char* call) {
  const View& st = t.a.state;
  for (int64_t s = 0; s < t.b.B; s++) {
    const int32_t r = st.ptr<int32_t>()[s * st.stride[0] + tp::kRound * st.stride[1]];
    if (r != round)
      return fail(KVT_ERR_RANGE, std::string(call) + ": the state of sequence " + S(s) + " is at round " + S(r) + ", expected " +
                                     S(round) + " (begin, then histogram / all-reduce / advance for each round, then finish)");
  }
  return KVT_OK;
}

// A [B, 2^bits] i32 histogram argument.
kvt_status check_hist(const Tp& t, const kvt_tensor* h, const char* name, View* v) {
  KVT_TRY(check_tensor(h, name, 2, kMaskI32, "[B, 2^radixBits]", v));
  KVT_TRY(check_same_device(t.b.ref, "scores", *v, name));
  KVT_TRY(check_dim(*v, name, 0, t.b.B, "B (sequences)"));
  KVT_TRY(check_dim(*v, name, 1, int64_t(1) << t.a.bits, "2^radixBits"));
  KVT_TRY(check_no_overlap(*v, name, t.a.state, "state"));
  KVT_TRY(check_not_table(t.b, *v, name));
  return check_no_overlap(*v, name, t.scores, "scores");
}

#if defined(KVT_WITH_CUDA)
// The shard's problem for the CUDA kernels (device tables: lengths, keep_b and rounds are the kernels' to clamp).
cuda::TpParams cuda_tp(const kvt_tp_select* p, const Tp& t) {
  cuda::TpParams c{};
  if (t.batched) {
    c.seqs = cuda_seqs(t.b, {}, {&t.scores});
    c.scores = batch_tok(t.b, t.scores);
  } else {
    c.seqs = cuda::dense_seqs(t.scores.shape[1]);
    c.scores = t2(t.scores);
  }
  c.Hs = t.a.Hs;
  c.hoff = int32_t(t.a.off);
  c.Htot = int32_t(t.a.Htot);
  c.sinks = t.a.o.sinks;
  c.recent = t.a.o.recent;
  c.bits = t.a.bits;
  c.keep = keep_ptr(p->keep, &c.keep_s);
  c.keep_scalar = p->select.keep;
  c.safeguard = t.a.o.safeguard;
  c.state = t.a.state.ptr<int32_t>();
  c.st_s0 = t.a.state.stride[0];
  c.st_s1 = t.a.state.stride[1];
  return c;
}
#endif

}  // namespace

extern "C" int32_t kvt_tp_select_rounds(int32_t radix_bits) { return tp::rounds(radix_bits); }

extern "C" int64_t kvt_tp_select_state_words(int64_t shard_heads) {
  return shard_heads < 0 ? 0 : tp::kHeader + 2 * shard_heads;
}

extern "C" kvt_status kvt_tp_select_begin(const kvt_tp_select* p, kvt_stream stream) try {
  (void)stream;
  Tp t;
  KVT_TRY(check_problem(p, &t));
#if defined(KVT_WITH_CUDA)
  if (t.b.on_cuda) {
    KVT_CUDA_TRY(set_device(t.scores.device_id));
    return cuda_status(cuda::tp_select_begin(cuda_tp(p, t), static_cast<cudaStream_t>(stream)), "TpSelection.begin");
  }
#endif
  cpu::tp_begin(t.a);
  return KVT_OK;
} KVT_API_CATCH

extern "C" kvt_status kvt_tp_select_histogram(const kvt_tp_select* p, int32_t round, const kvt_tensor* hist,
                                              kvt_stream stream) try {
  (void)stream;
  Tp t;
  View h;
  KVT_TRY(check_problem(p, &t));
  KVT_TRY(check_range(round, 0, tp::rounds(t.a.bits) - 1, "round"));
  KVT_TRY(check_hist(t, hist, "hist", &h));
  KVT_TRY(check_distinct(h, "hist"));  // written: no two elements may share memory (histSum, only read, may)
#if defined(KVT_WITH_CUDA)
  if (t.b.on_cuda) {  // the state's round is the caller's to keep in order (device memory is not read here)
    KVT_CUDA_TRY(set_device(t.scores.device_id));
    return cuda_status(cuda::tp_select_histogram(cuda_tp(p, t), round, h.ptr<int32_t>(), h.stride[0], h.stride[1],
                                                 static_cast<cudaStream_t>(stream)),
                       "TpSelection.histogram");
  }
#endif
  KVT_TRY(check_round(t, round, "histogram"));
  cpu::tp_histogram(t.a, round, h);
  return KVT_OK;
} KVT_API_CATCH

extern "C" kvt_status kvt_tp_select_advance(const kvt_tp_select* p, int32_t round, const kvt_tensor* hist_sum,
                                            kvt_stream stream) try {
  (void)stream;
  Tp t;
  View h;
  KVT_TRY(check_problem(p, &t));
  KVT_TRY(check_range(round, 0, tp::rounds(t.a.bits) - 1, "round"));
  KVT_TRY(check_hist(t, hist_sum, "histSum", &h));
#if defined(KVT_WITH_CUDA)
  if (t.b.on_cuda) {  // a short histogram sets the state's flag (kFlagShort) instead of an error
    KVT_CUDA_TRY(set_device(t.scores.device_id));
    return cuda_status(cuda::tp_select_advance(cuda_tp(p, t), round, h.ptr<int32_t>(), h.stride[0], h.stride[1],
                                               static_cast<cudaStream_t>(stream)),
                       "TpSelection.advance");
  }
#endif
  KVT_TRY(check_round(t, round, "advance"));
  const int64_t bad = cpu::tp_advance(t.a, round, h);
  if (bad >= 0)
    return fail(KVT_ERR_RANGE, "histSum: the summed histogram of sequence " + S(bad) + " in round " + S(round) +
                                   " holds fewer keys than the rank sought; it must be the element-wise sum of every shard's "
                                   "histogram of this round");
  return KVT_OK;
} KVT_API_CATCH

extern "C" kvt_status kvt_tp_select_finish(const kvt_tp_select* p, const kvt_tensor* indices, const kvt_tensor* counts,
                                           kvt_stream stream) try {
  (void)stream;
  Tp t;
  View idx, cnt;
  KVT_TRY(check_problem(p, &t));
  const int64_t Hs = t.a.Hs;
  if (t.batched) {
    KVT_TRY(check_seq_tensor(t.b, indices, "indices", 3, kMaskI32, "[B, Hs, cap]", Hs, &idx));
    KVT_TRY(check_seq_tensor(t.b, counts, "counts", 2, kMaskI32, "[B, Hs]", Hs, &cnt));
  } else {
    KVT_TRY(check_tensor(indices, "indices", 2, kMaskI32, "[Hs, cap]", &idx));
    KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[Hs]", &cnt));
    KVT_TRY(check_same_device(t.scores, "scores", idx, "indices"));
    KVT_TRY(check_same_device(t.scores, "scores", cnt, "counts"));
    KVT_TRY(check_dim(idx, "indices", 0, Hs, "Hs of scores"));
    KVT_TRY(check_dim(cnt, "counts", 0, Hs, "Hs of scores"));
    idx = with_batch_dim(idx);
    cnt = with_batch_dim(cnt);
  }
  const View* outs[] = {&idx, &cnt};
  const char* names[] = {"indices", "counts"};
  for (int o = 0; o < 2; o++) {
    KVT_TRY(check_distinct(*outs[o], names[o]));
    KVT_TRY(check_no_overlap(*outs[o], names[o], t.scores, "scores"));
    KVT_TRY(check_no_overlap(*outs[o], names[o], t.a.state, "state"));
    KVT_TRY(check_not_table(t.b, *outs[o], names[o]));
  }
  KVT_TRY(check_no_overlap(cnt, "counts", idx, "indices"));
#if defined(KVT_WITH_CUDA)
  if (t.b.on_cuda) {
    KVT_CUDA_TRY(set_device(t.scores.device_id));
    return cuda_status(cuda::tp_select_finish(cuda_tp(p, t), seq_t2(idx), seq_t2(cnt), static_cast<cudaStream_t>(stream)),
                       "TpSelection.finish");
  }
#endif
  KVT_TRY(check_round(t, tp::rounds(t.a.bits), "finish"));
  for (int64_t s = 0; s < t.b.B; s++) {
    kvt_select_opts ob = t.a.o;
    ob.keep = t.a.keep[size_t(s)];
    const int64_t need = t.b.len(s) == 0 ? 0 : kvt_select_capacity(t.a.Htot, t.b.len(s), &ob);
    if (idx.shape[2] < need)
      return fail(KVT_ERR_RANGE, "indices: capacity must be at least " + S(need) + " for sequence " + S(s) + " (kvt_select_capacity "
                                     "with totalHeads), got " + S(idx.shape[2]));
    const View& st = t.a.state;
    if (st.ptr<int32_t>()[s * st.stride[0] + tp::kFlags * st.stride[1]] & tp::kFlagShort)
      return fail(KVT_ERR_RANGE, "state: sequence " + S(s) + " saw a summed histogram with too few keys; the selection is undefined");
  }
  cpu::tp_finish(t.a, idx, cnt);
  return KVT_OK;
} KVT_API_CATCH
