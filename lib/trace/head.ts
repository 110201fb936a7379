/** The per-head generative model: key, value and query structure drawn once per (layer, KV head). */
import type { Rng } from '../rng';
import type { TraceOptions } from './options';
import { gaussianVec, orthogonalize, scaleTo, uniform } from './vector';

export interface HeadModel {
  // key structure (pre-RoPE, length d)
  bias: Float64Array;
  massive: Float64Array; // zero except on the massive channels
  massiveChannels: number[];
  posVec: Float64Array; // constant high-frequency component → RoPE recency kernel
  sinkDir: Float64Array; // unit, lowest-frequency pairs
  sinkScale: number; // per-dim scale S: k0 = S·sqrt(d)·sinkDir + …
  segDir: Float64Array[]; // per segment, pre-RoPE, rms aSeg per dim over its profile
  needleDir: Float64Array[]; // unit
  needleKappa: Float64Array; // needle key strength (per-dim units)
  noiseStd: Float64Array;
  queryNoiseProfile: Float64Array; // per-channel multiplier of the query noise
  driftProfile: Float64Array;
  driftRho: number;
  // values
  vbias: Float64Array;
  vsegDir: Float64Array[];
  vneedleDir: Float64Array[];
  vnoiseStd: Float64Array;
  vdriftRho: number;
  vdriftAmp: number;
  // query-side head parameters (logit units)
  sinkOffset: number;
  localGain: number;
  topicGain: number;
  needleGain: number;
  queryNoise: number;
}

