// The CPU backend: one entry point per op (csrc/cpu/<op>.cc), called by the op's C ABI entry point
// (csrc/abi/<op>.cc) with views that are already checked. Threaded with parallel_for; every split is fixed by the
// shapes, so results do not depend on the thread count.
#pragma once

#include <stdint.h>

#include <vector>

#include "abi/moment_state.h"
#include "abi/validate.h"

namespace kvt {
namespace cpu {

// ---- keydiff.cc: scores [H, N] = -cos(k_i, mean of the L2-normalised keys of the head).
void keydiff(const View& keys, const View& out);

// ---- select.cc: kept positions per head, ascending, -1 padded; n_safe = the adaptive budget's per-head safeguard.
void select(const View& scores, const kvt_select_opts& o, int32_t n_safe, const View& indices, const View& counts);

// ---- gather.cc: retained rows compacted into the outputs (rows past counts zero-filled); with `moments`, every
// other row of a head is merged into the moment state (moments.cc).
void gather(const View& k, const View& v, const View& idx, const View& cnt, const View& ko, const View& vo,
            const View& co, const MomentViews* moments);

// ---- compact.cc: in place, per head, rows indices[h, j] -> j for j < counts[h] (keys and values of one sequence view);
// with `moments`, every other row is merged into the state first.
void compact(const View& k, const View& v, const View& idx, const View& cnt, const MomentViews* moments);

// ---- tp_select.cc: the shard side of the tensor-parallel adaptive selection (docs/runtime-caches.md §5), per
// sequence b: scores [Hs, n_b] of global heads off .. off + Hs - 1 of Htot, keep_b, and its row of the state [B, W].
struct TpSelectArgs {
  std::vector<View> scores;
  std::vector<int32_t> keep, n_safe;  // keep_b and its safeguard floor(keep_b * safeguard)
  kvt_select_opts o{};
  int64_t Hs = 0, off = 0, Htot = 0;
  int bits = 8;
  View state;
};
void tp_begin(const TpSelectArgs& a);
void tp_histogram(const TpSelectArgs& a, int round, const View& hist);
// Returns the first sequence whose summed histogram holds fewer keys than sought (-1: none); the state is advanced.
int64_t tp_advance(const TpSelectArgs& a, int round, const View& hist);
void tp_finish(const TpSelectArgs& a, const View& indices, const View& counts);

// ---- nestedkv.cc
struct NestedkvParams {
  int64_t H, N, d, W, b, nb, sinks, m;
  double prior[3], beta;
  float tau, kappa;
  bool global;
};
void nestedkv(const View& keys, const NestedkvParams& o, const View& out);

// ---- snapkv.cc: queries are the W window rows [Hq, W, d].
struct SnapkvParams {
  int64_t Hq, Hkv, G, W, N, L, d;
  int kernel;
  bool max_pool;
  float scale;
};
void snapkv(const View& queries, const View& keys, const SnapkvParams& o, const View& out);

// ---- moments.cc: merge rows into the moment state, per head: an explicit ascending list, the complement of an
// ascending list (gather), or the positions whose label equals `value` (the rounds of momentkv_select).
struct RowSource {
  enum Mode { kList = 0, kComplement = 1, kLabel = 2 } mode;
  const View* idx = nullptr;    // [H, cap] i32 (list modes)
  const View* cnt = nullptr;    // [H] i32 (list modes)
  const View* label = nullptr;  // [H, N] i32 (label mode)
  int32_t value = 0;
};
void moments_merge(const View& k, const View& v, const RowSource& src, const MomentViews& m);

// ---- decode.cc: queries and out as [Hq, T, d] / [Hq, T, dv].
struct DecodeArgs {
  View q, k, v, cnt, out;
  const MomentViews* m;
  int order;
  float scale;
  int clip_mode;  // 0 none, 1 scalar, 2 tensor
  float clip;
  View clip_t;
};
void decode(const DecodeArgs& A);

// ---- momentkv_select.cc: rounds_out (optional) receives the round each token was evicted in.
void momentkv_select(const View& s, const View& k, const View& v, const kvt_momentkv_select_opts& o, const View& idx,
                     const View& cnt, const MomentViews& m, const View* rounds_out);

// ---- spd.cc: every system solved (info written when given); the first failing system, if any.
struct SpdFailure {
  int64_t system = -1;
  int64_t minor = 0;
  float pivot = 0;
};
SpdFailure spd_solve(const View& a, const View& b, float lambda, const View& x, const View* info);

// ---- grkv.cc (+ grkv_attention.cc, grkv_value.cc, grkv_key.cc): the checked arguments of kvt_grkv_merge.
struct GrkvArgs {
  View k, v, idx, cnt, q, qp, w, sc, ko, vo, co, dg;
  bool has_w = false, has_dg = false;
  int64_t H = 0, N = 0, d = 0, dv = 0, Hq = 0, Qs = 0, G = 0, rows = 0, cap_in = 0, cap = 0;
  kvt_grkv_opts o{};
  float scale = 1.0f;
};
void grkv_merge(const GrkvArgs& a);
// An empty sequence of a batch (docs/runtime-caches.md §2): zero output rows, counts 0, a skipped diagnostics row.
void grkv_empty(const GrkvArgs& a);

}  // namespace cpu
}  // namespace kvt
