#!/usr/bin/env node
// @ts-check
// The static model of docs/performance.md §11: the fraction of the speed of light each memory-bound op should reach on
// an H100 at the bench shape (H = 8, N = 32768, d = 128, bf16, keep 25 %, G = 4, W = 32), from the bytes each kernel
// moves, its instructions per row (estimated from the source, per warp), the bytes a warp has in flight, its
// occupancy (bench/results/ptxas-sm90.json) and its grid. A model, not a measurement: `npm run gpu:verify` replaces it.
// `node tools/gpu/sol-model.js --markdown` prints the README table (test/ptxas-budget.test.ts keeps them equal).
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..', '..');

/** H100 SXM assumptions (docs/performance.md §1, §11). */
const HW = {
  sms: 132,
  bw: 3.0e12, // copy bandwidth, bytes/s (read + write), what `kvtrim bench` divides by
  latency: 700e-9, // DRAM latency under load, s
  l2Latency: 250e-9, // a dependent L2 round trip (an atomic, or a load that waits for one), s
  clock: 1.755e9, // SM clock under load, Hz
  issue: 4, // warp-instructions per clock per SM
  launch: 2.5e-6, // gap per dependent kernel launch, s
  mmaFlops: 500e12, // mma.sync bf16 with fp32 accumulation, sustained, flop/s
  fp32: 67e12, // FP32 FMA peak, flop/s
};
const H = 8, N = 32768, d = 128, es = 2, keep = 8192, G = 4, W = 32;

/**
 * One kernel: DRAM bytes, warp-rows and warp-instructions per row, bytes in flight per warp, the ptxas variant giving
 * its occupancy, the warps per SM its grid provides, serial L2 round trips, flops on a given unit, launches.
 * @typedef {{ name: string, file: string, kernel: string, args: string, bytes: number, rows: number, instr: number,
 *   inflight: number, gridWarps: number, serialL2?: number, flops?: number, flopRate?: number, launches?: number }} K
 */

