#!/usr/bin/env python3
"""Capture a LLaMA-style model's post-RoPE keys, values and queries as a kvtrim dump (one .safetensors file).

    python3 dump_kv.py --model meta-llama/Llama-3.2-1B --text doc.txt --prompt-tokens 3584 --out llama.safetensors
    npx kvtrim eval --dump llama.safetensors

What is captured, per attention layer l (hooks, no change to the model's code):
  layers.{l}.k     [Hkv, N, d]  keys after RoPE, as the KV cache holds them (before GQA's repeat_kv)
  layers.{l}.v     [Hkv, N, dv] values (the v_proj output)
  layers.{l}.q     [Hq, T, d]   queries after RoPE
  layers.{l}.qpos  [T] i32      the position of each query
The prompt (P tokens) is followed by a continuation (C tokens, default min(512, P // 7)): one forward pass over
P + C tokens gives every position's keys and queries exactly as decoding those tokens one by one would (causal
attention). By default keys/values cover all P + C positions, so `kvtrim eval`'s default split S = N − min(512, N/8)
is the prompt length P: the prompt is compressed and the continuation's queries are the held-out decode queries,
each seeing the compressed prompt plus the continuation's keys up to its own position. With --prompt-cache-only
only the prompt's keys are written (N = P) and the continuation's queries sit at positions P.. (they then see all
P keys, but not the continuation's).

Where the hooks sit (Hugging Face transformers' LLaMA, Mistral, Qwen2/3 and similar; and the plain-PyTorch model
of test/fixtures/tiny_llama.py, which has the same structure):
  * the attention modules are model.model.layers[i].self_attn (else: every module with q_proj, k_proj, v_proj);
  * RoPE is applied inside the attention forward by the module-level function apply_rotary_pos_emb(q, k, cos, sin)
    of the attention class's own module (e.g. transformers.models.llama.modeling_llama); it is wrapped for the
    duration of the forward pass so its outputs, the post-RoPE q [B, Hq, N, d] and k [B, Hkv, N, d], are
    recorded for the layer whose forward is running (--rope-fn module:name names another function);
  * keys are recorded before repeat_kv, so they have the Hkv KV heads; query head j reads KV head j // (Hq / Hkv),
    the grouping kvtrim uses;
  * values come from a forward hook on v_proj ([B, N, Hkv·dv] → [Hkv, N, dv]);
  * a forward pre-hook on o_proj receives the attention output; the script recomputes causal softmax attention from
    the captured q, k, v for the last --check-positions positions and compares (the "capture check"): a mismatch
    means the capture is not what the model attends with (another RoPE site, sliding-window or soft-capped
    attention, …). Load Hugging Face models with attn_implementation='eager' (done here): the capture itself
    works with any attention kernel, but eager computes attention as written, which the check reproduces.
When the module's attention scale is not 1/sqrt(d) (`scaling` attribute), the queries are written multiplied by
scaling·sqrt(d), so kvtrim's q·k/sqrt(d) is the model's logit.

Writes safetensors itself (header + raw little-endian bytes; needs torch and numpy only).
"""
import argparse
import importlib
import importlib.util
import json
import math
import os
import sys

import numpy as np
import torch

DTYPES = {'f32': (torch.float32, 'F32'), 'f16': (torch.float16, 'F16'), 'bf16': (torch.bfloat16, 'BF16')}


def attention_modules(model):
    """The attention modules in layer order."""
    inner = getattr(model, 'model', None)
    layers = getattr(inner, 'layers', None)
    if layers is not None and all(hasattr(l, 'self_attn') for l in layers):
        return [l.self_attn for l in layers]
    found = [m for _, m in model.named_modules() if all(hasattr(m, a) for a in ('q_proj', 'k_proj', 'v_proj'))]
    if not found:
        raise SystemExit('dump_kv: no attention modules found (expected model.model.layers[i].self_attn, or modules with q_proj, k_proj, v_proj)')
    return found


def rope_site(attn, spec):
    """(module object, attribute name) of the RoPE function the attention forward calls."""
    if spec:
        mod_name, _, attr = spec.partition(':')
        return importlib.import_module(mod_name), attr or 'apply_rotary_pos_emb'
    name = type(attn).__module__
    mod = sys.modules.get(name)
    if mod is None or not hasattr(mod, 'apply_rotary_pos_emb'):
        raise SystemExit(f'dump_kv: module {name} of {type(attn).__name__} has no apply_rotary_pos_emb; name the function that applies RoPE with --rope-fn module:name')
    return mod, 'apply_rotary_pos_emb'


