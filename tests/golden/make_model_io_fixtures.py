#!/usr/bin/env python3
"""Reference numbers for tests/model_io (config, safetensors, FP8), made with
the reference implementations: transformers' YaRN rope init, PyTorch's
float8_e4m3fn / bfloat16 / float16 casts, and the safetensors library.

Usage (needs torch, transformers, safetensors, huggingface_hub from PyPI):
    python3 tests/golden/make_model_io_fixtures.py            # writes tests/fixtures/model/io/
    python3 tests/golden/make_model_io_fixtures.py --grpo build/grpo
        also runs `grpo init` and records that transformers loads the result (init_loads.txt)
    python3 tests/golden/make_model_io_fixtures.py --check-init DIR
        loads a `grpo init` checkpoint DIR in transformers and prints missing /
        unexpected keys and a logits checksum (the test suite never runs this).

Hand-written inputs (not made here): tests/fixtures/model/deepseek-v3-671b-config.json and
io/deepseek-v2-lite-config.json, copied from the tables of reference/deepseek-v3.md §2.1.

Outputs (all small, committed):
    dsv2-small-10m.json  the V2 variant of dsv3-small-10m (tiny-configs/README.md)
    rope_yarn.txt        per config: inv_freq from transformers' _compute_yarn_parameters
                         (float32 bits), attention_factor, the softmax scale of
                         DeepseekV{2,3}Attention.scaling (tiny configs only)
    e4m3_codes.txt       the 256 float8_e4m3fn codes as float32 bits
    fp8_block.safetensors  F8_E4M3 weight [136, 260] + F32 weight_scale_inv [2, 3]
                         and the PyTorch dequantised result "expected" (F32)
    dtypes.safetensors   the same values as F32, BF16, F16 (torch casts, incl.
                         ties, subnormals, overflow) written by the safetensors library
    hf-saved-*.json      tiny-1m and the V2 variant as transformers' save_pretrained writes them
    sharded/             a 3-shard checkpoint written by huggingface_hub.save_torch_state_dict
"""
import argparse
import json
import math
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "model", "io")
SHARED = os.path.join(ROOT, "..", "shared", "reference", "tiny-configs")


def f32bits(x):
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def hf_config(path):
    from transformers import DeepseekV2Config, DeepseekV3Config
    d = json.load(open(path))
    cls = DeepseekV2Config if d["model_type"] == "deepseek_v2" else DeepseekV3Config
    return cls.from_dict(d)


def v2_variant():
    """dsv3-small-10m changed to V2 gating as tiny-configs/README.md says."""
    c = json.load(open(os.path.join(SHARED, "dsv3-small-10m.json")))
    c.update(architectures=["DeepseekV2ForCausalLM"], model_type="deepseek_v2", scoring_func="softmax",
             topk_method="greedy", norm_topk_prob=False, routed_scaling_factor=1.0)
    json.dump(c, open(os.path.join(OUT, "dsv2-small-10m.json"), "w"), indent=1)


def rope_fixture():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    configs = [
        ("dsv3-tiny-1m", os.path.join(SHARED, "dsv3-tiny-1m.json"), True),
        ("dsv3-small-10m", os.path.join(SHARED, "dsv3-small-10m.json"), True),
        ("dsv3-medium-100m", os.path.join(SHARED, "dsv3-medium-100m.json"), False),
        ("dsv2-small-10m", os.path.join(OUT, "dsv2-small-10m.json"), True),
        ("deepseek-v3-671b", os.path.join(ROOT, "tests", "fixtures", "model", "deepseek-v3-671b-config.json"), False),
        ("deepseek-v2-lite", os.path.join(OUT, "deepseek-v2-lite-config.json"), False),
    ]
    lines = ["# name n attention_factor softmax_scale(-1 = not instantiated) then n float32 bit patterns (hex)"]
    for name, path, build in configs:
        cfg = hf_config(path)
        inv, attn = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
        scale = -1.0
        if build:  # instantiate the attention module to read its scaling
            if cfg.model_type == "deepseek_v2":
                from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Attention as A
            else:
                from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention as A
            scale = float(A(cfg, layer_idx=0).scaling)
        inv = inv.float().tolist()
        lines.append(f"{name} {len(inv)} {attn!r} {scale!r} " + " ".join(f"{f32bits(v):08x}" for v in inv))
        print(f"rope {name}: attention_factor {attn:.7g} scale {scale:.7g}")
    open(os.path.join(OUT, "rope_yarn.txt"), "w").write("\n".join(lines) + "\n")


def hf_saved_configs():
    """The tiny configs as transformers v5 writes them (rope_parameters, dtype, head_dim)."""
    import tempfile
    for name, path in [("tiny-1m", os.path.join(SHARED, "dsv3-tiny-1m.json")),
                       ("dsv2-small-10m", os.path.join(OUT, "dsv2-small-10m.json"))]:
        with tempfile.TemporaryDirectory() as d:
            hf_config(path).save_pretrained(d)
            text = open(os.path.join(d, "config.json")).read()
        open(os.path.join(OUT, f"hf-saved-{name}.json"), "w").write(text)


