// GRKV merge on CUDA (docs/methods/grkv.md §4-§7; docs/performance.md §3): the entry point, which lays out the scratch and
// runs the phases in order. The same phases as the CPU backend (csrc/cpu/grkv*.cc), batched over KV heads, with the
// per-head decisions taken by the shared code of math/grkv.h; one file per phase:
//
//   grkv_partition.cu   prep: queries -> f32 rows [H, G*Qs, d]; partition: fixed/mutable slots, anchors (radix)
//   gather              plain eviction into the outputs (cuda/gather.cu)
//   grkv_target.cu      o* by split-K flash attention over all N keys
//   grkv_attention.cu   A = softmax(Q K_S^T), o = A V_S and the objective of a candidate (L0, L1, L2)
//   grkv_value.cu       value step: Gram (SIMT fp32) + one-CTA SPD solve per head (spd_device.cuh), dV = Aw^T X
//   grkv_key.cu         key step: CG in fp64 on (J_w J_w^T + lambda I) x = b: per iteration VJP (T = J^T p), JVP
//                       (split-K + reduce), update; dK = J^T x
//   grkv_candidates.cu  capped step with recheck and rounding (V1, K1); choice per head, diagnostics, restore of the
//                       rows of rejected candidates from the inputs
//
// Kernels and tile helpers: grkv_phases.cuh (context, launchers), grkv_tiles.cuh (tile products). fp32 SIMT
// everywhere except the key step, which runs in fp64. Limits (checked by the C ABI layer): G*Qs <= 256 query rows
// per KV head, d, dv <= 256.
#include "grkv_phases.cuh"

