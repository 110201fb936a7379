/** The generator: per layer and KV head, the keys and values of the context, then the queries. */
import { Rng } from '../rng';
import { Trace, TraceLayer, TraceOptions, resolveOptions } from './options';
import { ropeInvFreq, ropeTable, rotateVec } from './rope';
import { fillNormals, normalTable, subSeed } from './normal';
import { dot, norm, scaleTo } from './vector';
import { NEEDLE_SPAN, QueryPlan, needleSpansFor, planQueries, segmentBoundsFor, stratifiedPositions } from './plan';
import { HeadModel, buildHead } from './head';

const POOL_SIZE = 1 << 17;

/** Generate the built-in trace. Deterministic in `opts` (including `seed`). */
export function generateTrace(opts?: TraceOptions): Trace {
  const o = resolveOptions(opts);
  const T = normalTable();
  const { kvHeads: Hkv, groupSize: G, tokens: N, headDim: d, window: W, heldOut: Tq, needles: K, segments: S } = o;
  const Hq = Hkv * G;
  const inv = ropeInvFreq(d, o.ropeBase);
  // document: segments, needle spans and the query plan are shared by every layer and head
  const docRng = new Rng(subSeed(o.seed, 0xd0c));
  const bounds = segmentBoundsFor(docRng, N, S);
  const spans = needleSpansFor(docRng, N, W, K);
  const plan = planQueries(docRng, o);
  const segOf = new Int32Array(N);
  for (let s = 0; s < S; s++) segOf.fill(s, bounds[s], bounds[s + 1]);
  const strat = stratifiedPositions(N);
  const Qs = strat.length;
  // RoPE table for positions 0..N-1, shared by all heads and layers (computed per row instead
  // when it would exceed 2^23 entries)
  let table: { cos: Float64Array; sin: Float64Array } | null = null;
  if (N * (d >> 1) <= 1 << 23) {
    const pos = new Int32Array(N);
    for (let i = 0; i < N; i++) pos[i] = i;
    table = ropeTable(pos, inv);
  }

  const layers: TraceLayer[] = [];
  for (let l = 0; l < o.layers; l++) {
    const layerFrac = o.layers > 1 ? l / (o.layers - 1) : 0.5;
    const keys = new Float32Array(Hkv * N * d);
    const values = new Float32Array(Hkv * N * d);
    const windowQueries = new Float32Array(Hq * W * d);
    const heldOutQueries = new Float32Array(Hq * Tq * d);
    const stratifiedQueries = new Float32Array(Hq * Qs * d);
    const needles = new Int32Array(Hkv * K);
    const needleAsked = new Uint8Array(Hkv * K);
    const needleTarget = new Int32Array(Hq * Tq).fill(-1);
    for (let kh = 0; kh < Hkv; kh++) {
      const prng = new Rng(subSeed(o.seed, l, kh, 1));
      const m = buildHead(prng, T, o, layerFrac);
      const npos = new Int32Array(K);
      for (let k = 0; k < K; k++) {
        npos[k] = spans[k] + prng.int(NEEDLE_SPAN);
        needles[kh * K + k] = npos[k];
        needleAsked[kh * K + k] = k < plan.asked ? 1 : 0;
      }
      const drift = fillHeadKV(new Rng(subSeed(o.seed, l, kh, 2)), T, m, o, segOf, npos, table, inv, keys, values, kh, strat);
      const k0 = Float64Array.from(keys.subarray(kh * N * d, kh * N * d + d));
      buildHeadQueries(
        new Rng(subSeed(o.seed, l, kh, 3)), T, m, o, inv, bounds, segOf, npos, plan, drift, k0, strat, keys,
        kh, windowQueries, heldOutQueries, stratifiedQueries, needleTarget,
      );
    }
    layers.push({
      keys, values, windowQueries, heldOutQueries,
      heldOutKind: plan.kinds.slice(),
      heldOutSegment: plan.segment.slice(),
      heldOutFollowUp: plan.followUp.slice(),
      needles, needleAsked, needleTarget, stratifiedQueries,
      stratifiedPositions: strat.slice(),
    });
  }
  return { options: o, Hkv, Hq, N, d, dv: d, W, T: Tq, segmentBounds: bounds, layers };
}

