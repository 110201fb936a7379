// In-place compaction on the CPU backend (docs/runtime-caches.md §4): per sequence, the evicted rows merged into the
// moment state first (the partition and update of gather, cpu/moments.cc), then per head a forward pass moving each
// kept row to its destination. Destinations never pass their sources (indices[j] >= j, ascending), so a row is
// always read before it is overwritten and no buffer proportional to N*d is needed.
#include <algorithm>
#include <cstring>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"

namespace kvt {
namespace cpu {

// Row `from` of head h to row `to` (< from) of the same view (contiguous, strided or paged).
static void move_row(const View& v, int64_t h, int64_t from, int64_t to) {
  const char* src = row_ptr(v, h, from);
  char* dst = row_ptr(v, h, to);
  const int64_t w = v.shape[2], es = dtype_size(v.dtype), s = v.stride[2];
  if (s == 1) {
    std::memmove(dst, src, size_t(w * es));
  } else {
    for (int64_t c = 0; c < w; c++) std::memmove(dst + c * s * es, src + c * s * es, size_t(es));
  }
}

void compact(const View& k, const View& v, const View& idx, const View& cnt, const MomentViews* moments) {
  const int64_t H = k.shape[0];
  if (moments) {  // every row of head h not in indices[h, :counts[h]], before any is overwritten
    RowSource src;
    src.mode = RowSource::kComplement;
    src.idx = &idx;
    src.cnt = &cnt;
    moments_merge(k, v, src, *moments);
  }
  parallel_for(H, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; h++) {
      const int64_t c = cnt.ptr<int32_t>()[h * cnt.stride[0]];
      const int32_t* list = idx.ptr<int32_t>() + h * idx.stride[0];
      for (int64_t j = 0; j < c; j++) {
        const int64_t i = list[j * idx.stride[1]];
        if (i != j) {
          move_row(k, h, i, j);
          move_row(v, h, i, j);
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace kvt
