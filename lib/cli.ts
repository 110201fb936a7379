#!/usr/bin/env node
/**
 * The kvtrim command line: `kvtrim info | check | eval | bench` (see `kvtrim help`).
 */
import { parseArgs } from 'node:util';
import { table, Progress } from './cli/table';
import { backendInfo } from './index';
import { runChecks } from './check';
import { runBench } from './bench';
import fs from 'node:fs';

type Command = (argv: string[]) => Promise<number>;

const HELP = `kvtrim — KV-cache compression kernels (KeyDiff, NestedKV, SnapKV, GRKV, MomentKV)

Usage: kvtrim <command> [options]

Commands:
  info             backend, devices, versions, and why CUDA is off
  check            run every op on CUDA and on the CPU backend on random inputs and compare
                   (the one command to verify a GPU install); exits 1 on a mismatch
  bench            time every kernel: median, GB/s, % of the speed of light, speedup over a baseline
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
  console.log(`compiled CUDA   : ${i.versions.compiledWithCuda ? `yes (runtime ${i.versions.cudaRuntime}, archs ${i.versions.cudaArchs})` : 'no'}`);
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
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      'Usage: kvtrim check [--device N] [--seed S] [--op NAME] [--json]\n' +
        '  Runs every op on the GPU and on the CPU backend over the same fresh random inputs (GPU outputs poisoned\n' +
        '  first) and compares them. Exits 1 on any mismatch; exits 0 with a note when no GPU is usable.',
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
  if (!values.json) console.log(`kvtrim check on ${dev?.name ?? `device ${values.device}`} (seed ${seed})`);
  const rows = await runChecks({ device: Number(values.device), seed, filter: values.op });
  const failed = rows.filter((r) => !r.pass).length;
  if (values.json) console.log(JSON.stringify({ device: dev, seed, rows, failed }, null, 2));
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
      op: { type: 'string' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      'Usage: kvtrim bench [--backend cpu|cuda] [--H 8] [--d 128] [--N 4096,32768,131072] [--dtype bf16|f16|f32]\n' +
        '                    [--repeats R] [--op NAME] [--json FILE]\n' +
        '  Times each kernel (CUDA events on a GPU, wall clock on the CPU backend). Defaults: the GPU when usable,\n' +
        '  bf16 on GPU / f32 on CPU. "% SoL" = time the op would take at the copy bandwidth measured in the same\n' +
        '  run, moving only the bytes it must (spec/performance.md §5), divided by its median time.',
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
  const progress = new Progress(1, 'bench');
  const report = runBench({
    backend,
    device: int('device', String(Number(values.device) + 1)) - 1,
    H: int('H', values.H as string),
    d: int('d', values.d as string),
    N: values.N ? values.N.split(',').map((x) => int('N', x.trim())) : undefined,
    dtype,
    repeats: values.repeats ? int('repeats', values.repeats) : undefined,
    filter: values.op,
    onProgress: (done, total, label) => progress.set(done, total, label),
  });
  progress.end();
  console.log(`kvtrim bench on ${report.device} (${report.backend}); copy bandwidth ${report.bandwidthGBs.toFixed(1)} GB/s; median of ${report.repeats}`);
  console.log(
    table(
      ['op', 'variant', 'N', 'dtype', 'median ms', 'GB/s', '% SoL', 'baseline', 'speedup'],
      report.rows.map((r) => [
        r.op,
        r.variant,
        r.N,
        r.dtype,
        r.medianMs.toFixed(3),
        r.gbps.toFixed(1),
        (100 * r.solFraction).toFixed(1),
        r.baseline ? `${r.baseline.name} ${r.baseline.medianMs.toFixed(2)} ms` : '-',
        r.baseline ? `${r.baseline.speedup.toFixed(1)}x` : '-',
      ]),
    ),
  );
  if (values.json) {
    fs.writeFileSync(values.json, JSON.stringify(report, null, 2));
    console.log(`JSON written to ${values.json}`);
  }
  return 0;
}

const commands: Record<string, Command> = { info, check, bench };

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