/**
 * Keys (pre-RoPE structure, then rotated) and values of one head, one pass over the tokens.
 * Returns the pre-RoPE drift state z_{p} at the positions the queries need (p = q − 1).
 */
function fillHeadKV(
  rng: Rng, T: Float64Array, m: HeadModel, o: Required<TraceOptions>, segOf: Int32Array, npos: Int32Array,
  table: { cos: Float64Array; sin: Float64Array } | null, inv: Float64Array, keys: Float32Array,
  values: Float32Array, kh: number, strat: Int32Array,
): Map<number, Float64Array> {
  const N = o.tokens, d = o.headDim, h = d >> 1, W = o.window;
  const needleAt = new Int32Array(N).fill(-1);
  for (let k = 0; k < npos.length; k++) needleAt[npos[k]] = k;
  const snap = new Set<number>();
  for (let p = N - W - 1; p < N; p++) snap.add(p);
  for (const p of strat) if (p >= 1) snap.add(p - 1);
  const drift = new Map<number, Float64Array>();
  // Noise rows are read from a per-head pool of 2^17 Rng normals at a random offset with a random
  // odd stride (one u32 per row instead of d/2): rows are pairwise uncorrelated and each element is
  // an exact N(0,1) sample, at a small fraction of the cost of fresh draws.
  const pool = new Float64Array(POOL_SIZE);
  fillNormals(rng, T, pool, 0, POOL_SIZE);
  const PM = POOL_SIZE - 1;
  const z = new Float64Array(d); // key drift (pre-RoPE), on the drift channels only
  const vz = new Float64Array(d); // value drift
  const row = new Float64Array(d);
  const { bias, massive, posVec, noiseStd, driftProfile, vbias, vnoiseStd } = m;
  const driftDims: number[] = [];
  for (let x = 0; x < d; x++) if (driftProfile[x] !== 0) driftDims.push(x);
  const nDrift = driftDims.length;
  const massDims = m.massiveChannels;
  const rho = m.driftRho, innov = Math.sqrt(1 - rho * rho);
  const vrho = m.vdriftRho, vinnov = Math.sqrt(1 - vrho * vrho), vamp = m.vdriftAmp;
  const sqd = Math.sqrt(d);
  // stationary start for the drifts
  for (const x of driftDims) z[x] = driftProfile[x] * rng.normal();
  for (let x = 0; x < d; x++) vz[x] = vamp * rng.normal();
  const kbase = kh * N * d;
  const cos = table ? table.cos : new Float64Array(h);
  const sin = table ? table.sin : new Float64Array(h);
  // per-segment constant parts of keys (bias + positional vector + segment direction) and values
  const kconst = m.segDir.map((sd) => Float64Array.from(sd, (v, x) => v + bias[x] + posVec[x]));
  const vconst = m.vsegDir.map((sd) => Float64Array.from(sd, (v, x) => v + vbias[x]));
  for (let i = 0; i < N; i++) {
    const s = segOf[i];
    const kc = kconst[s];
    const vc = vconst[s];
    // four pool rows: key noise, value noise, key-drift innovations, value-drift innovations
    let u = rng.u32();
    const ok = u & PM, sk = ((u >>> 17) << 1) | 1;
    u = rng.u32();
    const ov = u & PM, sv = ((u >>> 17) << 1) | 1;
    u = rng.u32();
    const oz = u & PM, sz = ((u >>> 17) << 1) | 1;
    u = rng.u32();
    const ow = u & PM, sw = ((u >>> 17) << 1) | 1;
    u = rng.u32();
    const g = Math.exp(0.15 * T[u & 0xffff]); // per-token noise scale
    const mj = T[u >>> 16]; // massive-channel jitter
    for (let r = 0; r < nDrift; r++) {
      const x = driftDims[r];
      z[x] = rho * z[x] + innov * driftProfile[x] * pool[(oz + r * sz) & PM];
    }
    for (let x = 0; x < d; x++) vz[x] = vrho * vz[x] + vinnov * vamp * pool[(ow + x * sw) & PM];
    if (snap.has(i)) drift.set(i, Float64Array.from(z));
    const ko = kbase + i * d;
    if (i === 0) {
      // attention sink: a distinct key in the lowest-frequency pairs, tiny value
      const a = m.sinkScale * sqd;
      for (let x = 0; x < d; x++) {
        row[x] = a * m.sinkDir[x] + 0.3 * bias[x] + 0.3 * noiseStd[x] * pool[(ok + x * sk) & PM];
        values[ko + x] = 0.08 * vnoiseStd[x] * pool[(ov + x * sv) & PM];
      }
    } else {
      for (let x = 0; x < d; x++) {
        row[x] = kc[x] + z[x] + g * noiseStd[x] * pool[(ok + x * sk) & PM];
      }
      for (const x of massDims) row[x] += massive[x] * (1 + 0.04 * mj);
      const k = needleAt[i];
      if (k >= 0) {
        const nd = m.needleDir[k];
        const a = m.needleKappa[k] * sqd;
        for (let x = 0; x < d; x++) row[x] += a * nd[x];
        const vd = m.vneedleDir[k];
        for (let x = 0; x < d; x++) values[ko + x] = vd[x] + 0.3 * (vbias[x] + vnoiseStd[x] * pool[(ov + x * sv) & PM]);
      } else {
        for (let x = 0; x < d; x++) values[ko + x] = vc[x] + vz[x] + vnoiseStd[x] * pool[(ov + x * sv) & PM];
      }
    }
    // RoPE at position i, written straight into the output
    let t = i * h;
    if (!table) {
      t = 0;
      for (let c = 0; c < h; c++) {
        cos[c] = Math.cos(i * inv[c]);
        sin[c] = Math.sin(i * inv[c]);
      }
    }
    for (let c = 0; c < h; c++) {
      const a = row[c], b = row[c + h];
      const cs = cos[t + c], sn = sin[t + c];
      keys[ko + c] = a * cs - b * sn;
      keys[ko + c + h] = b * cs + a * sn;
    }
  }
  return drift;
}

