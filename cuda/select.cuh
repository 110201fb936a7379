// The radix top-k selection of cuda/select.cu as the tensor-parallel protocol (cuda/tp_select.cu) reuses it: the rank
// keys of a (batch of) score rows, the per-group radix state, and the host launchers of the per-row pivot search and
// of the position-ordered collect. A group is one row (head b·H + h of a batch; uniform budget, safeguard) or one
// sequence (its H rows; the adaptive layer budget).
#pragma once

#include "common.cuh"

namespace kvt {
namespace cuda {
namespace sel {

constexpr int kThreads = 256;
constexpr int kPerThread = 8;
constexpr int kChunk = kThreads * kPerThread;  // elements of one row per block
constexpr int kRounds = 8;
constexpr int kBins = 256;

enum Mode : int { kActive = 0, kPrefix = 1, kAll = 2, kNone = 3 };

// Radix state of a group: the digits of the k-th largest key found so far (prefix, `bits` of them), the rank left
// to find in the prefix's bucket, and whether keys are kept by prefix, all, or none.
struct State {
  unsigned long long prefix;
  unsigned int k_rem;
  int bits;
  int mode;
};

__host__ __device__ __forceinline__ bool kept(unsigned long long key, const State& s) {
  if (s.mode == kAll) return true;
  if (s.mode == kNone) return false;
  return s.bits == 0 || (key >> (64 - s.bits)) >= s.prefix;
}

// The keys a selection ranks: per-token f32 scores of one [H, N] row set or of a batch (Seqs), ranked by the unique
// rank key of math/common.h with head index hoff + h out of Hkey heads (the tensor-parallel shards rank by global
// heads), sinks and recent tokens forced, and with `promote` the tokens a row's state keeps forced too (the adaptive
// budget's safeguard).
struct Keys {
  T2 scores;
  Seqs seqs;
  int64_t H;           // rows per sequence (the scores' heads)
  int64_t Hkey, hoff;  // heads of the key (H, 0 unless sharded)
  int32_t sinks, recent;
  const State* promote;  // per row (b·H + h), or null
};

template <bool BATCH>
__device__ __forceinline__ unsigned long long key_at(const Keys& c, int64_t b, int64_t h, int64_t i, int64_t n) {
  const float s = static_cast<const float*>(c.scores.p)[tok_off<BATCH>(c.seqs, c.scores, b, h, i)];
  unsigned long long k = rank_key(s, is_forced_position(i, n, c.sinks, c.recent), i, c.hoff + h, c.Hkey);
  if (c.promote && kept(k, c.promote[b * c.H + h])) k |= (unsigned long long)(kForcedKey) << 32;
  return k;
}

// The rank each group seeks: per sequence keep_b = min(keep[b] (or keep_scalar), n_b), then per row keep_b (kUniform)
// or the safeguard floor(keep_b · safeguard) (kSafeguard), or per sequence H·keep_b (kLayer).
enum BudgetKind : int { kUniform = 0, kSafeguard = 1, kLayer = 2 };
struct Budget {
  const int32_t* keep;  // [B] (stride keep_s) or null
  int64_t keep_s;
  int32_t keep_scalar;
  double safeguard;
  int kind;
};

// Host launchers (cuda/select.cu). `st` holds one State per group (B·H rows when per_row, else B sequences).
// Radix rounds: st receives the final states.
template <bool BATCH>
cudaError_t radix_select(const Keys& c, bool per_row, const Budget& budget, State* st, cudaStream_t stream);
// Exact k-th largest key of every row whose state `st` (per row) describes: the smallest kept key, ~0 when none is kept.
template <bool BATCH>
cudaError_t row_pivots(const Keys& c, const State* st, unsigned long long* pivots, cudaStream_t stream);
// Indices (ascending positions, -1 after the count) and counts of the kept keys of every row.
template <bool BATCH>
cudaError_t collect(const Keys& c, bool per_row, const State* st, const T2& idx, const T2& cnt, cudaStream_t stream);

}  // namespace sel
}  // namespace cuda
}  // namespace kvt