namespace kvt {
namespace cuda {
namespace grkv {
namespace {

// The phases of a merge with at least one query row, in order.
cudaError_t run_phases(const Ctx& c, cudaStream_t stream) {
  const bool run_key = c.p.cap_key > 0 && c.p.cg_iters > 0;
  KVT_CU_TRY(launch_target(c, stream));
  // attention over the retained rows at (K0, V0) and L0, every head
  KVT_CU_TRY(launch_attention(c, kAllHeads, stream));
  KVT_CU_TRY(launch_output(c, kAllHeads, c.o, 0, stream));
  // value step: dV, capped and rounded into V1; o1 = A V1 and L1
  KVT_CU_TRY(launch_value_step(c, stream));
  KVT_CU_TRY(launch_step(c, 0, stream));
  KVT_CU_TRY(launch_output(c, kFitHeads, c.o1, 1, stream));
  // key step: CG, dK = J^T x capped and rounded into K1; attention at K1 and L2
  if (run_key) {
    KVT_CU_TRY(launch_cg_init(c, stream));
    for (int it = 0; it < c.p.cg_iters; it++) KVT_CU_TRY(launch_cg_iteration(c, stream));
    KVT_CU_TRY(launch_vjp(c, c.x, kFitHeads, stream));
    KVT_CU_TRY(launch_step(c, 1, stream));
    KVT_CU_TRY(launch_attention(c, kFitHeads, stream));
    KVT_CU_TRY(launch_output(c, kFitHeads, c.o, 2, stream));
  }
  KVT_CU_TRY(launch_finalize(c, run_key ? 1 : 0, stream));
  return launch_restore(c, stream);
}

// Sub-allocations of one scratch buffer, 256-byte aligned.
struct Layout {
  size_t bytes = 0;
  size_t take(size_t n) {
    const size_t at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};

}  // namespace
}  // namespace grkv

namespace grkv {
namespace {

// Both forms: p.seqs / p.qseqs are the batch (dense_seqs for a plain call), Qs the bound on every sequence's queries.
cudaError_t run(const GrkvParams& p, bool batched, int64_t Qs, cudaStream_t stream) {
  Ctx c{};
  c.p = p;
  c.H = p.keys.n0;
  c.N = p.seqs.r.max_len;
  c.d = p.keys.n2;
  c.dv = p.values.n2;
  c.Qs = Qs;
  c.G = p.queries.n0 / (c.H > 0 ? c.H : 1);
  c.rows = c.G * c.Qs;
  c.cap_in = p.indices.n1;
  c.cap = p.keys_out.n1;
  c.B = p.seqs.B;
  c.VH = c.B * c.H;
  if (c.VH == 0 || c.cap == 0) return cudaSuccess;
  if (c.rows > kGrkvMaxRows || c.d > kGrkvMaxDim || c.dv > kGrkvMaxDim || c.VH > 65535) return cudaErrorInvalidValue;
  // plain eviction first: every output row as gatherKV writes it
  KVT_CU_TRY(batched ? gather_kv_batched(p.seqs, p.keys, p.values, p.indices, p.counts, p.keys_out, p.values_out,
                                         p.counts_out, nullptr, stream)
                     : gather_kv(p.keys, p.values, p.indices, p.counts, p.keys_out, p.values_out, p.counts_out, nullptr,
                                 stream));
  // target split: about four CTAs per SM of the reference device over the layer (per sequence, grkv_partition.cu's
  // geometry; here the bound)
  int64_t cht;
  target_split(c.H, c.rows, c.N, &c.ncht, &cht);
  if (batched) c.ncht = imax(1, imin(ceil_div(kRefSMs * 4, c.H), ceil_div(c.N, kTl)));
  c.nchs = ceil_div(c.cap, kChunkSlots);
  if (c.ncht > 65535 || c.nchs > 65535) return cudaErrorInvalidConfiguration;
  const int64_t H = c.VH, rows = c.rows, cap = c.cap, d = c.d, dv = c.dv;
  Layout L;
  const size_t oGeo = L.take(size_t(H) * sizeof(GrkvGeo));
  const size_t oQf = L.take(size_t(H * rows * d) * 4), oSpos = L.take(size_t(H * cap) * 4), oSmut = L.take(size_t(H * cap));
  const size_t oSt = L.take(size_t(H) * sizeof(GrkvHead)), oSkey = L.take(size_t(H * cap) * 8);
  const size_t oOstar = L.take(size_t(H * rows * dv) * 4), oO = L.take(size_t(H * rows * dv) * 4);
  const size_t oO1 = L.take(size_t(H * rows * dv) * 4), oX = L.take(size_t(H * rows * dv) * 4);
  const size_t oA = L.take(size_t(H * rows * cap) * 4), oGm = L.take(size_t(H * rows * rows) * 4);
  const size_t oDv = L.take(size_t(H * cap * dv) * 4);
  const size_t oPart = L.take(size_t(H * imax(c.ncht * (dv + 2), c.nchs * dv) * rows) * 4);
  const bool run_key = p.cap_key > 0 && p.cg_iters > 0 && rows > 0;
  const size_t nv = run_key ? size_t(H * rows * dv) * 8 : 0;
  const size_t ox = L.take(nv), ores = L.take(nv), op = L.take(nv), oY = L.take(nv);
  const size_t ouo = L.take(run_key ? size_t(H * rows) * 8 : 0), oT = L.take(run_key ? size_t(H * cap * d) * 8 : 0);
  const size_t oPartd = L.take(run_key ? size_t(H * c.nchs * rows * (dv + 1)) * 8 : 0);
  Scratch scratch(L.bytes, stream);
  KVT_CU_TRY(scratch.error());
  char* base = scratch.as<char>();
  c.geo = reinterpret_cast<GrkvGeo*>(base + oGeo);
  c.Qf = reinterpret_cast<float*>(base + oQf);
  c.spos = reinterpret_cast<int32_t*>(base + oSpos);
  c.smut = reinterpret_cast<uint8_t*>(base + oSmut);
  c.st = reinterpret_cast<GrkvHead*>(base + oSt);
  c.skey = reinterpret_cast<uint64_t*>(base + oSkey);
  c.ostar = reinterpret_cast<float*>(base + oOstar);
  c.o = reinterpret_cast<float*>(base + oO);
  c.o1 = reinterpret_cast<float*>(base + oO1);
  c.X = reinterpret_cast<float*>(base + oX);
  c.A = reinterpret_cast<float*>(base + oA);
  c.Gm = reinterpret_cast<float*>(base + oGm);
  c.Dv = reinterpret_cast<float*>(base + oDv);
  c.part = reinterpret_cast<float*>(base + oPart);
  if (run_key) {
    c.x = reinterpret_cast<double*>(base + ox);
    c.res = reinterpret_cast<double*>(base + ores);
    c.pv = reinterpret_cast<double*>(base + op);
    c.Y = reinterpret_cast<double*>(base + oY);
    c.uo = reinterpret_cast<double*>(base + ouo);
    c.T = reinterpret_cast<double*>(base + oT);
    c.partd = reinterpret_cast<double*>(base + oPartd);
  }
  KVT_CU_TRY(launch_geometry(c, stream));
  if (rows > 0) KVT_CU_TRY(launch_prep(c, stream));
  KVT_CU_TRY(launch_partition(c, stream));
  if (rows > 0) return run_phases(c, stream);
  return launch_finalize(c, 0, stream);
}

}  // namespace
}  // namespace grkv

cudaError_t grkv_merge(const GrkvParams& p, cudaStream_t stream) {
  GrkvParams q = p;
  q.seqs = dense_seqs(p.keys.n1);
  q.qseqs = dense_seqs(p.queries.n1);
  q.qpos_sq = q.weights_sq = q.diag_sq = 0;
  return grkv::run(q, false, p.queries.n1, stream);
}

cudaError_t grkv_merge_batched(const GrkvParams& p, cudaStream_t stream) {
  const int64_t G = p.queries.n0 / (p.keys.n0 > 0 ? p.keys.n0 : 1);
  const int64_t Qs = imin(p.qseqs.r.max_len, G > 0 ? kGrkvMaxRows / G : 0);
  return grkv::run(p, true, Qs, stream);
}

}  // namespace cuda
}  // namespace kvt