/** @type {{ op: string, sol: number, kernels: K[], note: string }[]} */
const OPS = [
  {
    op: 'keydiffScores',
    sol: 2 * H * N * d * es + 4 * H * N,
    note: 'two rows (2 × 256 B) in flight per warp; the grid gives 4 CTAs per SM; the anchor reduced once per head',
    kernels: [
      { name: 'pass 1', file: 'keydiff.cu', kernel: 'anchor_partial_kernel', args: 'false,2,4,1', bytes: H * N * d * es, rows: H * N, instr: 35, inflight: 512, gridWarps: 32 },
      // one CTA per head sums its 66 chunk partials (independent L2 loads, one dependent add chain per column)
      { name: 'anchor', file: 'keydiff.cu', kernel: 'anchor_kernel', args: 'false', bytes: 0, rows: H, instr: 400, inflight: 128, gridWarps: 8, serialL2: 1 },
      { name: 'pass 2', file: 'keydiff.cu', kernel: 'score_kernel', args: 'false,2,4,1', bytes: H * N * d * es + 4 * H * N, rows: H * N, instr: 40, inflight: 512, gridWarps: 32 },
    ],
  },
  {
    op: 'gatherKV',
    sol: 2 * 2 * H * keep * d * es,
    note: 'a warp per output row: count and index together, then the K and V rows together (512 B): two dependent latencies per row',
    kernels: [{ name: 'copy', file: 'gather.cu', kernel: 'gather_kernel', args: 'false', bytes: 2 * 2 * H * keep * d * es, rows: H * keep, instr: 40, inflight: 512 / 2, gridWarps: 64 }],
  },
  {
    op: 'nestedkvScores',
    sol: 2 * H * N * d * es + 4 * H * N,
    note: 'pass 2 issue-bound (~250 instructions per 256-byte row); each radix round ends in a block-wide pick of both tails\' digits: the ticket atomic, one coalesced L2 read of both 256-bin histograms, two block scans (~3 dependent L2 round trips)',
    kernels: [
      { name: 'pass 1', file: 'nestedkv.cu', kernel: 'pass1_kernel', args: 'false,2,4,1', bytes: H * N * d * es + 4 * H * N, rows: H * N, instr: 60, inflight: 512, gridWarps: 31 },
      { name: 'pass 2', file: 'nestedkv.cu', kernel: 'pass2_kernel', args: 'false,2,4,1', bytes: H * N * d * es + 16 * H * N, rows: H * N, instr: 250, inflight: 512, gridWarps: 31 },
      // per round: the ticket atomic (1 L2 round trip), the bins of both tails loaded together (1), two block scans of
      // 2 barriers and 5 shuffle steps each (~200 cycles in all, counted as 1)
      { name: '4 radix rounds', file: 'nestedkv.cu', kernel: 'radix_kernel', args: 'false', bytes: 0, rows: 4 * 3 * H * N / 32, instr: 20, inflight: 128, gridWarps: 64, serialL2: 4 * 3, launches: 4 },
      { name: 'statistics + output', file: 'nestedkv.cu', kernel: 'stats_kernel', args: 'false', bytes: 4 * H * N, rows: 2 * 3 * H * N / 32, instr: 60, inflight: 128, gridWarps: 64, launches: 2 },
    ],
  },
  {
    op: 'selectTokens',
    sol: 4 * H * N + 4 * H * keep,
    note: 'launch-bound: 8 radix round launches (about 4 before the bucket is unique, the rest exit at once), a count and a write; an active round ends in a block-wide digit pick: the ticket atomic, one coalesced L2 read of the 256 bins, a block scan (~2.5 dependent L2 round trips)',
    // per active round: the ticket atomic (1 L2 round trip), the 256 bins in one coalesced load (1), a block scan of 2
    // barriers and 5 shuffle steps (~100 cycles, counted as 0.5); launches: 8 rounds (round 0 sets up the state) +
    // count + write
    kernels: [{ name: 'radix select', file: 'select.cu', kernel: 'round_kernel', args: 'false', bytes: 4 * H * N + 4 * H * keep, rows: 8 * H * N / 32, instr: 20, inflight: 128, gridWarps: 64, serialL2: 4 * 2.5, launches: 10 }],
  },
  {
    op: 'snapkvScores',
    sol: 2 * H * N * d * es + H * G * W * d * es + 4 * H * N,
    note: 'tensor-core logits of 128 window queries per 32-key tile (a warp: 16 queries); the LSE state is read and written in global memory once per tile (a dependent L2 round trip, 31 tiles per block)',
    kernels: [
      { name: 'pass 1 (LSE)', file: 'snapkv.cu', kernel: 'snap_kernel', args: 'false,2,8,true,false', bytes: H * N * d * es, rows: (H * N / 32) * 8, instr: 200, inflight: 16384 / 8, gridWarps: 16, flops: 2 * G * W * d * H * N, flopRate: HW.mmaFlops, serialL2: 31 },
      { name: 'pass 2 (probabilities)', file: 'snapkv.cu', kernel: 'snap_kernel', args: 'false,2,8,true,true', bytes: H * (N - W) * d * es + 4 * H * G * N, rows: (H * N / 32) * 8, instr: 300, inflight: 16384 / 8, gridWarps: 16, flops: 2 * G * W * d * H * N, flopRate: HW.mmaFlops, serialL2: 31, launches: 3 },
    ],
  },
  {
    op: 'decodeAttention',
    sol: H * (2 * N * d * es + (d * d + 2 * d + 1) * 4) + H * G * d * (es + 4),
    note: '5 shuffles and 2 exps per K/V row and query; 2 CTAs per SM (87 registers)',
    kernels: [
      { name: 'split-K partial', file: 'decode.cu', kernel: 'partial_kernel', args: 'false,2,4,true', bytes: 2 * H * N * d * es, rows: H * N, instr: 120, inflight: 512, gridWarps: 62 },
      { name: 'merge + summary', file: 'decode.cu', kernel: 'merge_kernel', args: 'false', bytes: H * d * d * 4, rows: H * G * 128, instr: 30, inflight: 128, gridWarps: 1, serialL2: 128 },
    ],
  },
  {
    op: 'MomentState.merge',
    sol: 2 * H * N * d * es + 2 * H * keep * d * es,
    note: 'fused into gatherKV: one CTA per SM (209 registers), FP32 co-moments, ~33 MB of segment scratch written and re-read',
    kernels: [{ name: 'segments', file: 'moments.cu', kernel: 'segment_kernel', args: 'false', bytes: 2 * H * N * d * es + 2 * H * keep * d * es + 2 * 33e6, rows: H * N, instr: 60, inflight: 256, gridWarps: 8, flops: 2 * H * (N - keep) * d * d, flopRate: HW.fp32 * 0.4, launches: 2 }],
  },
];

