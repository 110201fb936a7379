/**
 * A fuzzer worker process (started by run.ts). Reads lines `seed from to` on stdin and runs calls from..to−1 of that
 * seed; before each call it prints `S <i>`, after it `R <json>` with the outcome, so the parent knows which call a
 * crash or a hang happened in. Call i of a seed is a pure function of (seed, i): any call can be replayed alone
 * (`node … tools/fuzz/run.ts --replay seed:i`).
 */
import readline from 'node:readline';
import { Rng } from '../../lib/rng';
import { Builder, Watched } from './mutator';
import { allTargets, Target } from './targets';

export interface Outcome {
  seed: number;
  i: number;
  target: string;
  /** The mutation ('none' for a valid call). */
  slot: string;
  op: string;
  detail: string;
  expect: 'error' | 'any';
  /** returned normally, threw, or threw an internal error (a bug). */
  result: 'ok' | 'error' | 'internal';
  error?: string;
  message?: string;
  /** Whether the message names the mutated argument: at its start, anywhere, or not at all. */
  named?: 'leading' | 'mentioned' | 'no';
  /** An input that changed, or an output buffer changed outside its view. */
  modified?: string;
}

/** The seed of call i of a run seed (splitmix-like mix). */
export function callSeed(seed: number, i: number): number {
  let x = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
  return (x ^ (x >>> 13)) >>> 0;
}

function pickTarget(rng: Rng): Target {
  const total = allTargets.reduce((s, t) => s + (t.weight ?? 1), 0);
  let r = rng.uniform() * total;
  for (const t of allTargets) {
    r -= t.weight ?? 1;
    if (r < 0) return t;
  }
  return allTargets[allTargets.length - 1];
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** How an error message names an argument (after a 'layer i:' or 'loadDump:' prefix). */
function naming(message: string, names: string[]): 'leading' | 'mentioned' | 'no' {
  const m = message.replace(/^(layer \d+: |loadDump: )+/, '');
  const alt = names.map(escape).join('|');
  if (new RegExp(`^(${alt})(?=[:.\\[ ('"]|$)`).test(m)) return 'leading';
  if (new RegExp(`(^|[^\\w])(${alt})(?![\\w])`).test(message)) return 'mentioned';
  return 'no';
}

/** The first watched buffer that changed where it must not. */
function modified(watched: Watched[]): string | undefined {
  for (const w of watched) {
    if (w.role === 'gone' || w.array.byteLength === 0) continue;
    const now = new Uint8Array(w.array.buffer, w.array.byteOffset, w.array.byteLength);
    if (now.length !== w.before.length) return `${w.name}: its buffer changed size`;
    const es = w.array.BYTES_PER_ELEMENT;
    for (let k = 0; k < now.length; k++) {
      if (now[k] === w.before[k]) continue;
      const e = Math.floor(k / es);
      if (w.role === 'out' && w.elements?.has(e)) continue;
      return `${w.name}: element ${e} ${w.role === 'in' ? 'of an input' : 'outside the output view'} changed`;
    }
  }
  return undefined;
}

/** Builds and runs call i of `seed`. */
export async function runCall(seed: number, i: number): Promise<Outcome> {
  const cs = callSeed(seed, i);
  const rng = new Rng(cs);
  const target = pickTarget(rng);
  const mutate = rng.uniform() < 0.9;
  let b: Builder;
  let fn: () => unknown;
  try {
    if (mutate) {
      const count = new Builder(cs);
      target.build(count);
      b = new Builder(cs, count.slots.length ? rng.int(count.slots.length) : undefined, new Rng(cs ^ 0x5bd1e995));
    } else {
      b = new Builder(cs);
    }
    fn = target.build(b);
  } catch (e) {
    // the fuzzer's own bug: reported as internal so that it is seen and fixed
    return { seed, i, target: target.name, slot: 'none', op: 'build', detail: '', expect: 'any', result: 'internal', message: `fuzzer: building the call failed: ${(e as Error)?.stack ?? e}`.slice(0, 600) };
  }
  const m = b.mutation;
  const out: Outcome = {
    seed, i, target: target.name, slot: m?.slot ?? 'none', op: m?.op ?? 'none', detail: m?.detail ?? '',
    expect: m?.expect ?? 'any', result: 'ok',
  };
  try {
    for (const hook of b.pre) hook();
    await fn();
  } catch (e) {
    const err = e as { name?: string; message?: string; code?: string };
    const internal = !(e instanceof Error) || err.code === 'ERR_KVTRIM_INTERNAL';
    out.result = internal ? 'internal' : 'error';
    out.error = e instanceof Error ? `${err.name}${err.code ? ` ${err.code}` : ''}` : typeof e;
    out.message = String(err?.message ?? e).slice(0, 300);
    // an error about the environment (no GPU) says nothing about the mutated argument, and neither does the
    // AbortError of an async call whose abort cell was set (the call was not run, so the C ABI did not check it)
    if (m && err.code !== 'ERR_KVTRIM_NO_CUDA' && err.code !== 'ABORT_ERR') out.named = naming(out.message, m.names);
  }
  const mod = modified(b.watched);
  if (mod) out.modified = mod;
  return out;
}

async function main(): Promise<void> {
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [seed, from, to] = line.trim().split(/\s+/).map(Number);
    if (!Number.isFinite(seed)) continue;
    for (let i = from; i < to; i++) {
      process.stdout.write(`S ${i}\n`);
      const o = await runCall(seed, i);
      process.stdout.write(`R ${JSON.stringify(o)}\n`);
    }
    process.stdout.write(`D ${seed} ${from} ${to}\n`);
  }
}

if (require.main === module) void main();
