#!/usr/bin/env python3
"""HF tokenizers' single-thread encode speed, for `grpo bench tokenizer`.

Reads the same samples as the C bench (every "question"/"answer",
"problem"/"solution", "prompt"/"canonical_solution" string of the JSONL files
given), encodes them without special tokens on one thread (RAYON_NUM_THREADS=1,
TOKENIZERS_PARALLELISM=false, set before the import), best of --repeat runs, both
one encode() per sample and one encode_batch() over all (the faster counts), and
prints one JSON line: {"version", "bytes", "tokens", "seconds", "mbps", "mode"}.
Exit code 3 when tokenizers is not installed.

usage: bench_tokenizer_hf.py TOKENIZER_JSON REPEAT FILE.jsonl...
"""
import json
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
try:
    import tokenizers
    from tokenizers import Tokenizer
except ImportError:
    sys.exit(3)

FIELDS = ["question", "answer", "problem", "solution", "prompt", "canonical_solution"]


def main():
    path, repeat, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    texts = []
    for f in files:
        for line in open(f, encoding="utf-8"):
            row = json.loads(line)
            texts += [row[k] for k in FIELDS if isinstance(row.get(k), str)]
    tok = Tokenizer.from_file(path)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    best = {}
    for mode in ("encode", "encode_batch"):
        for _ in range(repeat):
            t0 = time.perf_counter()
            if mode == "encode":
                n = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
            else:
                n = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
            dt = time.perf_counter() - t0
            if mode not in best or dt < best[mode][0]:
                best[mode] = (dt, n)
    mode = min(best, key=lambda m: best[m][0])
    dt, n = best[mode]
    print(json.dumps({"version": tokenizers.__version__, "bytes": nbytes, "tokens": n, "seconds": dt,
                      "mbps": nbytes / dt / 1e6, "mode": mode}))


if __name__ == "__main__":
    main()