/** Occupancy (fraction of 64 warps) of a variant from the recorded ptxas report, or null. */
function occupancyOf(/** @type {any} */ rec, /** @type {K} */ k) {
  const r = rec?.kernels?.find((/** @type {any} */ x) => x.file === k.file && x.kernel === k.kernel && x.args.join(',') === k.args);
  return r ? r.occupancy : null;
}

/** The model: each kernel's time is its slowest bound plus its launch gaps and serial L2 round trips. */
function model(/** @type {any} */ rec) {
  return OPS.map((o) => {
    let total = 0;
    const parts = o.kernels.map((k) => {
      const occ = occupancyOf(rec, k);
      const warps = Math.min(occ === null ? 0.25 * 64 : occ * 64, k.gridWarps);
      const tDram = k.bytes / HW.bw;
      const tLatency = k.bytes / ((HW.sms * warps * k.inflight) / HW.latency);
      const tIssue = (k.rows * k.instr) / (HW.sms * HW.issue * HW.clock);
      const tMath = k.flops ? k.flops / (k.flopRate ?? HW.fp32) : 0;
      const bounds = { DRAM: tDram, latency: tLatency, issue: tIssue, math: tMath };
      const [limiter, t] = Object.entries(bounds).reduce((a, b) => (b[1] > a[1] ? b : a));
      const serial = (k.serialL2 ?? 0) * HW.l2Latency + (k.launches ?? 1) * HW.launch;
      total += t + serial;
      return { ...k, occ, warps, limiter: serial > t ? 'serial L2 / launches' : limiter, us: (t + serial) * 1e6 };
    });
    const solUs = (o.sol / HW.bw) * 1e6;
    return { op: o.op, note: o.note, solUs, us: total * 1e6, fraction: (o.sol / HW.bw) / total, parts };
  });
}

function markdown(/** @type {ReturnType<typeof model>} */ rows) {
  const L = ['| op | speed of light (µs) | kernels: occupancy sm_90, warps/SM, bytes in flight per warp, instructions per row → bound | modelled µs | expected % SoL | why |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    const ks = r.parts.map((p) => `${p.name}: ${p.occ === null ? '?' : Math.round(p.occ * 100)} %, ${p.warps}, ${p.inflight} B, ${p.instr} → ${p.limiter}`).join('; ');
    const pct = 100 * r.fraction;
    L.push(`| ${r.op} | ${r.solUs.toFixed(1)} | ${ks} | ${r.us.toFixed(0)} | ${pct < 1 ? pct.toFixed(1) : pct.toFixed(0)} % | ${r.note} |`);
  }
  return L.join('\n');
}

if (require.main === module) {
  const f = path.join(root, 'bench', 'results', 'ptxas-sm90.json');
  const rec = fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : null;
  const rows = model(rec);
  if (process.argv.includes('--markdown')) console.log(markdown(rows));
  else console.log(JSON.stringify(rows, null, 2));
}

module.exports = { model, markdown, HW, OPS };
