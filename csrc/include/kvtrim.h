/*
 * kvtrim C ABI: the same ops the Node package exposes, callable from a native runtime without Node.
 *
 * Tensors are described by `kvt_tensor`, which has exactly the field layout of DLPack's `DLTensor`
 * (dlpack.h v0.6-v1.1): a runtime that already holds a `DLTensor*` (or the `dl_tensor` member of a
 * `DLManagedTensor[Versioned]`) can pass it cast to `const kvt_tensor*`. Strides are in elements; a
 * NULL `strides` means compact row-major. Data never moves: CPU tensors (device_type 1, or 3 for
 * pinned host memory) run on the threaded CPU backend, CUDA tensors (device_type 2) on the CUDA
 * backend, asynchronously on `stream` (a `cudaStream_t`, NULL = legacy default stream).
 *
 * Every function returns a `kvt_status`; on failure `kvt_last_error()` returns a message naming the
 * offending argument (thread-local, valid until the next call on that thread). No C++ exception leaves
 * a kvt_* function (an allocation failure is KVT_ERR_MEMORY). Inputs are never modified unless the
 * function says so; outputs are written only inside their described extent. kvtrim cannot know the size
 * of a caller's allocation: the caller keeps each view inside its memory (kvt_tensor_extent computes the
 * byte range); every view's arithmetic is checked (no wrap-around), see README "Errors" for the limits.
 * Shapes follow the Node API (see README "API"): K/V per layer are [H, N, d] (any strides), scores
 * [H, N] f32, indices [H, cap] i32 ascending with padding -1 after counts[h], counts [H] i32.
 */
#ifndef KVTRIM_H_
#define KVTRIM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVT_ABI_VERSION 1

#if defined(_WIN32)
#define KVT_API __declspec(dllexport)
#else
#define KVT_API __attribute__((visibility("default")))
#endif

/* DLPack-compatible descriptors (same sizes, offsets and codes as DLDevice / DLDataType / DLTensor). */
typedef enum { KVT_DEVICE_CPU = 1, KVT_DEVICE_CUDA = 2, KVT_DEVICE_CUDA_HOST = 3 } kvt_device_type;
typedef enum { KVT_DTYPE_INT = 0, KVT_DTYPE_UINT = 1, KVT_DTYPE_FLOAT = 2, KVT_DTYPE_BFLOAT = 4 } kvt_dtype_code;

typedef struct {
  int32_t device_type; /* kvt_device_type */
  int32_t device_id;
} kvt_device;

typedef struct {
  uint8_t code; /* kvt_dtype_code */
  uint8_t bits;
  uint16_t lanes; /* must be 1 */
} kvt_dtype;

typedef struct {
  void* data;
  kvt_device device;
  int32_t ndim;
  kvt_dtype dtype;
  int64_t* shape;
  int64_t* strides; /* elements; NULL = compact row-major */
  uint64_t byte_offset;
} kvt_tensor;

typedef enum {
  KVT_OK = 0,
  KVT_ERR_TYPE = 1,        /* wrong dtype, rank, device or a missing argument (TypeError in Node) */
  KVT_ERR_RANGE = 2,       /* shape mismatch or option out of range (RangeError in Node) */
  KVT_ERR_CUDA = 3,        /* a CUDA runtime error; the message holds the CUDA error name */
  KVT_ERR_UNSUPPORTED = 4, /* e.g. a CUDA tensor with a build that has no CUDA */
  KVT_ERR_INTERNAL = 5,    /* a bug: an unexpected C++ exception was caught (the message names the function) */
  KVT_ERR_MEMORY = 6       /* the CPU backend could not allocate its scratch memory (std::bad_alloc was caught) */
} kvt_status;

typedef void* kvt_stream; /* cudaStream_t */

KVT_API const char* kvt_last_error(void);
/* The bytes a view reaches, relative to `data` (byte_offset included): [*lo, *hi), both 0 for an empty view. The same
 * checks every op applies to each tensor argument (README "Errors"): at most 4 dimensions, each in [0, 2^31 - 1],
 * every product and sum checked for 64-bit overflow, views that repeat elements (zero or overlapping strides) at most
 * 2^16 elements. KVT_ERR_RANGE / KVT_ERR_TYPE otherwise, with `name` (may be NULL) in the message. A runtime can
 * check a view against its allocation with it before calling an op; kvtrim itself cannot see allocation sizes. */
