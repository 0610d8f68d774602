#!/usr/bin/env python3
"""gen.py: rewrites one kernels/cuda/*.cu file into C++ for tests/cuda/emu (the
CPU emulation of CUDA, a development aid; see emu.h). Usage: gen.py in.cu out.cpp

  k<<<grid, block[, smem[, stream]]>>>(args);
      -> emu_launch("k", k, emu_cfg(grid, block, ...), [&] { k(args); });
  extern __shared__ [__align__(n)] T name[];
      -> T *name = (T *)emu_dyn_smem();
  __shared__ T a[N], b;   (inside a function; emu.h makes __shared__ static)
      -> the same, then EMU_SHARED_POISON(a); EMU_SHARED_POISON(b); on that line:
         the first thread of each block to get there fills them with NaN bytes

Everything else compiles as is against the fake headers (tests/cuda/emu/fake)
and emu.h. Line numbers are kept (a #line names the original file), so
compiler errors and abort messages point into kernels/cuda."""
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()

s, nsh = re.subn(r'extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s*)?([\w\s]*?\w)\s+(\w+)\s*\[\s*\]\s*;',
                 r'\1 *\2 = (\1 *)emu_dyn_smem();', s)


def poison(m):
    """Static __shared__ declaration: poisoned (NaN bytes) once per block by the first thread to reach it."""
    names, depth, cur = [], 0, ''
    for ch in m.group(1):
        depth += 1 if ch in '[(' else (-1 if ch in '])' else 0)
        if ch == ',' and depth == 0:
            names.append(cur)
            cur = ''
        else:
            cur += ch
    names.append(cur)
    names = [re.findall(r'\w+', n.split('[')[0])[-1] for n in names]  # "unsigned long long x[4]" -> x
    return m.group(0) + ''.join(' EMU_SHARED_POISON(%s);' % n for n in names)


s, nps = re.subn(r'(?m)^[ \t]+__shared__\s+(?:__align__\(\s*\d+\s*\)\s*)?([^;=()]+?)\s*;', poison, s)


def launch(m):
    name, cfg, args = m.group(1), m.group(2), m.group(3)
    # the arguments evaluated and copied at the launch, as CUDA does: a graph may run it again later
    return 'emu_launch("%s", %s, emu_cfg(%s), [emu_args_ = std::make_tuple(%s)] { std::apply(%s, emu_args_); });' % (
        name, name, cfg, args, name)


s, nl = re.subn(r'(\w+(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\)\s*;', launch, s, flags=re.S)
if '<<<' in s:
    sys.exit('gen.py: %s: a launch was not rewritten' % src)
open(dst, 'w').write('#line 1 "%s"\n' % src + s)
sys.stderr.write('gen.py: %s: %d launches, %d extern __shared__, %d __shared__\n' % (src, nl, nsh, nps))
