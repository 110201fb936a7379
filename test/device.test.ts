// Device memory, streams, events and copies on CUDA (a GPU, or the emulator of tools/cuda-emu): stream order of
// toHost against later work, buffers that outlive their stream, borrowed memory, strided copies, events.
import t from 'tap';
import { backendInfo, DeviceBuffer, Stream, Event, deviceSynchronize, tensor, toDevice, toHost, empty, fillBytes, keydiffScores } from '../lib/index';

const skip = backendInfo().cuda ? false : 'no usable GPU';

t.test('toHost reflects the stream order at the call: later work on the stream does not leak into the copy', { skip }, async (t) => {
  const s = Stream.create();
  const n = 1 << 16;
  let leaked = 0;
  for (let it = 0; it < 8; it++) {
    const x = toDevice(tensor(new Float32Array(n).fill(it + 1), [n]), { stream: s });
    const pending = toHost(x, { stream: s }); // not awaited yet
    fillBytes(x, 0, s); // enqueued after the copy
    const h = await pending;
    leaked += Number(h.host[0] !== it + 1 || h.host[n - 1] !== it + 1);
    t.equal((await toHost(x, { stream: s })).host[5], 0, 'the later fill happened');
    (x.data as DeviceBuffer).dispose();
  }
  t.equal(leaked, 0, 'every copy saw the tensor as it was when toHost was called');
  // disposing the source right after toHost: the copy still completes from a snapshot
  const y = toDevice(tensor(new Float32Array(1000).fill(7), [1000]), { stream: s });
  const p = toHost(y, { stream: s });
  (y.data as DeviceBuffer).dispose();
  t.ok((await p).host.every((v) => v === 7), 'toHost then dispose');
  await s.synchronize();
  s.dispose();
});

t.test('stream-ordered buffers disposed after their stream', { skip }, async (t) => {
  const s = Stream.create();
  const xs = Array.from({ length: 4 }, (_, i) => empty([256], 'f32', { kind: 'cuda', id: 0 }, s).data as DeviceBuffer);
  fillBytes(tensor(xs[0], [256], { dtype: 'f32' }), 0, s);
  await s.synchronize();
  s.dispose();
  s.dispose(); // idempotent
  for (const x of xs) x.dispose(); // freed without their (destroyed) stream
  t.ok(xs.every((x) => x.disposed));
  // a new stream (possibly reusing the handle) is unaffected
  const s2 = Stream.create();
  const z = toDevice(tensor(Float32Array.from({ length: 64 }, (_, i) => i), [64]), { stream: s2 });
  t.same(Array.from((await toHost(z, { stream: s2 })).host).slice(0, 4), [0, 1, 2, 3]);
  (z.data as DeviceBuffer).dispose();
  s2.dispose();
});

t.test('borrowed memory, strided device views, default stream, events', { skip }, async (t) => {
  const H = 3, N = 50, d = 8;
  const host = Float32Array.from({ length: N * H * d }, (_, i) => Math.sin(i));
  const dev = toDevice(tensor(host, [N, H, d]));
  const buf = dev.data as DeviceBuffer;
  const borrowed = DeviceBuffer.wrap(buf.ptr, buf.byteLength);
  const view = tensor(borrowed, [H, N, d], { dtype: 'f32', strides: [d, H * d, 1] });
  const back = await toHost(view);
  let bad = 0;
  for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) for (let c = 0; c < d; c++) bad += Number(back.at(h, i, c) !== Math.fround(host[(i * H + h) * d + c]));
  t.equal(bad, 0, 'strided view of borrowed memory copies back exactly');
  const cpu = keydiffScores(tensor(host, [N, H, d]).view([H, N, d], [d, H * d, 1]));
  const gpu = await toHost(keydiffScores(view));
  t.ok(Array.from(gpu.host).every((v, i) => Math.abs(v - cpu.host[i]) <= 1e-4 * (Math.abs(cpu.host[i]) + 1e-2)), 'an op on the borrowed view');
  borrowed.dispose(); // borrowed: never frees
  t.same((await toHost(dev)).host.slice(0, 3), host.slice(0, 3), 'the owner is untouched by disposing a borrowed view');
  const a = Event.create(), b = Event.create();
  a.record();
  keydiffScores(dev.view([H, N, d], [d, H * d, 1]));
  b.record(Stream.default);
  const elapsed = a.elapsedMs(b);
  t.ok(Number.isFinite(elapsed) && elapsed >= 0, 'elapsedMs: events recorded in order give a finite, non-negative time');
  a.dispose();
  b.dispose();
  b.dispose(); // idempotent
  deviceSynchronize();
  buf.dispose();
  buf.dispose();
  t.ok(buf.disposed);
  t.throws(() => tensor(buf, [4], { dtype: 'f32' }), /data: its DeviceBuffer was disposed/, 'a disposed buffer cannot back a new tensor');
});
