// The Python client examples/python/kvtrim_dlpack.py (ctypes + DLPack, no compiled extension) on numpy arrays and
// on PyTorch CPU tensors: every op of the C ABI through libkvtrim.so, each output equal bit for bit to the Node
// API's on the same inputs (the same core on the CPU backend), including a strided [N, H, d] view, f16 and (torch)
// bf16 keys, non-default options, and the error classes. Needs a Python with numpy (and torch for the second
// run): python3 on PATH or Debian's /usr/bin/python3; a visible skip otherwise.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { nativeLibrary } from '../lib/index';
import { checkPythonClient, pythonsWith, pythonWith, root } from './consumers-helpers';

// every distinct interpreter: e.g. pyenv's numpy 2.x (versioned DLPack capsules) and Debian's numpy 1.24 (legacy)
for (const backend of ['numpy', 'torch'] as const) {
  const pythons = pythonsWith(backend === 'torch' ? ['numpy', 'torch'] : ['numpy']);
  const what = `Python client on ${backend} ${backend === 'torch' ? 'CPU tensors' : 'arrays'}`;
  if (pythons.length === 0) {
    t.test(what, { skip: `no Python with ${backend} (tried python3 on PATH and /usr/bin/python3)` }, async () => {});
  }
  for (const python of pythons) {
    t.test(`${what} (${python}): every op equals the Node API bit for bit`, async (t) => {
      const lib = nativeLibrary();
      checkPythonClient(t, python, backend, path.join(root, 'examples', 'python'), lib.library, lib.abiVersion);
    });
  }
}

const torchCuda = pythonWith(['numpy', 'torch']);
const cudaSkip = !torchCuda ? 'no Python with torch' :
  spawnSync(torchCuda, ['-c', 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)']).status !== 0 ? 'torch sees no CUDA device' : false;
t.test('Python client on PyTorch CUDA tensors, on the current stream: equal to the CPU backend within rounding', { skip: cudaSkip }, async (t) => {
  const code = `
import json, sys, torch
sys.path.insert(0, ${JSON.stringify(path.join(root, 'examples', 'python'))})
from kvtrim_dlpack import Kvtrim
kv = Kvtrim(${JSON.stringify(nativeLibrary().library)})
if not kv.built_with_cuda:
    print(json.dumps({'skip': True})); sys.exit(0)
g = torch.Generator().manual_seed(3)
keys, queries = torch.randn(4, 4096, 128, generator=g), torch.randn(16, 32, 128, generator=g)
s = torch.cuda.Stream()
with torch.cuda.stream(s):  # the client enqueues on torch's current stream, s
    kc, qc = keys.cuda(), queries.cuda()
    a, b = kv.keydiff_scores(kc), kv.snapkv_scores(qc, kc)
s.synchronize()
print(json.dumps({'keydiff': torch.allclose(a.cpu(), kv.keydiff_scores(keys), rtol=1e-4, atol=1e-6),
                  'snapkv': torch.allclose(b.cpu(), kv.snapkv_scores(queries, keys), rtol=1e-3, atol=1e-7)}))
`;
  const r = spawnSync(torchCuda!, ['-c', code], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
  if (res.skip) t.test('CUDA kernels', { skip: 'libkvtrim.so was built without CUDA' }, async () => {});
  else t.same(res, { keydiff: true, snapkv: true }, 'CUDA keydiff and snapkv scores match the CPU backend');
});
