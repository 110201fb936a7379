/**
 * Built-in, deterministic, LLM-like KV-cache trace.
 *
 * `generateTrace()` returns, per layer, post-RoPE keys and values `[Hkv, N, d]`, the post-RoPE
 * queries of the SnapKV observation window `[Hq, W, d]`, held-out decode queries `[Hq, T, d]` at
 * position N (never shown to a compression method) with their kind and needle target, and the raw
 * queries at the GRKV stratified positions re-rotated to position N−1. The structure mirrors what is
 * observed in real caches (see docs/trace.md for every property, how it is built and why):
 *
 *  - keys share a per-head bias direction and carry 2–4 massive channels (low-frequency RoPE dims);
 *  - token 0 is an attention sink (distinct key in the lowest-frequency RoPE pairs, tiny value);
 *  - the context is cut into topic segments whose keys share a segment direction and whose values
 *    share mutually orthogonal segment value directions;
 *  - keys and values drift smoothly (AR(1)) and a constant high-frequency key component gives a
 *    RoPE recency kernel, so queries attend locally;
 *  - needles: distinctive keys with distinctive values, retrieved by needle queries;
 *  - heads and layers have different strengths (bias, sink share, sharpness, needle positions).
 *
 * Everything random comes from `Rng` (lib/rng.ts), in independent streams per (layer, head,
 * purpose), so the same options give the same bytes (V8's Math functions are its own fdlibm port,
 * independent of OS and CPU).
 *
 * Conventions: RoPE is the rotate-half (GPT-NeoX / Hugging Face Llama) convention, see `applyRope`.
 * Logits are `q·k / sqrt(d)`.
 *
 * Modules: options.ts (options, result types, validation), plan.ts (segments, needles, query plan), head.ts (the
 * per-head model), generate.ts (the generator), rope.ts, normal.ts (Gaussian noise, seeds), vector.ts.
 */
export { generateTrace } from './generate';
export { TRACE_DEFAULTS } from './options';
export type { HeldOutKind, Trace, TraceLayer, TraceOptions } from './options';
export { applyRope, ropeInvFreq } from './rope';
export { normalQuantile } from './normal';
export { stratifiedPositions } from './plan';
