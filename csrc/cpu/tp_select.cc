// The shard side of the tensor-parallel adaptive selection on the CPU backend (docs/runtime-caches.md §5): per-head
// safeguard pivots, the per-round digit histograms of this shard's adaptive keys, the bin choice on the summed
// histogram (math/tp_select.h) and the final keys >= pivot. Keys are the unsharded ones (global head, global H).
#include <algorithm>
#include <functional>
#include <mutex>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "math/tp_select.h"

namespace kvt {
namespace cpu {

namespace {

int32_t* state_row(const TpSelectArgs& a, int64_t b) { return a.state.ptr<int32_t>() + b * a.state.stride[0]; }
int32_t& word(const TpSelectArgs& a, int64_t b, int w) { return state_row(a, b)[w * a.state.stride[1]]; }

// The rank key of token i of local head h (sinks / recent forced), as the unsharded selection computes it.
uint64_t key_of(const TpSelectArgs& a, const View& s, int64_t h, int64_t i) {
  const float x = s.ptr<float>()[h * s.stride[0] + i * s.stride[1]];
  return rank_key(x, is_forced_position(i, s.shape[1], a.o.sinks, a.o.recent), i, a.off + h, a.Htot);
}

uint64_t head_pivot(const TpSelectArgs& a, int64_t b, int64_t h) {
  return tp::join(word(a, b, tp::kHeader + 2 * int(h)), word(a, b, tp::kHeader + 2 * int(h) + 1));
}

uint64_t prefix(const TpSelectArgs& a, int64_t b) { return tp::join(word(a, b, tp::kPrefixHi), word(a, b, tp::kPrefixLo)); }

}  // namespace

void tp_begin(const TpSelectArgs& a) {
  const int64_t B = int64_t(a.scores.size());
  for (int64_t b = 0; b < B; b++) {
    word(a, b, tp::kRound) = 0;
    word(a, b, tp::kRemaining) = int32_t(a.Htot * a.keep[size_t(b)]);
    word(a, b, tp::kPrefixHi) = word(a, b, tp::kPrefixLo) = word(a, b, tp::kFlags) = 0;
    for (int w = tp::kFlags + 1; w < tp::kHeader; w++) word(a, b, w) = 0;
  }
  // Safeguard pivot per (sequence, head): the n_safe-th largest key of the head (none: ~0, promotes nothing new).
  parallel_for(B * a.Hs, 1, [&](int64_t lo, int64_t hi) {
    std::vector<uint64_t> keys;
    for (int64_t t = lo; t < hi; t++) {
      const int64_t b = t / a.Hs, h = t % a.Hs;
      const View& s = a.scores[size_t(b)];
      const int64_t n_safe = std::min<int64_t>(a.n_safe[size_t(b)], s.shape[1]);
      uint64_t pivot = ~uint64_t(0);
      if (n_safe > 0) {
        keys.resize(size_t(s.shape[1]));
        for (int64_t i = 0; i < s.shape[1]; i++) keys[size_t(i)] = key_of(a, s, h, i);
        std::nth_element(keys.begin(), keys.begin() + (n_safe - 1), keys.end(), std::greater<uint64_t>());
        pivot = keys[size_t(n_safe - 1)];
      }
      word(a, b, tp::kHeader + 2 * int(h)) = tp::hi_word(pivot);
      word(a, b, tp::kHeader + 2 * int(h) + 1) = tp::lo_word(pivot);
    }
  });
}

void tp_histogram(const TpSelectArgs& a, int round, const View& hist) {
  const int64_t B = int64_t(a.scores.size()), bins = int64_t(1) << a.bits;
  for (int64_t b = 0; b < B; b++)
    for (int64_t v = 0; v < bins; v++) hist.ptr<int32_t>()[b * hist.stride[0] + v * hist.stride[1]] = 0;
  std::mutex mu;
  parallel_for(B * a.Hs, 1, [&](int64_t lo, int64_t hi) {
    std::vector<int32_t> local(static_cast<size_t>(bins));
    for (int64_t t = lo; t < hi; t++) {
      const int64_t b = t / a.Hs, h = t % a.Hs;
      const View& s = a.scores[size_t(b)];
      const uint64_t pv = head_pivot(a, b, h), pre = prefix(a, b);
      std::fill(local.begin(), local.end(), 0);
      for (int64_t i = 0; i < s.shape[1]; i++) {
        const uint64_t key = tp::adaptive_key(key_of(a, s, h, i), pv);
        if (tp::matches(key, pre, a.bits, round)) local[tp::digit(key, a.bits, round)]++;
      }
      std::lock_guard<std::mutex> lk(mu);  // integer sums: the order of the tasks does not matter
      int32_t* row = hist.ptr<int32_t>() + b * hist.stride[0];
      for (int64_t v = 0; v < bins; v++) row[v * hist.stride[1]] += local[size_t(v)];
    }
  });
}

int64_t tp_advance(const TpSelectArgs& a, int round, const View& hist) {
  const int64_t B = int64_t(a.scores.size());
  int64_t short_seq = -1;
  for (int64_t b = 0; b < B; b++) {
    int64_t k = word(a, b, tp::kRemaining);
    uint32_t dg = 0;
    if (!tp::choose_bin(hist.ptr<int32_t>() + b * hist.stride[0], hist.stride[1], 1 << a.bits, &k, &dg)) {
      word(a, b, tp::kFlags) |= tp::kFlagShort;
      if (short_seq < 0) short_seq = b;
      dg = 0;
    }
    const uint64_t pre = prefix(a, b) | (uint64_t(dg) << (64 - a.bits * (round + 1)));
    word(a, b, tp::kPrefixHi) = tp::hi_word(pre);
    word(a, b, tp::kPrefixLo) = tp::lo_word(pre);
    word(a, b, tp::kRemaining) = int32_t(k);
    word(a, b, tp::kRound) = round + 1;
  }
  return short_seq;
}

void tp_finish(const TpSelectArgs& a, const View& idx, const View& cnt) {
  const int64_t B = int64_t(a.scores.size());
  parallel_for(B * a.Hs, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; t++) {
      const int64_t b = t / a.Hs, h = t % a.Hs;
      const View& s = a.scores[size_t(b)];
      const uint64_t pv = head_pivot(a, b, h), pivot = prefix(a, b);
      int32_t* out = idx.ptr<int32_t>() + b * idx.stride[0] + h * idx.stride[1];
      const int64_t cap = idx.shape[2];
      int64_t c = 0;
      if (a.keep[size_t(b)] > 0)
        for (int64_t i = 0; i < s.shape[1]; i++)
          if (tp::adaptive_key(key_of(a, s, h, i), pv) >= pivot) {
            if (c < cap) out[c * idx.stride[2]] = int32_t(i);
            c++;
          }
      for (int64_t j = c; j < cap; j++) out[j * idx.stride[2]] = -1;
      cnt.ptr<int32_t>()[b * cnt.stride[0] + h * cnt.stride[1]] = int32_t(c);
    }
  });
}

}  // namespace cpu
}  // namespace kvt