class Capture:
    """Hooks on every attention layer; per layer: post-RoPE q, k, values, and the capture check."""

    def __init__(self, attns, rope, out_dtype, check_positions, kv_len, q_from):
        self.attns, self.rope, self.out_dtype = attns, rope, out_dtype
        self.check_positions, self.kv_len, self.q_from = check_positions, kv_len, q_from
        self.current = None
        self.q, self.k, self.v, self.check, self.qscale = {}, {}, {}, {}, {}
        self.handles = []

    def __enter__(self):
        mod, name = self.rope
        orig = getattr(mod, name)

        def wrapped(q, k, *args, **kwargs):
            qe, ke = orig(q, k, *args, **kwargs)
            if self.current is not None:
                self.q[self.current], self.k[self.current] = qe.detach(), ke.detach()
            return qe, ke

        self.restore = lambda: setattr(mod, name, orig)
        setattr(mod, name, wrapped)
        for i, attn in enumerate(self.attns):
            self.handles.append(attn.register_forward_pre_hook(lambda m, a, i=i: setattr(self, 'current', i)))
            self.handles.append(attn.register_forward_hook(lambda m, a, o: setattr(self, 'current', None)))
            self.handles.append(attn.v_proj.register_forward_hook(lambda m, a, o, i=i: self.v.__setitem__(i, o.detach())))
            self.handles.append(attn.o_proj.register_forward_pre_hook(lambda m, a, i=i, attn=attn: self.finish(i, attn, a[0])))
        return self

    def __exit__(self, *exc):
        self.restore()
        for h in self.handles:
            h.remove()

    def finish(self, i, attn, attn_out):
        """Runs as layer i's attention output reaches o_proj: check the capture, then store it on the host."""
        if i not in self.q or i not in self.k:
            raise SystemExit(f'dump_kv: layer {i}: the RoPE function was not called inside the attention forward (see --rope-fn)')
        q, k, v = self.q[i][0], self.k[i][0], self.v[i][0]  # batch 0: [Hq, N, d], [Hkv, N, d], [N, Hkv*dv]
        Hq, N, d = q.shape
        Hkv = k.shape[0]
        if Hq % Hkv:
            raise SystemExit(f'dump_kv: layer {i}: {Hq} query heads is not a multiple of {Hkv} KV heads')
        v = v.reshape(N, Hkv, -1).transpose(0, 1)  # [Hkv, N, dv]
        scaling = float(getattr(attn, 'scaling', d ** -0.5))
        # capture check: causal attention of the last positions from the captured tensors vs the model's output
        G, n = Hq // Hkv, min(self.check_positions, N)
        qs = q[:, N - n:].float()
        kk = k.float().repeat_interleave(G, 0)
        vv = v.float().repeat_interleave(G, 0)
        logits = torch.einsum('hnd,hsd->hns', qs, kk) * scaling
        pos = torch.arange(N - n, N, device=q.device)[:, None]
        logits = logits.masked_fill(torch.arange(N, device=q.device)[None, :] > pos, float('-inf'))
        ref = torch.einsum('hns,hsd->hnd', torch.softmax(logits, -1), vv)  # [Hq, n, dv]
        got = attn_out[0, N - n:].float().reshape(n, Hq, -1).transpose(0, 1)
        self.check[i] = (torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref)).item()
        # store, cast, on the host; queries pre-scaled so that q·k/sqrt(d) is the model's logit
        self.qscale[i] = scaling * math.sqrt(d)
        qq = q[:, self.q_from:] * self.qscale[i] if abs(self.qscale[i] - 1) > 1e-6 else q[:, self.q_from:]
        self.q[i] = qq.to(self.out_dtype).cpu().contiguous()
        self.k[i] = k[:, :self.kv_len].to(self.out_dtype).cpu().contiguous()
        self.v[i] = v[:, :self.kv_len].to(self.out_dtype).cpu().contiguous()


