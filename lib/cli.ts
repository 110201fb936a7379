#!/usr/bin/env node
/**
 * The kvtrim command line: `kvtrim info | check | eval | bench` (see `kvtrim help`).
 */
import { parseArgs } from 'node:util';
import { table, Progress } from './cli/table';
import { backendInfo } from './index';
import { runChecks } from './check';
import { checkShapes } from './checks/util';
import { runBench } from './bench';
import { torchPeer } from './peer';
import { nativeInfo } from './binding';
import { runEval, EVAL_CONFIGS, EVAL_RATIOS, EvalReport } from './eval/run';
import { formatEvalReport } from './eval/report';
import { lineChart } from './eval/chart';
import { featureTable, METHODS, MERGES, CORRECTIONS } from './methods';
import path from 'node:path';
import fs from 'node:fs';

type Command = (argv: string[]) => Promise<number>;

const HELP = `kvtrim — KV-cache compression kernels (KeyDiff, NestedKV, SnapKV, GRKV, MomentKV)

Usage: kvtrim <command> [options]

Commands:
  info             backend, devices, versions, and why CUDA is off
  check            run every op on CUDA and on the CPU backend on random inputs and compare
                   (the one command to verify a GPU install); exits 1 on a mismatch
  bench            time every kernel: median, GB/s, % of the speed of light, speedup over a baseline
  eval             fidelity of every method x compression ratio on the built-in LLM-like trace or your own
                   .npy/.safetensors dumps: attention-output error, needle recall, bytes, time; table, JSON, chart
  methods          the methods, merges and corrections with their papers and defaults
  help             this text

Run \`kvtrim <command> --help\` for a command's options.`;

async function info(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log('Usage: kvtrim info [--json]\n  Prints the backend (CUDA or CPU), devices, thread count and versions.');
    return 0;
  }
  const i = backendInfo();
  if (values.json) {
    console.log(JSON.stringify(i, null, 2));
    return 0;
  }
  console.log(`kvtrim ${i.versions.kvtrim} (Node ${i.versions.node}, N-API ${i.versions.napi})`);
  console.log(`backend setting : KVTRIM_BACKEND=${i.backend}`);
  console.log(`CUDA            : ${i.cuda ? 'yes' : 'no'}${i.reason ? ` — ${i.reason}` : ''}`);
  console.log(
    `compiled CUDA   : ${i.versions.compiledWithCuda ? `yes (runtime ${i.versions.cudaRuntime}, needs an NVIDIA driver ${i.versions.minDriver ?? ''} or newer, archs ${i.versions.cudaArchs})` : 'no'}`,
  );
  if (i.versions.cudaDriver) console.log(`CUDA driver     : ${i.versions.cudaDriver}`);
  console.log(`CPU threads     : ${i.threads}`);
  if (i.devices.length) {
    console.log(
      '\n' +
        table(
          ['id', 'device', 'SM', 'memory', 'SMs', 'supported'],
          i.devices.map((d) => [d.id, d.name, d.sm, `${(d.memory / 2 ** 30).toFixed(1)} GiB`, d.multiprocessors, d.supported ? 'yes' : 'no']),
        ),
    );
  }
  return 0;
}

