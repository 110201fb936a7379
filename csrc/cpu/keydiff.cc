// KeyDiff scoring on the CPU backend (docs/methods/keydiff.md §3): the anchor of each head in f64 over fixed row chunks,
// then the negative cosine of every key against it.
#include <algorithm>
#include <vector>

#include "cpu/ops.h"
#include "cpu/parallel.h"
#include "cpu/rows.h"

namespace kvt {
namespace cpu {

// The tasks of a pass over k in chunks of `rows` rows: one head's chunk, or the chunk of every head where rows.h's
// row_walk reads all heads together; fn(h, c, i, row) per row in that order (row: its f32 values).
template <typename F>
static void over_chunks(const View& k, int64_t rows, const F& fn) {
  const int64_t H = k.shape[0], N = k.shape[1], C = (N + rows - 1) / rows;
  const RowWalk w = row_walk(k);
  parallel_for(w.all_heads ? C : H * C, 1, [&](int64_t b, int64_t e) {
    std::vector<float> buf;
    for (int64_t t = b; t < e; t++) {
      const int64_t c = t % C, h0 = w.all_heads ? 0 : t / C, h1 = w.all_heads ? H : h0 + 1;
      walk_rows(k, w, h0, h1, c * rows, std::min(N, (c + 1) * rows),
                [&](int64_t h, int64_t i, const char* p) { fn(h, c, i, load_row_at(k, p, buf)); });
    }
  });
}

// Anchor per head: mean of L2-normalised keys, accumulated in f64 over row chunks.
static void normalized_key_means(const View& k, std::vector<float>& anchor) {
  const int64_t H = k.shape[0], N = k.shape[1], d = k.shape[2];
  const int64_t rows_per_chunk = 1024;
  const int64_t C = (N + rows_per_chunk - 1) / rows_per_chunk;
  std::vector<double> partial(size_t(C * H * d), 0.0);
  over_chunks(k, rows_per_chunk, [&](int64_t h, int64_t c, int64_t, const float* row) {
    double* acc = &partial[size_t((c * H + h) * d)];
    float inv = inv_norm_clamped(sumsq8(row, d));
    for (int64_t j = 0; j < d; j++) acc[j] += double(row[j] * inv);
  });
  anchor.assign(size_t(H * d), 0.0f);
  for (int64_t h = 0; h < H; h++)
    for (int64_t j = 0; j < d; j++) {
      double s = 0;
      for (int64_t c = 0; c < C; c++) s += partial[size_t((c * H + h) * d + j)];
      anchor[size_t(h * d + j)] = float(s / double(N));
    }
}

void keydiff(const View& k, const View& out) {
  const int64_t H = k.shape[0], d = k.shape[2];
  std::vector<float> anchor;
  normalized_key_means(k, anchor);
  std::vector<float> anorm(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; h++) anorm[size_t(h)] = sqrtf(sumsq8(&anchor[size_t(h * d)], d));
  over_chunks(k, 256, [&](int64_t h, int64_t, int64_t i, const float* row) {
    const float* a = &anchor[size_t(h * d)];
    float* o = out.ptr<float>() + h * out.stride[0];
    o[i * out.stride[1]] = neg_cosine(dot8(row, a, d), sumsq8(row, d), anorm[size_t(h)]);
  });
}

}  // namespace cpu
}  // namespace kvt
