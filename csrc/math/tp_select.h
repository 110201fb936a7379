// Tensor-parallel adaptive selection (docs/runtime-caches.md §5): a radix select over the unique 64-bit rank keys of
// math/common.h, one digit per round, whose per-round histograms the shards sum with the runtime's collective. Both
// backends use these functions, so every shard (and backend) takes the same bin from the same summed histogram.
#pragma once

#include <stdint.h>

#include "math/common.h"

namespace kvt {
namespace tp {

// i32 words of a sequence's state: a header, then the safeguard pivot key of each of the shard's heads (hi, lo).
enum StateWord : int { kRound = 0, kRemaining = 1, kPrefixHi = 2, kPrefixLo = 3, kFlags = 4, kHeader = 8 };
// kFlags bit: a summed histogram held fewer keys than the rank sought (a shard did not contribute).
constexpr int32_t kFlagShort = 1;

// Rounds for a digit width (4, 8 or 16 bits), 0 for any other width.
KVT_HD int rounds(int bits) { return bits == 4 || bits == 8 || bits == 16 ? 64 / bits : 0; }

// Digit of round r (round 0 = the top digit).
KVT_HD uint32_t digit(uint64_t key, int bits, int r) {
  return uint32_t(key >> (64 - bits * (r + 1))) & ((1u << bits) - 1u);
}

// Whether the digits of `key` above round r equal those of `prefix` (the pivot's digits found so far).
KVT_HD bool matches(uint64_t key, uint64_t prefix, int bits, int r) {
  return r == 0 || (key >> (64 - bits * r)) == (prefix >> (64 - bits * r));
}

// The adaptive rank key of a token (docs/methods/selection.md §4): its rank key, promoted to forced when it is among its
// head's safeguard top (key >= the head's pivot), as selectTokens' adaptive budget ranks it.
KVT_HD uint64_t adaptive_key(uint64_t key, uint64_t head_pivot) {
  return key >= head_pivot ? key | (uint64_t(kForcedKey) << 32) : key;
}

// The bin of the k-th largest key, scanning `hist` (bins entries, stride hs) from the top digit down: the digit in
// *digit_out and k less the keys of the higher bins in *k. false when the histogram holds fewer than k keys. The CPU
// backend's pick; cuda/tp_select.cu's advance_kernel takes the same bin (the first whose running count reaches k) with
// block scans.
KVT_HD bool choose_bin(const int32_t* hist, int64_t hs, int bins, int64_t* k, uint32_t* digit_out) {
  int64_t above = 0;
  for (int v = bins - 1; v >= 0; v--) {
    const int64_t c = hist[v * hs];
    if (above + c >= *k) {
      *k -= above;
      *digit_out = uint32_t(v);
      return true;
    }
    above += c;
  }
  return false;
}

KVT_HD uint64_t join(int32_t hi, int32_t lo) { return (uint64_t(uint32_t(hi)) << 32) | uint64_t(uint32_t(lo)); }
KVT_HD int32_t hi_word(uint64_t x) { return int32_t(uint32_t(x >> 32)); }
KVT_HD int32_t lo_word(uint64_t x) { return int32_t(uint32_t(x)); }

}  // namespace tp
}  // namespace kvt
