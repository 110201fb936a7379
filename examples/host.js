// Compress one layer of a KV cache held in host memory (CPU backend, zero copy over the typed arrays).
// Run: node examples/host.js
const { tensor, keydiffScores, selectTokens, gatherKV, backendInfo } = require('kvtrim');

const H = 8, N = 4096, d = 128;
let seed = 1;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
const k = new Float32Array(H * N * d).map(rand); // your cache: [H, N, d]
const v = new Float32Array(H * N * d).map(rand);
const keys = tensor(k, [H, N, d]);
const values = tensor(v, [H, N, d]);

const scores = keydiffScores(keys); // f32 [H, N], higher = keep
const sel = selectTokens(scores, { ratio: 0.75, budget: 'adaptive', sinks: 4 }); // evict 75 %
const small = gatherKV({ keys, values, ...sel }); // { keys [H, cap, d], values, counts }

console.log(`backend: ${backendInfo().cuda ? 'cuda available' : 'cpu'}`);
console.log(`kept per head: ${Array.from(small.counts.data).join(' ')} (of ${N}); capacity ${small.keys.shape[1]}`);

// A [N, H, d] cache (heads innermost) is a strided view, not a copy:
const nhd = tensor(new Float32Array(N * H * d).map(rand), [H, N, d], { strides: [d, H * d, 1] });
console.log(`strided scores: ${keydiffScores(nhd).shape.join('x')}`);
