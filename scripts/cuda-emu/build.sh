#!/bin/sh
# Builds the standalone GRKV/SPD emulator test (grkv_emu_test.cc): rewrites cuda/*.cu (emulate.py), compiles them as
# C++ with the emulator and the CPU backend. The Node addon with every kernel is built by CMake instead:
#   npx cmake-js compile -O build-emu --CDKVTRIM_CUDA_EMU=ON
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build-emu/standalone}
mkdir -p "$out/cuda"
python3 "$here/emulate.py" "$root/cuda" "$out/cuda"
CXX=${CXX:-g++}
FLAGS="-std=c++17 -O2 -g -DKVT_WITH_CUDA=1 -DKVT_CUDA_EMU=1 -Wall -Wno-unused-function -Wno-unknown-pragmas"
KFLAGS="-Wno-unused-parameter -Wno-maybe-uninitialized"
if grep -q ' fma ' /proc/cpuinfo 2>/dev/null && [ "$(uname -m)" = x86_64 ]; then KFLAGS="$KFLAGS -mfma -ffp-contract=fast"; fi
objs=""
for f in "$out"/cuda/*.cu.cc "$here"/emu.cc; do
  o="$out/$(basename "$f" .cc).emu.o"
  $CXX $FLAGS $KFLAGS -I"$here" -I"$root/csrc" -c "$f" -o "$o" &
  objs="$objs $o"
done
for f in "$root"/csrc/*.cc "$root"/csrc/cpu/*.cc; do
  o="$out/$(basename "$f" .cc).cpu.o"
  $CXX $FLAGS -I"$here" -I"$root/csrc" -c "$f" -o "$o" &
  objs="$objs $o"
done
wait
$CXX $FLAGS -I"$here" -I"$root/csrc" "$here/grkv_emu_test.cc" $objs -lpthread -o "$out/grkv_emu_test"
echo "$out/grkv_emu_test"
