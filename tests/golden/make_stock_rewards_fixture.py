#!/usr/bin/env python3
"""make_stock_rewards_fixture: reference values for the stock reward scripts.

The reward functions below are copied from their reference implementations
(only the batching over lists is removed):
  format_reward, tag_count_reward, get_cosine_scaled_reward: huggingface/open-r1
      src/open_r1/rewards.py @ 1416fa0 (cosine uses math-verify as open-r1 does)
  soft overlong punishment: TRL trl/rewards get_soft_overlong_punishment (DAPO)
  countdown compute_score: Jiayi-Pan/TinyZero verl/utils/reward_score/countdown.py
It evaluates them on a fixed set of completions and writes one JSON object per
(script, case): script, row (dataset fields), completion, completion_tokens,
want (the reference value). tests/rewards/test_stock.c runs rewards/*.lua on
the same inputs.

    pip install math-verify==0.9.0
    python3 tests/golden/make_stock_rewards_fixture.py --out tests/fixtures/rewards/stock_rewards.jsonl
"""
import argparse
import json
import math
import random
import re

from math_verify import LatexExtractionConfig, parse, verify
from latex2sympy2_extended import NormalizationConfig


# --- open-r1 src/open_r1/rewards.py -------------------------------------------
def format_reward(content):
    pattern = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"
    return 1.0 if re.match(pattern, content, re.DOTALL | re.MULTILINE) else 0.0


def tag_count_reward(text):
    count = 0.0
    if text.count("<think>\n") == 1:
        count += 0.25
    if text.count("\n</think>\n") == 1:
        count += 0.25
    if text.count("\n<answer>\n") == 1:
        count += 0.25
    if text.count("\n</answer>") == 1:
        count += 0.25
    return count


def cosine_scaled_reward(content, sol, min_value_wrong=-1.0, max_value_wrong=-0.5,
                         min_value_correct=0.5, max_value_correct=1.0, max_len=1000):
    gold_parsed = parse(sol, extraction_mode="first_match")
    if len(gold_parsed) == 0:
        return None  # open-r1 returns 1.0 here; the grpo script returns nil (documented)
    answer_parsed = parse(content, extraction_config=[LatexExtractionConfig(
        normalization_config=NormalizationConfig(nits=False, malformed_operators=False, basic_latex=True,
                                                 boxed="all", units=True),
        boxed_match_priority=0, try_extract_without_anchor=False)], extraction_mode="first_match")
    is_correct = verify(gold_parsed, answer_parsed)
    gen_len = len(content)
    progress = gen_len / max_len
    cosine = math.cos(progress * math.pi)
    if is_correct:
        min_value, max_value = min_value_correct, max_value_correct
    else:
        min_value, max_value = max_value_wrong, min_value_wrong
    return float(min_value + 0.5 * (max_value - min_value) * (1.0 + cosine))


# --- TRL get_soft_overlong_punishment ------------------------------------------
def soft_overlong(completion_length, max_completion_len=20480, soft_punish_cache=4096):
    if completion_length <= max_completion_len - soft_punish_cache:
        return 0.0
    elif max_completion_len - soft_punish_cache < completion_length <= max_completion_len:
        return (max_completion_len - soft_punish_cache - completion_length) / soft_punish_cache
    return -1.0


# --- TinyZero verl/utils/reward_score/countdown.py ------------------------------
def cd_extract_solution(solution_str):
    answer_pattern = r'<answer>(.*?)</answer>'
    matches = list(re.finditer(answer_pattern, solution_str, re.DOTALL))
    if matches:
        return matches[-1].group(1).strip()
    return None


def cd_validate_equation(equation_str, available_numbers):
    try:
        numbers_in_eq = [int(n) for n in re.findall(r'\d+', equation_str)]
        return sorted(numbers_in_eq) == sorted(available_numbers)
    except Exception:
        return False


def cd_evaluate_equation(equation_str):
    try:
        allowed_pattern = r'^[\d+\-*/().\s]+$'
        if not re.match(allowed_pattern, equation_str):
            raise ValueError("Invalid characters in equation.")
        return eval(equation_str, {"__builtins__": None}, {})
    except Exception:
        return None


