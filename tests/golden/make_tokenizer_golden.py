#!/usr/bin/env python3
"""Golden token ids from HF tokenizers for tests/tokenizer/test_tokenizer_golden.c.

Corpora (the C test builds the same samples in the same order):
  gsm8k     shared/data/gsm8k-test.jsonl: each row's "question", then "answer"
  math500   shared/data/math500-test.jsonl: "problem", then "solution"
  humaneval shared/data/humaneval.jsonl: "prompt", then "canonical_solution"
  stress    tests/fixtures/tokenizer/stress.txt (written here): records separated
            by b"\\n\\x1e\\n"; bytes that are not UTF-8 are decoded with
            errors="replace" (what a Python caller hands HF; our encoder does the same)

For each tokenizer directory under tests/fixtures/tokenizer/ and each corpus,
golden/<tok>.<corpus>.ids holds one line per sample:
  RT N HASH [ID ...]
RT is 1 when HF's decode(encode(text, add_special_tokens=False)) == text, N the
number of ids of encode(text) (add_special_tokens=True), HASH the FNV-1a 64 hash
(hex) of those ids as little-endian uint32. The ids themselves are written for
the real DeepSeek-V3 vocabulary; the other tokenizers' lines carry the count and
hash only, to keep the fixtures small.

golden/<tok>.decode holds "ID ID ...<TAB>HEX" lines: HF decode of random id
sequences (split characters, specials), HEX the UTF-8 of the text.

usage: python3 tests/golden/make_tokenizer_golden.py   (pip install tokenizers==0.23.3)
"""
import json
import os
import random
import struct

import tokenizers
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures", "tokenizer")
SHARED = os.path.join(ROOT, "..", "..", "shared", "data")
TOKS = ["deepseek-v3", "tiny", "gpt2-style", "qwen2-style", "llama3-style", "misc-style"]
SEP = b"\n\x1e\n"


def jsonl_samples(name, fields):
    out = []
    for line in open(os.path.join(SHARED, name), encoding="utf-8"):
        row = json.loads(line)
        out += [row[f] for f in fields]
    return out


