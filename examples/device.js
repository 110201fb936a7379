// Compress one layer of a KV cache held in GPU memory (CUDA backend). A runtime that owns its cache passes its
// own device pointer and stream instead of allocating: DeviceBuffer.wrap(ptr, bytes) and Stream.wrap(handle).
// Run: node examples/device.js   (prints why and exits when no GPU is usable)
const { backendInfo, DeviceBuffer, Stream, tensor, toDevice, toHost, keydiffScores, selectTokens, gatherKV, f32ToBf16 } = require('kvtrim');

async function main() {
  const info = backendInfo();
  if (!info.cuda) {
    console.log(`no usable GPU: ${info.reason}`);
    return;
  }
  const H = 8, N = 32768, d = 128;
  const stream = Stream.create();
  // bf16 keys/values: upload once (a runtime would wrap its existing buffers instead)
  const host = () => new Uint16Array(H * N * d).map(() => f32ToBf16(Math.random() - 0.5));
  const keys = toDevice(tensor(host(), [H, N, d], { dtype: 'bf16' }), { stream });
  const values = toDevice(tensor(host(), [H, N, d], { dtype: 'bf16' }), { stream });
  // Borrowing memory by pointer (zero copy): a second view of the same keys through DeviceBuffer.wrap.
  const borrowed = DeviceBuffer.wrap(keys.data.ptr, keys.data.byteLength, { device: 0 });
  const keysView = tensor(borrowed, [H, N, d], { dtype: 'bf16' });

  const scores = keydiffScores(keysView, { stream }); // enqueued, no host sync
  const sel = selectTokens(scores, { ratio: 0.9, budget: 'adaptive', sinks: 4, stream });
  const out = gatherKV({ keys, values, ...sel, stream });
  await stream.synchronize(); // waits off the event loop
  const counts = await toHost(out.counts, { stream });
  console.log(`kept per head: ${Array.from(counts.data).join(' ')} (of ${N}) on ${info.devices[0].name}`);
  for (const t of [keys, values, scores, sel.indices, sel.counts, out.keys, out.values, out.counts]) t.data.dispose();
  stream.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
