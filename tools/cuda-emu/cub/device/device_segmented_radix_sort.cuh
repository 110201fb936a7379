// cub::DeviceSegmentedRadixSort for the CUDA emulator: a host implementation with CUB's semantics (stable; keys ordered
// by their radix-sortable bit pattern: -0.0 before +0.0, NaNs by sign and payload beyond the infinities; only bits
// [begin_bit, end_bit) of that pattern compared). Used by the unfused benchmark baselines (cuda/bench_baselines.cu).
#pragma once

#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../../cuda_runtime_api.h"

namespace cub {
namespace detail {
template <typename K>
inline uint64_t radix_bits(K k) {
  if constexpr (std::is_same<K, float>::value) {
    uint32_t u;
    memcpy(&u, &k, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  } else if constexpr (std::is_same<K, double>::value) {
    uint64_t u;
    memcpy(&u, &k, 8);
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  } else if constexpr (std::is_signed<K>::value) {
    return uint64_t(int64_t(k)) ^ (uint64_t(1) << (sizeof(K) * 8 - 1));
  } else {
    return uint64_t(k);
  }
}

template <bool DESC, typename K, typename V, typename BeginIt, typename EndIt>
cudaError_t sort_pairs(void* temp, size_t& temp_bytes, const K* kin, K* kout, const V* vin, V* vout, int num_items,
                       int num_segments, BeginIt begin, EndIt end, int begin_bit, int end_bit) {
  if (!temp) {
    temp_bytes = 256;
    return cudaSuccess;
  }
  (void)num_items;
  const uint64_t mask = (end_bit - begin_bit >= 64 ? ~uint64_t(0) : ((uint64_t(1) << (end_bit - begin_bit)) - 1)) << begin_bit;
  std::vector<int64_t> idx;
  for (int s = 0; s < num_segments; s++) {
    const int64_t b = begin[s], e = end[s];
    idx.resize(size_t(std::max<int64_t>(0, e - b)));
    for (int64_t i = b; i < e; i++) idx[size_t(i - b)] = i;
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t x, int64_t y) {
      const uint64_t a = radix_bits(kin[x]) & mask, c = radix_bits(kin[y]) & mask;
      return DESC ? a > c : a < c;
    });
    std::vector<K> ks(idx.size());
    std::vector<V> vs(idx.size());
    for (size_t i = 0; i < idx.size(); i++) {
      ks[i] = kin[idx[i]];
      vs[i] = vin[idx[i]];
    }
    for (size_t i = 0; i < idx.size(); i++) {
      kout[b + int64_t(i)] = ks[i];
      vout[b + int64_t(i)] = vs[i];
    }
  }
  return cudaSuccess;
}
}  // namespace detail

struct DeviceSegmentedRadixSort {
  template <typename K, typename V, typename BeginIt, typename EndIt>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* kin, K* kout, const V* vin, V* vout,
                               int num_items, int num_segments, BeginIt begin, EndIt end, int begin_bit = 0,
                               int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
    return detail::sort_pairs<false>(temp, temp_bytes, kin, kout, vin, vout, num_items, num_segments, begin, end,
                                     begin_bit, end_bit);
  }
  template <typename K, typename V, typename BeginIt, typename EndIt>
  static cudaError_t SortPairsDescending(void* temp, size_t& temp_bytes, const K* kin, K* kout, const V* vin, V* vout,
                                         int num_items, int num_segments, BeginIt begin, EndIt end, int begin_bit = 0,
                                         int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
    return detail::sort_pairs<true>(temp, temp_bytes, kin, kout, vin, vout, num_items, num_segments, begin, end,
                                    begin_bit, end_bit);
  }
};
}  // namespace cub