KVT_API kvt_status kvt_tensor_extent(const kvt_tensor* t, const char* name, int64_t* lo, int64_t* hi);
KVT_API int kvt_abi_version(void);
/* 1 when the library was compiled with CUDA kernels. */
KVT_API int kvt_built_with_cuda(void);
/* Threads of the CPU backend: KVTRIM_THREADS if set (>= 1), else the hardware concurrency. */
KVT_API int kvt_num_threads(void);
/* Instruction-set level of the CPU backend's dispatched kernels: "avx512", "avx2" or "baseline" (SSE2 on x86-64,
 * NEON on arm64); the best this CPU runs unless KVTRIM_CPU_ISA names a lower one it runs (read when the library loads). */
KVT_API const char* kvt_cpu_isa(void);
/* The levels this CPU runs, best first: writes up to cap names to names[] and returns how many there are. */
KVT_API int kvt_cpu_isa_levels(const char** names, int cap);

/* Every options struct has a kvt_<op>_default_opts(opts*) that fills the defaults documented in its fields (the one
 * source of the defaults: the Node layer reads them too). Fields without a default (e.g. keep) are set to 0. */

/* ---- KeyDiff (docs/methods/keydiff.md §3): scores[h,i] = -cos(k_i, mean_j k_j/|k_j|). keys [H,N,d] f32|f16|bf16,
 *      scores [H,N] f32. Higher = keep. */
KVT_API kvt_status kvt_keydiff_scores(const kvt_tensor* keys, const kvt_tensor* scores, kvt_stream stream);

/* ---- Selection (docs/methods/selection.md §4). Ranking: higher score; NaN lowest; ties -> lower position, then lower
 *      head. Forced tokens (i < sinks, i >= N - recent) rank above all others. uniform: per-head top `keep`.
 *      adaptive: each head's top floor(keep*safeguard) are forced, then the layer keeps its global top H*keep. */
typedef enum { KVT_BUDGET_UNIFORM = 0, KVT_BUDGET_ADAPTIVE = 1 } kvt_budget;
typedef struct {
  int32_t keep;    /* per-head (average) keep count, 1..N */
  int32_t budget;  /* kvt_budget */
  double safeguard; /* adaptive only, in [0, 1]; n_safe = floor(keep * safeguard + 1e-9) */
  int32_t sinks;   /* leading positions always kept */
  int32_t recent;  /* trailing positions always kept */
} kvt_select_opts;
/* Defaults: keep 0 (no default: set it), budget uniform, safeguard 0.2, sinks 0, recent 0. */
KVT_API void kvt_select_default_opts(kvt_select_opts* opts);
/* scores [H,N] f32; indices [H,cap] i32 (cap >= keep for uniform; cap >= min(N, H*keep - (H-1)*floor(keep*safeguard))
 * for adaptive); counts [H] i32. */
KVT_API kvt_status kvt_select_tokens(const kvt_tensor* scores, const kvt_select_opts* opts,
                                     const kvt_tensor* indices, const kvt_tensor* counts, kvt_stream stream);
/* Smallest `cap` that is always enough for the given options (keep clamped to [0, N]; an invalid safeguard counts as 0,
 * the larger bound; saturates at N; 0 when H or N is not positive). */
KVT_API int64_t kvt_select_capacity(int64_t H, int64_t N, const kvt_select_opts* opts);

/* ---- Moment statistics of evicted tokens (docs/methods/momentkv.md §4): n [H] f32, mu_k [H,d], mu_v [H,dv],
 *      M = n*C [H,dv,d], all f32 contiguous. */
typedef struct {
  kvt_tensor n;
  kvt_tensor mu_k;
  kvt_tensor mu_v;
  kvt_tensor m;
} kvt_moments;

/* ---- Compaction (gather): keys_out[h,j] = keys[h, indices[h,j]] for j < counts[h] (rows j >= counts[h] are
 *      zero-filled); counts_out = min(counts, cap_out). Out of place: outputs must not overlap inputs. When
 *      `moments` is not NULL, every row of head h NOT listed in indices[h, :counts[h]] is merged into the moment
 *      state (exact pairwise update), reading the evicted rows once. */
KVT_API kvt_status kvt_gather_kv(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                                 const kvt_tensor* counts, const kvt_tensor* keys_out, const kvt_tensor* values_out,
                                 const kvt_tensor* counts_out, const kvt_moments* moments, kvt_stream stream);

/* ==== NestedKV and SnapKV scoring (docs/methods/nestedkv.md, docs/methods/snapkv.md §3.1) ==================================== */