export function buildHead(rng: Rng, T: Float64Array, o: Required<TraceOptions>, layerFrac: number): HeadModel {
  const d = o.headDim, h = d >> 1, S = o.segments, K = o.needles;
  // Roles of the RoPE pairs (pair c = channels c and c+h; low c = high frequency):
  //  - sink pairs: the nSink lowest-frequency pairs, used only by the sink key (k_0);
  //  - bias pairs: nBias low-frequency pairs carrying the shared bias and the massive channels;
  //  - content pairs: all others; segment directions, drift and needles live here (segments and
  //    drift mostly in the lower-frequency half, "semantic" channels), so queries that look for
  //    content never pick up the rotating bias (which would create spurious positional trends);
  //  - the positional recency vector lives in the high-frequency half.
  const nSink = Math.max(1, Math.round(h / 16));
  const nBias = Math.max(2, Math.round(h / 8));
  const lowLo = Math.round(h / 2);
  // bias pairs: drawn from the lowest-frequency quarter (which RoPE barely rotates over the context)
  const lowStart = Math.max(lowLo, Math.min(Math.round((3 * h) / 4), h - nSink - nBias - 1));
  const lowPairs: number[] = [];
  for (let c = lowStart; c < h - nSink; c++) lowPairs.push(c);
  for (let i = lowPairs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [lowPairs[i], lowPairs[j]] = [lowPairs[j], lowPairs[i]];
  }
  const biasPairs = lowPairs.slice(0, Math.min(nBias, lowPairs.length - 1)).sort((a, b) => a - b);
  const role = new Uint8Array(h); // 0 content, 1 bias, 2 sink
  for (const c of biasPairs) role[c] = 1;
  for (let c = h - nSink; c < h; c++) role[c] = 2;
  const pairOf = (x: number): number => (x < h ? x : x - h);
  const sem = new Float64Array(d); // semantic profile on content pairs, low-frequency heavy
  const pos = new Float64Array(d); // positional profile: high-frequency pairs
  const driftProfile = new Float64Array(d);
  const driftAmp = uniform(rng, 0.7, 1.0);
  for (let x = 0; x < d; x++) {
    const c = pairOf(x);
    if (role[c] !== 0) continue;
    sem[x] = 0.15 + 0.85 / (1 + Math.exp(-(c / h - 0.55) * 14));
    if (c < lowLo) pos[x] = 1;
    else driftProfile[x] = driftAmp;
  }
  // bias: on the bias pairs; per-head strength B (per-dim rms relative to sqrt(d))
  const B = uniform(rng, 0.2, 0.7);
  const bias = new Float64Array(d);
  for (const c of biasPairs) {
    bias[c] = rng.normal();
    bias[c + h] = rng.normal();
  }
  // massive channels: 2–4 channels of the lower-frequency half of the bias pairs
  const nMass = 2 + rng.int(3);
  const cand: number[] = [];
  for (const c of biasPairs.slice(Math.floor(biasPairs.length / 2))) cand.push(c, c + h);
  const massiveChannels: number[] = [];
  while (massiveChannels.length < Math.min(nMass, cand.length)) {
    const x = cand[rng.int(cand.length)];
    if (!massiveChannels.includes(x)) massiveChannels.push(x);
  }
  massiveChannels.sort((a, b) => a - b);
  const massive = new Float64Array(d);
  const M = uniform(rng, 7, 14);
  for (const x of massiveChannels) {
    massive[x] = (rng.uniform() < 0.5 ? -1 : 1) * M * uniform(rng, 0.85, 1.2);
    bias[x] = 0;
  }
  scaleTo(bias, B * Math.sqrt(d));
  let semDims = 0;
  for (let x = 0; x < d; x++) semDims += sem[x] * sem[x];
  // positional (recency) vector: constant, high-frequency content pairs
  const posVec = gaussianVec(rng, T, d, pos);
  scaleTo(posVec, uniform(rng, 0.6, 1.0) * Math.sqrt(d / 2));
  // sink direction: sink pairs only, energy increasing towards the lowest frequency
  const sinkDir = new Float64Array(d);
  for (let c = h - nSink; c < h; c++) {
    const w = 1 + (c - (h - nSink));
    sinkDir[c] = rng.normal() * w;
    sinkDir[c + h] = rng.normal() * w;
  }
  scaleTo(sinkDir, 1);
  // segment key directions (semantic profile), Gram–Schmidt while the subspace allows
  const aSeg = uniform(rng, 1.0, 1.5);
  const segDir: Float64Array[] = [];
  const segBasis: Float64Array[] = [];
  for (let s = 0; s < S; s++) {
    const v = gaussianVec(rng, T, d, sem);
    if (segBasis.length < semDims / 2) {
      orthogonalize(v, segBasis);
      segBasis.push(scaleTo(Float64Array.from(v), 1));
    }
    segDir.push(scaleTo(v, aSeg * Math.sqrt(semDims)));
  }
  // needle key directions: content pairs, lighter on the drift (semantic) pairs so that ordinary
  // queries do not pick needles up by chance
  const needleDir: Float64Array[] = [];
  const needleKappa = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    const v = gaussianVec(rng, T, d);
    for (let x = 0; x < d; x++) v[x] *= role[pairOf(x)] !== 0 ? 0 : pos[x] > 0 ? 1 : 0.5;
    needleDir.push(scaleTo(v, 1));
    needleKappa[k] = uniform(rng, 0.9, 1.5);
  }
  // anisotropic channel noise (log-normal channel scales), quiet sink pairs
  const noiseStd = new Float64Array(d);
  for (let x = 0; x < d; x++) noiseStd[x] = role[pairOf(x)] === 2 ? 0.25 : Math.exp(0.25 * rng.normal());
  // query noise profile: none on sink pairs and massive channels, damped on the bias pairs
  const queryNoiseProfile = new Float64Array(d);
  for (let x = 0; x < d; x++) {
    const r = role[pairOf(x)];
    queryNoiseProfile[x] = r === 2 ? 0 : r === 1 ? 0.3 : 1;
  }
  for (const x of massiveChannels) queryNoiseProfile[x] = 0;
  // smooth drift (AR(1)) correlation time
  const tau = uniform(rng, 12, 48);
  const driftRho = Math.exp(-1 / tau);
  // values
  const vbias = scaleTo(gaussianVec(rng, T, d), uniform(rng, 0.2, 0.5) * Math.sqrt(d));
  const vsegDir: Float64Array[] = [];
  const vBasis: Float64Array[] = [];
  const aV = uniform(rng, 0.8, 1.2);
  for (let s = 0; s < S; s++) {
    const v = gaussianVec(rng, T, d);
    if (vBasis.length < d) {
      orthogonalize(v, vBasis);
      vBasis.push(scaleTo(Float64Array.from(v), 1));
    }
    vsegDir.push(scaleTo(v, aV * Math.sqrt(d)));
  }
  const vneedleDir: Float64Array[] = [];
  for (let k = 0; k < K; k++) vneedleDir.push(scaleTo(gaussianVec(rng, T, d), uniform(rng, 2.5, 3.5) * Math.sqrt(d)));
  const vnoiseStd = new Float64Array(d);
  for (let x = 0; x < d; x++) vnoiseStd[x] = 0.7 * Math.exp(0.2 * rng.normal());
  const vdriftRho = Math.exp(-1 / uniform(rng, 16, 64));
  const vdriftAmp = uniform(rng, 0.4, 0.6);
  // query-side strengths: deeper layers have stronger sinks and sharper retrieval
  const share = Math.min(0.85, uniform(rng, 0.15, 0.6) + 0.15 * layerFrac);
  const sinkOffset = Math.log(share / (1 - share)); // log-odds of sink mass vs all other keys
  const localGain = uniform(rng, 0.2, 1.5);
  const topicGain = uniform(rng, 1.0, 2.5);
  const needleGain = uniform(rng, 3.5, 5.5) + 0.5 * layerFrac;
  const queryNoise = uniform(rng, 0.4, 0.9) * (1.1 - 0.2 * layerFrac);
  return {
    bias, massive, massiveChannels, posVec, sinkDir, sinkScale: uniform(rng, 1.5, 2.5), segDir, needleDir, needleKappa,
    noiseStd, queryNoiseProfile, driftProfile, driftRho, vbias, vsegDir, vneedleDir, vnoiseStd, vdriftRho, vdriftAmp,
    sinkOffset, localGain, topicGain, needleGain, queryNoise,
  };
}
