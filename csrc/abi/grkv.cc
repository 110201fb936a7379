// C ABI entry point of the GRKV merge (docs/methods/grkv.md §4-§7, choices §11): the defaults, validation (shapes, devices,
// options, and on the CPU backend the index lists, query positions and weights), then the CUDA launcher or the CPU
// backend.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "abi/batch.h"
#include "abi/validate.h"
#include "cpu/batch.h"
#include "cpu/ops.h"
#include "math/grkv.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

// CPU backend: query rows per KV head (G*Qs); the value step factors a dense (G*Qs)^2 system per head.
constexpr int64_t kGrkvCpuMaxRows = 1024;

// The option checks shared by the per-sequence and the batched entry points; fills a.scale (needs a.o and a.d).
static kvt_status check_opts(cpu::GrkvArgs& a) {
  KVT_TRY(check_range(a.o.window, 0, 2147483647.0, "window"));
  KVT_TRY(check_range(a.o.cg_iters, 0, 100000, "cgIters"));
  KVT_TRY(check_range(a.o.gamma, 0, 1, "gamma"));
  if (!(a.o.lambda > 0) || !(a.o.lambda < 1e30)) {
    std::ostringstream os;
    os << "lambda: must be finite and > 0 (it keeps the value system SPD), got " << a.o.lambda;
    return fail(KVT_ERR_RANGE, os.str());
  }
  if (!(a.o.cap_key >= 0)) return fail(KVT_ERR_RANGE, "caps.key: must be >= 0 (Infinity = uncapped), got " + std::to_string(a.o.cap_key));
  if (!(a.o.cap_value >= 0))
    return fail(KVT_ERR_RANGE, "caps.value: must be >= 0 (Infinity = uncapped), got " + std::to_string(a.o.cap_value));
  if (a.o.accept != KVT_GRKV_ACCEPT_BEST && a.o.accept != KVT_GRKV_ACCEPT_JOINT)
    return fail(KVT_ERR_RANGE, "accept: must be KVT_GRKV_ACCEPT_BEST or KVT_GRKV_ACCEPT_JOINT ('best' or 'joint'), got " +
                                   std::to_string(a.o.accept));
  if (!(a.o.tol >= 0) || !(a.o.tol < 1e30)) return fail(KVT_ERR_RANGE, "tol: must be finite and >= 0, got " + std::to_string(a.o.tol));
  if (a.o.scale == 0) {
    a.scale = float(1.0 / sqrt(double(a.d)));
  } else {
    if (!(a.o.scale > 0) || !(a.o.scale < 1e30))
      return fail(KVT_ERR_RANGE, "scale: must be finite and > 0, got " + std::to_string(a.o.scale));
    a.scale = float(a.o.scale);
  }
  return KVT_OK;
}

// The CPU backend's limits for one sequence: query rows per KV head and the scratch of its dense per-head systems.
static kvt_status check_cpu_limits(const cpu::GrkvArgs& a) {
  if (a.rows > kGrkvCpuMaxRows) {
    std::ostringstream os;
    os << "queries: the CPU backend fits at most " << kGrkvCpuMaxRows << " query rows per KV head (a dense "
       << "(G*Qs)^2 system per head), got G*Qs = " << a.G << "*" << a.Qs << " = " << a.rows;
    return fail(KVT_ERR_RANGE, os.str());
  }
  {
    // per head: query rows, retained rows, the attention of the rows over them, the Gram system, CG vectors in f64
    const double H = double(a.H), rows = double(a.rows), S = double(std::min(a.cap_in, a.N)), d = double(a.d),
                 dv = double(a.dv);
    const double bytes = 4 * H * (double(a.N) / 512 + 1) * rows * (dv + 2) +
                         4 * H * (rows * (3 * S + rows + d + 6 * dv + 4) + 3 * S * (d + dv)) + 40 * H * S * d;
    KVT_TRY(check_scratch(bytes, a.k.span_bytes() + a.v.span_bytes() + a.q.span_bytes(), "keys", "grkvMerge",
                          "per-head query rows, retained rows, attention matrices and solver vectors"));
  }
  return KVT_OK;
}

