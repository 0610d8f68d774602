#!/usr/bin/env bash
# run_device_bench.sh: issue 9's measurements and issue 8's tiny-recipe run on a GPU
# machine, after run_device_model.sh has built the project (same $B and sysroot).
# Each part has its own time limit; logs and JSON lines in $OUT (or ./cuda-logs).
#   PARTS="tiny decode train grpo" (default all), TINY_STEPS (300), NEW (1024)
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
  grpo)
    "$G" init --config tests/configs/dsv3-1b-a200m.json --out /tmp/grpo-1b-init >"$OUT/grpo.log" 2>&1
    timeout 500 "$G" bench grpo --device cuda --recipe recipes/r1-zero-gsm8k.lua --steps 1 --warmup 1 \
      --set "model=/tmp/grpo-1b-init;train_data=recipes/tiny-arith/train.jsonl;prompts_per_step=64;num_generations=8;max_completion_length=${NEW:-1024};micro_batch=8" \
      >>"$OUT/grpo.log" 2>&1
    echo "grpo: rc=$? in $(( $(date +%s) - t0 )) s"; tail -16 "$OUT/grpo.log" ;;
  esac
done