def tensor_bytes(t):
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype('<i2', copy=False).tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder('<'), copy=False).tobytes()


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, torch tensor, safetensors dtype); written in order, header padded to 8 bytes."""
    header, offset = {'__metadata__': metadata}, 0
    for name, t, dt in tensors:
        nbytes = t.numel() * t.element_size()
        header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [offset, offset + nbytes]}
        offset += nbytes
    h = json.dumps(header, separators=(',', ':')).encode('utf-8')
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(len(h).to_bytes(8, 'little'))
        f.write(h)
        for _, t, _ in tensors:
            f.write(tensor_bytes(t))


def load_model(args):
    if args.model_file:
        spec = importlib.util.spec_from_file_location('dump_kv_model', args.model_file)
        mod = importlib.util.module_from_spec(spec)
        sys.modules['dump_kv_model'] = mod
        spec.loader.exec_module(mod)
        model = mod.build()
        return model, getattr(mod, 'tokenizer', None), args.model_file
    from transformers import AutoModelForCausalLM, AutoTokenizer  # only for --model
    dtype = {'auto': 'auto', 'f32': torch.float32, 'f16': torch.float16, 'bf16': torch.bfloat16}[args.model_dtype]
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype, attn_implementation='eager')
    return model, AutoTokenizer.from_pretrained(args.model), args.model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--model', help='Hugging Face model name or path (loaded with transformers, eager attention)')
    src.add_argument('--model-file', help='a Python file whose build() returns the model (a LLaMA-style nn.Module)')
    tok = p.add_mutually_exclusive_group(required=True)
    tok.add_argument('--text', help='a text file: its first P + C tokens are the prompt and the continuation')
    tok.add_argument('--random-tokens', action='store_true', help='uniformly random token ids (for models without a tokenizer)')
    p.add_argument('--prompt-tokens', type=int, default=3584, help='P, the prompt (default 3584)')
    p.add_argument('--continuation-tokens', type=int, help='C, the continuation (default min(512, P // 7))')
    p.add_argument('--prompt-cache-only', action='store_true', help='write the keys/values of the prompt only (N = P)')
    p.add_argument('--queries-from', type=int, default=0, help='write the queries of positions >= this one only (default 0: all)')
    p.add_argument('--out', default='kv-dump.safetensors')
    p.add_argument('--dtype', choices=sorted(DTYPES), default='f32', help='element type written (default f32)')
    p.add_argument('--model-dtype', choices=['auto', 'f32', 'f16', 'bf16'], default='f32', help='--model: weights dtype (default f32)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--rope-fn', help='module:name of the function that applies RoPE (default: apply_rotary_pos_emb of the attention module)')
    p.add_argument('--check-positions', type=int, default=64, help='positions recomputed by the capture check (default 64)')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    P = args.prompt_tokens
    C = min(512, P // 7) if args.continuation_tokens is None else args.continuation_tokens
    if P < 2 or C < 0:
        raise SystemExit('dump_kv: need --prompt-tokens >= 2 and --continuation-tokens >= 0')
    total = P + C
    if not 0 <= args.queries_from < total:
        raise SystemExit(f'dump_kv: --queries-from must be in [0, {total})')

    model, tokenizer, name = load_model(args)
    model.eval().to(args.device)
    if args.random_tokens:
        vocab = model.config.vocab_size
        ids = torch.randint(0, vocab, (1, total), generator=torch.Generator().manual_seed(args.seed))
    else:
        if tokenizer is None:
            raise SystemExit('dump_kv: --text needs a tokenizer (the model file has none); use --random-tokens')
        with open(args.text, encoding='utf-8') as f:
            ids = tokenizer(f.read(), return_tensors='pt').input_ids
        if ids.shape[1] < total:
            raise SystemExit(f'dump_kv: {args.text} has {ids.shape[1]} tokens, fewer than P + C = {total}')
        ids = ids[:, :total]
    ids = ids.to(args.device)

    attns = attention_modules(model)
    out_dtype, st_dtype = DTYPES[args.dtype]
    kv_len = P if args.prompt_cache_only else total
    with Capture(attns, rope_site(attns[0], args.rope_fn), out_dtype, args.check_positions, kv_len, args.queries_from) as cap, torch.no_grad():
        try:
            model(input_ids=ids, use_cache=False)
        except TypeError:
            model(input_ids=ids)
    if len(cap.k) != len(attns):
        raise SystemExit(f'dump_kv: captured {len(cap.k)} of {len(attns)} attention layers')

    qpos = torch.arange(args.queries_from, total, dtype=torch.int32)
    tensors = []
    for i in range(len(attns)):
        tensors += [(f'layers.{i}.k', cap.k[i], st_dtype), (f'layers.{i}.v', cap.v[i], st_dtype),
                    (f'layers.{i}.q', cap.q[i], st_dtype), (f'layers.{i}.qpos', qpos, 'I32')]
    meta = {'generator': 'kvtrim examples/python/dump_kv.py', 'model': str(name), 'prompt_tokens': str(P),
            'continuation_tokens': str(C), 'keys': 'prompt' if args.prompt_cache_only else 'prompt+continuation',
            'query_scale': json.dumps([cap.qscale[i] for i in range(len(attns))])}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_safetensors(args.out, tensors, meta)

    k0, q0 = cap.k[0], cap.q[0]
    print(f'wrote {args.out}: {len(attns)} layers, H_kv={k0.shape[0]}, H_q={q0.shape[0]}, d={k0.shape[2]}, '
          f'keys of positions 0..{kv_len - 1}, queries of positions {args.queries_from}..{total - 1} '
          f'(prompt {P}, continuation {C}), {args.dtype}')
    worst = max(cap.check.values())
    tol = 1e-3 if args.model_dtype == 'f32' and next(model.parameters()).dtype == torch.float32 else 5e-2
    print('capture check (relative error of the attention output recomputed from the captured q, k, v, '
          f'last {min(args.check_positions, total)} positions): ' + ', '.join(f'layer {i} {e:.2e}' for i, e in sorted(cap.check.items())))
    if worst > tol:
        print(f'WARNING: capture check {worst:.2e} > {tol:.0e}: the captured tensors do not reproduce the attention output '
              '(another RoPE site? sliding-window, soft-capped or otherwise modified attention?)', file=sys.stderr)
        return 3
    split = P if not args.prompt_cache_only else None
    print(f'next: npx kvtrim eval --dump {args.out}' + (f' --split {split}' if split is not None else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
