#!/usr/bin/env python3
"""make_math_verify_fixture: the agreement fixture for grpo.math.

For every gold answer of MATH-500 (test) and GSM8K (test) it writes several
correct rewritings and several wrong answers (all of them for MATH-500, up to
3 + 3 for GSM8K), each embedded in a short completion ending in \\boxed{...}
(or, for half of the plain GSM8K numbers, in "#### n"), and records what math-verify (PyPI
`math-verify`) says: verify(parse(gold), parse(completion)). The C test
tests/rewards/test_math_agree.c compares grpo.math with that verdict.

    pip install math-verify==0.9.0
    python3 tests/golden/make_math_verify_fixture.py \\
        --shared ../shared --out tests/fixtures/rewards/math_verify_pairs.jsonl

Output: one JSON object per line: source, id, category (shape of the gold),
kind (correct|wrong: what the rewrite intends), transform, gold, completion,
mv (math-verify's verdict, the label the test uses). Deterministic (seeded).
"""
import argparse
import json
import random
import re
import sys
from fractions import Fraction

from math_verify import parse, verify

GSM8K_TEMPLATE = "Adding these up gives the total.\n#### %s"  # plain numbers only

TEMPLATES = [
    "So the answer is $\\boxed{%s}$.",
    "Let me check the arithmetic once more. Therefore, the final answer is: $\\boxed{%s}$",
    "<think>\nwork\n</think>\n<answer>\n\\boxed{%s}\n</answer>",
    "We get $x = 2$ first, and then the result is \\boxed{%s}",
]

NUM_RE = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")
FRAC_RE = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")


def category(g):
    s = g.replace(" ", "")
    if NUM_RE.match(s):
        return "integer" if re.match(r"^-?\d+$", s) else "decimal"
    if FRAC_RE.match(s):
        return "fraction"
    if "\\text" in s and not re.search(r"\d", s):
        return "text"
    if s.startswith("\\begin"):
        return "matrix"
    if re.match(r"^[\(\[].*,.*[\)\]]$", s) or s.startswith("\\{"):
        return "tuple_interval"
    if "=" in s:
        return "equation"
    if "\\sqrt" in s:
        return "radical"
    if "\\pi" in s:
        return "pi"
    if re.search(r"[a-zA-Z]", s.replace("\\frac", "").replace("\\dfrac", "")):
        return "expression"
    return "other"


def fmt_num(x):
    """A Fraction as the shortest plain decimal (or integer) string, or None."""
    if x.denominator == 1:
        return str(x.numerator)
    d = x.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d != 1:
        return None
    s = "%.12f" % float(x)
    return s.rstrip("0").rstrip(".")


def thousands(n):
    return "{:,}".format(n)


def bump_digit(s, rng):
    """Changes one digit of s (a wrong answer); None when s has no digit."""
    idx = [i for i, c in enumerate(s) if c.isdigit()]
    if not idx:
        return None
    i = rng.choice(idx)
    d = (int(s[i]) + rng.randint(1, 8)) % 10
    return s[:i] + str(d) + s[i + 1:]


def number_rewrites(g, rng):
    x = Fraction(g.replace(" ", "")) if not g.strip().startswith(".") else Fraction("0" + g.strip())
    good, bad = [], []
    s = fmt_num(x)
    if x.denominator == 1:
        n = x.numerator
        good.append(("decimal_point", "%d.0" % n))
        if abs(n) >= 1000:
            good.append(("thousands_sep", thousands(n)))
        good.append(("frac_scaled", "\\frac{%d}{2}" % (2 * n)))
        good.append(("unit_text", "%d \\text{ units}" % n))
        good.append(("dollar", "\\$%s" % (thousands(n) if abs(n) >= 1000 else n)))
        bad.append(("plus_one", str(n + 1)))
        bad.append(("times_ten", str(10 * n) if n else "7"))
        bad.append(("negated", str(-n) if n else "-3"))
        bad.append(("digit", bump_digit(str(n), rng)))
    else:
        good.append(("as_fraction", "\\frac{%d}{%d}" % (x.numerator, x.denominator)))
        good.append(("slash_fraction", "%d/%d" % (x.numerator, x.denominator)))
        good.append(("trailing_zero", s + "0" if "." in s else s))
        if s.startswith("0."):
            good.append(("no_leading_zero", s[1:]))
        bad.append(("plus_one", fmt_num(x + 1)))
        bad.append(("digit", bump_digit(s, rng)))
        bad.append(("negated", fmt_num(-x)))
    return good, bad