function buildHeadQueries(
  rng: Rng, T: Float64Array, m: HeadModel, o: Required<TraceOptions>, inv: Float64Array, bounds: Int32Array,
  segOf: Int32Array, npos: Int32Array, plan: QueryPlan, drift: Map<number, Float64Array>,
  k0: Float64Array, strat: Int32Array, keys: Float32Array,
  kh: number, windowQueries: Float32Array, heldOutQueries: Float32Array,
  stratifiedQueries: Float32Array, needleTarget: Int32Array,
): void {
  const N = o.tokens, d = o.headDim, h = d >> 1, W = o.window, Tq = o.heldOut, G = o.groupSize, S = o.segments;
  const sqd = Math.sqrt(d);
  const logN = Math.log(N);
  // raw (position-independent) directions
  const sinkRaw = new Float64Array(d);
  rotateVec(m.sinkDir, sinkRaw, inv, -N); // aligned with k_0 when rotated to ~N
  const posNorm = norm(m.posVec);
  const posUnit = Float64Array.from(m.posVec, (v) => v / posNorm);
  // post-RoPE topic directions: u_s ∝ Σ_{j∈s} R_j segDir_s (computed per pair)
  const topicPost: Float64Array[] = [];
  const topicGainPerUnit = new Float64Array(S); // mean (u_s · R_j seg_s) over the segment
  for (let s = 0; s < S; s++) {
    const a = bounds[s], b = bounds[s + 1];
    const sd = m.segDir[s];
    const u = new Float64Array(d);
    for (let c = 0; c < h; c++) {
      let sc = 0, ss = 0;
      const th = inv[c];
      // Σ_j (cos jθ, sin jθ) in closed form (Lagrange's identity); the limit n when sin(θ/2) ≈ 0
      const half = th / 2;
      const sh = Math.sin(half);
      const n = b - a;
      if (Math.abs(sh) > 1e-9) {
        const f = Math.sin(n * half) / sh;
        const mid = (a + (n - 1) / 2) * th;
        sc = f * Math.cos(mid);
        ss = f * Math.sin(mid);
      } else {
        sc = n;
        ss = 0;
      }
      const x = sd[c], yv = sd[c + h];
      u[c] = x * sc - yv * ss;
      u[c + h] = yv * sc + x * ss;
    }
    const len = norm(u);
    topicGainPerUnit[s] = len / (b - a);
    topicPost.push(scaleTo(u, 1));
  }
  const needlePost: Float64Array[] = [];
  for (let k = 0; k < npos.length; k++) {
    const u = new Float64Array(d);
    rotateVec(m.needleDir[k], u, inv, npos[k]);
    needlePost.push(u);
  }
  const qNoiseProf = Float64Array.from(m.queryNoiseProfile, (v) => v * m.queryNoise);

  const q = new Float64Array(d);
  const tmp = new Float64Array(d);
  const tmp2 = new Float64Array(d);
  const noise = new Float64Array(d);

  const kOff = kh * N * d;
  const nSample = Math.min(128, N - 1);
  const sample = new Int32Array(nSample);
  for (let i = 0; i < nSample; i++) sample[i] = 1 + rng.int(N - 1);
  const keyLogit = (qv: Float64Array, j: number): number => {
    let acc = 0;
    const ko = kOff + j * d;
    let a1 = 0, a2 = 0, a3 = 0, x = 0;
    for (; x + 3 < d; x += 4) {
      acc += qv[x] * keys[ko + x];
      a1 += qv[x + 1] * keys[ko + x + 1];
      a2 += qv[x + 2] * keys[ko + x + 2];
      a3 += qv[x + 3] * keys[ko + x + 3];
    }
    for (; x < d; x++) acc += qv[x] * keys[ko + x];
    return (acc + a1 + a2 + a3) / sqd;
  };
  const RECENT = 128, SEG_SAMPLES = 48;
  const lg = new Float64Array(RECENT + SEG_SAMPLES + 1 + nSample);
  const wt = new Float64Array(lg.length);
  /**
   * log Σ_{0<j<visible} exp(q·k_j/√d), estimated as a stratified sum: the RECENT last keys and
   * the needle exactly, the target segment from SEG_SAMPLES evenly spaced keys, everything else
   * from a fixed random sample of the head's keys (each stratum weighted by its size).
   */
  const otherLogPartition = (qv: Float64Array, visible: number, c: Comp): number => {
    let n = 0;
    const r0 = Math.max(1, visible - RECENT);
    for (let j = r0; j < visible; j++) {
      lg[n] = keyLogit(qv, j);
      wt[n++] = 1;
    }
    let covered = visible - r0;
    let sa = 0, sb = 0; // target segment range, clipped to [1, r0)
    if (c.topicSeg >= 0 && c.topic !== 0) {
      sa = Math.max(1, bounds[c.topicSeg]);
      sb = Math.min(r0, bounds[c.topicSeg + 1]);
      const len = sb - sa;
      if (len > 0) {
        const ns = Math.min(len, SEG_SAMPLES);
        for (let i = 0; i < ns; i++) {
          lg[n] = keyLogit(qv, sa + Math.floor(((i + 0.5) * len) / ns));
          wt[n++] = len / ns;
        }
        covered += len;
      } else sb = sa;
    }
    const nj = c.needleK >= 0 ? npos[c.needleK] : -1;
    const needleOut = nj >= 1 && nj < r0 && !(nj >= sa && nj < sb);
    if (needleOut) {
      lg[n] = keyLogit(qv, nj);
      wt[n++] = 1;
      covered++;
    }
    const rest = visible - 1 - covered;
    const n0 = n;
    if (rest > 0) {
      for (let i = 0; i < nSample; i++) {
        const j = sample[i];
        if (j >= r0 || (j >= sa && j < sb) || j === nj) continue;
        lg[n] = keyLogit(qv, j);
        wt[n++] = 0;
      }
      const got = n - n0;
      for (let i = n0; i < n; i++) wt[i] = rest / got;
    }
    let mx = -Infinity;
    for (let i = 0; i < n; i++) if (lg[i] > mx) mx = lg[i];
    let se = 0;
    for (let i = 0; i < n; i++) se += wt[i] * Math.exp(lg[i] - mx);
    return mx + Math.log(se);
  };

  interface Comp { sink: number; pos: number; drift: number; topic: number; topicSeg: number; needle: number; needleK: number }
  /**
   * Build the raw query of a token at position p (target-aware parts are aligned at p, then
   * un-rotated), and write R_{pOut}(raw) into out[oOff..].
   */
  const emit = (p: number, pOut: number, visible: number, c: Comp, out: Float32Array, oOff: number): void => {
    q.fill(0);
    // positional recency (raw, constant)
    const aP = (c.pos * sqd) / posNorm;
    for (let x = 0; x < d; x++) q[x] += aP * posUnit[x];
    // drift: raw = R_{-1} z_{p-1}
    const zp = drift.get(p - 1);
    if (zp && c.drift !== 0) {
      const zn = norm(zp);
      if (zn > 0) {
        rotateVec(zp, tmp, inv, -1);
        const aD = (c.drift * sqd) / zn;
        for (let x = 0; x < d; x++) q[x] += (aD / zn) * tmp[x];
      }
    }
    // target-aware parts, built in post-RoPE space at position p
    tmp.fill(0);
    if (c.topicSeg >= 0 && c.topic !== 0) {
      const s = c.topicSeg;
      const aT = (c.topic * sqd) / Math.max(1e-6, topicGainPerUnit[s]);
      const u = topicPost[s];
      for (let x = 0; x < d; x++) tmp[x] += aT * u[x];
    }
    if (c.needleK >= 0 && c.needle !== 0) {
      const aN = c.needle / m.needleKappa[c.needleK];
      const u = needlePost[c.needleK];
      for (let x = 0; x < d; x++) tmp[x] += aN * u[x];
    }
    rotateVec(tmp, tmp, inv, -p);
    fillNormals(rng, T, noise, 0, d);
    for (let x = 0; x < d; x++) noise[x] *= qNoiseProf[x];
    if (c.needleK >= 0 && c.needle !== 0) {
      // the query's noise carries nothing along its needle: the retrieval logit is as designed
      rotateVec(needlePost[c.needleK], tmp2, inv, -p);
      const pr = dot(noise, tmp2);
      for (let x = 0; x < d; x++) noise[x] -= pr * tmp2[x];
    }
    for (let x = 0; x < d; x++) q[x] += tmp[x] + noise[x];
    rotateVec(q, q, inv, pOut);
    // Sink: add a·s, s = R_pOut sinkRaw (aligned with k_0 near the end of the context), with a
    // chosen so that log(mass on k_0 / mass on all other visible keys) = c.sink, the other keys'
    // log-partition being estimated by otherLogPartition.
    const lse = otherLogPartition(q, visible, c);
    rotateVec(sinkRaw, tmp, inv, pOut);
    let q0 = 0, s0 = 0;
    for (let x = 0; x < d; x++) {
      q0 += q[x] * k0[x];
      s0 += tmp[x] * k0[x];
    }
    const aS = s0 > 1e-6 ? Math.max(0, ((lse + c.sink) * sqd - q0) / s0) : 0;
    for (let x = 0; x < d; x++) out[oOff + x] = q[x] + aS * tmp[x];
  };

  const jit = (s: number): number => Math.exp(s * rng.normal());
  const segLen = (s: number): number => bounds[s + 1] - bounds[s];
  for (let g = 0; g < G; g++) {
    const qh = kh * G + g;
    // per-query-head variation inside the group
    const sinkH = m.sinkOffset + 0.4 * rng.normal();
    const locH = m.localGain + 0.3 * rng.normal();
    const topH = m.topicGain + 0.3 * rng.normal();
    const neeH = m.needleGain + 0.3 * rng.normal();
    const lsink = (): number => sinkH + 0.5 * rng.normal();
    // peak logit of the recency components (positional + drift), relative to log N so that the
    // local share of mass does not depend on the context length
    const localPeak = Math.max(2, logN + 0.9 + 1.6 * locH);
    // observation window
    for (let w = 0; w < W; w++) {
      const p = N - W + w;
      const role = plan.windowRole[w];
      const cur = segOf[p];
      const c: Comp = {
        sink: lsink(), pos: 0.35 * localPeak * jit(0.15), drift: 0.4 * localPeak * jit(0.15),
        topic: 0.5 * (Math.log(N / segLen(cur)) + topH) * jit(0.2), topicSeg: cur, needle: 0, needleK: -1,
      };
      if (role === 1) {
        c.needle = (logN + neeH - 1.0) * jit(0.1);
        c.needleK = plan.windowTarget[w];
        c.pos *= 0.5; c.drift *= 0.5; c.topic = 0;
      } else if (role === 2) {
        const s = plan.windowTarget[w];
        c.topicSeg = s;
        c.topic = (Math.log(N / segLen(s)) + topH - 0.5) * jit(0.15);
        c.pos *= 0.5; c.drift *= 0.5;
      }
      emit(p, p, p + 1, c, windowQueries, (qh * W + w) * d);
    }
    // held-out decode queries at position N
    for (let t = 0; t < Tq; t++) {
      const kind = plan.kinds[t];
      const c: Comp = { sink: lsink(), pos: 0, drift: 0, topic: 0, topicSeg: -1, needle: 0, needleK: -1 };
      if (kind === 'local') {
        c.sink -= 1.2;
        c.pos = 0.45 * localPeak * jit(0.15);
        c.drift = 0.55 * localPeak * jit(0.15);
        c.topicSeg = segOf[N - 1];
        c.topic = 0.4 * (Math.log(N / segLen(c.topicSeg)) + topH);
      } else if (kind === 'topic') {
        c.sink -= 0.7;
        c.pos = 1.2 * jit(0.2);
        c.drift = 1.5 * jit(0.2);
        c.topicSeg = plan.segment[t];
        c.topic = (Math.log(N / segLen(c.topicSeg)) + topH) * jit(0.1);
      } else {
        c.sink -= 1.5;
        c.pos = 1.2 * jit(0.2);
        c.drift = 1.5 * jit(0.2);
        c.needleK = plan.needleIdx[t];
        c.needle = (logN + neeH) * jit(0.08);
        needleTarget[qh * Tq + t] = npos[c.needleK];
      }
      emit(N, N, N, c, heldOutQueries, (qh * Tq + t) * d);
    }
    // GRKV stratified queries: raw queries at p_j, rotated by the RoPE of N−1
    for (let j = 0; j < strat.length; j++) {
      const p = strat[j];
      const cur = segOf[p];
      const c: Comp = {
        sink: lsink(), pos: 0.35 * localPeak * jit(0.15), drift: 0.4 * localPeak * jit(0.15),
        topic: 0.8 * (Math.log(N / segLen(cur)) + topH) * jit(0.2), topicSeg: cur, needle: 0, needleK: -1,
      };
      emit(p, N - 1, N, c, stratifiedQueries, (qh * strat.length + j) * d);
    }
  }
}