async function check(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      device: { type: 'string', default: '0' },
      seed: { type: 'string' },
      op: { type: 'string' },
      json: { type: 'boolean' },
      jsonl: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      'Usage: kvtrim check [--device N] [--seed S] [--op NAME[,NAME...]] [--json | --jsonl]\n' +
        '  Runs every op on the GPU and on the CPU backend over the same fresh random inputs (GPU outputs poisoned\n' +
        '  first) and compares them. Exits 1 on any mismatch; exits 0 with a note when no GPU is usable.\n' +
        '  --jsonl: one JSON line per check as it completes, then a summary line (readable when a run is cut short).\n' +
        '  KVTRIM_CHECK_SIZE=small|full: the shapes (default full; small on the CUDA emulator).',
    );
    return 0;
  }
  const i = backendInfo();
  if (!i.cuda) {
    console.log(`kvtrim check: no usable GPU on this machine (${i.reason}); nothing to compare. The CPU backend is tested by \`npm test\`.`);
    return 0;
  }
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  const dev = i.devices.find((d) => d.id === Number(values.device));
  if (!values.json && !values.jsonl) console.log(`kvtrim check on ${dev?.name ?? `device ${values.device}`} (seed ${seed})`);
  if (values.jsonl) console.log(JSON.stringify({ device: dev, seed, size: checkShapes.small ? 'small' : 'full' }));
  const rows = await runChecks({
    device: Number(values.device),
    seed,
    filter: values.op?.split(','),
    onResult: values.jsonl ? (r) => console.log(JSON.stringify({ row: r })) : undefined,
  });
  const failed = rows.filter((r) => !r.pass).length;
  if (values.jsonl) console.log(JSON.stringify({ done: true, passed: rows.length - failed, failed }));
  else if (values.json) console.log(JSON.stringify({ device: dev, seed, rows, failed }, null, 2));
  else {
    console.log(
      table(
        ['op', 'config', 'error', 'tolerance', 'ms', 'result'],
        rows.map((r) => [r.op, r.config, Number.isNaN(r.error) ? 'error' : r.error.toExponential(2), r.tolerance.toExponential(0), r.ms.toFixed(0), r.pass ? 'PASS' : `FAIL${r.detail ? ` (${r.detail})` : ''}`]),
      ),
    );
    console.log(`\n${rows.length - failed} passed, ${failed} failed`);
  }
  return failed ? 1 : 0;
}

