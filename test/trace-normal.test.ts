// The inverse normal CDF behind the trace's Gaussian noise table (lib/trace/normal.ts).
import t from 'tap';
import { normalQuantile } from '../lib/trace/normal';

t.test('normal quantile table source', async (t) => {
  t.equal(normalQuantile(0.5), 0);
  t.ok(Math.abs(normalQuantile(0.975) - 1.959963984540054) < 1e-12);
  t.ok(Math.abs(normalQuantile(1e-10) + 6.361340902404056) < 1e-9);
  t.ok(Math.abs(normalQuantile(1e-12) + 7.034483825301132) < 1e-9);
  t.equal(normalQuantile(0), -Infinity);
  t.ok(Number.isNaN(normalQuantile(2)));
});
