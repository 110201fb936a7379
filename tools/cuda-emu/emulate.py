#!/usr/bin/env python3
"""Rewrites kvtrim's CUDA sources into C++ for the CPU emulator (tools/cuda-emu/README.md).

Usage: emulate.py SRC_DIR OUT_DIR [--stamp FILE]

For every .cu / .cuh / .h file of SRC_DIR it writes OUT_DIR/<name>.cc (.cu) or OUT_DIR/<name> (headers), with the
same line numbers (a #line directive names the original file, so compiler messages and barrier sites point at it):
  - comments removed (so nothing below matches inside them);
  - `k<<<g, b, s, st>>>(args)`          -> `::emu::make_launcher("k", k, g, b, s, st)(args)`;
  - `__global__ ... name(params) {`      -> the body starts with `::emu::kernel_enter(__PRETTY_FUNCTION__, __FILE__, LB);`
    (LB: the first argument of `__launch_bounds__`, which is removed; 0 without one);
  - `extern __shared__ T name[];`        -> `T* name = ::emu::dyn_smem<T>();`;
  - `__shared__ T a[n][m], b;`           -> references into the per-block shared-memory arena;
  - `asm volatile("instr ops;" : outs : ins)` -> calls `::emu::ptx::instr_with_underscores(ops...)` (outputs passed
    as lvalues; `{%0, %1}` vector operands expanded, `[%0]` addresses passed as values).
Includes are left as they are: the build puts csrc/ on the include path (`#include "math/common.h"`), and the
rewritten headers sit next to the rewritten sources (`#include "common.cuh"`).
"""
import os
import re
import sys