def fraction_rewrites(g, rng):
    m = FRAC_RE.match(g.replace(" ", ""))
    sign, a, b = m.group(1), int(m.group(2)), int(m.group(3))
    good, bad = [], []
    good.append(("slash", "%s%d/%d" % (sign, a, b)))
    good.append(("dfrac", "%s\\dfrac{%d}{%d}" % (sign, a, b)))
    good.append(("scaled", "%s\\frac{%d}{%d}" % (sign, 3 * a, 3 * b)))
    dec = fmt_num(Fraction(a, b))
    if dec and len(dec) < 12:
        good.append(("decimal", sign + dec))
    if a != b:
        bad.append(("reciprocal", "%s\\frac{%d}{%d}" % (sign, b, a)))
    bad.append(("numerator_plus_one", "%s\\frac{%d}{%d}" % (sign, a + 1, b)))
    bad.append(("rounded_2dp", sign + "%.2f" % (a / b)))
    bad.append(("sign_flip", ("" if sign else "-") + "\\frac{%d}{%d}" % (a, b)))
    return good, bad


def generic_rewrites(g, cat, rng):
    good, bad = [], []
    spaced = re.sub(r"\s+", "", g)
    if spaced != g:
        good.append(("no_spaces", spaced))
    good.append(("extra_spaces", " ".join(re.findall(r"\\[a-zA-Z]+|\d+(?:\.\d+)?|.", g.replace(" ", "")))))
    if "\\frac" in g:
        good.append(("dfrac", g.replace("\\frac", "\\dfrac")))
    if cat in ("radical", "pi", "expression", "other") and "," not in g:
        good.append(("times_one", "1 \\cdot \\left(%s\\right)" % g))
        bad.append(("doubled", "2\\left(%s\\right)" % g))
        bad.append(("negated", "-\\left(%s\\right)" % g))
    if cat == "text":
        inner = re.sub(r"\\text\{(.*)\}", r"\1", g)
        good.append(("plain_text", inner))
        good.append(("lower_case", g.lower()))
        bad.append(("other_text", "\\text{Nobody}"))
    if cat == "tuple_interval":
        parts = [p.strip() for p in re.split(r",(?![^{]*\})", g[1:-1])]
        if len(parts) >= 2 and parts[0] != parts[1] and not g.startswith("\\{"):
            sw = [parts[1], parts[0]] + parts[2:]
            bad.append(("swapped", g[0] + ", ".join(sw) + g[-1]))
    d = bump_digit(g, rng)
    if d and d != g:
        bad.append(("digit", d))
    return good, bad


def rewrites(g, rng):
    cat = category(g)
    if cat in ("integer", "decimal"):
        good, bad = number_rewrites(g, rng)
    elif cat == "fraction":
        good, bad = fraction_rewrites(g, rng)
    else:
        good, bad = generic_rewrites(g, cat, rng)
    good = [t for t in good if t[1] is not None]
    bad = [t for t in bad if t[1] is not None and t[1] != g]
    return cat, [("identity", g)] + good, bad


def gold_answers(shared):
    for line in open(shared + "/data/math500-test.jsonl"):
        r = json.loads(line)
        yield "math500", r["unique_id"], r["answer"]
    for i, line in enumerate(open(shared + "/data/gsm8k-test.jsonl")):
        r = json.loads(line)
        yield "gsm8k", "test/%d" % i, r["answer"].split("####")[-1].strip().replace(",", "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-good", type=int, default=3)
    ap.add_argument("--max-bad", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="only the first N gold answers")
    a = ap.parse_args()
    rng = random.Random(20261123)
    n = 0
    with open(a.out, "w") as out:
        for src, uid, g in list(gold_answers(a.shared))[: a.limit]:
            cat, good, bad = rewrites(g, rng)
            gp = parse("$\\boxed{%s}$" % g)
            if not gp:
                continue  # math-verify cannot read the gold: nothing to agree on
            # MATH-500 golds are few and varied: keep every rewrite; GSM8K: a sample
            mg, mb = (len(good), len(bad)) if src == "math500" else (a.max_good, a.max_bad)
            picks = [("correct",) + t for t in good[:mg]]
            picks += [("wrong",) + t for t in rng.sample(bad, min(mb, len(bad)))]
            for kind, transform, cand in picks:
                plain = re.match(r"^-?[\d,]*\.?\d+$", cand) is not None
                if src == "gsm8k" and plain and rng.random() < 0.5:
                    comp = GSM8K_TEMPLATE % cand
                else:
                    comp = rng.choice(TEMPLATES) % cand
                try:
                    mv = bool(verify(gp, parse(comp)))
                except Exception:
                    mv = False
                out.write(json.dumps({"source": src, "id": uid, "category": cat, "kind": kind,
                                      "transform": transform, "gold": g, "completion": comp,
                                      "mv": mv}) + "\n")
                n += 1
    print("wrote %d pairs to %s" % (n, a.out), file=sys.stderr)


if __name__ == "__main__":
    main()
