// GRKV merge on the CPU backend, shared by its files (cpu/grkv.cc, grkv_attention.cc, grkv_value.cc, grkv_key.cc):
// the per-head state carried through the phases and the Merge class whose methods are the phases. The phases are the
// CUDA kernels' (cuda/grkv*.cu), each threaded over (KV head, block) tasks, with the per-head decisions (anchors, caps
// and recheck, CG scalars, candidate choice) taken by the shared code of math/grkv.h. Vectors are fp32; norms,
// objectives and CG scalars are accumulated in double.
#pragma once

#include <stdint.h>

#include <vector>

#include "cpu/ops.h"
#include "math/grkv.h"

namespace kvt {
namespace cpu {
namespace grkv {

constexpr int64_t kKeyChunk = 512;  // target: keys per task
constexpr int64_t kTile = 64;       // keys / slots per inner tile
constexpr int64_t kRowBlock = 16;   // query rows per task

// Precision of the key step's conjugate gradients (operator applications and recurrences). The truncated CG on
// J_w J_w^T + lambda I is ill-conditioned (relative residuals above 1 are common in the first iterations), so fp32
// recurrences drift from the exact Krylov iterate within ~8 iterations; double keeps it (docs/methods/grkv.md §7.2).
using cg_t = double;

// What the phases know about one KV head.
struct Head {
  GrkvHead st{};
  std::vector<int32_t> pos;    // [S] retained positions
  std::vector<int32_t> mlist;  // [R] mutable slot indices, ascending
  std::vector<float> Q;        // [rows, d] query rows (g, j) -> g*Qs + j
  std::vector<int32_t> qpos;   // [rows]
  std::vector<float> w, sw;    // [rows]
  std::vector<float> ostar;    // [rows, dv] full-cache target
  std::vector<float> o;        // [rows, dv] output at the current candidate
  std::vector<float> o1;       // [rows, dv] output at (K0, V1): the key step's linearisation point
  std::vector<float> Kr, Vr;   // [S, d], [S, dv] current retained rows (f32 values of the storage)
  std::vector<float> A;        // [rows, S] attention weights
  std::vector<cg_t> AM;        // [rows, R] weights at K0 on the mutable slots
  std::vector<float> AwT;      // [R, rows] sqrt(w) * AM, transposed
  std::vector<float> X;        // [rows, dv] dual solution of the value step; CG iterate x
  std::vector<float> D;        // [R, max(d, dv)] step: dV, then dK
  std::vector<cg_t> V1m;       // [R, dv] mutable rows of V1
  std::vector<cg_t> Qc, o1c;   // query rows and o1 at CG precision
  std::vector<cg_t> x, res, p, Y, Up, uo;  // CG vectors [rows, dv]; U' = sqrt(w) U; uo = U'.o1 per row
  std::vector<cg_t> T;         // [R, d] VJP output (the key step dK at the end)
  bool fit = false;            // R > 0 and rows > 0
};

// Objective of an output o [rows, dv]: sum_i w_i ||o_i - o*_i||^2 (grkv.cc).
double weighted_loss(const Head& hd, const std::vector<float>& o, int64_t rows, int64_t dv);

class Merge {
 public:
  explicit Merge(const GrkvArgs& a) : a_(a), heads_(static_cast<size_t>(a.H)) {}

  // All phases, in order (grkv.cc).
  void run();

 private:
  const GrkvArgs& a_;
  std::vector<Head> heads_;

  bool any_fit() const {
    for (const auto& hd : heads_)
      if (hd.fit) return true;
    return false;
  }

  // grkv.cc: plain eviction into the outputs, the partition, the key+value objective, the choice
  void gather_outputs();
  void setup();
  void key_value_objective();
  void finish();
  // grkv_attention.cc: the full-cache target, attention over the retained rows
  void target();
  void attention_and_output(bool all);
  // grkv_value.cc: the capped step shared by both steps, the value step
  void apply_step(Head& hd, std::vector<float>& X, int64_t w, double cap, int which);
  void value_step();
  // grkv_key.cc: the key step's CG operators and the key step
  void prep_u(const std::vector<cg_t> Head::*U, bool cg_only);
  void vjp(bool cg_only);
  void jvp();
  void key_step();
};

}  // namespace grkv
}  // namespace cpu
}  // namespace kvt