def countdown_score(solution_str, target, numbers, format_score=0.1, score=1.0):
    equation = cd_extract_solution(solution_str)
    if equation is None:
        return 0
    if not cd_validate_equation(equation, numbers):
        return format_score
    try:
        result = cd_evaluate_equation(equation)
        if result is None:
            return format_score
        if abs(result - target) < 1e-5:
            return score
        return format_score
    except Exception:
        return format_score
# -------------------------------------------------------------------------------


FORMAT_CASES = [
    "<think>\nreason\n</think>\n<answer>\n42\n</answer>",
    "<think>\nreason\n</think>\n<answer>\n42\n</answer>\n",
    "<think>\nreason\n</think>\n<answer>\n42\n</answer> trailing",
    "<think>\nreason\n</think>\n<answer>\n42\n</answer>\ntrailing line",
    "<think>reason</think><answer>42</answer>",
    "<think>\nmulti\nline\nreasoning\n</think>\n<answer>\n\\boxed{7}\n</answer>",
    "preamble\n<think>\nreason\n</think>\n<answer>\n42\n</answer>",
    "<think>\n</think>\n<answer>\n\n</answer>",
    "<think>\nreason\n</think>\n\n<answer>\n42\n</answer>",
    "<think>\nreason\n</think>\n<answer>\n42\n</answer><think>\nmore\n</think>\n<answer>\n43\n</answer>",
    "<think>\nrépondre ü 日本\n</think>\n<answer>\n∞\n</answer>",
    "",
    "<answer>\n42\n</answer>",
    "<think>\nreason\n</think>\n<answer>\n42\n",
    "<think>\n<think>\nx\n</think>\n</think>\n<answer>\n1\n</answer>",
]


def countdown_cases(rng):
    out = []
    for _ in range(40):
        nums = [rng.randint(1, 99) for _ in range(rng.choice([3, 4]))]
        a, b, c = nums[0], nums[1], nums[2]
        target = a + b * c if len(nums) == 3 else a + b * c - nums[3]
        good = "%d + %d * %d" % (a, b, c) + ("" if len(nums) == 3 else " - %d" % nums[3])
        variants = [
            good,
            "(%s)" % good,
            good.replace("+", "-", 1),
            good + " + 1",
            "%d + %d" % (a, b),
            "%d ** 2 + %d * %d" % (a, b, c) + ("" if len(nums) == 3 else " - %d" % nums[3]),
            good + " = %d" % target,
            "%d / 0 + %d * %d" % (a, b, c) + ("" if len(nums) == 3 else " - %d" % nums[3]),
            "-%d + %d * %d" % (a, b, c) + ("" if len(nums) == 3 else " - %d" % nums[3]),
        ]
        v = rng.choice(variants)
        comp = rng.choice(["<think>\nlet me try\n</think>\n<answer>%s</answer>",
                           "<answer>1 + 2</answer> then <answer> %s </answer>",
                           "no tags at all %s"]) % v
        out.append(({"target": target, "nums": nums}, comp))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = random.Random(7)
    rows = []
    for c in FORMAT_CASES:
        rows.append({"script": "format", "row": {}, "completion": c, "want": format_reward(c)})
        rows.append({"script": "tag_count", "row": {}, "completion": c, "want": tag_count_reward(c)})
    for L in [0, 100, 16384, 16385, 18000, 20479, 20480, 20481, 50000]:
        rows.append({"script": "overlong", "row": {}, "completion": "x", "completion_tokens": L,
                     "want": soft_overlong(L)})
    for row, comp in countdown_cases(rng):
        rows.append({"script": "countdown", "row": row, "completion": comp,
                     "want": float(countdown_score(comp, row["target"], row["nums"]))})
    for gold, ans in [("42", "42"), ("42", "41"), ("\\frac{1}{2}", "0.5"), ("\\frac{1}{2}", "\\frac{1}{3}"),
                      ("3\\sqrt{13}", "3\\sqrt{13}"), ("7", "8")]:
        for n in [0, 50, 400, 999, 1500]:
            comp = "x" * n + " The answer is $\\boxed{%s}$." % ans
            want = cosine_scaled_reward(comp, "$%s$" % gold)
            rows.append({"script": "cosine", "row": {"answer": gold}, "completion": comp, "want": want})
    with open(a.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print("wrote %d cases" % len(rows))


if __name__ == "__main__":
    main()
