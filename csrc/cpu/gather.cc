// Compaction of retained K/V rows on the CPU backend (docs/performance.md §5.5): row copies (zero rows past the
// count), then, with a moment state, the merge of every evicted row (docs/methods/momentkv.md §4.3, cpu/moments.cc).
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"

namespace kvt {
namespace cpu {

static void copy_row(const View& src, int64_t h, int64_t i, const View& dst, int64_t j) {
  const int64_t d = src.shape[2], es = dtype_size(src.dtype);
  if (d == 0) return;  // an empty row (its base may be null)
  const char* s = row_ptr(src, h, i);
  char* o = dst.base + (h * dst.stride[0] + j * dst.stride[1]) * es;
  if (src.stride[2] == 1 && dst.stride[2] == 1) {
    std::memcpy(o, s, size_t(d * es));
  } else if (es == 4) {
    for (int64_t c = 0; c < d; c++)
      std::memcpy(o + c * dst.stride[2] * 4, s + c * src.stride[2] * 4, 4);
  } else {
    for (int64_t c = 0; c < d; c++)
      std::memcpy(o + c * dst.stride[2] * 2, s + c * src.stride[2] * 2, 2);
  }
}

static void zero_row(const View& dst, int64_t h, int64_t j) {
  const int64_t d = dst.shape[2], es = dtype_size(dst.dtype);
  if (d == 0) return;
  char* o = dst.base + (h * dst.stride[0] + j * dst.stride[1]) * es;
  if (dst.stride[2] == 1) {
    std::memset(o, 0, size_t(d * es));
  } else {
    for (int64_t c = 0; c < d; c++) std::memset(o + c * dst.stride[2] * es, 0, size_t(es));
  }
}

void gather(const View& k, const View& v, const View& idx, const View& cnt, const View& ko, const View& vo,
            const View& co, const MomentViews* moments) {
  const int64_t H = k.shape[0], cap = ko.shape[1];
  parallel_for(H * cap, 64, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      int64_t h = t / cap, j = t % cap;
      int64_t c = cnt.ptr<int32_t>()[h * cnt.stride[0]];
      if (j < c) {
        int64_t i = idx.ptr<int32_t>()[h * idx.stride[0] + j * idx.stride[1]];
        copy_row(k, h, i, ko, j);
        copy_row(v, h, i, vo, j);
      } else {
        zero_row(ko, h, j);
        zero_row(vo, h, j);
      }
    }
  });
  for (int64_t h = 0; h < H; h++) co.ptr<int32_t>()[h * co.stride[0]] = cnt.ptr<int32_t>()[h * cnt.stride[0]];
  if (moments) {  // every row of head h not in indices[h, :counts[h]]
    RowSource src;
    src.mode = RowSource::kComplement;
    src.idx = &idx;
    src.cnt = &cnt;
    moments_merge(k, v, src, *moments);
  }
}

}  // namespace cpu
}  // namespace kvt
