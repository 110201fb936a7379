/**
 * The kvtrim fuzzer (README "Errors"): seeded, deterministic calls of every exported function with one argument
 * mutated, run in worker processes (worker.ts) so that a crash or a hang costs one call, not the run. Every call is
 * classified:
 *   crash     the worker died (a signal, an abort, a sanitizer report)
 *   hang      no answer within the per-call timeout
 *   silent    an invalid call (the mutation must fail) returned normally
 *   modified  an input changed, or an output's buffer changed outside the output's view (guard elements)
 *   internal  an error that is a bug (ERR_KVTRIM_INTERNAL, or a thrown non-Error)
 *   error     a clear error: TypeError / RangeError / coded Error; and whether its message names the mutated argument
 *   ok        a valid call (or a mutation that keeps it valid) returned normally
 *
 * Usage (from the repository root):
 *   node --import=@tapjs/typescript/import tools/fuzz/run.ts [--calls N] [--seeds 1,2,3] [--jobs 2] [--timeout 60]
 *        [--json FILE] [--replay SEED:I]
 * CI runs 6,000 calls (test/fuzz.test.ts); `--calls 25000 --seeds 1,2,3,4` is the long mode (100,000 calls).
 * KVTRIM_ADDON picks the addon (e.g. the sanitizer build: tools/sanitize/run).
 */
import { spawn, ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Outcome } from './worker';

export interface FuzzOptions {
  /** Calls per seed. */
  calls: number;
  seeds: number[];
  /** Worker processes (default 2). */
  jobs?: number;
  /** Per-call timeout in seconds (default 60). */
  timeout?: number;
  /** Calls per work unit handed to a worker (default 200). */
  chunk?: number;
  /** Extra environment of the workers (e.g. KVTRIM_ADDON, LD_PRELOAD). */
  env?: NodeJS.ProcessEnv;
  onProgress?: (done: number, total: number) => void;
}

export type FuzzClass = 'crash' | 'hang' | 'silent' | 'modified' | 'internal' | 'error' | 'ok';

export interface FuzzReport {
  calls: number;
  seeds: number[];
  classes: Record<FuzzClass, number>;
  /** Errors of calls whose mutation must fail: the message names the mutated argument at its start / somewhere / not at all. */
  naming: { leading: number; mentioned: number; no: number };
  /** Calls per target. */
  targets: Record<string, number>;
  /** Up to 20 examples of each class other than ok / error, and of errors that do not name the argument. */
  examples: Record<string, Partial<Outcome>[]>;
  seconds: number;
}

const worker = path.join(__dirname, 'worker.ts');
const root = path.join(__dirname, '..', '..');

export function classify(o: Outcome): FuzzClass {
  if (o.modified) return 'modified';
  if (o.result === 'internal') return 'internal';
  if (o.result === 'ok') return o.expect === 'error' ? 'silent' : 'ok';
  return 'error';
}

interface Unit {
  seed: number;
  from: number;
  to: number;
}

class Worker {
  proc: ChildProcessWithoutNullStreams;
  unit: Unit | undefined;
  /** The call in flight, and the next call of the unit after the last answered one. */
  current: number | undefined;
  next: number | undefined;
  last = Date.now();
  stderr = '';
  private buf = '';
  constructor(env: NodeJS.ProcessEnv, private readonly onLine: (w: Worker, line: string) => void, onExit: (w: Worker, code: number | null, sig: string | null) => void) {
    this.proc = spawn(process.execPath, ['--import=@tapjs/typescript/import', worker], { cwd: root, env });
    this.proc.stdout.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let k;
      while ((k = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, k);
        this.buf = this.buf.slice(k + 1);
        this.last = Date.now();
        this.onLine(this, line);
      }
    });
    this.proc.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.proc.on('exit', (code, sig) => onExit(this, code, sig));
  }
  send(u: Unit): void {
    this.unit = u;
    this.current = undefined;
    this.next = u.from;
    this.last = Date.now();
    this.proc.stdin.write(`${u.seed} ${u.from} ${u.to}\n`);
  }
}