async function bench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string' },
      device: { type: 'string', default: '0' },
      H: { type: 'string', default: '8' },
      d: { type: 'string', default: '128' },
      N: { type: 'string' },
      dtype: { type: 'string' },
      repeats: { type: 'string' },
      warmup: { type: 'string' },
      op: { type: 'string' },
      json: { type: 'string' },
      peer: { type: 'string' },
      python: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      'Usage: kvtrim bench [--backend cpu|cuda] [--H 8] [--d 128] [--N 4096,32768,131072] [--dtype bf16|f16|f32]\n' +
        '                    [--repeats R] [--warmup W] [--op NAME[,NAME...]] [--json FILE] [--peer torch [--python PY]]\n' +
        '  Times each kernel (CUDA events on a GPU, wall clock on the CPU backend). Defaults: the GPU when usable,\n' +
        '  bf16 on GPU / f32 on CPU. "% SoL" = time the op would take at the copy bandwidth measured in the same\n' +
        '  run, moving only the bytes it must (docs/performance.md §5), divided by its median time.\n' +
        '  --peer torch (CPU backend): also times the same math written in PyTorch (tools/gpu/torch_peer.py, in a\n' +
        '  python3 that imports torch and numpy) on the same inputs right after each case; "vs torch" = its time / ours.\n' +
        '  --op: substrings of op names; a NAME ending in $ is the whole name (keydiffScores$: not its batched form).',
    );
    return 0;
  }
  const int = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name}: expected a positive integer, got '${v}'`);
    return n;
  };
  const backend = values.backend as 'cpu' | 'cuda' | undefined;
  if (backend !== undefined && backend !== 'cpu' && backend !== 'cuda') throw new RangeError(`--backend: expected cpu or cuda, got '${backend}'`);
  const dtype = values.dtype as 'f32' | 'f16' | 'bf16' | undefined;
  if (dtype !== undefined && !['f32', 'f16', 'bf16'].includes(dtype)) throw new RangeError(`--dtype: expected f32, f16 or bf16, got '${dtype}'`);
  if (values.peer !== undefined && values.peer !== 'torch') throw new RangeError(`--peer: expected torch, got '${values.peer}'`);
  if (values.peer && backend === 'cuda') throw new RangeError('--peer torch runs on the CPU: use it with --backend cpu (the CUDA peer is tools/gpu/verify.js)');
  const peer = values.peer ? torchPeer({ threads: nativeInfo.threads, python: values.python }) : undefined;
  const progress = new Progress(1, 'bench');
  let report;
  try {
    report = runBench({
      device: int('device', String(Number(values.device) + 1)) - 1,
      H: int('H', values.H as string),
      d: int('d', values.d as string),
      N: values.N ? values.N.split(',').map((x) => int('N', x.trim())) : undefined,
      dtype,
      repeats: values.repeats ? int('repeats', values.repeats) : undefined,
      warmup: values.warmup ? int('warmup', String(Number(values.warmup) + 1)) - 1 : undefined,
      filter: values.op?.split(','),
      onProgress: (done, total, label) => progress.set(done, total, label),
      backend: peer ? 'cpu' : backend,
      peer,
    });
  } finally {
    peer?.close();
  }
  progress.end();
  console.log(
    `kvtrim bench on ${report.device} (${report.backend}); copy bandwidth ${report.bandwidthGBs.toFixed(1)} GB/s; median of ${report.repeats}` +
      (report.fmaPeakGFs ? `; ${report.cpuIsa} FMA peak ${report.fmaPeakGFs.toFixed(1)} GFLOP/s` : '') +
      (report.peer ? `; peer ${report.peer}` : ''),
  );
  const peerCols = report.peer ? ['torch ms', 'vs torch'] : [];
  console.log(
    table(
      ['op', 'variant', 'N', 'dtype', 'median ms', 'GB/s', '% SoL', '% FMA peak', 'baseline', 'speedup', ...peerCols],
      report.rows.map((r) => [
        r.op,
        r.variant,
        r.N,
        r.dtype,
        r.medianMs.toFixed(3),
        r.gbps.toFixed(1),
        (100 * r.solFraction).toFixed(1),
        r.peakFraction !== undefined ? (100 * r.peakFraction).toFixed(1) : '-',
        r.baseline ? `${r.baseline.name} ${r.baseline.medianMs.toFixed(2)} ms` : '-',
        r.baseline ? `${r.baseline.speedup.toFixed(1)}x` : '-',
        ...(report.peer ? [r.peer ? r.peer.medianMs.toFixed(3) : '-', r.peer ? `${r.peer.speedup.toFixed(2)}x` : '-'] : []),
      ]),
    ),
  );
  if (values.json) {
    fs.writeFileSync(values.json, JSON.stringify(report, null, 2));
    console.log(`JSON written to ${values.json}`);
  }
  return 0;
}

function evalChart(r: EvalReport): string {
  const by = (metric: (x: EvalReport['rows'][number]) => number | undefined) =>
    [...new Set(r.rows.map((x) => x.config))].map((name) => ({
      name,
      points: r.rows.filter((x) => x.config === name).map((x) => ({ x: x.ratio, y: metric(x) ?? NaN })),
    }));
  const src = r.source.kind === 'trace' ? `built-in trace (N=${r.shape.N}, ${r.shape.layers} layer${r.shape.layers === 1 ? '' : 's'})` : path.basename(r.source.path);
  const panels = [
    { title: 'Attention-output error, median', yLabel: 'relative error', logY: true, series: by((x) => x.medianError) },
    { title: 'Attention-output error, p90', yLabel: 'relative error', logY: true, series: by((x) => x.p90Error) },
  ];
  if (r.rows.some((x) => x.needleRecall !== undefined)) panels.push({ title: 'Needle recall', yLabel: 'fraction kept', yRange: [0, 1], series: by((x) => x.needleRecall) } as never);
  return lineChart(panels, { title: `kvtrim eval — ${src} — ${r.device}` });
}

async function evaluate(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dump: { type: 'string' },
      layout: { type: 'string' },
      queries: { type: 'string' },
      split: { type: 'string' },
      ratios: { type: 'string' },
      configs: { type: 'string' },
      tokens: { type: 'string' },
      layers: { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string' },
      out: { type: 'string', default: 'kvtrim-eval' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      'Usage: kvtrim eval [--dump DIR|FILE.safetensors [--layout hnd|nhd] [--queries last|all-positions] [--split S]]\n' +
        `                   [--ratios 0.5,0.75,0.9,0.95] [--configs ${EVAL_CONFIGS.map((c) => c.name).join(',')}]\n` +
        '                   [--tokens N] [--layers L] [--seed S] [--backend cpu|cuda] [--out DIR] [--quiet]\n' +
        '  Causal split, as in decoding: compresses the prefix [0, S) of every layer with each configuration at each\n' +
        '  ratio (fraction evicted; observation window: the queries at S-32..S-1), then runs each held-out query at\n' +
        '  position p >= S on the compressed prefix plus the uncompressed keys S..p, against the full cache 0..p:\n' +
        '  relative error ||o - o_full|| / ||o_full|| (median, p90, by distance p - S, by layer), needle recall,\n' +
        '  retained bytes, time, and each layer\'s attention sink mass and mass on its 64 most recent keys.\n' +
        '  Writes DIR/eval.json and DIR/eval.svg. Dumps: k_{l}.npy, v_{l}.npy, q_{l}.npy and qpos_{l}.npy (the query\n' +
        '  positions) per layer, or layers.{l}.k/v/q/qpos in one .safetensors. Without qpos, --queries says where the\n' +
        '  queries are: last (default; the last T prompt positions) or all-positions (every position 0..T-1).\n' +
        '  --split S: default N - min(512, N/8). Queries at p >= N (a continuation) see all N dumped keys.\n' +
        '  The built-in trace: window N-32..N-1, decode queries at position N (S = N).',
    );
    return 0;
  }
  const num = (name: string, v: string | undefined, int: boolean) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || (int && (!Number.isInteger(n) || n < 1))) throw new RangeError(`--${name}: expected a ${int ? 'positive integer' : 'number'}, got '${v}'`);
    return n;
  };
  const backend = values.backend as 'cpu' | 'cuda' | undefined;
  if (backend !== undefined && backend !== 'cpu' && backend !== 'cuda') throw new RangeError(`--backend: expected cpu or cuda, got '${backend}'`);
  const layout = values.layout as 'hnd' | 'nhd' | undefined;
  if (layout !== undefined && layout !== 'hnd' && layout !== 'nhd') throw new RangeError(`--layout: expected hnd or nhd, got '${layout}'`);
  const queries = values.queries as 'last' | 'all-positions' | undefined;
  if (queries !== undefined && queries !== 'last' && queries !== 'all-positions') throw new RangeError(`--queries: expected last or all-positions, got '${queries}'`);
  const progress = new Progress(1, 'eval');
  const report = await runEval({
    dump: values.dump,
    dumpOptions: layout || queries ? { layout, queries } : undefined,
    split: num('split', values.split, true),
    trace: { tokens: num('tokens', values.tokens, true), layers: num('layers', values.layers, true), seed: num('seed', values.seed, true) },
    ratios: values.ratios ? values.ratios.split(',').map((x) => num('ratios', x.trim(), false) as number) : undefined,
    configs: values.configs ? values.configs.split(',').map((x) => x.trim()) : undefined,
    backend,
    onProgress: values.quiet ? undefined : (d, t, l) => progress.set(d, t, l),
  });
  progress.end();
  console.log(formatEvalReport(report));
  fs.mkdirSync(values.out as string, { recursive: true });
  const jsonFile = path.join(values.out as string, 'eval.json'), svgFile = path.join(values.out as string, 'eval.svg');
  fs.writeFileSync(jsonFile, JSON.stringify(report, null, 2));
  fs.writeFileSync(svgFile, evalChart(report));
  console.log(`wrote ${jsonFile} and ${svgFile} (${(report.totalMs / 1000).toFixed(1)} s)`);
  return 0;
}

async function methods(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { markdown: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log('Usage: kvtrim methods [--markdown | --json]\n  Lists the compression methods, merges and corrections with their papers and defaults.');
    return 0;
  }
  if (values.json) console.log(JSON.stringify({ methods: METHODS, merges: MERGES, corrections: CORRECTIONS }, null, 2));
  else if (values.markdown) console.log(featureTable());
  else {
    const rows = [
      ...Object.entries(METHODS).map(([k, e]) => [`method '${k}'`, e.title, e.paper, e.needsQueries ? 'yes' : 'no']),
      ...Object.entries(MERGES).map(([k, e]) => [`merge '${k}'`, e.title, e.paper, e.needsQueries ? 'yes' : 'no']),
      ...Object.entries(CORRECTIONS).map(([k, e]) => [`correction '${k}'`, e.title, e.paper, e.needsQueries ? 'yes' : 'no']),
    ];
    console.log(table(['compress() option', 'name', 'paper', 'queries'], rows, ['l', 'l', 'l', 'l']));
  }
  return 0;
}

const commands: Record<string, Command> = { info, check, bench, eval: evaluate, methods };

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    console.log(HELP);
    return 0;
  }
  const fn = commands[cmd];
  if (!fn) {
    console.error(`kvtrim: unknown command '${cmd}'\n\n${HELP}`);
    return 2;
  }
  try {
    return await fn(rest);
  } catch (e) {
    console.error(`kvtrim ${cmd}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
