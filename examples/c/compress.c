/*
 * Compress one layer of a KV cache from C through libkvtrim.so: NestedKV scores, the head-adaptive budget, then
 * compaction of the kept rows. Host memory, so the CPU backend runs; CUDA tensors (device_type KVT_DEVICE_CUDA)
 * would run the same calls as kernels on `stream`.
 *
 * Build against an installed npm package (paths from `node -p "require('kvtrim').nativeLibrary()"`):
 *   cc -std=c99 compress.c -I<include> -L<dir of library> -lkvtrim -Wl,-rpath,<dir of library> -o compress
 * or against a source install: `cc compress.c $(pkg-config --cflags --libs kvtrim)`, or CMake (CMakeLists.txt here,
 * find_package(kvtrim)). Run: ./compress [N]   (prints the kept counts and FNV-1a hashes of every output)
 */
#include <kvtrim.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { H = 4, D = 64 };

/* Deterministic test data: small multiples of 1/256, exact in f32 (any language reproduces them bit for bit). */
static uint32_t lcg = 1;
static float next_value(void) {
  lcg = lcg * 1103515245u + 12345u;
  return (float)((int)((lcg >> 8) % 2001u) - 1000) / 256.0f;
}

/* FNV-1a over the bytes of an output: one line per output makes the results easy to compare with another API. */
static uint32_t fnv1a(const void* data, size_t bytes) {
  const unsigned char* p = (const unsigned char*)data;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

/* A compact row-major host tensor (NULL strides = compact, as in DLPack). */
static kvt_tensor host_tensor(void* data, kvt_dtype dtype, int32_t ndim, int64_t* shape) {
  kvt_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = KVT_DEVICE_CPU;
  t.ndim = ndim;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = NULL;
  return t;
}

static int failed(kvt_status st, const char* what) {
  if (st == KVT_OK) return 0;
  fprintf(stderr, "%s failed (status %d): %s\n", what, (int)st, kvt_last_error());
  return 1;
}

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? atoll(argv[1]) : 2048;
  if (N < 8) {
    fprintf(stderr, "N must be at least 8\n");
    return 2;
  }
  const kvt_dtype f32 = {KVT_DTYPE_FLOAT, 32, 1}, i32 = {KVT_DTYPE_INT, 32, 1};
  printf("abi %d (header %d), cuda %d, threads %d\n", kvt_abi_version(), KVT_ABI_VERSION, kvt_built_with_cuda(),
         kvt_num_threads());
  if (kvt_abi_version() != KVT_ABI_VERSION) {
    fprintf(stderr, "libkvtrim ABI %d does not match kvtrim.h ABI %d\n", kvt_abi_version(), KVT_ABI_VERSION);
    return 1;
  }

  /* The cache of one layer: keys and values [H, N, D]. */
  const size_t n_kv = (size_t)H * (size_t)N * D;
  float* k = malloc(n_kv * sizeof(float));
  float* v = malloc(n_kv * sizeof(float));
  float* scores = malloc((size_t)H * (size_t)N * sizeof(float));
  if (!k || !v || !scores) return 1;
  for (size_t i = 0; i < n_kv; i++) k[i] = next_value();
  for (size_t i = 0; i < n_kv; i++) v[i] = next_value();
  int64_t kv_shape[3] = {H, N, D}, score_shape[2] = {H, N};
  kvt_tensor keys = host_tensor(k, f32, 3, kv_shape), values = host_tensor(v, f32, 3, kv_shape);
  kvt_tensor score_t = host_tensor(scores, f32, 2, score_shape);

  /* 1. NestedKV scores with the defaults of docs/methods/nestedkv.md §6. */
  kvt_nestedkv_opts nopts;
  kvt_nestedkv_default_opts(&nopts);
  if (failed(kvt_nestedkv_scores(&keys, &nopts, &score_t, NULL), "kvt_nestedkv_scores")) return 1;

  /* 2. Keep a quarter of the tokens per head on average, head-adaptive budgets. */
  kvt_select_opts sopts;
  kvt_select_default_opts(&sopts);
  sopts.keep = (int32_t)(N / 4);
  sopts.budget = KVT_BUDGET_ADAPTIVE;
  const int64_t cap = kvt_select_capacity(H, N, &sopts);
  int32_t* indices = malloc((size_t)H * (size_t)cap * sizeof(int32_t));
  int32_t counts[H], counts_out[H];
  int64_t idx_shape[2] = {H, cap}, cnt_shape[1] = {H};
  if (!indices) return 1;
  kvt_tensor idx_t = host_tensor(indices, i32, 2, idx_shape), cnt_t = host_tensor(counts, i32, 1, cnt_shape);
  if (failed(kvt_select_tokens(&score_t, &sopts, &idx_t, &cnt_t, NULL), "kvt_select_tokens")) return 1;

  /* 3. Compact the kept rows into [H, cap, D]. */
  float* k_out = malloc((size_t)H * (size_t)cap * D * sizeof(float));
  float* v_out = malloc((size_t)H * (size_t)cap * D * sizeof(float));
  if (!k_out || !v_out) return 1;
  int64_t out_shape[3] = {H, cap, D};
  kvt_tensor ko = host_tensor(k_out, f32, 3, out_shape), vo = host_tensor(v_out, f32, 3, out_shape);
  kvt_tensor co = host_tensor(counts_out, i32, 1, cnt_shape);
  if (failed(kvt_gather_kv(&keys, &values, &idx_t, &cnt_t, &ko, &vo, &co, NULL, NULL), "kvt_gather_kv")) return 1;

  printf("N %lld, cap %lld, kept per head:", (long long)N, (long long)cap);
  for (int h = 0; h < H; h++) printf(" %d", counts_out[h]);
  printf("\n");
  printf("fnv1a scores %08x indices %08x counts %08x keys %08x values %08x\n",
         fnv1a(scores, (size_t)H * (size_t)N * sizeof(float)), fnv1a(indices, (size_t)H * (size_t)cap * sizeof(int32_t)),
         fnv1a(counts_out, sizeof counts_out), fnv1a(k_out, (size_t)H * (size_t)cap * D * sizeof(float)),
         fnv1a(v_out, (size_t)H * (size_t)cap * D * sizeof(float)));

  /* Errors name the argument: scores of the wrong shape. */
  int64_t bad_shape[2] = {H, N - 1};
  kvt_tensor bad = host_tensor(scores, f32, 2, bad_shape);
  kvt_status st = kvt_keydiff_scores(&keys, &bad, NULL);
  printf("bad call: status %d, %s\n", (int)st, kvt_last_error());

  free(k);
  free(v);
  free(scores);
  free(indices);
  free(k_out);
  free(v_out);
  return st == KVT_ERR_RANGE ? 0 : 1;
}
