#!/usr/bin/env bash
# run_device.sh: build and check the CUDA ops on a GPU machine in one go.
#   1. configure + build only what the cuda tests need (tests/cuda as a
#      standalone CMake project: base + kernels/cpu + kernels/cuda + the CPU
#      reference sources; no Lua/cJSON/PCRE2/... needed);
#   2. ctest -L cuda;
#   3. bench_cuda (timings; trust them only when the tests passed);
#   4. compute-sanitizer memcheck and racecheck on each op test (quick shapes).
# Logs go to $OUT (or ./cuda-logs when OUT is unset): build.log, ctest.log,
# bench.log, memcheck.log, racecheck.log, summary.txt. The summary is printed last.
# Usage (from the repository root): bash tests/cuda/run_device.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
BUDGET=${GRPO_DEVICE_BUDGET:-540}   # seconds for the whole script (the device tool stops a call at 600)
OUT=${OUT:-$PWD/cuda-logs}
mkdir -p "$OUT"
B=${GRPO_CUDA_BUILD:-build-cuda}
JOBS=$(nproc 2>/dev/null || echo 8)
SUMMARY="$OUT/summary.txt"
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

{
  echo "== machine"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  nvcc --version 2>&1 | tail -1; cmake --version | head -1; ${CC:-cc} --version | head -1
} | tee -a "$SUMMARY"

gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
t0=$(date +%s)
if cmake -S tests/cuda -B "$B" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
     >"$OUT/build.log" 2>&1 && cmake --build "$B" -j"$JOBS" >>"$OUT/build.log" 2>&1; then
  note "build: ok in $(( $(date +%s) - t0 )) s"
else
  note "build: FAILED after $(( $(date +%s) - t0 )) s (tail of build.log below)"
  tail -40 "$OUT/build.log"
  exit 1
fi

t0=$(date +%s)
# -V: every test's own lines (the nmse it measured) go to ctest.log; the result lines to the screen
ctest --test-dir "$B" -L cuda -V --timeout 300 >"$OUT/ctest.log" 2>&1
ctest_rc=$?
grep -E "^ *[0-9]+/[0-9]+ Test|FAIL|tests passed" "$OUT/ctest.log"
note "ctest -L cuda: rc=$ctest_rc in $(( $(date +%s) - t0 )) s"
grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ctest.log" | tee -a "$SUMMARY" >/dev/null

if [ -x "$B/bench_cuda" ]; then
  t0=$(date +%s)
  timeout 180 "$B/bench_cuda" 2>&1 | tee "$OUT/bench.log"
  note "bench: rc=${PIPESTATUS[0]} in $(( $(date +%s) - t0 )) s (bench.log)"
fi

ops="gemm ops head moe adamw sample attn"
export GRPO_CUDA_TEST_QUICK=1
for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer "$(dirname "$(command -v nvcc)")"; do
  [ -x "$d/compute-sanitizer" ] && ! command -v compute-sanitizer >/dev/null && export PATH="$d:$PATH"
done
command -v compute-sanitizer >/dev/null || note "compute-sanitizer: not found (PATH, /usr/local/cuda/bin)"
for tool in memcheck racecheck; do
  log="$OUT/$tool.log"
  : >"$log"
  for op in $ops; do
    exe="$B/test_cuda_$op"
    [ -x "$exe" ] || { note "$tool $op: no binary"; continue; }
    t0=$(date +%s)
    left=$(( BUDGET - (t0 - START) ))
    if [ "$left" -lt 20 ]; then note "$tool $op: skipped, out of time (budget ${BUDGET} s)"; continue; fi
    [ "$left" -gt 240 ] && left=240
    echo "===== $tool test_cuda_$op" >>"$log"
    timeout "$left" compute-sanitizer --tool "$tool" --error-exitcode 99 "$exe" >>"$log" 2>&1
    rc=$?
    note "$(printf '%-10s %-8s rc=%-3s %4ss' "$tool" "$op" "$rc" "$(( $(date +%s) - t0 ))")"
  done
  note "$tool: $(grep -E '^========= ERROR SUMMARY' "$log" | sort | uniq -c | tr '\n' ';')"
done

echo
echo "================ summary ================"
cat "$SUMMARY"