// Outputs never overlap inputs or each other (whole tensors, also for the batched entry point).
static kvt_status check_outputs(const cpu::GrkvArgs& a) {
  const View* ins[] = {&a.k, &a.v, &a.idx, &a.cnt, &a.q, &a.qp, &a.w, &a.sc};
  const char* in_names[] = {"keys", "values", "indices", "counts", "queries", "queryPositions", "weights", "scores"};
  const View* outs[] = {&a.ko, &a.vo, &a.co, &a.dg};
  const char* out_names[] = {"keysOut", "valuesOut", "countsOut", "diagnostics"};
  for (int o = 0; o < 4; o++) {
    if (o == 3 && !a.has_dg) continue;
    KVT_TRY(check_distinct(*outs[o], out_names[o]));
    for (int i = 0; i < 8; i++) {
      if (i == 6 && !a.has_w) continue;
      KVT_TRY(check_no_overlap(*outs[o], out_names[o], *ins[i], in_names[i]));
    }
    for (int p = 0; p < o; p++) KVT_TRY(check_no_overlap(*outs[o], out_names[o], *outs[p], out_names[p]));
  }
  return KVT_OK;
}

// Checks every argument of kvt_grkv_merge into `a`, the CPU backend's argument bundle (also what the CUDA parameters
// are packed from).
static kvt_status validate(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                           const kvt_tensor* counts, const kvt_tensor* queries, const kvt_tensor* query_positions,
                           const kvt_tensor* weights, const kvt_tensor* scores, const kvt_grkv_opts* opts,
                           const kvt_tensor* keys_out, const kvt_tensor* values_out, const kvt_tensor* counts_out,
                           const kvt_tensor* diagnostics, cpu::GrkvArgs& a) {
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[H, N, d]", &a.k));
  KVT_TRY(check_tensor(values, "values", 3, kMaskFloat, "[H, N, dv]", &a.v));
  if (a.v.dtype != a.k.dtype)
    return fail(KVT_ERR_TYPE, std::string("values: must have the dtype of keys (") + dtype_name(a.k.dtype) + "), got " +
                                  dtype_name(a.v.dtype));
  KVT_TRY(check_tensor(indices, "indices", 2, kMaskI32, "[H, cap]", &a.idx));
  KVT_TRY(check_tensor(counts, "counts", 1, kMaskI32, "[H]", &a.cnt));
  KVT_TRY(check_tensor(queries, "queries", 3, kMaskFloat, "[Hq, Qs, d]", &a.q));
  KVT_TRY(check_tensor(query_positions, "queryPositions", 1, kMaskI32, "[Qs]", &a.qp));
  a.has_w = weights != nullptr;
  if (a.has_w) KVT_TRY(check_tensor(weights, "weights", 1, kMaskF32, "[Qs]", &a.w));
  KVT_TRY(check_tensor(scores, "scores", 2, kMaskF32, "[H, N]", &a.sc));
  KVT_TRY(check_tensor(keys_out, "keysOut", 3, 1u << a.k.dtype, "[H, cap, d]", &a.ko));
  KVT_TRY(check_tensor(values_out, "valuesOut", 3, 1u << a.v.dtype, "[H, cap, dv]", &a.vo));
  KVT_TRY(check_tensor(counts_out, "countsOut", 1, kMaskI32, "[H]", &a.co));
  a.has_dg = diagnostics != nullptr;
  if (a.has_dg) KVT_TRY(check_tensor(diagnostics, "diagnostics", 2, kMaskF32, "[H, 14]", &a.dg));
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  a.o = *opts;

  const View* dev[] = {&a.v, &a.idx, &a.cnt, &a.q, &a.qp, &a.w, &a.sc, &a.ko, &a.vo, &a.co, &a.dg};
  const char* dev_names[] = {"values", "indices", "counts", "queries", "queryPositions", "weights", "scores",
                             "keysOut", "valuesOut", "countsOut", "diagnostics"};
  for (int i = 0; i < 11; i++) {
    if ((i == 5 && !a.has_w) || (i == 10 && !a.has_dg)) continue;
    KVT_TRY(check_same_device(a.k, "keys", *dev[i], dev_names[i]));
  }
  a.H = a.k.shape[0];
  a.N = a.k.shape[1];
  a.d = a.k.shape[2];
  a.dv = a.v.shape[2];
  a.Hq = a.q.shape[0];
  a.Qs = a.q.shape[1];
  a.cap_in = a.idx.shape[1];
  a.cap = a.ko.shape[1];
  KVT_TRY(check_dim(a.v, "values", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.v, "values", 1, a.N, "N of keys"));
  KVT_TRY(check_dim(a.idx, "indices", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.cnt, "counts", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.q, "queries", 2, a.d, "d of keys"));
  if (a.H < 1 || a.N < 1)
    return fail(KVT_ERR_RANGE, "keys: H and N must be >= 1, got shape " + shape_str(a.k.shape, 3));
  if (a.N >= (int64_t(1) << 31) - 1) return fail(KVT_ERR_RANGE, "keys: N must be < 2^31 - 1");
  if (a.Hq < a.H || a.Hq % a.H != 0) {
    std::ostringstream os;
    os << "queries: the number of query heads (dimension 0, " << a.Hq << ") must be a positive multiple of H = " << a.H;
    return fail(KVT_ERR_RANGE, os.str());
  }
  a.G = a.Hq / a.H;
  a.rows = a.G * a.Qs;
  KVT_TRY(check_dim(a.qp, "queryPositions", 0, a.Qs, "Qs of queries"));
  if (a.has_w) KVT_TRY(check_dim(a.w, "weights", 0, a.Qs, "Qs of queries"));
  KVT_TRY(check_dim(a.sc, "scores", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.sc, "scores", 1, a.N, "N of keys"));
  KVT_TRY(check_dim(a.ko, "keysOut", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.ko, "keysOut", 2, a.d, "d of keys"));
  KVT_TRY(check_dim(a.vo, "valuesOut", 0, a.H, "H of keys"));
  KVT_TRY(check_dim(a.vo, "valuesOut", 1, a.cap, "cap of keysOut"));
  KVT_TRY(check_dim(a.vo, "valuesOut", 2, a.dv, "dv of values"));
  KVT_TRY(check_dim(a.co, "countsOut", 0, a.H, "H of keys"));
  if (a.cap < 1) return fail(KVT_ERR_RANGE, "keysOut: capacity (dimension 1) must be >= 1");
  if (a.has_dg) {
    KVT_TRY(check_dim(a.dg, "diagnostics", 0, a.H, "H of keys"));
    KVT_TRY(check_dim(a.dg, "diagnostics", 1, kGrkvDiagCols, "KVT_GRKV_DIAG_COLS"));
  }
  KVT_TRY(check_opts(a));
  KVT_TRY(check_outputs(a));
  if (!a.k.on_cuda()) {  // host memory: check the data itself (the CUDA kernels clamp instead)
    for (int64_t h = 0; h < a.H; h++) {
      const int64_t c = a.cnt.ptr<int32_t>()[h * a.cnt.stride[0]];
      if (c < 0 || c > a.cap_in || c > a.cap)
        return fail(KVT_ERR_RANGE, "counts: counts[" + std::to_string(h) + "] = " + std::to_string(c) +
                                       " must be in [0, min(indices capacity " + std::to_string(a.cap_in) +
                                       ", output capacity " + std::to_string(a.cap) + ")]");
      int64_t prev = -1;
      for (int64_t j = 0; j < c; j++) {
        const int64_t i = a.idx.ptr<int32_t>()[h * a.idx.stride[0] + j * a.idx.stride[1]];
        if (i < 0 || i >= a.N || i <= prev)
          return fail(KVT_ERR_RANGE, "indices: row " + std::to_string(h) + " must hold strictly ascending positions in [0, " +
                                         std::to_string(a.N) + ") before counts[h]; entry " + std::to_string(j) + " is " +
                                         std::to_string(i));
        prev = i;
      }
    }
    for (int64_t j = 0; j < a.Qs; j++) {
      const int64_t p = a.qp.ptr<int32_t>()[j * a.qp.stride[0]];
      if (p < 0 || p >= a.N)
        return fail(KVT_ERR_RANGE, "queryPositions: entry " + std::to_string(j) + " is " + std::to_string(p) +
                                       ", must be a position in [0, " + std::to_string(a.N) + ")");
      if (a.has_w) {
        const float w = a.w.ptr<float>()[j * a.w.stride[0]];
        if (!(w >= 0) || !finite_f(w)) {
          std::ostringstream os;
          os << "weights: entry " << j << " is " << w << ", must be finite and >= 0";
          return fail(KVT_ERR_RANGE, os.str());
        }
      }
    }
  }
  return KVT_OK;
}

