import t from 'tap';
import { gatherKV, selectTokens, tensor, keydiffScores } from '../lib/index';
import type { DType } from '../lib/index';
import { Rng } from '../lib/rng';
import { BACKENDS, on, place, poisoned, fetch, randomTensor, rows, values, Layout, QUICK_SKIP } from './helpers';
import { FILLS, expectWritten, rawBits, poisonBits } from './ref/compare';

const cases: { H: number; N: number; d: number; dv: number; dtype: DType; layout: Layout; budget: 'uniform' | 'adaptive'; full?: true }[] = [
  { H: 8, N: 32768, d: 128, dv: 128, dtype: 'bf16', layout: 'hnd', budget: 'uniform', full: true },
  { H: 3, N: 2000, d: 128, dv: 64, dtype: 'bf16', layout: 'nhd', budget: 'uniform' },
  { H: 4, N: 5001, d: 64, dv: 64, dtype: 'f32', layout: 'nhd', budget: 'adaptive' },
  { H: 2, N: 999, d: 256, dv: 128, dtype: 'f16', layout: 'padded', budget: 'adaptive' },
  { H: 3, N: 100, d: 33, dv: 7, dtype: 'f32', layout: 'hnd', budget: 'uniform' },
];

for (const b of BACKENDS) {
  for (const c of cases) {
    t.test(`gather ${b} H=${c.H} N=${c.N} d=${c.d}/${c.dv} ${c.dtype} ${c.layout} ${c.budget}`, on(b, { skip: c.full && QUICK_SKIP }), async (t) => {
      const rng = new Rng(c.N + c.d);
      const K = randomTensor(rng, c.H, c.N, c.d, c.dtype, c.layout);
      const V = randomTensor(rng, c.H, c.N, c.dv, c.dtype, c.layout);
      const keys = place(K.t, b), vals = place(V.t, b);
      const sel = selectTokens(keydiffScores(keys), { ratio: 0.8, budget: c.budget, sinks: 4 });
      const cap = sel.indices.shape[1];
      for (const fill of FILLS) {
      const out = gatherKV({
        keys, values: vals, ...sel,
        keysOut: poisoned([c.H, cap, c.d], c.dtype, b, fill),
        valuesOut: poisoned([c.H, cap, c.dv], c.dtype, b, fill),
        countsOut: poisoned([c.H], 'i32', b, fill),
      });
      for (const [name, o] of [['keys', out.keys], ['values', out.values], ['counts', out.counts]] as const) expectWritten(t, await fetch(o), `${fill} poison: ${name}`);
      const ko = values(await fetch(out.keys)), vo = values(await fetch(out.values));
      const cnt = await fetch(out.counts), sc = await fetch(sel.counts);
      t.same(Array.from(cnt.host), Array.from(sc.host), 'counts copied');
      const kept = rows(await fetch(sel.indices), sc);
      let ok = true, padOk = true;
      for (let h = 0; h < c.H; h++) {
        for (let j = 0; j < cap; j++) {
          const i = kept[h][j];
          for (let x = 0; x < c.d; x++) {
            const g = ko[(h * cap + j) * c.d + x];
            if (i === undefined) padOk &&= g === 0;
            else ok &&= Object.is(g, K.v[(h * c.N + i) * c.d + x]);
          }
          for (let x = 0; x < c.dv; x++) {
            const g = vo[(h * cap + j) * c.dv + x];
            if (i === undefined) padOk &&= g === 0;
            else ok &&= Object.is(g, V.v[(h * c.N + i) * c.dv + x]);
          }
        }
      }
      t.ok(ok, `${fill} poison: retained rows copied bit for bit`);
      t.ok(padOk, `${fill} poison: padding rows zero-filled`);
      }
    });
  }

  t.test(`gather ${b}: strided output and smaller explicit cap`, on(b), async (t) => {
    const H = 2, N = 20, d = 4;
    const k = new Float32Array(H * N * d).map((_, i) => i);
    const keys = place(tensor(k, [H, N, d]), b);
    const idx = place(tensor(new Int32Array([1, 5, 7, -1, 0, 2, -1, -1]), [H, 4]), b);
    const cnt = place(tensor(new Int32Array([3, 2]), [H]), b);
    // output stored [cap, H, d] and viewed [H, cap, d]
    const kout = poisoned([3 * H * d], 'f32', b);
    const view = kout.view([H, 3, d], [d, H * d, 1]);
    const res = gatherKV({ keys, values: keys, indices: idx, counts: cnt, cap: 3, keysOut: view });
    expectWritten(t, await fetch(kout), 'every element of the strided view');
    const host = (await fetch(kout)).host as Float32Array;
    t.same(Array.from(host.slice(0, 4)), [4, 5, 6, 7], 'head 0 row 0 = position 1');
    t.same(Array.from(host.slice(4, 8)), [80, 81, 82, 83], 'head 1 row 0 = position 0');
    t.same(Array.from(host.slice(20, 24)), [0, 0, 0, 0], 'head 1 row 2 is padding');
    t.same(Array.from((await fetch(res.counts)).host), [3, 2]);
  });
}

