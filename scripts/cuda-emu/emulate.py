#!/usr/bin/env python3
"""Rewrites kvtrim's CUDA sources for the CPU emulator: kernel launches `k<<<g, b, s, st>>>(args)` become
`EMU_LAUNCH((k), g, b, s, st)(args)` and `extern __shared__ T name[];` becomes a pointer to the emulated dynamic
shared memory. Usage: emulate.py SRC_DIR OUT_DIR"""
import os, re, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
launch = re.compile(r'([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(', re.S)
dyn = re.compile(r'extern\s+__shared__\s+(\w+)\s+(\w+)\s*\[\s*\]\s*;')
for name in os.listdir(src):
    if not (name.endswith('.cu') or name.endswith('.cuh') or name.endswith('.h')):
        continue
    text = open(os.path.join(src, name)).read()
    def fix_launch(m):
        args = m.group(2).split(',')
        while len(args) < 4:
            args.append('0')
        return 'EMU_LAUNCH((%s), %s)(' % (m.group(1), ','.join(args))
    text = launch.sub(fix_launch, text)
    text = dyn.sub(lambda m: '%s* %s = ::emu::dyn_smem<%s>();' % (m.group(1), m.group(2), m.group(1)), text)
    dst = name[:-3] + '.cc' if name.endswith('.cu') else name
    open(os.path.join(out, dst), 'w').write(text)