/* ---- NestedKV (docs/methods/nestedkv.md §3 S1–S7, §9 choices): key-only multi-scale anomaly score. keys [H,N,d]
 *      f32|f16|bf16 (any strides), scores [H,N] f32 (any strides): a* in [0,1], positions < sinks = +Infinity.
 *      Higher = keep. Feed the scores to kvt_select_tokens with KVT_BUDGET_ADAPTIVE for the paper's head-wise
 *      budget (docs/methods/selection.md §4). The 'global' ablation scores ã_s only (min-max of the single-anchor KeyDiff score). */
typedef enum { KVT_SCALES_ALL = 0, KVT_SCALES_GLOBAL = 1 } kvt_scales;
typedef struct {
  int32_t window;   /* causal current-memory window W >= 1 (default 64) */
  int32_t block;    /* episodic block size b >= 1; 0 = clip(floor(N/32), 128, 256) (default 0) */
  double prior[3];  /* blend log-prior weights (stable, episodic, current): >= 0, finite, not all 0 (0.4, 0.4, 0.2) */
  double beta;      /* blend temperature, finite (3) */
  double tau;       /* gate threshold, finite (0.6) */
  double kappa;     /* gate sharpness, finite (10) */
  double tail;      /* tail fraction for the blend statistics, in [0, 1] (0.1): m = max(1, floor(tail*N)) */
  int32_t sinks;    /* leading positions pinned to +Infinity, >= 0 (4) */
  int32_t scales;   /* kvt_scales (KVT_SCALES_ALL) */
} kvt_nestedkv_opts;
/* Fills the defaults of docs/methods/nestedkv.md §6. */
KVT_API void kvt_nestedkv_default_opts(kvt_nestedkv_opts* opts);
/* Default episodic block size for N tokens: clip(floor(N/32), 128, 256). */
KVT_API int64_t kvt_nestedkv_block_size(int64_t N);
KVT_API kvt_status kvt_nestedkv_scores(const kvt_tensor* keys, const kvt_nestedkv_opts* opts, const kvt_tensor* scores,
                                       kvt_stream stream);

/* ---- SnapKV (docs/methods/snapkv.md §3.1, kvpress SnapKVPress): queries [Hq,Wq,d] are the observation-window queries at
 *      positions N-Wq .. N-1 (the last `window` rows are used), keys [Hkv,N,d] (Hq % Hkv == 0; any float dtypes and
 *      strides), scores [Hkv,N] f32. score = GQA mean over the group of pool_kernel(mean over the window queries of
 *      softmax(scale q.k) restricted to the prefix [0, N-W)); the W window positions get +Infinity. Causal inside
 *      the window. No [Hq,W,N] tensor is materialised. */
typedef enum { KVT_POOL_AVG = 0, KVT_POOL_MAX = 1 } kvt_pool;
typedef struct {
  int32_t window;  /* observation window W, 1 <= W <= Wq and W < N; 0 = Wq (default 0) */
  int32_t kernel;  /* pooling kernel, odd >= 1 (5); stride 1, padding kernel/2 (avg counts the zero padding) */
  int32_t pool;    /* kvt_pool (KVT_POOL_AVG) */
  double scale;    /* logit scale, finite and nonzero; 0 = 1/sqrt(d) (default 0) */
} kvt_snapkv_opts;
/* Fills the defaults above. */
KVT_API void kvt_snapkv_default_opts(kvt_snapkv_opts* opts);
KVT_API kvt_status kvt_snapkv_scores(const kvt_tensor* queries, const kvt_tensor* keys, const kvt_snapkv_opts* opts,
                                     const kvt_tensor* scores, kvt_stream stream);


/* ==== MomentKV: moment state, corrected decode attention, moment-informed eviction (docs/methods/momentkv.md) ======= */

/* Moment state `kvt_moments` (declared above): per KV head the evicted count n, key mean mu_k, value mean mu_v and
 * co-moment M = n·C, C = (1/n) Σ (v − mu_v)(k − mu_k)ᵀ. All four tensors f32, contiguous, on the device of the op's
 * other tensors. An empty state is all zeros. Merges use the exact pairwise (Chan) update of batch statistics that
 * are themselves computed centred (never raw sums), over a fixed partition of positions (deterministic).
 *
 * Merge rows into the state: for each head h, rows keys[h, evicted_indices[h, j]] / values[h, evicted_indices[h, j]]
 * for j < counts[h] are merged into head h. evicted_indices [H, cap] i32 strictly ascending positions in [0, N) before
 * counts[h] (checked on the CPU backend; CUDA kernels skip positions outside [0, N)); counts [H] i32 in [0, cap].
 * keys [H, N, d], values [H, N, dv]: f32 | f16 | bf16, any strides. The state is updated in place. */