t.test('gather cpu: bad index data is rejected before anything is written', async (t) => {
  const keys = tensor(new Float32Array(2 * 5 * 2), [2, 5, 2]);
  const out = tensor(new Float32Array(2 * 2 * 2).fill(7), [2, 2, 2]);
  const bad = [
    { idx: [0, 9, 0, 1], cnt: [2, 2], msg: /indices: row 0 .* entry 1 is 9/ },
    { idx: [1, 1, 0, 1], cnt: [2, 2], msg: /strictly ascending/ },
    { idx: [0, 1, 0, 1], cnt: [3, 2], msg: /counts\[0\] = 3/ },
    { idx: [0, 1, 0, 1], cnt: [-1, 2], msg: /counts\[0\] = -1/ },
  ];
  for (const c of bad) {
    t.throws(
      () => gatherKV({ keys, values: keys, indices: tensor(new Int32Array(c.idx), [2, 2]), counts: tensor(new Int32Array(c.cnt), [2]), keysOut: out }),
      { name: 'RangeError', message: c.msg },
    );
  }
  t.ok((out.host as Float32Array).every((x) => x === 7), 'output untouched');
});

for (const b of BACKENDS) {
  t.test(`gather ${b}: element-strided inputs and outputs (f32 and f16), padding rows, nothing written between elements`, on(b), async (t) => {
    const rng = new Rng(77);
    const H = 2, N = 30, d = 5, dv = 3, cap = 6;
    for (const dtype of ['f32', 'f16'] as DType[]) {
      // keys stored [H, N, d] with every element followed by a gap (element stride 2), values with stride 3
      const K = randomTensor(rng, H, N, 2 * d, dtype, 'hnd'), V = randomTensor(rng, H, N, 3 * dv, dtype, 'hnd');
      const keys = place(K.t.view([H, N, d], [N * 2 * d, 2 * d, 2]), b), vals = place(V.t.view([H, N, dv], [N * 3 * dv, 3 * dv, 3]), b);
      const kept = [[0, 7, 29], [3, 4, 5, 6, 28]];
      const idx = new Int32Array(H * cap).fill(-1);
      kept.forEach((r, h) => r.forEach((p, j) => (idx[h * cap + j] = p)));
      for (const fill of FILLS) {
        // outputs: [H, cap, d] inside buffers twice as large (element stride 2); the gaps must stay poisoned
        const kbuf = poisoned([H * cap * d * 2], dtype, b, fill), vbuf = poisoned([H * cap * dv * 2], dtype, b, fill);
        const out = gatherKV({
          keys, values: vals, indices: place(tensor(idx, [H, cap]), b), counts: place(tensor(Int32Array.from(kept.map((r) => r.length)), [H]), b),
          keysOut: kbuf.view([H, cap, d], [cap * d * 2, d * 2, 2]), valuesOut: vbuf.view([H, cap, dv], [cap * dv * 2, dv * 2, 2]),
        });
        const kh = await fetch(kbuf), vh = await fetch(vbuf);
        expectWritten(t, await fetch(out.keys), `${dtype} ${fill}: every key element of the strided view`);
        expectWritten(t, await fetch(out.values), `${dtype} ${fill}: every value element of the strided view`);
        let ok = true, gaps = 0;
        for (let h = 0; h < H; h++)
          for (let j = 0; j < cap; j++) {
            const p = kept[h][j];
            for (let c = 0; c < d; c++) ok &&= Object.is(kh.at(((h * cap + j) * d + c) * 2), p === undefined ? 0 : K.v[(h * N + p) * 2 * d + 2 * c]);
            for (let c = 0; c < dv; c++) ok &&= Object.is(vh.at(((h * cap + j) * dv + c) * 2), p === undefined ? 0 : V.v[(h * N + p) * 3 * dv + 3 * c]);
          }
        t.ok(ok, `${dtype} ${fill}: retained rows copied element by element, padding rows zero`);
        const kb = rawBits(kh), vb = rawBits(vh), pk = poisonBits(dtype, fill) | 0;
        for (let k = 1; k < kb.length; k += 2) gaps += Number(kb[k] !== pk);
        for (let k = 1; k < vb.length; k += 2) gaps += Number(vb[k] !== pk);
        t.equal(gaps, 0, `${dtype} ${fill}: nothing written between the elements of the outputs`);
      }
    }
  });
}
