#!/usr/bin/env python3
"""bench_decode_torch: the reference side of `grpo bench decode`.

transformers' generate on the weights grpo times (--model, a folder grpo wrote), on the
same device: bf16 weights on the GPU (fp32 on the CPU), sampling at temperature 1 with
no top-k/top-p, exactly --new new tokens per row (min_new_tokens = max_new_tokens, so
EOS never ends a row early), a static cache where the model supports one. The prompts
are grpo's: token (7 + 7919 i) mod V for the i-th prompt token of the batch.

For each batch size: one untimed generate of 8 tokens (allocations, kernels), then one
timed generate. Prints one JSON line per batch size:
  {"batch": B, "tok_s": new tokens / seconds (prefill included), "seconds": ..., "cache": "static" | "dynamic"}

    python3 tests/golden/bench_decode_torch.py --model DIR --batch 1,64 --prompt 256 --new 1024 --device cuda
"""
import argparse
import json
import sys
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", default="1,64,256")
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--new", type=int, default=1024)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--experts", default="grouped_mm", help="experts implementation (transformers >= 5)")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, experts_implementation=args.experts)
    except (TypeError, ValueError):
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    model.to(dev).eval()
    V = model.config.vocab_size

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def generate(ids, n, cache):
        kw = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                  max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
        if cache == "static":
            kw["cache_implementation"] = "static"
        with torch.no_grad():
            return model.generate(ids, **kw)

    for B in [int(x) for x in args.batch.split(",")]:
        i = torch.arange(B * args.prompt, dtype=torch.long)
        ids = ((7 + 7919 * i) % V).view(B, args.prompt).to(dev)
        cache = "static"
        try:
            generate(ids, 8, cache)
        except Exception as e:  # a model without static-cache support: the default cache
            print(f"bench_decode_torch: static cache failed ({e}); dynamic cache", file=sys.stderr)
            cache = "dynamic"
            generate(ids, 8, cache)
        sync()
        t0 = time.perf_counter()
        out = generate(ids, args.new, cache)
        sync()
        dt = time.perf_counter() - t0
        made = out.shape[1] - args.prompt
        print(json.dumps({"batch": B, "tok_s": round(B * made / dt, 1), "seconds": round(dt, 4), "new": made,
                          "cache": cache, "device": args.device, "torch": torch.__version__}), flush=True)
        del out
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