def e4m3_fixture():
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    lines = [f"{i} {f32bits(v):08x}" for i, v in enumerate(codes.tolist())]
    open(os.path.join(OUT, "e4m3_codes.txt"), "w").write("# code float32_bits (torch.float8_e4m3fn -> float32)\n" +
                                                         "\n".join(lines) + "\n")


def fp8_block_fixture():
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(7)
    R, C = 136, 260  # 2 x 3 blocks of 128, the last row and column blocks partial
    w = (torch.randn(R, C, generator=g) * 200).clamp(-448, 448).to(torch.float8_e4m3fn)
    s = torch.rand(2, 3, generator=g) * 0.01 + 1e-4
    exp = w.float() * s.repeat_interleave(128, 0)[:R].repeat_interleave(128, 1)[:, :C]
    save_file({"w.weight": w, "w.weight_scale_inv": s, "expected": exp}, os.path.join(OUT, "fp8_block.safetensors"),
              metadata={"format": "pt"})


def dtypes_fixture():
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(3)
    special = [0.0, -0.0, 1.0, -2.5, 65504.0, 65520.0, 70000.0, 6e-8, 3e-8, 1e-5, 5.96e-8, 1e-40, 3.4e38,
               float("inf"), float("-inf"), 1.00390625, 1.01171875, 1.0009765625, 1.0029296875]
    x = torch.cat([torch.tensor(special), torch.randn(1000, generator=g) * torch.logspace(-9, 6, 1000)])
    save_file({"f32": x, "bf16": x.to(torch.bfloat16), "f16": x.to(torch.float16),
               "bf16_as_f32": x.to(torch.bfloat16).float(), "f16_as_f32": x.to(torch.float16).float()},
              os.path.join(OUT, "dtypes.safetensors"), metadata={"format": "pt"})


def sharded_fixture():
    from huggingface_hub import save_torch_state_dict
    d = os.path.join(OUT, "sharded")
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    g = torch.Generator().manual_seed(11)
    sd = {f"t{i:02d}": torch.randn(40, 50, generator=g) for i in range(6)}
    sd["h.bf16"] = torch.randn(30, generator=g).to(torch.bfloat16)
    save_torch_state_dict(sd, d, max_shard_size=20000)
    exp = {k: v.float() for k, v in sd.items()}
    from safetensors.torch import save_file
    save_file({"expect." + k: v for k, v in exp.items()}, os.path.join(OUT, "sharded_expected.safetensors"))
    print("sharded:", sorted(os.listdir(d)))


def check_init(path):
    """Load a grpo-init checkpoint in transformers: report missing/unexpected keys and logits."""
    from transformers import AutoModelForCausalLM
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, dtype=torch.float32)
    print("missing:", info["missing_keys"])
    print("unexpected:", info["unexpected_keys"])
    ids = torch.arange(8).unsqueeze(0) % model.config.vocab_size
    with torch.no_grad():
        logits = model(ids).logits
    print("logits shape", tuple(logits.shape), "sum %.6f" % logits.sum().item(), "abs-sum %.6f" % logits.abs().sum().item())


def record_init_loads(grpo):
    """grpo init -> transformers from_pretrained for tiny-1m (bf16, with MTP) and the
    V2 variant (f32, sharded, no MTP); the record is committed as init_loads.txt."""
    import subprocess
    import tempfile
    from transformers import AutoModelForCausalLM
    lines = ["# grpo init checkpoints loaded by transformers %s (from make_model_io_fixtures.py --grpo)"
             % __import__("transformers").__version__]
    runs = [("dsv3-tiny-1m", os.path.join(SHARED, "dsv3-tiny-1m.json"), ["--dtype", "bf16"]),
            ("dsv2-small-10m", os.path.join(OUT, "dsv2-small-10m.json"), ["--no-mtp", "--max-shard-mb", "10"])]
    for name, cfg, extra in runs:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "ck")
            subprocess.run([grpo, "init", "--config", cfg, "--out", out, "--seed", "1"] + extra, check=True)
            model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True, dtype=torch.float32)
            unexpected = sorted(info["unexpected_keys"])
            mtp = [k for k in unexpected if k.startswith(f"model.layers.{model.config.num_hidden_layers}.")]
            lines.append(f"{name} {' '.join(extra)}: class {type(model).__name__}, missing {len(info['missing_keys'])}, "
                         f"unexpected {len(unexpected)} ({len(mtp)} of them the MTP layer, which transformers skips)")
            assert not info["missing_keys"] and len(mtp) == len(unexpected)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    open(os.path.join(OUT, "init_loads.txt"), "w").write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-init", metavar="DIR")
    ap.add_argument("--grpo", metavar="BIN", help="also record that grpo-init checkpoints load in transformers")
    a = ap.parse_args()
    if a.check_init:
        check_init(a.check_init)
        return
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    v2_variant()
    rope_fixture()
    hf_saved_configs()
    e4m3_fixture()
    fp8_block_fixture()
    dtypes_fixture()
    sharded_fixture()
    if a.grpo:
        record_init_loads(a.grpo)
    for root, _, files in os.walk(OUT):  # the safetensors library writes 0600
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


if __name__ == "__main__":
    main()
