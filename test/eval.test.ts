import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runEval, EVAL_CONFIGS } from '../lib/eval/run';
import { generateTrace } from '../lib/trace';
import { saveTraceAsDump } from '../lib/io/dump';
import { main } from '../lib/cli';
import { lineChart } from '../lib/eval/chart';
import { attentionError, compress, tensor } from '../lib/index';
import { captureConsole } from './helpers';

const small = { tokens: 1024, layers: 1, kvHeads: 2, groupSize: 2, headDim: 64, heldOut: 12, needles: 4, segments: 8, seed: 3 };

t.test('eval on the built-in trace: one row per config x ratio; ratio 0 reproduces the full cache', async (t) => {
  const progress: number[] = [];
  const r = await runEval({ trace: small, ratios: [0, 0.9], onProgress: (d) => progress.push(d) });
  t.equal(r.rows.length, EVAL_CONFIGS.length * 2);
  t.equal(progress[progress.length - 1], r.rows.length);
  t.equal(r.source.kind, 'trace');
  t.same(r.shape, { layers: 1, Hkv: 2, Hq: 4, N: 1024, d: 64, dv: 64, W: 32, T: 12 });
  for (const row of r.rows) {
    t.ok(row.ms >= 0 && row.retainedBytes > 0, `${row.config} r=${row.ratio}: time and bytes`);
    t.ok(row.medianError <= row.p90Error + 1e-12, `${row.config}: median <= p90`);
    t.same(Object.keys(row.errorByKind ?? {}).sort(), ['local', 'needle', 'topic']);
    if (row.ratio === 0) {
      t.ok(row.p90Error < 2e-5, `${row.config}: no eviction, p90 error ${row.p90Error}`);
      t.equal(row.needleRecall, 1, `${row.config}: every needle kept`);
      const extra = row.correction || row.method === 'momentkv' ? 2 * (1 + 64 + 64 + 64 * 64) * 4 : 0;
      t.equal(row.retainedBytes, 2 * 1024 * 128 * 4 + extra, 'all bytes kept (+ moment state)');
    } else {
      t.ok(row.medianError > 1e-4, `${row.config}: eviction changes the output`);
      t.ok(Math.abs(row.retainedFraction - 0.1) < 0.05, `${row.config}: keeps ~10 %`);
    }
  }
});

t.test('eval on a user dump (npy), configs and ratio validation', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-evald-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tr = generateTrace({ ...small, layers: 2 });
  saveTraceAsDump(tr, dir);
  // the trace dump holds the window queries N−32..N−1 only: the default split N − N/8 has no window before it
  await t.rejects(runEval({ dump: dir, ratios: [0.75], configs: ['keydiff'] }), /needs the query at position S−1 = 895 \(split S = 896\).*cover positions 992\.\.1023/);
  const r = await runEval({ dump: dir, split: tr.N - 16, ratios: [0.75], configs: ['keydiff', 'snapkv+grkv'] });
  t.equal(r.source.kind, 'dump');
  t.same(r.protocol, { split: 1008, window: { from: 992, to: 1008 }, heldOut: { first: 1008, last: 1023, count: 16, continuation: 0 }, queries: 'qpos' });
  t.same(r.rows.map((x) => x.config), ['keydiff', 'snapkv+grkv']);
  t.equal(r.shape.layers, 2);
  t.equal(r.shape.W + r.shape.T, tr.W, 'the dump queries split into window and held-out');
  t.notOk('needleRecall' in r.rows[0], 'no needle metadata in a dump');
  await t.rejects(runEval({ trace: small, configs: ['magic'] }), /configs: unknown 'magic'/);
  await t.rejects(runEval({ trace: small, ratios: [1] }), /ratios: each must be in \[0, 1\)/);
  const noq = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-evalq-'));
  t.teardown(() => fs.rmSync(noq, { recursive: true, force: true }));
  for (const f of ['k_0.npy', 'v_0.npy']) fs.copyFileSync(path.join(dir, f), path.join(noq, f));
  await t.rejects(runEval({ dump: noq }), /has no queries/);
});