def stress_records():
    r = random.Random(1234)
    recs = [
        "Hello world! It's a test: don't, can't, WON'T, I'M, they'll, we'd, y'all've.",
        "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🇫🇷🇯🇵 flags, ❤️‍🔥 heart on fire, 🧑🏿‍🚀",
        "中文测试：我们今天学习数学。日本語のテキストとカタカナ、ひらがな。한국어 텍스트입니다.",
        "مرحبا بالعالم، هذا اختبار للنص العربي ١٢٣٤٥٦٧٨٩٠. שלום עולם. नमस्ते दुनिया",
        "e\u0301 a\u0300\u0316 Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o combining: n\u0303 o\u0308 \u1100\u1161\u11a8",
        "12345678901234567890123456789012345678901234567890 3.14159265358979 1,000,000 -42 1e-10 ½ ² ٣ ⅷ",
        "spaces:" + " " * 100 + "end\ttabs\t\t\t\tend\r\n\r\nCRLF\n\n\n\nnewlines \u00a0nbsp\u3000ideo\u2028ls\u2029ps\u0085nel\u200bzwsp",
        "   leading spaces and trailing spaces   ",
        "\n\n\n",
        " ",
        "",
        "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\nI add.\n</think> 4<｜end▁of▁sentence｜>",
        "text<think>inside</think>more<answer>42</answer> <|im_start|>user\nhi<|im_end|> <|begin_of_text|>x<|eot_id|>",
        "partial <｜User <think <|im_start| <answer </answer>> <<think>> <｜▁pad▁｜>",
        "a <mask> b  <mask>  c answer: 7 ANSWER: 8 Total Totally subTotal",
        "ﬁnance ① ＡＢＣ ℌ ㎏ Ⅻ ﬀ ǅ ẞ İstanbul ΣΑΣ",
        "def f(x):\n    return x**2 + 3*x - 1  # comment\n\n\nclass A:\n\tpass\n",
        "$\\frac{a}{b} + \\sqrt{x^2+y^2} = \\boxed{42}$ \\begin{align} x &= 1 \\\\ y &= 2 \\end{align}",
        "!!!???...,,,;;;:::---===+++***///\\\\\\|||@@@###$$$%%%^^^&&&((()))[[[]]]{{{}}}~~~```'''\"\"\"",
        "a" * 3000,
        "ab" * 700 + " " + "x1" * 300,
        " " * 5000,
        "\u0000nul\u0001ctl\u007fdel\u001b[0m",
        "tail space ",
        "x" + " " * 20000 + "y " + "z" * 20000 + "\n" * 5000 + "!" * 7000 + "1" * 9000 + "ab " * 3000,
        "ⓐⓑⓒ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 ＨＥＬＬＯ ｗｏｒｌｄ",
    ]
    for i in range(40):  # random code points from several blocks, fixed seed
        blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x600, 0x6ff),
                  (0x900, 0x97f), (0x3040, 0x30ff), (0x4e00, 0x4fff), (0xac00, 0xad00), (0x1f300, 0x1f6ff),
                  (0x2000, 0x206f), (0x300, 0x36f), (0xfe00, 0xfe0f), (0x10000, 0x100ff)]
        s = []
        for _ in range(r.randint(1, 60)):
            a, b = r.choice(blocks)
            s.append(chr(r.randint(a, b)) if r.random() < 0.85 else r.choice([" ", "\n", "  ", "\t", "1", "22", "."]))
        recs.append("".join(s))
    out = [x.encode("utf-8", "surrogatepass") for x in recs]
    out += [b"bad \xff byte", b"\xc3\x28 bad pair", b"truncated \xe2\x82", b"\xed\xa0\x80 surrogate",
            b"overlong \xc0\xaf \xe0\x80\xaf", b"\xf4\x90\x80\x80 too big", b"\x80\x80 lone cont",
            b"mixed \xe4\xb8\xad\xff\xe6\x96\x87 end", b"\xf0\x9f\x98", b"ok \xf0\x9f\x98\x80\xf0\x9f end"]
    return out


def fnv(ids):
    h = 0xcbf29ce484222325
    for b in struct.pack("<%dI" % len(ids), *ids):
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def main():
    recs = stress_records()
    with open(os.path.join(FIX, "stress.txt"), "wb") as f:
        f.write(SEP.join(recs))
    corpora = {
        "gsm8k": jsonl_samples("gsm8k-test.jsonl", ["question", "answer"]),
        "math500": jsonl_samples("math500-test.jsonl", ["problem", "solution"]),
        "humaneval": jsonl_samples("humaneval.jsonl", ["prompt", "canonical_solution"]),
        "stress": [b.decode("utf-8", "replace") for b in recs],
    }
    gold = os.path.join(FIX, "golden")
    os.makedirs(gold, exist_ok=True)
    for name in TOKS:
        tok = Tokenizer.from_file(os.path.join(FIX, name, "tokenizer.json"))
        for corpus, texts in corpora.items():
            full = name == "deepseek-v3"
            with open(os.path.join(gold, "%s.%s.ids" % (name, corpus)), "w") as f:
                for t in texts:
                    ids = tok.encode(t).ids
                    rt = int(tok.decode(tok.encode(t, add_special_tokens=False).ids, skip_special_tokens=False) == t)
                    line = "%d %d %016x" % (rt, len(ids), fnv(ids))
                    if full:
                        line += "".join(" %d" % i for i in ids)
                    f.write(line + "\n")
        r = random.Random(99)
        n = tok.get_vocab_size(with_added_tokens=True)
        with open(os.path.join(gold, "%s.decode" % name), "w") as f:
            for _ in range(300):
                ids = [r.randrange(n) for _ in range(r.randint(1, 8))]
                ids = [i for i in ids if tok.id_to_token(i) is not None]
                f.write(" ".join(map(str, ids)) + "\t" + tok.decode(ids, skip_special_tokens=False).encode().hex() + "\n")
    print("tokenizers", tokenizers.__version__, "golden written under", gold)


if __name__ == "__main__":
    main()
