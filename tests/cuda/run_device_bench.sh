#!/usr/bin/env bash
# run_device_bench.sh: issue 9's measurements and issue 8's tiny-recipe run on a GPU
# machine, after run_device_model.sh has built the project (same $B and sysroot).
# Each part has its own time limit; logs and JSON lines in $OUT (or ./cuda-logs).
#   PARTS="tiny decode train grpo profile" (default all but profile), TINY_STEPS (300), NEW (1024)
#   profile: ncu's duration of every kernel of a few batch-1 decode steps (graphs off,
#   so each launch is its own row), summed per kernel name: what a step is made of.
# Usage: bash tests/cuda/run_device_model.sh && bash tests/cuda/run_device_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/cuda-logs}
mkdir -p "$OUT"
SYSROOT=${SYSROOT:-/tmp/grpo-sysroot}
B=${GRPO_CUDA_MODEL_BUILD:-build-model}
arch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
export LD_LIBRARY_PATH=$SYSROOT/usr/lib/$arch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
G="$B/grpo"
[ -x "$G" ] || { echo "no $G: run tests/cuda/run_device_model.sh first"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
for part in ${PARTS:-tiny decode train grpo}; do
  t0=$(date +%s)
  case $part in
  tiny)  # issue 8: the tiny recipe on the GPU; compare its eval_per_step with docs/tiny-arith.md's CPU run
    timeout 400 "$G" train recipes/tiny-arith.lua --device cuda \
      --set "output_dir=/tmp/grpo-tiny-gpu;max_steps=${TINY_STEPS:-300}" >"$OUT/tiny.log" 2>&1
    echo "tiny: rc=$? in $(( $(date +%s) - t0 )) s"; grep "eval step" "$OUT/tiny.log" | tail -3
    command -v sqlite3 >/dev/null && sqlite3 /tmp/grpo-tiny-gpu/tiny-arith/rollouts.db "select * from eval_per_step" ;;
  decode)
    timeout 500 "$G" bench decode --device cuda --new "${NEW:-1024}" >"$OUT/decode.log" 2>&1
    echo "decode: rc=$? in $(( $(date +%s) - t0 )) s"; cat "$OUT/decode.log" ;;
  train)
    timeout 400 "$G" bench train --device cuda --seq 2048 --batch 4 >"$OUT/train.log" 2>&1
    echo "train: rc=$? in $(( $(date +%s) - t0 )) s"; cat "$OUT/train.log" ;;
  profile)
    if command -v ncu >/dev/null; then
      GRPO_CUDA_GRAPHS=0 timeout 400 ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
        --launch-skip 3000 --launch-count 1200 "$G" bench decode --device cuda --no-reference --batch 1 \
        --prompt 256 --new 64 >"$OUT/profile.csv" 2>"$OUT/profile.err"
      echo "profile: rc=$? in $(( $(date +%s) - t0 )) s (profile.csv)"
      python3 - "$OUT/profile.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
h = rows[0]; k, v = h.index("Kernel Name"), h.index("Metric Value")
tot = collections.Counter(); n = collections.Counter()
for r in rows[1:]:
    try: tot[r[k][:60]] += float(r[v].replace(",", "")); n[r[k][:60]] += 1
    except ValueError: pass
s = sum(tot.values())
print("%d kernels, %.1f us in all" % (sum(n.values()), s / 1e3))
for name, t in tot.most_common(25): print("%8.1f us %5d x  %s" % (t / 1e3, n[name], name))
PY
    else echo "profile: no ncu"; fi ;;
  grpo)
    "$G" init --config tests/configs/dsv3-1b-a200m.json --out /tmp/grpo-1b-init >"$OUT/grpo.log" 2>&1
    timeout 500 "$G" bench grpo --device cuda --recipe recipes/r1-zero-gsm8k.lua --steps 1 --warmup 1 \
      --set "model=/tmp/grpo-1b-init;train_data=recipes/tiny-arith/train.jsonl;prompts_per_step=64;num_generations=8;max_completion_length=${NEW:-1024};micro_batch=8" \
      >>"$OUT/grpo.log" 2>&1
    echo "grpo: rc=$? in $(( $(date +%s) - t0 )) s"; tail -16 "$OUT/grpo.log" ;;
  esac
done