def strip_comments(s):
    out, i, n = [], 0, len(s)
    while i < n:
        c = s[i]
        if s.startswith('//', i):
            j = s.find('\n', i)
            i = n if j < 0 else j
        elif s.startswith('/*', i):
            j = s.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append('\n' * s.count('\n', i, j))
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and s[j] != c:
                j += 2 if s[j] == '\\' else 1
            out.append(s[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def skip_string(s, i):
    q = s[i]
    j = i + 1
    while s[j] != q:
        j += 2 if s[j] == '\\' else 1
    return j + 1


def match_close(s, i):
    """s[i] is an opening bracket; returns the index just past its matching close (strings skipped)."""
    pairs = {'(': ')', '[': ']', '{': '}'}
    stack = [pairs[s[i]]]
    j = i + 1
    while stack:
        c = s[j]
        if c in '"\'':
            j = skip_string(s, j)
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in ')]}':
            if c != stack[-1]:
                raise SyntaxError('unbalanced brackets near: ' + s[max(0, i - 40):j + 1])
            stack.pop()
        j += 1
    return j


def split_top(s, sep):
    """Splits at `sep` characters outside (), [], {} and strings."""
    parts, depth, cur, j = [], 0, [], 0
    while j < len(s):
        c = s[j]
        if c in '"\'':
            k = skip_string(s, j)
            cur.append(s[j:k])
            j = k
            continue
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
        if c == sep and depth == 0:
            parts.append(''.join(cur))
            cur = []
        else:
            cur.append(c)
        j += 1
    parts.append(''.join(cur))
    return parts


def nl(text):
    return '\n' * text.count('\n')


# ---- asm statements
def rewrite_asm(s):
    out, pos = [], 0
    for m in re.finditer(r'\basm\s*(?:volatile|__volatile__)?\s*\(', s):
        if m.start() < pos:
            continue
        open_i = m.end() - 1
        close = match_close(s, open_i)
        body = s[open_i + 1:close - 1]
        sections = split_top(body, ':')
        template = ''.join(re.findall(r'"((?:[^"\\]|\\.)*)"', sections[0]))
        template = template.replace('\\n', '\n').replace('\\t', ' ')
        operands = []
        for sec in sections[1:3]:
            for op in split_top(sec, ','):
                op = op.strip()
                if not op:
                    continue
                mm = re.match(r'"([^"]*)"\s*\((.*)\)\s*$', op, re.S)
                if not mm:
                    raise SyntaxError('cannot parse asm operand: ' + op)
                operands.append((mm.group(1), mm.group(2).strip()))

        def operand(tok):
            tok = tok.strip()
            mm = re.fullmatch(r'%(\d+)', tok)
            if mm:
                cons, expr = operands[int(mm.group(1))]
                return [expr if ('=' in cons or '+' in cons) else '(' + expr + ')']
            if tok.startswith('{') and tok.endswith('}'):
                return sum((operand(t) for t in tok[1:-1].split(',')), [])
            if tok.startswith('[') and tok.endswith(']'):
                return operand(tok[1:-1])
            return [tok]

        calls = []
        for ins in re.split(r'[;\n]', template):
            ins = ins.strip()
            if not ins:
                continue
            parts = ins.split(None, 1)
            mnem = parts[0]
            args = []
            if len(parts) > 1:
                for tok in split_top(parts[1], ','):
                    args += operand(tok)
            calls.append('::emu::ptx::%s(%s);' % (re.sub(r'[.]', '_', mnem), ', '.join(args)))
        original = s[m.start():close]
        out.append(s[pos:m.start()])
        out.append('do { %s } while (0)%s' % (' '.join(calls), nl(original)))
        pos = close
    out.append(s[pos:])
    return ''.join(out)


# ---- kernels: launch bounds and the entry hook
def rewrite_kernels(s):
    out, pos = [], 0
    for m in re.finditer(r'\b__global__\b', s):
        if m.start() < pos:
            continue
        j, lb, lb_span = m.end(), '0', None
        while True:
            c = s[j]
            if c in '"\'':
                j = skip_string(s, j)
                continue
            if s.startswith('__launch_bounds__', j):
                k = s.index('(', j)
                e = match_close(s, k)
                lb = split_top(s[k + 1:e - 1], ',')[0].strip()
                lb_span = (j, e)
                j = e
                continue
            if c in '([':
                j = match_close(s, j)
                continue
            if c == ';':
                body = None
                break
            if c == '{':
                body = j
                break
            j += 1
        out.append(s[pos:m.start()])
        head = s[m.start():(body if body is not None else j)]
        if lb_span:
            a, b = lb_span[0] - m.start(), lb_span[1] - m.start()
            head = head[:a] + ' ' * 0 + nl(head[a:b]) + head[b:]
        out.append(head)
        if body is None:
            pos = j
            continue
        out.append('{ ::emu::kernel_enter(__PRETTY_FUNCTION__, __FILE__, long(%s));' % lb)
        pos = body + 1
    out.append(s[pos:])
    return ''.join(out)


# ---- launches
def rewrite_launches(s):
    out, pos = [], 0
    i = s.find('<<<')
    while i >= 0:
        # kernel expression before <<<: identifier / qualified name, optional template arguments
        k = i
        while k > 0 and s[k - 1].isspace():
            k -= 1
        end_name = k
        if s[k - 1] == '>':
            depth, k = 0, k - 1
            while True:
                if s[k] == '>':
                    depth += 1
                elif s[k] == '<':
                    depth -= 1
                    if depth == 0:
                        break
                k -= 1
        while k > 0 and (s[k - 1].isalnum() or s[k - 1] in '_:'):
            k -= 1
        kexpr = s[k:end_name].strip()
        close = s.index('>>>', i)
        config = split_top(s[i + 3:close], ',')
        j = close + 3
        while s[j].isspace():
            j += 1
        if s[j] != '(':
            raise SyntaxError('kernel launch without arguments near: ' + s[k:j + 20])
        name = re.sub(r'\s+', ' ', kexpr)
        out.append(s[pos:k])
        out.append('::emu::make_launcher("%s", %s, %s)%s(' % (name, kexpr, ', '.join(c.strip() for c in config),
                                                              nl(s[k:j])))
        pos = j + 1
        i = s.find('<<<', pos)
    out.append(s[pos:])
    return ''.join(out)


# ---- shared memory
def rewrite_shared(s, counter):
    def dyn(m):
        ty = re.sub(r'__align__\s*\([^)]*\)', '', m.group(1))
        ty = ' '.join(ty.split())
        return '%s* %s = ::emu::dyn_smem<%s>();' % (ty, m.group(2), ty)

    s = re.sub(r'extern\s+__shared__\s+((?:[\w:]+(?:\s*\([^)]*\))?\s+)+?)(\w+)\s*\[\s*\]\s*;', dyn, s)
    out, pos = [], 0
    for m in re.finditer(r'\b__shared__\b', s):
        if m.start() < pos:
            continue
        end = m.end()
        while s[end] != ';':
            end = match_close(s, end) if s[end] in '([{' else end + 1
        decl = s[m.end():end]
        decl = re.sub(r'__align__\s*\([^)]*\)', '', decl)
        parts = split_top(decl, ',')
        first = re.match(r'^(.*\S)\s+(\w+)\s*((?:\[[^\]]*\]\s*)*)$', parts[0].strip(), re.S)
        if not first:
            raise SyntaxError('cannot parse __shared__ declaration: ' + decl)
        ty = ' '.join(first.group(1).split())
        decls = [(first.group(2), first.group(3))]
        for p in parts[1:]:
            mm = re.match(r'^(\w+)\s*((?:\[[^\]]*\]\s*)*)$', p.strip(), re.S)
            if not mm:
                raise SyntaxError('cannot parse __shared__ declarator: ' + p)
            decls.append((mm.group(1), mm.group(2)))
        code = []
        for name, dims in decls:
            counter[0] += 1
            key = '__emu_shared_key_%d' % counter[0]
            dims = ''.join(dims.split())
            code.append('static char %s; auto& %s = ::emu::shared_var<%s%s>(&%s);' % (key, name, ty, dims, key))
        out.append(s[pos:m.start()])
        out.append(' '.join(code) + nl(s[m.start():end + 1]))
        pos = end + 1
    out.append(s[pos:])
    return ''.join(out)


def main():
    args = sys.argv[1:]
    stamp = None
    if '--stamp' in args:
        k = args.index('--stamp')
        stamp = args[k + 1]
        del args[k:k + 2]
    src, out = os.path.abspath(args[0]), os.path.abspath(args[1])
    os.makedirs(out, exist_ok=True)
    counter = [0]
    for name in sorted(os.listdir(src)):
        if not (name.endswith('.cu') or name.endswith('.cuh') or name.endswith('.h')):
            continue
        path = os.path.join(src, name)
        text = strip_comments(open(path).read())
        text = rewrite_asm(text)
        text = rewrite_kernels(text)
        text = rewrite_launches(text)
        text = rewrite_shared(text, counter)
        dst = name[:-3] + '.cu.cc' if name.endswith('.cu') else name
        prologue = ''
        if name.endswith('.cu'):  # device compilation pass of nvcc: the shared math takes its __CUDA_ARCH__ paths
            prologue = '#define __CUDACC__ 1\n#define __CUDA_ARCH__ 800\n#include <cuda_runtime.h>\n'
        body = '%s#line 1 "%s"\n%s' % (prologue, path, text)
        dst_path = os.path.join(out, dst)
        if not os.path.exists(dst_path) or open(dst_path).read() != body:
            open(dst_path, 'w').write(body)
    if stamp:
        open(stamp, 'w').write('')


if __name__ == '__main__':
    main()