extern "C" void kvt_grkv_default_opts(kvt_grkv_opts* o) {
  if (!o) return;
  o->window = 32;
  o->cg_iters = 16;
  o->gamma = 0.1;
  o->lambda = 0.01;
  o->cap_key = 0.025;
  o->cap_value = 0.10;
  o->tol = 1e-6;
  o->scale = 0;
  o->accept = KVT_GRKV_ACCEPT_BEST;
}

#if defined(KVT_WITH_CUDA)
// The options of a checked merge as the CUDA launcher's parameters (the tensors are set by the caller).
static cuda::GrkvParams cuda_grkv_opts(const cpu::GrkvArgs& a) {
  cuda::GrkvParams p{};
  p.window = a.o.window;
  p.cg_iters = a.o.cg_iters;
  p.gamma = a.o.gamma;
  p.lambda = a.o.lambda;
  p.cap_key = a.o.cap_key;
  p.cap_value = a.o.cap_value;
  p.tol = a.o.tol;
  p.scale = a.scale;
  p.accept = a.o.accept;
  return p;
}

// The head-dim limit of the CUDA merge.
static kvt_status cuda_grkv_dims(const cpu::GrkvArgs& a) {
  if (a.d > cuda::kGrkvMaxDim || a.dv > cuda::kGrkvMaxDim) {
    std::ostringstream os;
    os << (a.d > cuda::kGrkvMaxDim ? "keys" : "values") << ": the CUDA backend supports head dims up to "
       << cuda::kGrkvMaxDim << ", got d = " << a.d << ", dv = " << a.dv;
    return fail(KVT_ERR_RANGE, os.str());
  }
  return KVT_OK;
}
#endif