KVT_API kvt_status kvt_moments_merge(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* evicted_indices,
                                     const kvt_tensor* counts, const kvt_moments* moments, kvt_stream stream);

/* Normalisation-corrected decode attention (docs/methods/momentkv.md §4.4). queries [Hq, d] or [Hq, T, d] (post-RoPE,
 * f32 | f16 | bf16, any strides); keys [Hkv, cap, d], values [Hkv, cap, dv] (f32 | f16 | bf16, same dtype, any
 * strides); counts [Hkv] i32: only rows j < counts[h] are read; Hq % Hkv == 0 (query head i uses KV head i / (Hq/Hkv)).
 * out f32 [Hq, dv] or [Hq, T, dv] (same rank as queries). With a = scale·q:
 *   o_R, lse_R = exact attention over the retained rows;   without moments (or n_h = 0): out = o_R
 *   λ = sigmoid(lse_R − log n_h − a·mu_k[h]),   out = λ·o_R + (1 − λ)·(mu_v[h] + c·C[h] a)
 * order 0 drops C a; c = 1 unless clipped: c = min(1, R / max(‖C a‖, 1e-12)) with R = clip[h] when the `clip` tensor
 * (f32 [Hkv], R ≥ 0) is given, else R = opts->clip when opts->use_clip != 0. counts[h] = 0 with n_h > 0 gives the
 * summary alone; counts[h] = 0 with n_h = 0 gives 0. CUDA: split-K flash decoding (d, dv ≤ 256), partial LSE
 * states merged with the summary as one extra LSE state. */
typedef struct {
  int32_t order;    /* 0 or 1 (1) */
  int32_t use_clip; /* nonzero: clip C a to the scalar radius `clip` (ignored when a clip tensor is given) (0) */
  double scale;     /* logit scale > 0; 0 means 1/sqrt(d) (0) */
  double clip;      /* scalar clip radius >= 0 (+inf allowed) (0) */
} kvt_decode_opts;
/* Fills the defaults above. */
KVT_API void kvt_decode_default_opts(kvt_decode_opts* opts);
KVT_API kvt_status kvt_decode_attention(const kvt_tensor* queries, const kvt_tensor* keys, const kvt_tensor* values,
                                        const kvt_tensor* counts, const kvt_moments* moments /* NULL: plain */,
                                        const kvt_tensor* clip /* NULL or f32 [Hkv] */, const kvt_decode_opts* opts,
                                        const kvt_tensor* out, kvt_stream stream);

/* Multi-round moment-informed eviction (docs/methods/momentkv.md §5.2-§5.3). scores [H, N] f32 base scores (e.g. SnapKV);
 * +inf marks a protected token (never evicted); other scores must be finite (checked on the CPU backend). Per head
 * the N − keep lowest-ranked unprotected tokens are evicted in `rounds` rounds (round r evicts
 * ceil(remaining / (rounds − r)) tokens) by key = score · (ρ + eps·mean ρ), ρ = ‖v − P v‖ the residual of the
 * token's value against span{mu_v, top-r left singular vectors of C} of the state at the start of the round (key =
 * score while n_h = 0, or when mi = 0, which also forces one round). Ties: the higher position is evicted first.
 * Each round's evicted rows are merged into `moments` (updated in place; it may already hold a summary, e.g. from
 * an earlier chunk). Outputs: indices [H, cap >= keep] i32 (kept positions ascending, -1 after keep), counts [H] =
 * keep, and optionally evicted_round [H, N] i32 (round 0..rounds-1 in which each token was evicted, -1 if kept).
 * The CPU backend rejects a head with more than `keep` protected tokens (RangeError); CUDA then keeps the
 * lowest-position protected tokens. keys/values: [H, N, d|dv] f32 | f16 | bf16, any strides. */
typedef struct {
  int32_t keep;   /* tokens kept per head, protected ones included: 1..N (no default) */
  int32_t rounds; /* >= 1 (4) */
  int32_t r;      /* singular vectors of C in the summary subspace: 0..8 (1) */
  int32_t mi;     /* 0: plain score eviction (one round; moments still merged) (1) */
  double eps;     /* floor weight of mean ρ, >= 0 (0.05) */
} kvt_momentkv_select_opts;
/* Fills the defaults above (keep = 0: set it). */
KVT_API void kvt_momentkv_select_default_opts(kvt_momentkv_select_opts* opts);
KVT_API kvt_status kvt_momentkv_select(const kvt_tensor* scores, const kvt_tensor* keys, const kvt_tensor* values,
                                       const kvt_momentkv_select_opts* opts, const kvt_tensor* indices,
                                       const kvt_tensor* counts, const kvt_moments* moments,
                                       const kvt_tensor* evicted_round /* NULL or i32 [H, N] */, kvt_stream stream);


