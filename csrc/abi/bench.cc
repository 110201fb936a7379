// The `kvtrim bench` entry points of kvtrim_bench.h: the host memcpy yardstick on the CPU backend's threads and
// the checked launches of the unfused GPU baselines (cuda/bench_baselines.cu) and of the SIMT SnapKV path.
#include "kvtrim_bench.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

#include "abi/validate.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#if defined(KVT_WITH_CUDA)
#include "abi/cuda_glue.h"
#endif

using namespace kvt;

extern "C" kvt_status kvt_bench_host_copy(void* dst, const void* src, int64_t bytes) try {
  if (bytes <= 0) return KVT_OK;
  if (!dst || !src) return fail(KVT_ERR_TYPE, "hostCopy: NULL pointer");
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  const int64_t chunk = 1 << 20;
  cpu::parallel_for((bytes + chunk - 1) / chunk, 1, [&](int64_t b, int64_t e) {
    const int64_t lo = b * chunk, hi = e * chunk < bytes ? e * chunk : bytes;
    std::memcpy(d + lo, s + lo, size_t(hi - lo));
  });
  return KVT_OK;
} KVT_API_CATCH

extern "C" kvt_status kvt_bench_fma_peak(double* gflops) try {
  if (!gflops) return fail(KVT_ERR_TYPE, "fmaPeak: NULL pointer");
  const cpu::SimdOps& v = cpu::simd();
  const int threads = cpu::num_threads();
  double best = 0;
  std::atomic<int64_t> sink{0};
  for (int rep = 0; rep < 5; rep++) {
    std::atomic<int64_t> flops{0};
    const auto t0 = std::chrono::steady_clock::now();
    cpu::parallel_for(threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) {
        double f = 0;
        sink += int64_t(v.fma_chains(int64_t(1) << 22, &f));
        flops += int64_t(f);
      }
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0 && double(flops.load()) / s > best) best = double(flops.load()) / s;
  }
  *gflops = best / 1e9 + 0 * double(sink.load());
  return KVT_OK;
} KVT_API_CATCH

#if defined(KVT_WITH_CUDA)

// A baseline operand: rank and dtype checked, on a CUDA device, which becomes the current device.
static kvt_status cuda_operand(const kvt_tensor* t, const char* name, int ndim, uint32_t mask, View* v) {
  KVT_TRY(check_tensor(t, name, ndim, mask, "", v));
  if (!v->on_cuda()) return fail(KVT_ERR_TYPE, std::string(name) + ": baselines run on CUDA tensors only");
  return cuda_status(set_device(v->device_id), "cudaSetDevice");
}

extern "C" kvt_status kvt_bench_keydiff(const kvt_tensor* keys, const kvt_tensor* scores, kvt_stream stream) try {
  View k, o;
  KVT_TRY(cuda_operand(keys, "keys", 3, kMaskFloat, &k));
  KVT_TRY(cuda_operand(scores, "out", 2, kMaskF32, &o));
  return cuda_status(cuda::baseline_keydiff(t3(k), t2(o), static_cast<cudaStream_t>(stream)), "baselineKeydiff");
} KVT_API_CATCH

extern "C" kvt_status kvt_bench_select(const kvt_tensor* scores, int64_t keep, const kvt_tensor* indices,
                                       const kvt_tensor* counts, kvt_stream stream) try {
  View s, idx, cnt;
  KVT_TRY(cuda_operand(scores, "scores", 2, kMaskF32, &s));
  KVT_TRY(cuda_operand(indices, "indices", 2, kMaskI32, &idx));
  KVT_TRY(cuda_operand(counts, "counts", 1, kMaskI32, &cnt));
  if (keep < 1 || keep > s.shape[1] || idx.shape[1] < keep) return fail(KVT_ERR_RANGE, "keep: out of range");
  return cuda_status(cuda::baseline_select(t2(s), keep, t2(idx), t2(cnt), static_cast<cudaStream_t>(stream)),
                     "baselineSelect");
} KVT_API_CATCH

