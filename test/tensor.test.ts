import t from 'tap';
import { tensor, Tensor, empty, fillBytes, toHost, f16ToF32, bf16ToF32, f32ToBf16, f32ToF16 } from '../lib/index';
import { hostContiguous, contiguousStrides, asTensor, dtypeSize } from '../lib/tensor';
import { Rng } from '../lib/rng';

t.test('tensor basics: dtype inference, strides, views, element access', async (t) => {
  const a = tensor(new Float32Array([0, 1, 2, 3, 4, 5]), [2, 3]);
  t.equal(a.dtype, 'f32');
  t.same(a.strides, [3, 1]);
  t.same(a.device, { kind: 'cpu' });
  t.equal(a.onCuda, false);
  t.equal(a.numel, 6);
  t.equal(a.ndim, 2);
  t.ok(a.isContiguous);
  t.equal(a.at(1, 2), 5);
  const tr = a.view([3, 2], [1, 3]);
  t.notOk(tr.isContiguous);
  t.equal(tr.at(2, 1), 5);
  t.same(Array.from(hostContiguous(tr)), [0, 3, 1, 4, 2, 5], 'transposed copy');
  t.equal(tensor(new Int32Array(2), [2]).dtype, 'i32');
  t.equal(tensor(new Uint16Array([0x3c00]), [1], { dtype: 'f16' }).at(0), 1);
  t.equal(tensor(new Uint16Array([0x3f80]), [1], { dtype: 'bf16' }).at(0), 1);
  t.same(contiguousStrides([2, 3, 4]), [12, 4, 1]);
  t.equal(dtypeSize('bf16'), 2);
  t.equal(asTensor('x', a), a, 'Tensor passes through');
  const plain = asTensor('x', { data: new Float32Array(4), shape: [2, 2], offset: 0 });
  t.ok(plain instanceof Tensor);
  const neg = tensor(new Float32Array([1, 2, 3]), [3], { strides: [-1], offset: 2 });
  t.same(Array.from(hostContiguous(neg)), [3, 2, 1], 'negative strides');
  t.equal(tensor(new Float32Array(0), [0, 5]).numel, 0, 'empty tensors are allowed');
  t.same(a.shape, [2, 3]);
  t.throws(() => (a.shape as number[]).push(1), TypeError, 'shape is frozen');
});

t.test('empty, fillBytes, toHost of a host tensor', async (t) => {
  const e = empty([2, 2], 'bf16');
  t.ok(e.data instanceof Uint16Array);
  fillBytes(e, 0xff);
  t.ok(Number.isNaN(e.at(0, 0)), '0xffff bf16 is NaN');
  const i = empty([3], 'i32');
  fillBytes(i, 0xff);
  t.same(Array.from(i.host), [-1, -1, -1]);
  t.equal(await toHost(i), i, 'host tensors come back as they are');
  t.ok(empty([1], 'f32').data instanceof Float32Array);
  t.ok(empty([1], 'f16').data instanceof Uint16Array);
});

t.test('f16 conversions: known bit patterns', async (t) => {
  const cases: [number, number][] = [
    [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x0400, 2 ** -14],
    [0x7c00, Infinity], [0xfc00, -Infinity], [0x8000, -0], [0x3555, 0.333251953125],
  ];
  for (const [bits, v] of cases) {
    t.ok(Object.is(f16ToF32(bits), v), `f16 0x${bits.toString(16)} -> ${v}`);
    t.equal(f32ToF16(v), bits, `${v} -> f16 0x${bits.toString(16)}`);
  }
  t.ok(Number.isNaN(f16ToF32(0x7e00)));
  t.equal(f32ToF16(NaN), 0x7e00);
  t.equal(f32ToF16(65520), 0x7c00, '65520 rounds to inf');
  t.equal(f32ToF16(65519), 0x7bff);
  t.equal(f32ToF16(2 ** -25), 0, 'half the smallest subnormal rounds to even (0)');
  t.equal(f32ToF16(3 * 2 ** -25), 2, '1.5 ulp rounds to even (2)');
  t.equal(f32ToF16(1 + 2 ** -11), 0x3c00, 'tie rounds to even');
  t.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02, 'tie rounds to even (up)');
});

t.test('bf16 conversions: known bit patterns and round to nearest even', async (t) => {
  t.equal(bf16ToF32(0x3f80), 1);
  t.equal(bf16ToF32(0xc000), -2);
  t.equal(f32ToBf16(1), 0x3f80);
  t.equal(f32ToBf16(1 + 2 ** -8), 0x3f80, 'tie to even (down)');
  t.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82, 'tie to even (up)');
  t.equal(f32ToBf16(Infinity), 0x7f80);
  t.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
});

t.test('f16 round trip and nearest-value property on random values', async (t) => {
  const rng = new Rng(9);
  let ok = true;
  for (let k = 0; k < 20000; k++) {
    const x = Math.fround(rng.normal() * 2 ** (rng.int(40) - 25));
    const h = f32ToF16(x);
    const y = f16ToF32(h);
    // no other f16 value is strictly closer
    const up = f16ToF32((h & 0x7fff) === 0x7bff ? h : h + 1), dn = f16ToF32((h & 0x7fff) === 0 ? h : h - 1);
    if (Math.abs(x) < 65504 && (Math.abs(up - x) < Math.abs(y - x) || Math.abs(dn - x) < Math.abs(y - x))) ok = false;
    const b = f32ToBf16(x);
    if (Math.abs(bf16ToF32(b) - x) > Math.abs(x) * 2 ** -8) ok = false;
  }
  t.ok(ok, 'conversions return the nearest representable value');
});