/* ==== GRKV: batched SPD solves and the ridge-regression merge (docs/methods/grkv.md) ================================= */

/* ---- Batched SPD solve: X_b = (A_b + lambda*I)^-1 B_b for b < batch, by Cholesky and two triangular solves, all
 *      in fp32. a f32 [B, n, n] (only the LOWER triangle, i >= j, is read; the upper is never referenced), b f32
 *      [B, n, r], x f32 [B, n, r] (x may be exactly the same view as b for an in-place solve; any other overlap is
 *      rejected), info i32 [B] or NULL. Any strides.
 *      info[b] = 0 on success, k > 0 when the leading minor of order k of (A_b + lambda*I) is not positive
 *      definite (pivot k-1 was <= 0 or not finite; LAPACK potrf convention); the rows of x of such a system are
 *      set to NaN. CUDA: one CTA per system (n <= 256), the factor packed in shared memory; nothing is read back
 *      (no host synchronisation), so a failed system is reported only through info. CPU: all systems are solved,
 *      info is written, and then, when opts->check is non-zero, the call returns KVT_ERR_RANGE naming the first
 *      failing system and its pivot. */
typedef struct {
  double lambda;  /* added to the diagonal, >= 0 and finite (0) */
  int32_t check;  /* CPU backend: 1 = return KVT_ERR_RANGE when a system is not SPD (0 = LAPACK style, info only) (1) */
} kvt_spd_opts;
/* Fills the defaults above. */
KVT_API void kvt_spd_default_opts(kvt_spd_opts* opts);
KVT_API kvt_status kvt_spd_solve(const kvt_tensor* a, const kvt_tensor* b, const kvt_spd_opts* opts, const kvt_tensor* x,
                                 const kvt_tensor* info, kvt_stream stream);

/* ---- GRKV merge (docs/methods/grkv.md §4-§7, choices §11): the retained rows of one layer are regressed so that attention
 *      over the retained set reproduces full-cache attention for G*Qs surrogate query rows per KV head, then
 *      compacted like kvt_gather_kv.
 *      keys/values [H, N, d] / [H, N, dv] (same float dtype, any strides); indices [H, cap_in] i32 ascending, counts
 *      [H] i32 (the eviction result, ragged budgets allowed); queries [Hq, Qs, d] (float, post-RoPE, Hq % H == 0, row
 *      (g, j) of KV head h is query head h*G+g, query j); query_positions [Qs] i32 (retained/full key position p is
 *      visible to query j iff p <= query_positions[j]); weights [Qs] f32 or NULL (all 1); scores [H, N] f32 raw
 *      SnapKV scores (anchor ranking).
 *      Per KV head: fixed = retained positions >= N - window, plus the top floor(|P|*gamma) of the retained prefix P
 *      by score (NaN lowest, ties to the lower position); mutable = the rest (R rows). Target o* = full causal
 *      attention; value step = exact dual ridge ((G*Qs)x(G*Qs) SPD system, dv right-hand sides); key step = one
 *      Gauss-Newton ridge step by CG (<= cg_iters, relative tolerance tol); relative Frobenius caps per head; storage
 *      rounding (f16/bf16 outputs: while ||round(X0+s*D)-X0|| > cap*||X0||*(1+1e-9), s *= 0.9 at most 4 times, then
 *      the step is dropped; f32 outputs are not rechecked); per head the candidate with the lowest objective among
 *      {unchanged, value-only, key+value} is kept (earlier on ties, non-finite candidates skipped), or with
 *      accept = KVT_GRKV_ACCEPT_JOINT the key+value candidate whenever it is finite.
 *      Outputs: keys_out/values_out [H, cap, d|dv] (input dtype), counts_out [H] as kvt_gather_kv (fixed rows,
 *      evicted rows and padding are bit-identical to plain eviction), diagnostics f32 [H, KVT_GRKV_DIAG_COLS] or
 *      NULL. Out of place. The CUDA backend needs G*Qs <= 256 and d, dv <= 256. */
