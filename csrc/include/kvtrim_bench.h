/*
 * kvtrim benchmark entry points: the yardstick and the straightforward baselines that `kvtrim bench` times the ops
 * against. NOT part of the public C ABI (kvtrim.h): no stability promise, names and signatures change with the
 * bench. They exist so that the Node binding reaches all native code through C entry points. Statuses and error
 * messages as in kvtrim.h (kvt_last_error).
 */
#ifndef KVTRIM_BENCH_H_
#define KVTRIM_BENCH_H_

#include "kvtrim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Copies `bytes` bytes from src to dst (host memory, not overlapping) in 1 MiB chunks on the CPU backend's threads:
 * the memory-bandwidth yardstick of the CPU backend. */
KVT_API kvt_status kvt_bench_host_copy(void* dst, const void* src, int64_t bytes);

/* The f32 multiply-add peak of the CPU backend at its instruction-set level (kvt_cpu_isa): independent FMA chains in
 * vector registers on every thread, best of a few runs; *gflops in GFLOP/s (2 flops per lane per FMA). */
KVT_API kvt_status kvt_bench_fma_peak(double* gflops);

/* Unfused GPU baselines (cuda/bench_baselines.cu): the same functions as the fused kernels, written the way an
 * unfused framework implementation computes them. CUDA tensors only (KVT_ERR_TYPE for host tensors,
 * KVT_ERR_UNSUPPORTED in a build without CUDA); shapes as the ops they stand in for. */
/* kvt_keydiff_scores in three kernels: normalised copy of K, column means, cosines. */
KVT_API kvt_status kvt_bench_keydiff(const kvt_tensor* keys, const kvt_tensor* scores, kvt_stream stream);
/* Uniform per-head top `keep` by a full segmented sort (CUB); indices [H, cap >= keep], counts [H]. */
KVT_API kvt_status kvt_bench_select(const kvt_tensor* scores, int64_t keep, const kvt_tensor* indices,
                                    const kvt_tensor* counts, kvt_stream stream);
/* kvt_gather_kv by element-wise copies, one thread per element (rows past counts zero-filled; no counts_out). */
KVT_API kvt_status kvt_bench_gather(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                                    const kvt_tensor* counts, const kvt_tensor* keys_out, const kvt_tensor* values_out,
                                    kvt_stream stream);
/* kvt_snapkv_scores with the SIMT f32 logit tiles forced even where tensor cores apply; window = every query row,
 * kernel 5, avg pooling, scale 1/sqrt(d). */
KVT_API kvt_status kvt_bench_snapkv_simt(const kvt_tensor* queries, const kvt_tensor* keys, const kvt_tensor* scores,
                                         kvt_stream stream);

#ifdef __cplusplus
}
#endif

#endif /* KVTRIM_BENCH_H_ */
