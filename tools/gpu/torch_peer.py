#!/usr/bin/env python3
"""The peer of `kvtrim bench` in PyTorch: the same functions, written the way a kvpress user runs them (whole-tensor
PyTorch ops: F.normalize + cosine_similarity, torch.topk, gather, repeat_kv + softmax + avg_pool1d, matmul attention,
Cholesky), timed with CUDA events at the bench's shapes, so tools/gpu/verify.js can put each kvtrim kernel next to
it in the same run. Formulas from docs/methods/{keydiff,nestedkv,snapkv,momentkv,selection}.md and
docs/performance.md §4; op and variant names are those of lib/benches/*.ts.

  python3 tools/gpu/torch_peer.py --N 32768 --H 8 --d 128 --device cuda --json peer.json
  python3 tools/gpu/torch_peer.py --N 600 --H 2 --d 32 --device cpu --dtype f32 --compute f64 --dump DIR   (tests)

--dump DIR writes every op's inputs and outputs as .npy (test/gpu-verify.test.ts compares them with kvtrim's CPU
backend, so the peer is known to compute the same functions).

  python3 tools/gpu/torch_peer.py --serve REQ_FIFO RESP_FIFO --threads T

serves `kvtrim bench --peer torch` (lib/peer.ts): after a line "ready" on RESP_FIFO, each request line on REQ_FIFO
(JSON: op, variant, inputs {name: [raw file, dtype, shape]}, params, repeats, warmup) is answered with one JSON line
{"ms": median, "checksum": the sum of the finite values of its (first) output} (or {"ms": null} for an op without a
PyTorch formulation, {"error": ...} on failure), so the bench times kvtrim and PyTorch on the same inputs, case by
case, in the same run (test/bench.test.ts compares the checksum with kvtrim's output on the same inputs)."""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

KEEP = 0.25  # lib/benches/shared.ts
G = 4
QS = 32
W = 32  # SnapKV window queries (lib/benches/snapkv.ts)


def keydiff(k, ct):
    """KeyDiff (docs/methods/keydiff.md; kvpress KeyDiffPress): -cos(k, mean of the normalised keys)."""
    kf = k.to(ct)
    anchor = F.normalize(kf, dim=-1, eps=1e-12).mean(dim=1, keepdim=True)
    return -F.cosine_similarity(kf, anchor, dim=-1, eps=1e-12)


def minmax(a, tol=1e-5):
    lo = a.amin(-1, keepdim=True)
    r = a.amax(-1, keepdim=True) - lo
    return torch.where(r > tol, (a - lo) / torch.where(r > tol, r, torch.ones_like(r)), torch.zeros_like(a))


def neg_cos(kh, mu):
    n = mu.norm(dim=-1)
    a = -(kh * mu).sum(-1) / torch.where(n < 1e-12, torch.ones_like(n), n)
    return torch.where(n < 1e-12, torch.zeros_like(a), a)


