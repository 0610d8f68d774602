#!/usr/bin/env bash
# run.sh: builds tests/cuda/test_cuda_*.c against a CPU emulation of CUDA and
# runs them, printing each test's output. No GPU is needed or used.
#
# What it is: a development aid for code written without a GPU. gen.py rewrites
# kernels/cuda/*.cu into C++ (launches become emulator calls); emu.h/emu.cpp run
# each block's threads as fibers on one CPU thread, switching at __syncthreads
# and at warp-collective calls (shuffles, ballots, __syncwarp, WMMA, whose
# 16x16x16 products lane 0 computes in fp32); fake/ holds stand-in CUDA
# runtime, bf16, mma and cuBLAS headers; cublas_emu.cpp computes the products
# on the host (bf16 in, fp32 sums, fp32 or bf16 out). Device memory is host
# memory (NaN-poisoned when allocated; copies and products are checked against
# the allocations), every asynchronous call completes at once, and
# cuda_device_count() reports one device. It checks indexing, tiling,
# barriers (a barrier some threads never reach aborts), launch configurations,
# the order of operations and the host logic (model/cuda, the launchers).
#
# What it is not: evidence that the code is right on a GPU. There is no real
# warp scheduling or lockstep execution, no memory model (no races between
# blocks or threads other than through barrier order), no tensor-core fragment
# layout, no fp32 FMA contraction as nvcc does it, no static shared-memory
# limit, and no timing. Run by .ci/run (not part of ctest).
#
# Usage: tests/cuda/emu/run.sh [test names...]     (default: every test_cuda_*)
#   e.g. tests/cuda/emu/run.sh test_cuda_model test_cuda_attn   ("test_cuda_" may be left out)
# Environment: EMU_BUILD (build folder, default build-emu/ in the repository,
#   git-ignored), EMU_JOBS (make -j, default 2), GRPO_CUDA_TEST_QUICK=1 (the
#   tests' small shapes only), GRPO_EMU_ORDER=fwd|rev|shuffle (+ GRPO_EMU_SEED):
#   the order in which threads between two barriers, and blocks, are run (a
#   result that changes with it depends on an order CUDA does not promise),
#   GRPO_EMU_GEMM_FALLBACK=1 (cuBLASLt offers no algorithm: gemm.cu's
#   cublasGemmStridedBatchedEx path runs), GRPO_EMU_VERBOSE=1 (every launch),
#   EMU_SAN=ubsan (builds with -fsanitize=undefined: misaligned uint4 loads,
#   overflows) or EMU_SAN=asan (AddressSanitizer: a kernel or cuBLAS call
#   reading or writing past a cudaMalloc'd buffer; the memcheck of the
#   emulation), EMU_TIMEOUT (seconds per test, default 900).
# Exit status: 0 when every test run passed (or skipped), 1 otherwise.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
B=${EMU_BUILD:-$ROOT/build-emu}
SAN=""
[ "${EMU_SAN:-}" = ubsan ] && SAN="-fsanitize=undefined -fno-sanitize-recover=undefined" && B=$B-ubsan
[ "${EMU_SAN:-}" = asan ] && SAN="-fsanitize=address -fno-omit-frame-pointer" && B=$B-asan
tests=()
for t in "$@"; do tests+=("test_cuda_${t#test_cuda_}"); done
if [ ${#tests[@]} -eq 0 ]; then
  for f in "$ROOT"/tests/cuda/test_cuda_*.c; do tests+=("$(basename "$f" .c)"); done
fi
targets=()
for t in "${tests[@]}"; do
  [ -f "$ROOT/tests/cuda/$t.c" ] || { echo "run.sh: no tests/cuda/$t.c"; exit 2; }
  targets+=("$B/$t")
done
echo "== build ($B)"
mkdir -p "$B"
if ! make -s -f "$ROOT/tests/cuda/emu/Makefile" -j"${EMU_JOBS:-2}" B="$B" SAN="$SAN" "${targets[@]}" >"$B/build.log" 2>&1; then
  grep -E "error|Error" "$B/build.log" | head -30
  echo "build FAILED (log: $B/build.log)"
  exit 1
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
status=0
summary=()
for t in "${tests[@]}"; do
  echo "== $t (CPU emulation, not a GPU)"
  t0=$(date +%s)
  timeout "${EMU_TIMEOUT:-900}" "$B/$t"
  rc=$?
  summary+=("$t: rc=$rc in $(( $(date +%s) - t0 )) s")
  [ $rc -eq 0 ] || [ $rc -eq 77 ] || status=1
done
echo "== summary (emulated on the CPU)"
printf '%s\n' "${summary[@]}"
exit $status
