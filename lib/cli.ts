#!/usr/bin/env node
/**
 * The kvtrim command line: `kvtrim info | check | eval | bench` (see `kvtrim help`).
 */
import { parseArgs } from 'node:util';
import { table } from './cli/table';
import { backendInfo } from './index';
import { runChecks } from './check';

type Command = (argv: string[]) => Promise<number>;

const HELP = `kvtrim — KV-cache compression kernels (KeyDiff, NestedKV, SnapKV, GRKV, MomentKV)

Usage: kvtrim <command> [options]

Commands:
  info             backend, devices, versions, and why CUDA is off
  check            run every op on CUDA and on the CPU backend on random inputs and compare
                   (the one command to verify a GPU install); exits 1 on a mismatch
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

const commands: Record<string, Command> = { info, check };

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
