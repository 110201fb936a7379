// KeyDiff calls running at the same time (the async API runs them on libuv's worker threads): the CPU backend's thread
// pool serves one parallel_for at a time and runs a concurrent one inline (csrc/cpu/parallel.cc), so every call gets
// the scores of the same call made alone, bit for bit.
import t from 'tap';
import { keydiffScores, keydiffScoresAsync, tensor } from '../lib/index';
import { Rng } from '../lib/rng';
import { BACKENDS, on, place, fetch, values } from './helpers';

for (const b of BACKENDS) {
  t.test(`keydiff ${b}: 8 concurrent async calls = the same calls made one at a time`, on(b), async (t) => {
    const H = 4, N = 6000, d = 64;
    const inputs = Array.from({ length: 8 }, (_, k) => {
      const rng = new Rng(900 + k);
      return place(tensor(new Float32Array(H * N * d).map(() => rng.normal() + 0.3 * (k + 1)), [H, N, d]), b);
    });
    const alone = [];
    for (const k of inputs) alone.push(Array.from(values(await fetch(keydiffScores(k)))));
    for (let round = 0; round < 3; round++) {
      const together = await Promise.all(inputs.map((k) => keydiffScoresAsync(k)));
      let same = 0;
      for (let k = 0; k < inputs.length; k++) if (JSON.stringify(Array.from(values(await fetch(together[k])))) === JSON.stringify(alone[k])) same++;
      t.equal(same, inputs.length, `round ${round}: every concurrent call = its call alone`);
    }
  });
}