typedef struct {
  int32_t window;   /* W: retained positions >= N - W are fixed (32) */
  int32_t cg_iters; /* maximum CG iterations of the key step (16); 0 skips the key step */
  double gamma;     /* anchor fraction of the retained prefix, in [0, 1] (0.1) */
  double lambda;    /* ridge, > 0 (0.01) */
  double cap_key;   /* relative Frobenius cap of dK per head, >= 0; +inf = uncapped; 0 = value-only (0.025) */
  double cap_value; /* relative Frobenius cap of dV per head, >= 0; +inf = uncapped (0.10) */
  double tol;       /* relative CG residual tolerance (1e-6) */
  double scale;     /* logit scale; 0 = 1/sqrt(d) */
  int32_t accept;   /* KVT_GRKV_ACCEPT_BEST (per-head minimum objective) or KVT_GRKV_ACCEPT_JOINT (always the key+value
                       candidate when finite, else value-only when finite: docs/methods/grkv.md §7.3 GRKV-W "earliest") */
} kvt_grkv_opts;
enum { KVT_GRKV_ACCEPT_BEST = 0, KVT_GRKV_ACCEPT_JOINT = 1 };
/* Fills the defaults above. */
KVT_API void kvt_grkv_default_opts(kvt_grkv_opts* opts);

/* Columns of the per-head diagnostics row. */
enum {
  KVT_GRKV_DIAG_CHOSEN = 0,      /* 0 unchanged, 1 value-only, 2 key+value */
  KVT_GRKV_DIAG_L0 = 1,          /* objective (weighted loss + ridge) of the unchanged rows */
  KVT_GRKV_DIAG_L1 = 2,          /* ... of the value-only candidate (NaN when not finite or not computed) */
  KVT_GRKV_DIAG_L2 = 3,          /* ... of the key+value candidate */
  KVT_GRKV_DIAG_SCALE_V = 4,     /* final step scale of dV (cap factor times 0.9^shrinks; 0 when dropped) */
  KVT_GRKV_DIAG_SCALE_K = 5,
  KVT_GRKV_DIAG_SHRINKS_V = 6,   /* cap rechecks that shrank the step (0-4) */
  KVT_GRKV_DIAG_SHRINKS_K = 7,
  KVT_GRKV_DIAG_CG_ITERS = 8,
  KVT_GRKV_DIAG_CG_RESIDUAL = 9, /* final ||res|| / ||b|| */
  KVT_GRKV_DIAG_CG_STOP = 10,    /* 0 tolerance, 1 max iterations, 2 non-positive curvature, 3 not run */
  KVT_GRKV_DIAG_MUTABLE = 11,    /* R: mutable rows */
  KVT_GRKV_DIAG_FIXED = 12,      /* |F|: fixed rows (window + anchors) */
  KVT_GRKV_DIAG_FLAGS = 13,      /* bit 0 skipped, 1 dV dropped, 2 dK dropped, 3 value-only not finite,
                                    4 key+value not finite, 5 value solve not SPD */
  KVT_GRKV_DIAG_COLS = 14
};
KVT_API kvt_status kvt_grkv_merge(const kvt_tensor* keys, const kvt_tensor* values, const kvt_tensor* indices,
                                  const kvt_tensor* counts, const kvt_tensor* queries, const kvt_tensor* query_positions,
                                  const kvt_tensor* weights, const kvt_tensor* scores, const kvt_grkv_opts* opts,
                                  const kvt_tensor* keys_out, const kvt_tensor* values_out, const kvt_tensor* counts_out,
                                  const kvt_tensor* diagnostics, kvt_stream stream);


/* ==== Runtime-shaped caches: batches of sequences, paged KV, in-place compaction, tensor-parallel budgets
 *      (docs/runtime-caches.md) ============================================================================= */

/* A batch of B sequences of lengths n_b (0 allowed), each with the same H heads and head dim. Row (b, h, i), i < n_b:
 *   ragged  data [T, H, d]:            row indptr[b] + i of the data        (indptr i32 [B+1] token offsets)
 *   padded  data [B, H, L, d]:         data[b, h, i]                       (lengths i32 [B], or NULL: all L)
 *   paged   data [P, page_size, H, d] (NHD) or [P, H, page_size, d] (HND): page indices[indptr[b] + i / page_size],
 *           slot i % page_size (FlashInfer's convention: indptr i32 [B+1] into indices, indices i32 page ids,
 *           last_page_len i32 [B] in [0, page_size]; n_b = 0 without pages, else (pages_b - 1)*page_size + last).
 * Table tensors are i32, on the device of the data (never copied to the host for CUDA). Per-token tensors (scores,
 * evicted rounds) are [H, T] for ragged batches (column = the token's data row) and [B, H, L'] (L' >= max n_b)
 * otherwise; per-head ones are counts [B, H], indices [B, H, cap]; moment states hold B*H virtual heads (row b*H + h).
 * Every *_batched op equals its per-sequence op called on each sequence (keep_b = min(keep, n_b)). */
