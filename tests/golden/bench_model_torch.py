#!/usr/bin/env python3
"""bench_model_torch: PyTorch CPU tokens/s of the transformers DeepSeek-V3/V2 model.

The reference side of `grpo bench model`: builds the model of CONFIG in float32 with
random weights, runs forward, and forward+backward of the next-token cross-entropy
(labels = input ids), in eager mode (no torch.compile), and prints one JSON object
per shape:

  {"shape": "BxT", "threads": N, "fwd_tok_s": ..., "fwdbwd_tok_s": ...,
   "impl": "ATTN/EXPERTS", "iters": K, "impls": {"ATTN/EXPERTS": {"fwd_tok_s": ..., "fwdbwd_tok_s": ...}, ...}}

fwd_tok_s / fwdbwd_tok_s are those of the fastest implementation tried for that
shape (so a ratio against them is against the best eager configuration a user of
transformers would pick); `impls` lists every one tried. Implementations are
ATTN/EXPERTS pairs: attention eager or sdpa, experts eager (a loop over the hit
experts) or grouped_mm / batched_mm (transformers' fused-expert kernels; grouped_mm
is transformers' default). The default tries sdpa/grouped_mm and eager/grouped_mm:
on this CPU eager experts were 1.1-2.3x slower for forward+backward and
batched_mm several times slower (name them in --impls to see).
Warm-up runs are not timed. tokens/s = B*T / seconds per call, taking the fastest
of the timed calls (best-of-K, as timeit does: on a shared machine the minimum is
the least disturbed estimate).

Bounded in time: --budget S seconds in all (default 120). Each measurement stops
early (after at least one timed call) when its share of the budget is used; once
the budget is spent, the remaining implementations are skipped (the first one is
always measured, so every shape gets a line); "iters" is the fewest timed calls
behind a number. A run still going at 3 x budget + 30 s is aborted (exit 1).

    python3 tests/golden/bench_model_torch.py --config ../shared/reference/tiny-configs/dsv3-small-10m.json \
        --shapes 1x128,4x128,8x256 --threads 1 --iters 3
"""
import argparse
import json
import signal
import sys
import time

import torch

DEFAULT_IMPLS = "sdpa/grouped_mm,eager/grouped_mm"


def parse_shapes(s):
    out = []
    for part in s.split(","):
        b, _, t = part.strip().lower().partition("x")
        if not b.isdigit() or not t.isdigit() or int(b) < 1 or int(t) < 2:
            raise argparse.ArgumentTypeError(f"bad shape {part!r}: want BxT, e.g. 4x128")
        out.append((int(b), int(t)))
    return out


def build_model(config_path, seed):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.from_pretrained(config_path)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.train()   # the training forward, as GRPO runs it (attention_dropout is 0.0)
    return model, cfg.vocab_size


def time_calls(fn, warmup, iters, deadline):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return min(times), len(times)


def bench_impl(model, ids, iters, warmup, deadline):
    def fwd():
        with torch.no_grad():
            model(input_ids=ids)

    def fwdbwd():
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    ntok = ids.numel()
    now = time.perf_counter()
    t_f, n_f = time_calls(fwd, warmup, iters, now + (deadline - now) / 3)
    t_b, n_b = time_calls(fwdbwd, warmup, iters, deadline)
    return {"fwd_tok_s": round(ntok / t_f, 1), "fwdbwd_tok_s": round(ntok / t_b, 1), "iters": min(n_f, n_b)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="config.json of the model (a tiny config)")
    ap.add_argument("--shapes", type=parse_shapes, default=parse_shapes("1x128,4x128,8x256"),
                    help="comma-separated BxT list (default 1x128,4x128,8x256)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per measurement (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls per measurement (default 1)")
    ap.add_argument("--impls", default=DEFAULT_IMPLS,
                    help=f"ATTN/EXPERTS implementations to try (default {DEFAULT_IMPLS})")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds for the whole run (default 120)")
    ap.add_argument("--seed", type=int, default=0, help="weight init seed (default 0)")
    args = ap.parse_args()
    if args.threads < 1 or args.iters < 1 or args.warmup < 0 or args.budget <= 0:
        ap.error("--threads and --iters must be >= 1, --warmup >= 0, --budget > 0")
    impls = [tuple(x.split("/")) for x in args.impls.split(",")]
    if any(len(x) != 2 for x in impls):
        ap.error("--impls: want ATTN/EXPERTS pairs, e.g. sdpa/grouped_mm")

    start = time.perf_counter()
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(f"bench_model_torch: aborted after {3 * args.budget + 30:.0f} s"))
    signal.alarm(int(3 * args.budget + 30))
    torch.set_num_threads(args.threads)
    model, vocab = build_model(args.config, args.seed)
    n_meas = len(args.shapes) * len(impls)
    for si, (B, T) in enumerate(args.shapes):
        g = torch.Generator().manual_seed(1000 + si)
        ids = torch.randint(0, vocab, (B, T), generator=g)
        res, skipped = {}, []
        for ii, (attn, experts) in enumerate(impls):
            left = args.budget - (time.perf_counter() - start)
            if ii > 0 and left <= 0:
                skipped.append(f"{attn}/{experts}")
                continue
            model.set_attn_implementation(attn)
            model.set_experts_implementation(experts)
            share = max(left, 0.0) / (n_meas - (si * len(impls) + ii))
            res[f"{attn}/{experts}"] = bench_impl(model, ids, args.iters, args.warmup, time.perf_counter() + share)
        best_f = max(res, key=lambda k: res[k]["fwd_tok_s"])
        best_b = max(res, key=lambda k: res[k]["fwdbwd_tok_s"])
        print(json.dumps({"shape": f"{B}x{T}", "threads": args.threads,
                          "fwd_tok_s": res[best_f]["fwd_tok_s"], "fwdbwd_tok_s": res[best_b]["fwdbwd_tok_s"],
                          "impl": best_b, "iters": min(r["iters"] for r in res.values()), "impls": res,
                          "skipped": skipped}),
              flush=True)
    print(f"bench_model_torch: {time.perf_counter() - start:.1f} s, torch {torch.__version__}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
