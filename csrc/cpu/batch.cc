// The sequence scheduler of the batched ops (cpu/batch.h).
#include "cpu/batch.h"

#include <vector>

#include "cpu/parallel.h"

namespace kvt {
namespace cpu {

// A sequence of fewer rows (H·n) than this runs on one thread: below it the per-sequence code's own chunks are too
// few to feed the pool (a token-major KeyDiff pass over n = 2,048 tokens is 2 tasks of 1,024 tokens), above it they
// are plenty. Was 16,384: at B = 16 (about 2,000 tokens each) half the sequences ran alone on 2–4 tasks.
constexpr int64_t kSmallRows = 131072;

void for_each_seq(int64_t B, const std::function<int64_t(int64_t)>& rows, const std::function<void(int64_t)>& fn) {
  std::vector<int64_t> small;
  for (int64_t s = 0; s < B; s++) {
    if (rows(s) >= kSmallRows) fn(s);
    else small.push_back(s);
  }
  // Too few small sequences to share the pool (e.g. a batch of one): each runs alone with the op's own threading.
  if (int64_t(small.size()) < 2 * int64_t(num_threads())) {
    for (int64_t s : small) fn(s);
    return;
  }
  parallel_for(int64_t(small.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) fn(small[size_t(i)]);
  });
}

void empty_selection(const View& idx, const View& cnt) {
  for (int64_t h = 0; h < idx.shape[0]; h++) {
    cnt.ptr<int32_t>()[h * cnt.stride[0]] = 0;
    for (int64_t j = 0; j < idx.shape[1]; j++) idx.ptr<int32_t>()[h * idx.stride[0] + j * idx.stride[1]] = -1;
  }
}

}  // namespace cpu
}  // namespace kvt
