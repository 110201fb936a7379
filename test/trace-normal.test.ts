// The inverse normal CDF behind the trace's Gaussian noise table (lib/trace/normal.ts), and the vector helpers.
import t from 'tap';
import { normalQuantile } from '../lib/trace/normal';
import { norm, scaleTo } from '../lib/trace/vector';

t.test('normal quantile table source', async (t) => {
  t.equal(normalQuantile(0.5), 0);
  t.ok(Math.abs(normalQuantile(0.975) - 1.959963984540054) < 1e-12);
  t.ok(Math.abs(normalQuantile(1e-10) + 6.361340902404056) < 1e-9);
  t.ok(Math.abs(normalQuantile(1e-12) + 7.034483825301132) < 1e-9);
  t.equal(normalQuantile(0), -Infinity);
  t.ok(Number.isNaN(normalQuantile(2)));
});

t.test('trace vector helpers: scaleTo keeps a zero vector zero (never NaN), scales others to the length', async (t) => {
  t.same(Array.from(scaleTo(new Float64Array(3), 2)), [0, 0, 0], 'zero stays zero');
  const v = scaleTo(Float64Array.from([3, 0, 4]), 10);
  t.same(Array.from(v), [6, 0, 8]);
  t.ok(Math.abs(norm(v) - 10) < 1e-12);
});