extern "C" kvt_status kvt_grkv_merge(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                                     const kvt_tensor* counts, const kvt_tensor* queries, const kvt_tensor* query_positions,
                                     const kvt_tensor* weights, const kvt_tensor* scores, const kvt_grkv_opts* opts,
                                     const kvt_tensor* keys_out, const kvt_tensor* values_out, const kvt_tensor* counts_out,
                                     const kvt_tensor* diagnostics, kvt_stream stream) try {
  cpu::GrkvArgs a;
  KVT_TRY(validate(keys, values, indices, counts, queries, query_positions, weights, scores, opts, keys_out, values_out,
                   counts_out, diagnostics, a));
#if defined(KVT_WITH_CUDA)
  if (a.k.on_cuda()) {
    if (a.rows > cuda::kGrkvMaxRows) {
      std::ostringstream os;
      os << "queries: the CUDA backend fits at most " << cuda::kGrkvMaxRows << " query rows per KV head, got G*Qs = "
         << a.G << "*" << a.Qs << " = " << a.rows;
      return fail(KVT_ERR_RANGE, os.str());
    }
    KVT_TRY(cuda_grkv_dims(a));
    KVT_CUDA_TRY(set_device(a.k.device_id));
    cuda::GrkvParams p = cuda_grkv_opts(a);
    p.keys = t3(a.k);
    p.values = t3(a.v);
    p.indices = t2(a.idx);
    p.counts = t2(a.cnt);
    p.queries = t3(a.q);
    p.qpos = a.qp.ptr<int32_t>();
    p.qpos_s = a.qp.stride[0];
    p.weights = a.has_w ? a.w.ptr<float>() : nullptr;
    p.weights_s = a.has_w ? a.w.stride[0] : 0;
    p.scores = t2(a.sc);
    p.keys_out = o3(a.ko);
    p.values_out = o3(a.vo);
    p.counts_out = t2(a.co);
    p.diag = a.has_dg ? a.dg.ptr<float>() : nullptr;
    p.diag_s0 = a.has_dg ? a.dg.stride[0] : 0;
    p.diag_s1 = a.has_dg ? a.dg.stride[1] : 0;
    return cuda_status(cuda::grkv_merge(p, static_cast<cudaStream_t>(stream)), "grkvMerge");
  }
#else
  (void)stream;
#endif
  KVT_TRY(check_cpu_limits(a));
  cpu::grkv_merge(a);
  return KVT_OK;
} KVT_API_CATCH

