#!/usr/bin/env python3
"""make_sampler_fixtures: reference kept sets and renormalised probabilities of
transformers' sampling warpers, for tests/rl/test_sampler.c.

For each case it draws fixed float32 logits, runs them through the warpers in the
order transformers' GenerationMixin._get_logits_processor appends them when
do_sample=True (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
MinPLogitsWarper, each with min_tokens_to_keep=1 as for num_beams=1; a warper is
left out exactly when generate leaves it out: T == 1, top_k == 0, top_p == 1,
min_p None), and writes softmax(processed scores): 0 for removed tokens.

Logits are redrawn until every top-p and min-p decision is at least 1e-5 away from
its threshold (float64 check), so the float32 (torch) and float64 (grpo) arithmetic
cannot disagree on the kept set; top-k ties are exact and kept on purpose.

Not part of the test suite (the test reads the committed file). Needs torch and
transformers (made with torch 2.15.0, transformers 5.23.0):

    python3 tests/golden/make_sampler_fixtures.py --out tests/fixtures/rl/sampler_warpers.txt
"""
import argparse
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

MARGIN = 1e-5

# name, V, temperature, top_k (0 off), top_p (1 off), min_p (0 off), logit scale, ties
CASES = [
    ("plain", 50, 1.0, 0, 1.0, 0.0, 2.0, False),
    ("temp0.7", 50, 0.7, 0, 1.0, 0.0, 2.0, False),
    ("topk10_t1.3", 100, 1.3, 10, 1.0, 0.0, 2.0, False),
    ("topk_ties", 40, 1.0, 6, 1.0, 0.0, 1.0, True),
    ("topk1", 30, 1.0, 1, 1.0, 0.0, 1.0, False),
    ("topk_gt_vocab", 20, 1.0, 50, 1.0, 0.0, 1.0, False),
    ("topp0.9", 200, 1.0, 0, 0.9, 0.0, 2.0, False),
    ("topp0.5_t0.6", 200, 0.6, 0, 0.5, 0.0, 1.0, False),
    ("topp0", 25, 1.0, 0, 0.0, 0.0, 1.0, False),
    ("topp0.95_big", 4096, 1.0, 0, 0.95, 0.0, 3.0, False),
    ("minp0.1", 100, 1.0, 0, 1.0, 0.1, 1.5, False),
    ("minp0.05_t1.5", 100, 1.5, 0, 1.0, 0.05, 2.0, False),
    ("minp1", 30, 1.0, 0, 1.0, 1.0, 1.0, False),
    ("topk_topp", 300, 1.0, 40, 0.8, 0.0, 2.0, False),
    ("topp_minp", 300, 0.9, 0, 0.9, 0.05, 2.0, False),
    ("all", 500, 0.8, 40, 0.95, 0.02, 2.5, False),
    ("all_hot", 64, 1.7, 20, 0.7, 0.1, 1.0, False),
    ("small_v8", 8, 0.7, 6, 0.9, 0.05, 1.0, False),
]


def warpers(t, k, p, mp):
    """The chain generate() builds for these settings (see module docstring)."""
    ws = LogitsProcessorList()
    if t != 1.0:
        ws.append(TemperatureLogitsWarper(t))
    if k != 0:
        ws.append(TopKLogitsWarper(top_k=k, min_tokens_to_keep=1))
    if p < 1.0:
        ws.append(TopPLogitsWarper(top_p=p, min_tokens_to_keep=1))
    if mp != 0.0:
        ws.append(MinPLogitsWarper(min_p=mp, min_tokens_to_keep=1))
    return ws


def margin_ok(logits, t, k, p, mp):
    """float64 distance of every top-p / min-p decision from its threshold."""
    s = logits.astype(np.float64) / t
    keep = np.ones_like(s, dtype=bool)
    if k:
        kk = min(k, len(s))
        keep &= s >= np.sort(s)[::-1][kk - 1]
    if p < 1.0:
        e = np.where(keep, np.exp(s - s.max()), 0.0)
        pr = e / e.sum()
        order = np.argsort(pr[keep])
        cum = np.cumsum(pr[keep][order])[:-1]  # the largest is always kept
        if len(cum) and np.min(np.abs(cum - (1 - p))) < MARGIN:
            return False
        idx = np.flatnonzero(keep)[order]
        rm = np.zeros_like(keep)
        rm[idx[:-1][cum <= 1 - p]] = True
        keep &= ~rm
    if mp:
        r = np.exp(s - s.max())[keep]
        if np.min(np.abs(r - mp)) < MARGIN and mp < 1.0:
            return False
    return True


def make_case(rng, V, t, k, p, mp, scale, ties):
    for _ in range(1000):
        x = (rng.standard_normal(V) * scale).astype(np.float32)
        if ties:  # several tokens share the value at the top-k threshold
            top = np.sort(x)[::-1]
            x[np.argsort(x)[::-1][k - 2 : k + 2]] = top[k - 1]
        if margin_ok(x, t, k, p, mp):
            return x
    raise SystemExit(f"could not draw logits away from the thresholds for V={V}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/rl/sampler_warpers.txt")
    ap.add_argument("--seed", type=int, default=20261123)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    lines = [
        "# made by tests/golden/make_sampler_fixtures.py with torch %s, transformers %s"
        % (torch.__version__, transformers.__version__),
        "# per case: 'case NAME V temperature top_k top_p min_p', a line of V float32 logits,",
        "# a line of V probabilities softmax(warpers(logits)) (0 = removed)",
        "cases %d" % len(CASES),
    ]
    for name, V, t, k, p, mp, scale, ties in CASES:
        x = make_case(rng, V, t, k, p, mp, scale, ties)
        scores = warpers(t, k, p, mp)(None, torch.from_numpy(x)[None, :])
        probs = torch.softmax(scores, dim=-1)[0].numpy()
        lines.append("case %s %d %.9g %d %.9g %.9g" % (name, V, t, k, p, mp))
        lines.append(" ".join("%.9g" % v for v in x))
        lines.append(" ".join("%.9g" % v for v in probs))
        print("%-14s V=%-5d kept %d" % (name, V, int((probs > 0).sum())))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
