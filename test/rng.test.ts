import t from 'tap';
import { Rng } from '../lib/rng';

t.test('same seed gives the same stream; different seeds differ', async (t) => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const xa = Array.from({ length: 16 }, () => a.u32());
  const xb = Array.from({ length: 16 }, () => b.u32());
  const xc = Array.from({ length: 16 }, () => c.u32());
  t.same(xa, xb);
  t.notSame(xa, xc);
});

t.test('uniform and normal moments', async (t) => {
  const r = new Rng(7);
  const n = 200000;
  let su = 0, sn = 0, sn2 = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    if (!(u >= 0 && u < 1)) t.fail(`uniform out of range: ${u}`);
    su += u;
    const z = r.normal();
    sn += z; sn2 += z * z;
  }
  t.ok(Math.abs(su / n - 0.5) < 0.01, 'uniform mean ~ 0.5');
  t.ok(Math.abs(sn / n) < 0.01, 'normal mean ~ 0');
  t.ok(Math.abs(sn2 / n - 1) < 0.02, 'normal variance ~ 1');
  const ints = new Set<number>();
  for (let i = 0; i < 1000; i++) ints.add(r.int(10));
  t.same([...ints].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  t.equal(r.normals(5).length, 5);
  t.equal(r.normals64(3, 2).length, 3);
});