/** Runs the fuzzer and returns the classified counts. */
export function fuzz(o: FuzzOptions): Promise<FuzzReport> {
  const t0 = Date.now();
  const jobs = o.jobs ?? 2, timeout = (o.timeout ?? 60) * 1000, chunk = o.chunk ?? 200;
  const queue: Unit[] = [];
  for (const seed of o.seeds) for (let from = 0; from < o.calls; from += chunk) queue.push({ seed, from, to: Math.min(o.calls, from + chunk) });
  const total = o.calls * o.seeds.length;
  const report: FuzzReport = {
    calls: 0, seeds: o.seeds,
    classes: { crash: 0, hang: 0, silent: 0, modified: 0, internal: 0, error: 0, ok: 0 },
    naming: { leading: 0, mentioned: 0, no: 0 }, targets: {}, examples: {}, seconds: 0,
  };
  // a plain environment: without the test runner's variables (coverage, TAP)
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS_|NODE_V8_COVERAGE)/.test(k)));
  const env = { ...base, TS_NODE_TRANSPILE_ONLY: '1', ...o.env };
  const example = (key: string, e: Partial<Outcome>) => {
    const list = (report.examples[key] ??= []);
    if (list.length < 20) list.push(e);
  };
  const record = (oc: Outcome) => {
    report.calls++;
    report.targets[oc.target] = (report.targets[oc.target] ?? 0) + 1;
    const c = classify(oc);
    report.classes[c]++;
    if (c !== 'ok' && c !== 'error') example(c, oc);
    if (c === 'error' && oc.expect === 'error' && oc.named) {
      report.naming[oc.named]++;
      if (oc.named === 'no') example('unnamed', oc);
    }
    o.onProgress?.(report.calls, total);
  };
  return new Promise((resolve) => {
    const workers = new Set<Worker>();
    let finished = false;
    const done = () => {
      if (finished || queue.length || [...workers].some((w) => w.unit)) return;
      finished = true;
      clearInterval(timer);
      for (const w of workers) w.proc.kill();
      report.seconds = (Date.now() - t0) / 1000;
      resolve(report);
    };
    const next = (w: Worker) => {
      const u = queue.shift();
      if (u) w.send(u);
      else {
        w.unit = undefined;
        done();
      }
    };
    // A dead or hung worker: the call in flight is the culprit; the rest of its unit goes back to the queue.
    const lost = (w: Worker, kind: 'crash' | 'hang', why: string) => {
      workers.delete(w);
      const u = w.unit;
      w.unit = undefined;
      if (u) {
        const i = w.current ?? w.next ?? u.from;
        report.calls++;
        report.classes[kind]++;
        o.onProgress?.(report.calls, total);
        example(kind, { seed: u.seed, i, message: `${why}\n${w.stderr.slice(-1500)}` });
        if (i + 1 < u.to) queue.unshift({ seed: u.seed, from: i + 1, to: u.to });
      }
      start();
    };
    const start = () => {
      if (finished) return;
      const w = new Worker(env, (wk, line) => {
        if (line.startsWith('S ')) wk.current = Number(line.slice(2));
        else if (line.startsWith('R ')) {
          const oc = JSON.parse(line.slice(2)) as Outcome;
          wk.current = undefined;
          wk.next = oc.i + 1;
          record(oc);
        }
        else if (line.startsWith('D ')) next(wk);
      }, (wk, code, sig) => {
        if (workers.has(wk) && wk.unit) lost(wk, 'crash', `worker exited (code ${code}, signal ${sig})`);
      });
      workers.add(w);
      next(w);
    };
    const timer = setInterval(() => {
      for (const w of [...workers]) {
        if (w.unit && Date.now() - w.last > timeout) {
          w.proc.kill('SIGKILL');
          lost(w, 'hang', `no answer for ${timeout / 1000} s`);
        }
      }
    }, 1000);
    for (let j = 0; j < jobs; j++) start();
  });
}

/** A one-paragraph summary of a report. */
export function summary(r: FuzzReport): string {
  const c = r.classes;
  const named = r.naming.leading + r.naming.mentioned;
  return `${r.calls} calls over seeds ${r.seeds.join(', ')} in ${r.seconds.toFixed(0)} s: crash ${c.crash}, hang ${c.hang}, ` +
    `silent acceptance ${c.silent}, modified input ${c.modified}, internal error ${c.internal}, clear error ${c.error}, ` +
    `ok ${c.ok}; errors of mutated calls naming the argument ${named} (${r.naming.leading} at the start), not naming it ${r.naming.no}`;
}

async function cli(argv: string[]): Promise<number> {
  const arg = (k: string) => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const replay = arg('--replay');
  if (replay) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { runCall } = require('./worker') as typeof import('./worker');
    const [s, i] = replay.split(':').map(Number);
    console.log(JSON.stringify(await runCall(s, i), null, 2));
    return 0;
  }
  const calls = Number(arg('--calls') ?? 2000);
  const seeds = (arg('--seeds') ?? '1').split(',').map(Number);
  const r = await fuzz({
    calls, seeds, jobs: Number(arg('--jobs') ?? 2), timeout: Number(arg('--timeout') ?? 60),
    onProgress: (d, t) => {
      if (d % 1000 === 0 || d === t) process.stderr.write(`\r${d}/${t}`);
    },
  });
  process.stderr.write('\n');
  const json = arg('--json');
  if (json) fs.writeFileSync(json, JSON.stringify(r, null, 2));
  console.log(summary(r));
  for (const [k, list] of Object.entries(r.examples)) {
    console.log(`\n${k}:`);
    for (const e of list.slice(0, 5)) console.log(`  ${JSON.stringify(e)}`);
  }
  const c = r.classes;
  return c.crash + c.hang + c.silent + c.modified + c.internal === 0 ? 0 : 1;
}

if (require.main === module) {
  cli(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
    console.error(e);
    process.exit(2);
  });
}