t.test('kvtrim eval writes the table, eval.json and eval.svg', async (t) => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'kvtrim-evalc-'));
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }));
  const { out: text, err } = await captureConsole(async () => {
    t.equal(await main(['eval', '--tokens', '1024', '--layers', '1', '--ratios', '0.5,0.9', '--configs', 'keydiff,nestedkv,momentkv', '--out', out, '--quiet']), 0);
    t.equal(await main(['eval', '--help']), 0);
    t.equal(await main(['eval', '--ratios', 'x']), 1);
    t.equal(await main(['eval', '--backend', 'tpu']), 1);
    t.equal(await main(['eval', '--layout', 'xyz']), 1);
    t.equal(await main(['eval', '--tokens', '0']), 1);
    t.equal(await main(['methods']), 0);
    t.equal(await main(['methods', '--json']), 0);
    t.equal(await main(['methods', '--markdown']), 0);
    t.equal(await main(['methods', '--help']), 0);
  });
  t.match(text, /config\s+ratio\s+median err\s+p90 err\s+err @0-63\s+needles kept/);
  t.match(text, /held out per head: 48 queries at position 1024 \(48 past N=1024: they see all N keys\); positions from trace/);
  t.match(text, /momentkv\s+0\.90/);
  t.match(text, /Usage: kvtrim eval/);
  t.match(err, /--ratios: expected a number/);
  t.match(err, /--backend: expected cpu or cuda/);
  t.match(err, /--layout: expected hnd or nhd/);
  t.match(err, /--tokens: expected a positive integer/);
  t.match(text, /\| NestedKV \| `method: 'nestedkv'` \|/, 'methods --markdown prints the feature table');
  const j = JSON.parse(fs.readFileSync(path.join(out, 'eval.json'), 'utf8'));
  t.same(Object.keys(j).sort(), ['backend', 'device', 'layers', 'protocol', 'ratios', 'rows', 'shape', 'source', 'totalMs']);
  t.equal(j.rows.length, 6);
  t.same(
    Object.keys(j.rows[0]).sort(),
    ['config', 'errorByDistance', 'errorByKind', 'errorByLayer', 'meanError', 'medianError', 'method', 'ms', 'needleRecall', 'needleRecallAsked', 'needleRecallFollowUp', 'p90Error', 'ratio', 'retainedBytes', 'retainedFraction'].sort(),
  );
  const svg = fs.readFileSync(path.join(out, 'eval.svg'), 'utf8');
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  t.match(svg, /Needle recall/);
  t.equal((svg.match(/<polyline/g) ?? []).length, 9, 'three lines in each of three panels');
});

t.test('lineChart: log and linear axes, non-finite points skipped', async (t) => {
  const svg = lineChart(
    [
      { title: 'a', yLabel: 'y', logY: true, series: [{ name: 's<1>', points: [{ x: 0.5, y: 0.01 }, { x: 0.9, y: NaN }, { x: 0.95, y: 0.3 }] }] },
      { title: 'b', yLabel: 'y', series: [{ name: 't', points: [{ x: 0, y: 2 }, { x: 1, y: 2 }] }, { name: 'empty', points: [] }] },
    ],
    { title: 'T & co' },
  );
  t.match(svg, /s&lt;1&gt;/, 'escapes names');
  t.match(svg, /T &amp; co/);
  t.match(svg, />1e-2</, 'log ticks');
  t.equal((svg.match(/<polyline/g) ?? []).length, 2);
  // each panel's y label: rotated, left of its frame, centred on the frame's height
  const frames = [...svg.matchAll(/<rect x="([\d.]+)" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="none"/g)];
  const labels = [...svg.matchAll(/<text transform="translate\(([-\d.]+) ([-\d.]+)\) rotate\(-90\)" text-anchor="middle">y<\/text>/g)];
  t.equal(frames.length, 2);
  t.equal(labels.length, 2, 'a y label per panel');
  for (const [i, f] of frames.entries()) {
    const [x0, top, h] = [Number(f[1]), Number(f[2]), Number(f[3])];
    t.same([Number(labels[i][1]), Number(labels[i][2])], [x0 - 48, top + h / 2], `panel ${i}: label at (x0 − 48, middle)`);
  }
});

t.test('attentionError: zero for an uncompressed cache, ordered statistics, order passed through', async (t) => {
  const tr = generateTrace(small);
  const L = tr.layers[0];
  const keys = tensor(L.keys, [tr.Hkv, tr.N, tr.d]), values = tensor(L.values, [tr.Hkv, tr.N, tr.dv]);
  const queries = tensor(L.heldOutQueries, [tr.Hq, tr.T, tr.d]);
  const none = compress({ keys, values }, { method: 'keydiff', ratio: 0 });
  const e0 = await attentionError({ queries, keys, values, compressed: none });
  t.ok(e0.max < 1e-6, `no eviction: max error ${e0.max}`);
  const c = compress({ keys, values }, { method: 'keydiff', ratio: 0.9 });
  const e = await attentionError({ queries, keys, values, compressed: c });
  t.equal(e.errors.length, tr.Hq * tr.T);
  t.ok(e.median > 0.01 && e.median <= e.p90 && e.p90 <= e.max, 'ordered statistics');
  const withMom = compress({ keys, values }, { method: 'keydiff', ratio: 0.9, correction: 'moment' });
  const em = await attentionError({ queries, keys, values, compressed: withMom });
  const e0rd = await attentionError({ queries, keys, values, compressed: withMom, order: 0 });
  t.not(em.median, e0rd.median, 'order is passed through');
  await t.rejects(attentionError({ queries, keys, values, compressed: null as never }), /compressed: got null/);
  await t.rejects(attentionError({ queries, keys, values, compressed: c, reference: tensor(new Float32Array(3), [3]) }), /reference: expected/);
});