def nestedkv(k, ct, window=64, prior=(0.4, 0.4, 0.2), beta=3.0, tau=0.6, kappa=10.0, tail=0.1, sinks=4):
    """NestedKV a* (docs/methods/nestedkv.md §3, S1-S7)."""
    H, N, d = k.shape
    kf = k.to(ct)
    kh = kf / kf.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = min(max(N // 32, 128), 256)
    mu_s = kh.mean(dim=1, keepdim=True)
    nb = -(-N // b)
    sums = F.pad(kh, (0, 0, 0, nb * b - N)).view(H, nb, b, d).sum(2)
    cnt = torch.full((nb,), float(b), dtype=ct, device=k.device)
    cnt[-1] = N - (nb - 1) * b
    mu_e = (sums / cnt[None, :, None]).repeat_interleave(b, dim=1)[:, :N]
    cs = F.pad(kh.cumsum(1), (0, 0, 1, 0))  # cs[i] = sum of rows < i
    pos = torch.arange(N, device=k.device)
    lo = (pos - window + 1).clamp_min(0)
    mu_c = (cs[:, pos + 1] - cs[:, lo]) / (pos - lo + 1).to(ct)[None, :, None]
    a = torch.stack([neg_cos(kh, mu_s), neg_cos(kh, mu_e), neg_cos(kh, mu_c)])  # [3, H, N]
    at = minmax(a)
    m = min(N, max(1, math.floor(tail * N)))
    delta = at.topk(m, dim=-1).values.mean(-1) + (-at).topk(m, dim=-1).values.mean(-1)  # top mean - bottom mean
    w0 = torch.tensor(prior, dtype=ct, device=k.device)[:, None]
    w = torch.softmax(torch.log(w0) + beta * delta, dim=0)
    blend = (w[:, :, None] * at).sum(0)
    s = minmax(at.std(dim=0, unbiased=False))
    alpha = torch.sigmoid(kappa * (s - s.mean(-1, keepdim=True) - tau))
    out = (1 - alpha) * blend + alpha * at.amax(0)
    out[:, :sinks] = math.inf
    return out


def select_uniform(scores, keep):
    """Each head's top `keep`, positions ascending (docs/methods/selection.md; kvpress: scores.topk)."""
    return scores.topk(keep, dim=-1).indices.sort(dim=-1).values


def select_adaptive(scores, keep, safeguard=0.2):
    """kvpress AdaKVPress: each head's top floor(keep*safeguard) guaranteed, then the layer's top H*keep."""
    H, N = scores.shape
    safe = math.floor(keep * safeguard)
    s = scores.clone()
    if safe > 0:
        s.scatter_(1, scores.topk(safe, dim=-1).indices, math.inf)
    mask = torch.zeros(H * N, dtype=torch.bool, device=scores.device)
    mask[s.flatten().topk(H * keep).indices] = True
    mask = mask.view(H, N)
    counts = mask.sum(1)
    pos = torch.where(mask, torch.arange(N, device=scores.device), N).sort(dim=-1).values
    cap = int(counts.max())
    idx = pos[:, :cap]
    return torch.where(idx == N, -1, idx), counts


def gather(k, v, idx):
    d, dv = k.shape[-1], v.shape[-1]
    return k.gather(1, idx[..., None].expand(-1, -1, d)), v.gather(1, idx[..., None].expand(-1, -1, dv))


def moments_of_evicted(k, v, idx, ct):
    """MomentState of the rows not in idx (docs/methods/momentkv.md: n, mu_k, mu_v, m = sum (v - mu_v)(k - mu_k)^T)."""
    H, N, d = k.shape
    keep = torch.zeros(H, N, dtype=torch.bool, device=k.device)
    keep.scatter_(1, idx, True)
    ev = ~keep
    ne = int(ev[0].sum())
    ke = k[ev].view(H, ne, d).to(ct)
    ve = v[ev].view(H, ne, v.shape[-1]).to(ct)
    mu_k, mu_v = ke.mean(1), ve.mean(1)
    m = (ve - mu_v[:, None]).transpose(1, 2) @ (ke - mu_k[:, None])
    return torch.full((H,), float(ne), dtype=ct, device=k.device), mu_k, mu_v, m


def snapkv(q, k, ct, kernel=5):
    """SnapKV as kvpress SnapKVPress (docs/methods/snapkv.md §3.1): window attention with repeat_kv, mean over the
    window on the prefix, avg_pool1d (zero padding counted), GQA mean; window positions +Infinity."""
    Hq, Wn, d = q.shape
    Hkv, N, _ = k.shape
    g = Hq // Hkv
    kr = k.repeat_interleave(g, dim=0).to(ct)
    logits = (q.to(ct) @ kr.transpose(1, 2)) / math.sqrt(d)  # [Hq, W, N]
    qpos = torch.arange(N - Wn, N, device=k.device)[:, None]
    logits = logits.masked_fill(torch.arange(N, device=k.device)[None, :] > qpos, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    L = N - Wn
    mean = probs[:, :, :L].mean(1)  # [Hq, L]
    pooled = F.avg_pool1d(mean[:, None], kernel_size=kernel, stride=1, padding=kernel // 2)[:, 0]
    out = pooled.view(Hkv, g, L).mean(1)
    return torch.cat([out, torch.full((Hkv, Wn), math.inf, dtype=out.dtype, device=k.device)], dim=1)


def decode(q, k, v, n, mu_k, mu_v, m, ct):
    """Corrected decode attention, order 1 (docs/methods/momentkv.md §4.4): lambda*o_R + (1-lambda)(mu_v + M a / n)."""
    Hq, d = q.shape
    Hkv = k.shape[0]
    g = Hq // Hkv
    a = q.to(ct) / math.sqrt(d)
    kr, vr = k.repeat_interleave(g, 0).to(ct), v.repeat_interleave(g, 0).to(ct)
    logits = (kr @ a[:, :, None])[:, :, 0]  # [Hq, N]
    lse = torch.logsumexp(logits, dim=-1)
    o_r = (torch.softmax(logits, dim=-1)[:, None, :] @ vr)[:, 0]
    nr, mkr, mvr, mr = (x.repeat_interleave(g, 0).to(ct) for x in (n, mu_k, mu_v, m))
    lam = torch.sigmoid(lse - torch.log(nr) - (a * mkr).sum(-1))
    corr = mvr + (mr @ a[:, :, None])[:, :, 0] / nr[:, None]
    return lam[:, None] * o_r + (1 - lam[:, None]) * corr


def spd(a, b, lam):
    L = torch.linalg.cholesky(a + lam * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device))
    return torch.cholesky_solve(b, L)


def make_case(op, variant, x, p, ct):
    """The PyTorch function of bench case (op, variant) on inputs x (tensors named as kvtrim's arguments) and
    parameters p; None for an op without a PyTorch formulation here."""
    if op == 'keydiffScores':
        return lambda: keydiff(x['keys'], ct)
    if op == 'selectTokens':
        sel = select_adaptive if variant.endswith('adaptive') else select_uniform
        return lambda: sel(x['scores'], int(p['keep']))
    if op == 'gatherKV':
        return lambda: gather(x['keys'], x['values'], x['indices'])
    if op == 'nestedkvScores':
        return lambda: nestedkv(x['keys'], ct)
    if op == 'snapkvScores':
        return lambda: snapkv(x['queries'], x['keys'], ct)
    if op == 'MomentState.merge':
        return lambda: (gather(x['keys'], x['values'], x['indices']), moments_of_evicted(x['keys'], x['values'], x['indices'], ct))
    if op == 'decodeAttention':
        return lambda: decode(x['queries'], x['keys'], x['values'], x['n'], x['muK'], x['muV'], x['m'], ct)
    if op == 'spdSolve':
        return lambda: spd(x['a'], x['b'], float(p['lambda']))
    if op == 'pipeline':  # scores, each head's top keep (positions ascending), both gathers (lib/benches/pipeline.ts)
        if variant.startswith('KeyDiff'):
            return lambda: gather(x['keys'], x['values'], select_uniform(keydiff(x['keys'], ct), int(p['keep'])))
        if variant.startswith('SnapKV'):
            return lambda: gather(x['keys'], x['values'], select_uniform(snapkv(x['queries'], x['keys'], ct), int(p['keep'])))
    return None


def load_raw(path, dtype, shape):
    """A raw little-endian file written by lib/peer.ts as a tensor (int32 indices widened to int64 for gather)."""
    import numpy as np
    npt = {'f32': np.float32, 'f64': np.float64, 'i32': np.int32, 'f16': np.float16, 'bf16': np.int16}[dtype]
    t = torch.from_numpy(np.fromfile(path, dtype=npt).reshape(shape))
    if dtype == 'bf16':
        t = t.view(torch.bfloat16)
    return t.long() if dtype == 'i32' else t


def serve(req_path, resp_path, threads, ct):
    torch.set_num_threads(threads)
    resp = open(resp_path, 'w')
    resp.write(json.dumps({'ready': True, 'torch': torch.__version__, 'threads': torch.get_num_threads()}) + '\n')
    resp.flush()
    with open(req_path) as req:
        for line in req:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                x = {name: load_raw(f, dt, shape) for name, (f, dt, shape) in r['inputs'].items()}
                fn = make_case(r['op'], r['variant'], x, r.get('params', {}), ct)
                out = {'ms': None}
                if fn is not None:
                    out['ms'] = timeit(fn, torch.device('cpu'), int(r['repeats']), int(r['warmup']))
                    y = fn()
                    while isinstance(y, (tuple, list)):
                        y = y[0]
                    y = y.double()
                    out['checksum'] = float(y[torch.isfinite(y)].sum())
            except Exception as e:  # reported to the bench, which notes it in the row
                out = {'error': f'{type(e).__name__}: {e}'}
            resp.write(json.dumps(out) + '\n')
            resp.flush()


def timeit(fn, device, repeats, warmup):
    for _ in range(warmup):
        fn()
    times = []
    if device.type == 'cuda':
        for _ in range(repeats):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--N', type=int, default=32768)
    ap.add_argument('--H', type=int, default=8)
    ap.add_argument('--d', type=int, default=128)
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--dtype', default=None, help='cache dtype: bf16 (default on cuda), f16, f32 (default on cpu)')
    ap.add_argument('--compute', default='f32', help='f32 (as kvtrim computes) or f64')
    ap.add_argument('--repeats', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--op', default='', help='comma-separated substrings of op names (as kvtrim bench --op)')
    ap.add_argument('--json', default='')
    ap.add_argument('--dump', default='')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--serve', nargs=2, metavar=('REQ_FIFO', 'RESP_FIFO'), default=None)
    ap.add_argument('--threads', type=int, default=0, help='intra-op threads (default: PyTorch\'s)')
    o = ap.parse_args()
    if o.threads > 0:
        torch.set_num_threads(o.threads)
    if o.serve:
        return serve(o.serve[0], o.serve[1], o.threads or torch.get_num_threads(), torch.float64 if o.compute == 'f64' else torch.float32)
    dev = torch.device(o.device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        sys.exit('torch_peer: CUDA is not available to PyTorch')
    dt = {'bf16': torch.bfloat16, 'f16': torch.float16, 'f32': torch.float32}[o.dtype or ('bf16' if dev.type == 'cuda' else 'f32')]
    ct = torch.float64 if o.compute == 'f64' else torch.float32
    H, N, d = o.H, o.N, o.d
    keep = max(1, math.floor(N * KEEP))
    gen = torch.Generator(device='cpu').manual_seed(o.seed)
    rnd = lambda *shape, scale=1.0: (torch.rand(*shape, generator=gen) * 2 - 1).mul(scale).to(dev, dt)
    k, v = rnd(H, N, d), rnd(H, N, d)
    scores = torch.rand(H, N, generator=gen).to(dev)
    idx = select_uniform(scores, keep)
    qw = rnd(H * G, W, d, scale=0.5)
    qd = rnd(H * G, d, scale=0.3)
    st = moments_of_evicted(k, v, idx, torch.float32)
    n_spd = G * QS
    M = torch.randn(H, n_spd, 16, generator=gen, dtype=torch.float64)
    A = (M @ M.transpose(1, 2) / 16).float().to(dev)
    B = torch.rand(H, n_spd, d, generator=gen).to(dev)
    filt = [f.strip().lower() for f in o.op.split(',') if f.strip()]
    x = {'keys': k, 'values': v, 'scores': scores, 'indices': idx, 'queries': qw, 'a': A, 'b': B}
    xd = {'queries': qd, 'keys': k, 'values': v, 'n': st[0], 'muK': st[1], 'muV': st[2], 'm': st[3]}
    p = {'keep': keep, 'lambda': 1e-2}
    cases = [  # (op, variant, inputs dumped with --dump); variants as lib/benches/*.ts
        ('keydiffScores', '2 passes', ['keys']),
        ('selectTokens', f'keep {int(KEEP * 100)}% uniform', ['scores']),
        ('selectTokens', f'keep {int(KEEP * 100)}% adaptive', ['scores']),
        ('gatherKV', f'keep {int(KEEP * 100)}%', ['keys', 'values', 'indices']),
        ('nestedkvScores', '2 passes + radix statistics', ['keys']),
        ('snapkvScores', f'G={G} W={W} avg', ['queries', 'keys']),
        ('MomentState.merge', f'fused into gatherKV, keep {int(KEEP * 100)}%', ['keys', 'values', 'indices']),
        ('decodeAttention', f'G={G} T=1 order 1, retained L=N', ['queries', 'keys', 'values', 'n', 'muK', 'muV', 'm']),
        ('spdSolve', f'H systems of order {n_spd}, d right-hand sides', ['a', 'b']),
    ]
    cases = [(op, variant, make_case(op, variant, xd if op == 'decodeAttention' else x, p, ct),
              {n: (xd if op == 'decodeAttention' else x)[n] for n in names}) for op, variant, names in cases]
    rows = []
    for op, variant, fn, inputs in cases:
        if filt and not any(f in op.lower() for f in filt):
            continue
        ms = timeit(fn, dev, o.repeats, o.warmup)
        rows.append({'op': op, 'variant': variant, 'H': H, 'N': N, 'd': d, 'medianMs': ms})
        print(f'{op:20s} {variant:45s} {ms:10.3f} ms', flush=True)
        if o.dump:
            import numpy as np
            tag = op.replace('.', '_') + ('_adaptive' if variant.endswith('adaptive') else '')
            os.makedirs(o.dump, exist_ok=True)
            out = fn()
            outs = {}
            if op == 'gatherKV':
                outs = {'keysOut': out[0], 'valuesOut': out[1]}
            elif op == 'MomentState.merge':
                outs = {'keysOut': out[0][0], 'valuesOut': out[0][1], 'n': out[1][0], 'muK': out[1][1], 'muV': out[1][2], 'm': out[1][3]}
            elif op == 'selectTokens' and variant.endswith('adaptive'):
                outs = {'indices': out[0], 'counts': out[1]}
            else:
                outs = {'out': out}
            for name, t in list(inputs.items()) + list(outs.items()):
                arr = t.detach().cpu()
                arr = arr.to(torch.float32) if arr.is_floating_point() and arr.dtype != torch.float64 else arr
                arr = arr.to(torch.int32) if not arr.is_floating_point() else arr
                np.save(os.path.join(o.dump, f'{tag}.{name}.npy'), arr.numpy())
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'
    report = {'torch': torch.__version__, 'device': name, 'dtype': str(dt).replace('torch.', ''), 'compute': str(ct).replace('torch.', ''),
              'repeats': o.repeats, 'rows': rows}
    if o.json:
        with open(o.json, 'w') as f:
            json.dump(report, f, indent=2)


if __name__ == '__main__':
    main()