// Batched (docs/runtime-caches.md §3): sequence b's retained rows regressed on its own queries (positions relative to
// the sequence). An empty sequence gets zero rows, counts 0 and a skipped diagnostics row.
extern "C" kvt_status kvt_grkv_merge_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* values,
                                             const kvt_tensor* indices, const kvt_tensor* counts, const kvt_seqs* qseqs,
                                             const kvt_tensor* queries, const kvt_tensor* query_positions,
                                             const kvt_tensor* weights, const kvt_tensor* scores, const kvt_grkv_opts* opts,
                                             const kvt_tensor* keys_out, const kvt_tensor* values_out,
                                             const kvt_tensor* counts_out, const kvt_tensor* diagnostics, kvt_stream stream) try {
  (void)stream;
  Batch b, qb;
  cpu::GrkvArgs a;  // the whole-batch views; a per-sequence copy is made for each sequence
  int64_t Hv, dq;
  KVT_TRY(check_seqs(seqs, "seqs", &b));
  KVT_TRY(check_seq_data(b, keys, "keys", kMaskFloat, &a.k, &a.H, &a.d));
  KVT_TRY(check_seq_data(b, values, "values", 1u << a.k.dtype, &a.v, &Hv, &a.dv));
  if (Hv != a.H) return fail(KVT_ERR_RANGE, "values: expected H = " + std::to_string(a.H) + " heads like keys, got " + std::to_string(Hv));
  KVT_TRY(check_seq_tensor(b, indices, "indices", 3, kMaskI32, "[B, H, cap]", a.H, &a.idx));
  KVT_TRY(check_seq_tensor(b, counts, "counts", 2, kMaskI32, "[B, H]", a.H, &a.cnt));
  KVT_TRY(check_seqs(qseqs, "qseqs", &qb));
  if (qb.t.layout != kSeqsRagged && qb.t.layout != kSeqsPadded)
    return fail(KVT_ERR_RANGE, "qseqs.layout: queries are ragged or padded, not paged");
  KVT_TRY(check_seq_data(qb, queries, "queries", kMaskFloat, &a.q, &a.Hq, &dq));
  KVT_TRY(check_same_device(a.k, "keys", a.q, "queries"));
  if (qb.B != b.B)
    return fail(KVT_ERR_RANGE, "queries: the query batch has " + std::to_string(qb.B) + " sequences, the cache " + std::to_string(b.B));
  // per-query tensors: [Tq] (ragged, the rows of the queries) or [B, Qs] (padded)
  const bool qragged = qb.t.layout == kSeqsRagged;
  const int64_t qcols = qragged ? a.q.shape[0] : a.q.shape[2];
  KVT_TRY(check_tensor(query_positions, "queryPositions", qragged ? 1 : 2, kMaskI32, qragged ? "[Tq]" : "[B, Qs]", &a.qp));
  KVT_TRY(check_same_device(a.k, "keys", a.qp, "queryPositions"));
  KVT_TRY(check_dim(a.qp, "queryPositions", qragged ? 0 : 1, qcols, qragged ? "Tq (rows of queries)" : "Qs of queries"));
  if (!qragged) KVT_TRY(check_dim(a.qp, "queryPositions", 0, b.B, "B"));
  a.has_w = weights != nullptr;
  if (a.has_w) {
    KVT_TRY(check_tensor(weights, "weights", qragged ? 1 : 2, kMaskF32, qragged ? "[Tq]" : "[B, Qs]", &a.w));
    KVT_TRY(check_same_device(a.k, "keys", a.w, "weights"));
    for (int dim = 0; dim < a.qp.ndim; dim++) KVT_TRY(check_dim(a.w, "weights", dim, a.qp.shape[dim], "queryPositions"));
  }
  KVT_TRY(check_token_tensor(b, scores, "scores", kMaskF32, a.H, &a.sc));
  KVT_TRY(check_seq_tensor(b, keys_out, "keysOut", 4, 1u << a.k.dtype, "[B, H, cap, d]", a.H, &a.ko));
  KVT_TRY(check_seq_tensor(b, values_out, "valuesOut", 4, 1u << a.v.dtype, "[B, H, cap, dv]", a.H, &a.vo));
  KVT_TRY(check_seq_tensor(b, counts_out, "countsOut", 2, kMaskI32, "[B, H]", a.H, &a.co));
  a.has_dg = diagnostics != nullptr;
  if (a.has_dg) {
    KVT_TRY(check_seq_tensor(b, diagnostics, "diagnostics", 3, kMaskF32, "[B, H, 14]", a.H, &a.dg));
    KVT_TRY(check_dim(a.dg, "diagnostics", 2, kGrkvDiagCols, "KVT_GRKV_DIAG_COLS"));
  }
  if (!opts) return fail(KVT_ERR_TYPE, "opts: missing");
  a.o = *opts;
  KVT_TRY(check_dim(a.q, "queries", qragged ? 2 : 3, a.d, "d of keys"));
  KVT_TRY(check_dim(a.ko, "keysOut", 3, a.d, "d of keys"));
  KVT_TRY(check_dim(a.vo, "valuesOut", 2, a.ko.shape[2], "cap of keysOut"));
  KVT_TRY(check_dim(a.vo, "valuesOut", 3, a.dv, "dv of values"));
  a.cap_in = a.idx.shape[2];
  a.cap = a.ko.shape[2];
  if (a.cap < 1) return fail(KVT_ERR_RANGE, "keysOut: capacity (dimension 2) must be >= 1");
  if (a.H < 1 || a.Hq < a.H || a.Hq % a.H != 0)
    return fail(KVT_ERR_RANGE, "queries: the number of query heads (" + std::to_string(a.Hq) + ") must be a positive multiple of H = " +
                                   std::to_string(a.H));
  a.G = a.Hq / a.H;
  KVT_TRY(check_opts(a));
  KVT_TRY(check_outputs(a));
  {
    const View* outs[] = {&a.ko, &a.vo, &a.co, &a.dg};
    const char* names[] = {"keysOut", "valuesOut", "countsOut", "diagnostics"};
    for (int o = 0; o < (a.has_dg ? 4 : 3); o++) {
      KVT_TRY(check_not_table(b, *outs[o], names[o]));
      KVT_TRY(check_not_table(qb, *outs[o], names[o]));
    }
  }
#if defined(KVT_WITH_CUDA)
  if (b.on_cuda) {  // per sequence on the device: at most kGrkvMaxRows / G queries (more are clamped), positions clamped
    KVT_TRY(cuda_grkv_dims(a));
    KVT_CUDA_TRY(set_device(a.k.device_id));
    cuda::GrkvParams p = cuda_grkv_opts(a);
    p.seqs = cuda_seqs(b, {&a.k, &a.v}, {&a.sc});
    p.qseqs = cuda_seqs(qb, {&a.q}, {});
    p.keys = batch_t3(b, a.k, p.seqs);
    p.values = batch_t3(b, a.v, p.seqs);
    p.indices = seq_t2(a.idx);
    p.counts = seq_t2(a.cnt);
    p.queries = batch_t3(qb, a.q, p.qseqs);
    p.qpos = a.qp.ptr<int32_t>();
    p.qpos_s = qragged ? a.qp.stride[0] : a.qp.stride[1];
    p.qpos_sq = qragged ? 0 : a.qp.stride[0];
    p.weights = a.has_w ? a.w.ptr<float>() : nullptr;
    p.weights_s = a.has_w ? (qragged ? a.w.stride[0] : a.w.stride[1]) : 0;
    p.weights_sq = a.has_w && !qragged ? a.w.stride[0] : 0;
    p.scores = batch_tok(b, a.sc);
    p.keys_out = seq_o3(a.ko);
    p.values_out = seq_o3(a.vo);
    p.counts_out = seq_t2(a.co);
    p.diag = a.has_dg ? a.dg.ptr<float>() : nullptr;
    p.diag_sq = a.has_dg ? a.dg.stride[0] : 0;
    p.diag_s0 = a.has_dg ? a.dg.stride[1] : 0;
    p.diag_s1 = a.has_dg ? a.dg.stride[2] : 0;
    return cuda_status(cuda::grkv_merge_batched(p, static_cast<cudaStream_t>(stream)), "grkvMergeBatched");
  }
#endif
  KVT_TRY(check_index_lists(b, a.idx, "indices", a.cnt, a.cap));
  for (int64_t s = 0; s < b.B; s++) {
    if (b.len(s) == 0) continue;
    cpu::GrkvArgs as = a;
    as.N = b.len(s);
    as.Qs = qb.len(s);
    as.rows = as.G * as.Qs;
    KVT_TRY(check_cpu_limits(as));
  }
  // The queries of sequence s as a per-sequence view; its positions and weights as [Qs_s] views.
  auto per_query = [&](const View& x, int64_t s) {
    View r = x;
    r.ndim = 1;
    if (qragged) {
      r.base += qb.t.first(s) * x.stride[0] * dtype_size(x.dtype);
    } else {
      r.base += s * x.stride[0] * dtype_size(x.dtype);
      r.stride[0] = x.stride[1];
    }
    r.shape[0] = qb.len(s);
    return r;
  };
  for (int64_t s = 0; s < b.B; s++) {
    const View qp = per_query(a.qp, s), w = a.has_w ? per_query(a.w, s) : View();
    for (int64_t j = 0; j < qp.shape[0]; j++) {
      const int64_t p = qp.ptr<int32_t>()[j * qp.stride[0]];
      if (p < 0 || p >= b.len(s))
        return fail(KVT_ERR_RANGE, "queryPositions: query " + std::to_string(j) + " of sequence " + std::to_string(s) + " is at " +
                                       std::to_string(p) + ", must be a position in [0, " + std::to_string(b.len(s)) + ")");
      if (a.has_w) {
        const float x = w.ptr<float>()[j * w.stride[0]];
        if (!(x >= 0) || !finite_f(x))
          return fail(KVT_ERR_RANGE, "weights: query " + std::to_string(j) + " of sequence " + std::to_string(s) + " has weight " +
                                         std::to_string(x) + ", must be finite and >= 0");
      }
    }
  }
  cpu::for_each_seq(b.B, [&](int64_t s) { return a.Hq * qb.len(s) * b.len(s) / 64; },
                    [&](int64_t s) {
                      cpu::GrkvArgs as = a;
                      as.idx = seq_slice(a.idx, s);
                      as.cnt = seq_slice(a.cnt, s);
                      as.ko = seq_slice(a.ko, s);
                      as.vo = seq_slice(a.vo, s);
                      as.co = seq_slice(a.co, s);
                      if (a.has_dg) as.dg = seq_slice(a.dg, s);
                      if (b.len(s) == 0) return cpu::grkv_empty(as);
                      as.k = seq_view(b, a.k, s);
                      as.v = seq_view(b, a.v, s);
                      as.q = seq_view(qb, a.q, s);
                      as.qp = per_query(a.qp, s);
                      if (a.has_w) as.w = per_query(a.w, s);
                      as.sc = token_view(b, a.sc, s);
                      as.N = b.len(s);
                      as.Qs = qb.len(s);
                      as.rows = as.G * as.Qs;
                      cpu::grkv_merge(as);
                    });
  return KVT_OK;
} KVT_API_CATCH
