#!/bin/sh
# Builds the CUDA emulator test (see README.md): rewrites cuda/*.cu, compiles them as C++ with the CPU backend.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build-emu}
mkdir -p "$out/cuda"
python3 "$here/emulate.py" "$root/cuda" "$out/cuda"
ln -sfn "$root/csrc" "$out/csrc"
CXX=${CXX:-g++}
FLAGS="-std=c++17 -O2 -g -DKVT_CUDA_EMU -Wall -Wno-unused-function -Wno-unknown-pragmas"
objs=""
for f in "$out"/cuda/gather.cc "$out"/cuda/spd.cc "$out"/cuda/grkv.cc "$here"/emu.cc; do
  o="$out/$(basename "$f" .cc).emu.o"
  $CXX $FLAGS -I"$here" -I"$out/cuda" -I"$root/csrc" -c "$f" -o "$o" &
  objs="$objs $o"
done
for f in "$root"/csrc/*.cc "$root"/csrc/cpu/*.cc; do
  o="$out/$(basename "$f" .cc).cpu.o"
  $CXX $FLAGS -I"$root/csrc" -c "$f" -o "$o" &
  objs="$objs $o"
done
wait
$CXX $FLAGS -I"$here" -I"$root/csrc" "$here/grkv_emu_test.cc" $objs -lpthread -o "$out/grkv_emu_test"
echo "$out/grkv_emu_test"