extern "C" kvt_status kvt_bench_gather(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                                       const kvt_tensor* counts, const kvt_tensor* keys_out, const kvt_tensor* values_out,
                                       kvt_stream stream) try {
  View k, v, idx, cnt, ko, vo;
  KVT_TRY(cuda_operand(keys, "keys", 3, kMaskFloat, &k));
  KVT_TRY(cuda_operand(values, "values", 3, kMaskFloat, &v));
  KVT_TRY(cuda_operand(indices, "indices", 2, kMaskI32, &idx));
  KVT_TRY(cuda_operand(counts, "counts", 1, kMaskI32, &cnt));
  KVT_TRY(cuda_operand(keys_out, "keysOut", 3, kMaskFloat, &ko));
  KVT_TRY(cuda_operand(values_out, "valuesOut", 3, kMaskFloat, &vo));
  return cuda_status(cuda::baseline_gather(t3(k), t3(v), t2(idx), t2(cnt), o3(ko), o3(vo),
                                           static_cast<cudaStream_t>(stream)),
                     "baselineGather");
} KVT_API_CATCH

extern "C" kvt_status kvt_bench_snapkv_simt(const kvt_tensor* queries, const kvt_tensor* keys, const kvt_tensor* scores,
                                            kvt_stream stream) try {
  View q, k, o;
  KVT_TRY(check_tensor(queries, "queries", 3, kMaskFloat, "[Hq, W, d]", &q));
  KVT_TRY(check_tensor(keys, "keys", 3, kMaskFloat, "[Hkv, N, d]", &k));
  KVT_TRY(check_tensor(scores, "out", 2, kMaskF32, "[Hkv, N]", &o));
  if (!q.on_cuda() || !k.on_cuda() || !o.on_cuda()) return fail(KVT_ERR_TYPE, "baselineSnapkv: CUDA tensors only");
  if (k.shape[0] < 1 || q.shape[0] % k.shape[0] || q.shape[2] != k.shape[2] || q.shape[1] >= k.shape[1] ||
      o.shape[0] != k.shape[0] || o.shape[1] != k.shape[1])
    return fail(KVT_ERR_RANGE, "baselineSnapkv: inconsistent shapes");
  KVT_TRY(cuda_status(set_device(k.device_id), "cudaSetDevice"));
  cuda::SnapkvParams p{5, 0, float(1.0 / std::sqrt(double(k.shape[2]))), 1};
  return cuda_status(cuda::snapkv_scores(t3(q), t3(k), p, t2(o), static_cast<cudaStream_t>(stream)), "baselineSnapkv");
} KVT_API_CATCH

#else  // no CUDA: the baselines cannot run

static kvt_status no_cuda(const char* fn) {
  return fail(KVT_ERR_UNSUPPORTED, std::string(fn) + ": this kvtrim build has no CUDA support");
}

extern "C" kvt_status kvt_bench_keydiff(const kvt_tensor*, const kvt_tensor*, kvt_stream) try {
  return no_cuda("baselineKeydiff");
} KVT_API_CATCH
extern "C" kvt_status kvt_bench_select(const kvt_tensor*, int64_t, const kvt_tensor*, const kvt_tensor*, kvt_stream) try {
  return no_cuda("baselineSelect");
} KVT_API_CATCH
extern "C" kvt_status kvt_bench_gather(const kvt_tensor*, const kvt_tensor*, const kvt_tensor*, const kvt_tensor*,
                                       const kvt_tensor*, const kvt_tensor*, kvt_stream) try {
  return no_cuda("baselineGather");
} KVT_API_CATCH
extern "C" kvt_status kvt_bench_snapkv_simt(const kvt_tensor*, const kvt_tensor*, const kvt_tensor*, kvt_stream) try {
  return no_cuda("baselineSnapkv");
} KVT_API_CATCH

#endif
