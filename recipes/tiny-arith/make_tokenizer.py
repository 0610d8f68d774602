"""make_tokenizer: builds recipes/tiny-arith/tokenizer.json, the byte-level BPE of the tiny demo.

Trained with Hugging Face `tokenizers` on the demo task's own text (`grpo data arith`), with
digits split one per token (arithmetic on whole-number tokens is much harder for a tiny model)
and the special tokens the task needs. The tokenizer is committed; this script only documents
how it was made:  python3 recipes/tiny-arith/make_tokenizer.py --grpo build/grpo
Needs `pip install tokenizers`.
"""
import argparse, json, os, subprocess, tempfile

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>", "<think>", "</think>", "<answer>", "</answer>"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpo", default="build/grpo")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--vocab", type=int, default=384)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "arith.jsonl")
        subprocess.run([a.grpo, "data", "arith", "--out", data, "--n", "20000", "--seed", "99",
                        "--min-steps", "1", "--max-steps", "4", "--p-noformat", "0.3"], check=True)
        rows = [json.loads(l) for l in open(data)]
    text = []
    for r in rows:
        text += [r["question"], r["solution"], "So the answer is " + r["answer"] + "."]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text, trainer)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    cfg = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>",
           "add_bos_token": False, "model_max_length": 512, "tokenizer_class": "PreTrainedTokenizerFast"}
    json.dump(cfg, open(os.path.join(a.out, "tokenizer_config.json"), "w"), indent=1)
    enc = tok.encode(rows[0]["question"] + "\n" + rows[0]["solution"])
    print("vocab", tok.get_vocab_size(), "example tokens", len(enc.ids), enc.tokens[:40])


if __name__ == "__main__":
    main()
