#!/usr/bin/env python3
"""bench_train_torch: the reference side of `grpo bench train`.

transformers' model on the weights grpo times (--model, a folder grpo wrote) with
torch.optim.AdamW, the way a PyTorch user trains it in eager mode: fp32 weights and
AdamW state, bf16 autocast on the GPU (fp32 on the CPU). One step: forward over
--batch sequences of --seq tokens (grpo's tokens: (7 + 7919 i) mod V), the mean
next-token cross-entropy in fp32, backward, AdamW (lr 1e-5). One untimed step, then
--steps timed. Prints one JSON line:
  {"bench": "train", "tok_s": batch * seq * steps / seconds, "best_s": fastest step, ...}

    python3 tests/golden/bench_train_torch.py --model DIR --seq 2048 --batch 4 --steps 5 --device cuda
"""
import argparse
import contextlib
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--experts", default="grouped_mm", help="experts implementation (transformers >= 5)")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM
    dev = torch.device(args.device)
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, experts_implementation=args.experts)
    except (TypeError, ValueError):
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else contextlib.nullcontext
    V, B, S = model.config.vocab_size, args.batch, args.seq
    ids = ((7 + 7919 * torch.arange(B * S, dtype=torch.long)) % V).view(B, S).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with amp():
            logits = model(input_ids=ids).logits
        lp = torch.log_softmax(logits[:, :-1].float(), -1)
        loss = -lp.gather(2, ids[:, 1:, None]).mean()
        loss.backward()
        opt.step()
        return float(loss)

    step()
    times = []
    for _ in range(args.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"bench": "train", "tok_s": round(B * S * len(times) / sum(times), 1), "best_s": round(min(times), 4),
                      "batch": B, "seq": S, "device": args.device, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
