#!/usr/bin/env bash
# run_device_model.sh: the whole model on a GPU machine: test_cuda_model (forward, backward
# and decoding against the CPU model), test_cuda_train (AdamW on the device) and
# test_cuda_grpo (rollouts and GRPO steps with device "cuda" against the CPU's). Unlike the ops (run_device.sh, a standalone build), it
# needs the whole project and so its Debian libraries: fetch them here first with
# tests/cuda/fetch_debs.sh and carry .debs/; they are unpacked into $SYSROOT, not into /.
# Logs in $OUT (or ./cuda-logs). Usage: bash tests/cuda/run_device_model.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/cuda-logs}
mkdir -p "$OUT"
SYSROOT=${SYSROOT:-/tmp/grpo-sysroot}
B=${GRPO_CUDA_MODEL_BUILD:-build-model}
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
[ -d .debs ] || { echo "no .debs/: run tests/cuda/fetch_debs.sh where apt works, and carry .debs"; exit 2; }
mkdir -p "$SYSROOT"
for f in .debs/*.deb; do dpkg-deb -x "$f" "$SYSROOT" || exit 2; done
arch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
export PKG_CONFIG_SYSROOT_DIR=$SYSROOT
export PKG_CONFIG_LIBDIR=$SYSROOT/usr/lib/$arch/pkgconfig:$SYSROOT/usr/share/pkgconfig
export LD_LIBRARY_PATH=$SYSROOT/usr/lib/$arch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
t0=$(date +%s)
if cmake -S . -B "$B" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DGRPO_NATIVE=OFF \
     -DCURL_INCLUDE_DIR="$SYSROOT/usr/include/$arch" >"$OUT/model-build.log" 2>&1 &&
   cmake --build "$B" -j"$(nproc)" --target test_cuda_model test_cuda_train test_cuda_grpo grpo >>"$OUT/model-build.log" 2>&1; then
  echo "build: ok in $(( $(date +%s) - t0 )) s"
else
  echo "build: FAILED (tail of model-build.log)"; tail -30 "$OUT/model-build.log"; exit 1
fi
for t in test_cuda_model test_cuda_train test_cuda_grpo; do
  timeout 300 "$B/tests/cuda/$t" 2>&1 | tee "$OUT/$t.log"
  echo "$t: rc=${PIPESTATUS[0]}"
done
if command -v compute-sanitizer >/dev/null; then
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 99 "$B/tests/cuda/test_cuda_model" >"$OUT/model-memcheck.log" 2>&1
  echo "memcheck test_cuda_model: rc=$? ($(grep -E '^========= ERROR SUMMARY' "$OUT/model-memcheck.log"))"
fi