typedef enum { KVT_SEQS_RAGGED = 0, KVT_SEQS_PADDED = 1, KVT_SEQS_PAGED_NHD = 2, KVT_SEQS_PAGED_HND = 3 } kvt_seqs_layout;
typedef struct {
  int32_t layout;                  /* kvt_seqs_layout */
  int32_t page_size;               /* paged layouts: tokens per page, >= 1 */
  const kvt_tensor* indptr;        /* ragged: token offsets [B+1]; paged: offsets into indices [B+1] */
  const kvt_tensor* lengths;       /* padded: [B] or NULL */
  const kvt_tensor* indices;       /* paged: page ids */
  const kvt_tensor* last_page_len; /* paged: [B] */
} kvt_seqs;

KVT_API kvt_status kvt_keydiff_scores_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* scores,
                                              kvt_stream stream);
KVT_API kvt_status kvt_nestedkv_scores_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_nestedkv_opts* opts,
                                               const kvt_tensor* scores, kvt_stream stream);
/* queries: a ragged [Tq, Hq, d] or padded [B, Hq, Wq, d] batch described by qseqs (the last W_b = window, or all of
 * sequence b's queries, are used); a sequence with n_b <= W_b has no prefix and gets +Infinity everywhere. */
KVT_API kvt_status kvt_snapkv_scores_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_seqs* qseqs,
                                             const kvt_tensor* queries, const kvt_snapkv_opts* opts,
                                             const kvt_tensor* scores, kvt_stream stream);
/* keep: NULL (opts->keep for every sequence) or i32 [B]; sequence b keeps min(keep_b, n_b) per head (adaptive: one
 * layer-wide top-k per sequence). indices [B, H, cap] (cap >= kvt_select_capacity(H, n_b, keep_b) for every b),
 * counts [B, H]. */
KVT_API kvt_status kvt_select_tokens_batched(const kvt_seqs* seqs, const kvt_tensor* scores, const kvt_select_opts* opts,
                                             const kvt_tensor* keep, const kvt_tensor* indices, const kvt_tensor* counts,
                                             kvt_stream stream);
/* keys_out [B, H, cap, d], values_out [B, H, cap, dv], counts_out [B, H]; moments of B*H virtual heads or NULL. */
KVT_API kvt_status kvt_gather_kv_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* values,
                                         const kvt_tensor* indices, const kvt_tensor* counts, const kvt_tensor* keys_out,
                                         const kvt_tensor* values_out, const kvt_tensor* counts_out,
                                         const kvt_moments* moments, kvt_stream stream);
KVT_API kvt_status kvt_moments_merge_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* values,
                                             const kvt_tensor* evicted_indices, const kvt_tensor* counts,
                                             const kvt_moments* moments, kvt_stream stream);
/* queries [B, Hq, d] or [B, Hq, T, d]; counts [B, Hkv] <= n_b; clip NULL or f32 [B*Hkv]; out [B, Hq, dv] or
 * [B, Hq, T, dv]. */
KVT_API kvt_status kvt_decode_attention_batched(const kvt_seqs* seqs, const kvt_tensor* queries, const kvt_tensor* keys,
                                                const kvt_tensor* values, const kvt_tensor* counts,
                                                const kvt_moments* moments, const kvt_tensor* clip,
                                                const kvt_decode_opts* opts, const kvt_tensor* out, kvt_stream stream);
/* keep: NULL (opts->keep) or i32 [B]; evicted_round NULL or i32 per-token. */
KVT_API kvt_status kvt_momentkv_select_batched(const kvt_seqs* seqs, const kvt_tensor* scores, const kvt_tensor* keys,
                                               const kvt_tensor* values, const kvt_momentkv_select_opts* opts,
                                               const kvt_tensor* keep, const kvt_tensor* indices, const kvt_tensor* counts,
                                               const kvt_moments* moments, const kvt_tensor* evicted_round,
                                               kvt_stream stream);
/* queries: a ragged [Tq, Hq, d] or padded [B, Hq, Qs, d] batch (qseqs); query_positions (relative to the sequence) and
 * weights (or NULL) per query: [Tq] ragged, [B, Qs] padded; keys_out/values_out [B, H, cap, d|dv], counts_out
 * [B, H], diagnostics NULL or f32 [B, H, KVT_GRKV_DIAG_COLS]. An empty sequence gets zero rows, counts 0 and a
 * skipped diagnostics row. */
