#!/usr/bin/env python3
"""Chat-template golden outputs from transformers' apply_chat_template.

Templates (tests/fixtures/tokenizer/templates/*.jinja, verbatim copies of the
chat_template strings of the Hub tokenizer_config.json files):
  deepseek-r1   DeepSeek-R1 family (the R1-Distill revision; generation prompt
                ends with <think>\\n)
  deepseek-v3   from tests/fixtures/tokenizer/deepseek-v3/tokenizer_config.json
  qwen2.5       Qwen2.5-Instruct
  llama3        Llama-3-Instruct
  features      written for the tests: the Jinja constructs and whitespace rules above,
                one by one (trim_blocks, lstrip_blocks, loop.*, filters, slices, methods)
For each template, conversation and add_generation_prompt in (True, False),
tests/fixtures/tokenizer/chat/cases.json records the text transformers renders
(tokenize=False), with the special tokens passed as template variables.

usage: python3 tests/golden/make_chat_golden.py   (pip install transformers jinja2)
"""
import json
import os

import transformers
from transformers import PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures", "tokenizer")

SPECIALS = {
    "deepseek-r1": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
    "deepseek-v3": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
    "qwen2.5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "features": {"bos_token": "<s>", "eos_token": "</s>"},
}

U = {"role": "user", "content": "What is 2+2?"}
CONVS = [
    [U],
    [{"role": "system", "content": "You are a helpful assistant."}, U],
    [U, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
    [{"role": "system", "content": "Reason step by step."}, U,
     {"role": "assistant", "content": "<think>\nadd 2 and 2\n</think>\n\nThe answer is 4."},
     {"role": "user", "content": "Now 10*10?"}],
    [{"role": "system", "content": "first system"}, {"role": "system", "content": "second system"}, U],
    [{"role": "user", "content": "  padded with spaces\n\n and newlines \n"},
     {"role": "assistant", "content": "\tTabs, ünïcödé, 中文, emoji 🙂, quotes \"'\\ and {{ braces }} {% raw %}\n"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "Solve: $x^2 = 4$. Please reason step by step, and put your final answer within \\boxed{}."}],
    [U, {"role": "assistant", "content": "4"}],
]
TOOL_CONVS = [  # templates with tool support
    [U, {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "add", "arguments": "{\"a\": 2, \"b\": 2}"}}]},
     {"role": "tool", "content": "4"}, {"role": "assistant", "content": "It is 4."}],
]


def main():
    base = os.path.join(FIX, "tiny", "tokenizer.json")
    cases = []
    for name, sp in SPECIALS.items():
        path = os.path.join(FIX, "templates", name + ".jinja")
        if name == "deepseek-v3":
            tpl = json.load(open(os.path.join(FIX, "deepseek-v3", "tokenizer_config.json"), encoding="utf-8"))["chat_template"]
            with open(path, "w", encoding="utf-8") as f:
                f.write(tpl)
        tpl = open(path, encoding="utf-8").read()
        tok = PreTrainedTokenizerFast(tokenizer_file=base, chat_template=tpl, **sp)
        convs = CONVS + (TOOL_CONVS if name not in ("llama3", "features") else [])
        for conv in convs:
            for gen in (True, False):
                try:
                    out = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                except Exception as e:  # a template that refuses a conversation: we must fail too
                    out = None
                    print(name, "raises:", type(e).__name__, str(e)[:80])
                cases.append({"template": name, "vars": sp, "add_generation_prompt": gen, "messages": conv,
                              "expected": out})
    os.makedirs(os.path.join(FIX, "chat"), exist_ok=True)
    with open(os.path.join(FIX, "chat", "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
    print(len(cases), "cases written")


if __name__ == "__main__":
    main()