KVT_API kvt_status kvt_grkv_merge_batched(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* values,
                                          const kvt_tensor* indices, const kvt_tensor* counts, const kvt_seqs* qseqs,
                                          const kvt_tensor* queries, const kvt_tensor* query_positions,
                                          const kvt_tensor* weights, const kvt_tensor* scores, const kvt_grkv_opts* opts,
                                          const kvt_tensor* keys_out, const kvt_tensor* values_out,
                                          const kvt_tensor* counts_out, const kvt_tensor* diagnostics, kvt_stream stream);

/* ---- In-place compaction (docs/runtime-caches.md §4): per sequence b and head h, the rows indices[b, h, :counts[b, h]]
 *      (strictly ascending positions < n_b) move to rows 0 .. counts[b, h]-1 of the sequence's own storage (keys and
 *      values, order preserved, no buffer proportional to N*d); rows past the count are unspecified afterwards. With
 *      moments (B*H virtual heads), every other row is merged first, exactly as kvt_gather_kv_batched does. Paged
 *      caches: the pages past ceil(max_h counts / page_size) of each sequence are listed as freed (untouched); a page
 *      id used twice in the batch is rejected. Outputs (each NULL when not wanted): */
typedef struct {
  const kvt_tensor* lengths;       /* i32 [B]: max_h counts[b, h] */
  const kvt_tensor* page_counts;   /* paged: i32 [B], ceil(lengths[b] / page_size) */
  const kvt_tensor* last_page_len; /* paged: i32 [B], lengths[b] - (page_counts[b] - 1) * page_size, 0 without pages */
  const kvt_tensor* freed;         /* paged: i32 [F >= indptr[B] - indptr[0]]: freed page ids, -1 after freed_count */
  const kvt_tensor* freed_count;   /* paged: i32 [1] */
} kvt_compact_out;
KVT_API kvt_status kvt_compact_in_place(const kvt_seqs* seqs, const kvt_tensor* keys, const kvt_tensor* values,
                                        const kvt_tensor* indices, const kvt_tensor* counts, const kvt_moments* moments,
                                        const kvt_compact_out* out, kvt_stream stream);

/* ---- Tensor-parallel adaptive selection (docs/runtime-caches.md §5): heads sharded over devices; each shard ranks its
 *      heads with the unsharded (global head index, global H) rank keys, and a radix select over R = 64 / radix_bits
 *      rounds finds the layer's pivot: per round, histogram (local partial) -> the runtime's all-reduce (sum) ->
 *      advance (on every shard, same result). The result equals kvt_select_tokens / _batched on all heads. */
typedef struct {
  const kvt_seqs* seqs;     /* NULL: one sequence, scores [Hs, N]; else scores in the per-token form of seqs */
  const kvt_tensor* scores; /* this shard's scores, f32 */
  const kvt_tensor* keep;   /* NULL (select.keep for every sequence) or i32 [B] */
  kvt_select_opts select;   /* budget must be KVT_BUDGET_ADAPTIVE */
  int32_t head_offset;      /* global index of this shard's first head */
  int32_t total_heads;      /* H of the layer over all shards (H * n_b < 2^31) */
  int32_t radix_bits;       /* 4, 8 or 16 */
  const kvt_tensor* state;  /* i32 [B, kvt_tp_select_state_words(Hs)] (B = 1 without seqs) */
} kvt_tp_select;
/* Rounds of the protocol (64 / radix_bits; 0 for an unsupported width). */
KVT_API int32_t kvt_tp_select_rounds(int32_t radix_bits);
/* i32 words of state per sequence for a shard of Hs heads. */
KVT_API int64_t kvt_tp_select_state_words(int64_t shard_heads);
KVT_API kvt_status kvt_tp_select_begin(const kvt_tp_select* p, kvt_stream stream);
/* hist: i32 [B, 2^radix_bits], this shard's partial of round `round`. */
KVT_API kvt_status kvt_tp_select_histogram(const kvt_tp_select* p, int32_t round, const kvt_tensor* hist,
                                           kvt_stream stream);
/* hist_sum: i32 [B, 2^radix_bits], the element-wise sum of every shard's partial of round `round`. */
KVT_API kvt_status kvt_tp_select_advance(const kvt_tp_select* p, int32_t round, const kvt_tensor* hist_sum,
                                         kvt_stream stream);
/* After the last round: indices [B, Hs, cap] (or [Hs, cap] without seqs), counts [B, Hs] (or [Hs]); cap >=
 * kvt_select_capacity(total_heads, n_b, keep_b). */
KVT_API kvt_status kvt_tp_select_finish(const kvt_tp_select* p, const kvt_tensor* indices, const kvt_tensor* counts,
                                        kvt_stream stream);


#ifdef __cplusplus
}
#endif

#endif /* KVTRIM_H_ */
