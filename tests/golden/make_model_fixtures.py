#!/usr/bin/env python3
"""make_model_fixtures: golden numbers for the DeepSeek-V3/V2 model from transformers.

For each case it makes a checkpoint with `grpo init`, loads it in transformers'
DeepseekV3ForCausalLM / DeepseekV2ForCausalLM in float32 (eager attention, eager
experts, eval mode), and writes tests/fixtures/model/<case>.safetensors holding the
logits of the checkpoint as written, then (after a deterministic perturbation of the
norm weights and the correction bias) the logits, the loss and the gradient of
every trainable checkpoint tensor. The fixture contract is in docs/golden-fixtures.md.

It also checks, and records in the fixture metadata, the reference choices the C
model relies on: an independent float64 re-implementation of the forward pass
written from reference/deepseek-v3.md section 4 (interleaved RoPE, YaRN, softmax
mscale^2, -inf group mask, top-k normalisation) must reproduce transformers' logits.

It is not part of the test suite: the tests read the committed fixtures and never
need Python. Needs torch, transformers (5.x) and safetensors from PyPI.

    python3 tests/golden/make_model_fixtures.py --grpo build/grpo --out tests/fixtures/model
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
SEED = 1234

# case -> (config file, where it lives, B, T). "fixtures" configs are written by this
# script into --out (the V2 variant); "shared" ones come from reference/tiny-configs.
CASES = {
    "tiny-1m": ("dsv3-tiny-1m.json", "shared", 2, 16),
    "small-10m": ("dsv3-small-10m.json", "shared", 2, 16),
    "small-10m-v2": ("dsv2-small-10m.json", "fixtures", 2, 16),
    "medium-100m": ("dsv3-medium-100m.json", "shared", 2, 8),
}

FULL_GRAD_MAX = 4096     # tensors up to this many elements are stored whole
GRAD_SAMPLES = 1024      # otherwise this many samples at (j * GOLDEN) % numel
GOLDEN = 2654435761
LOGIT_COLS_ALL_MAX = 4096
LOGIT_COLS_TARGET = 2048


def log(msg):
    print(f"[make_model_fixtures] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log("ERROR: " + msg)
    sys.exit(1)


# ----------------------------------------------------------------------------
# configs and checkpoints

def make_v2_config(v3_cfg_path, out_path):
    """The V2 variant of the 10M config, as tiny-configs/README.md describes it."""
    cfg = json.loads(Path(v3_cfg_path).read_text())
    cfg.update({
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "scoring_func": "softmax",
        "topk_method": "greedy",
        "norm_topk_prob": False,
        "routed_scaling_factor": 1.0,
    })
    out_path.write_text(json.dumps(cfg, indent=1) + "\n")


def run_grpo_init(grpo, cfg_path, out_dir, seed):
    cmd = [str(grpo), "init", "--config", str(cfg_path), "--out", str(out_dir), "--seed", str(seed)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        die(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")


def self_init(cfg_path, out_dir, seed):
    """Development fallback: a checkpoint written by transformers' save_pretrained."""
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(seed)
    cfg = AutoConfig.from_pretrained(cfg_path)
    m = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    m.save_pretrained(out_dir)


def checkpoint_files(ck_dir):
    """The safetensors file(s) of a checkpoint, single or sharded with an index."""
    single = ck_dir / "model.safetensors"
    if single.exists():
        return [single]
    index = ck_dir / "model.safetensors.index.json"
    if not index.exists():
        die(f"{ck_dir}: neither model.safetensors nor model.safetensors.index.json")
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    return [ck_dir / s for s in shards]


def sha256_of(paths):
    out = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out.append(h.hexdigest() if len(paths) == 1 else f"{p.name}:{h.hexdigest()}")
    return ",".join(out)


def read_checkpoint(paths):
    from safetensors import safe_open
    tensors = {}
    for p in paths:
        with safe_open(str(p), "pt") as f:
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    return tensors


# ----------------------------------------------------------------------------
# checkpoint name <-> transformers parameter mapping

def is_mtp(name, n_layers):
    return name.startswith(f"model.layers.{n_layers}.")


def trainable_names(ck, n_layers):
    return sorted(n for n in ck if not is_mtp(n, n_layers) and not n.endswith("e_score_correction_bias"))


def hf_tensor_for(name, hf_params, moe_inter):
    """The part of a transformers parameter that holds checkpoint tensor `name`
    (a view, so the same function maps gradients). transformers 5 fuses the
    per-expert gate/up/down weights into 3-D experts.gate_up_proj [E, 2I, H]
    (gate rows first, then up) and experts.down_proj [E, H, I]."""
    parts = name.split(".")
    if ".mlp.experts." in name and parts[-1] == "weight" and parts[-3].isdigit():
        prefix = ".".join(parts[:-3])          # model.layers.L.mlp.experts
        e, proj = int(parts[-3]), parts[-2]
        if proj == "gate_proj":
            return lambda src: src[prefix + ".gate_up_proj"][e, :moe_inter, :]
        if proj == "up_proj":
            return lambda src: src[prefix + ".gate_up_proj"][e, moe_inter:, :]
        if proj == "down_proj":
            return lambda src: src[prefix + ".down_proj"][e]
        die(f"unknown expert tensor {name}")
    if name not in hf_params:
        die(f"checkpoint tensor {name} has no transformers parameter")
    return lambda src: src[name]


# ----------------------------------------------------------------------------
# deterministic inputs and perturbation (the C test reproduces these)

def batch_ids(B, T, vocab):
    return torch.tensor([[(7 + 7919 * (b * T + t) + 131 * b) % vocab for t in range(T)] for b in range(B)],
                        dtype=torch.long)


def perturbation(name, numel):
    """Values for a perturbed tensor, or None. Computed in float64 with libm, cast to f32."""
    L = len(name)
    if name.endswith("norm.weight"):
        vals = [1.0 + 0.2 * math.sin(0.7 * i + 0.1 * L) for i in range(numel)]
    elif name.endswith("e_score_correction_bias"):
        vals = [0.05 * math.cos(1.1 * i + 0.1 * L) for i in range(numel)]
    else:
        return None
    return torch.tensor(vals, dtype=torch.float64).to(torch.float32)


def perturb_checkpoint(ck):
    out = dict(ck)
    for name, t in ck.items():
        if t.dim() == 1:
            p = perturbation(name, t.numel())
            if p is not None:
                out[name] = p
    return out


def load_state_into(model, ck, n_layers, moe_inter):
    """Copy checkpoint tensors (perturbed ones) into the loaded transformers model."""
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    with torch.no_grad():
        for name, t in ck.items():
            if is_mtp(name, n_layers):
                continue
            hf_tensor_for(name, params, moe_inter)(params).copy_(t)


# ----------------------------------------------------------------------------
# independent float64 reference forward (reference/deepseek-v3.md section 4)

def yarn_inv_freq(cfg):
    d_r = cfg["qk_rope_head_dim"]
    theta = cfg["rope_theta"]
    inv = [theta ** (-(2 * i) / d_r) for i in range(d_r // 2)]
    rs = cfg.get("rope_scaling")
    if not rs:
        return torch.tensor(inv, dtype=torch.float64), 1.0
    s, L0 = rs["factor"], rs["original_max_position_embeddings"]

    def corr(r):
        return d_r * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(theta))
    low = max(math.floor(corr(rs["beta_fast"])), 0)
    high = min(math.ceil(corr(rs["beta_slow"])), d_r - 1)
    if low == high:
        high += 0.001
    out = []
    for i, f in enumerate(inv):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        out.append(f / s * ramp + f * (1 - ramp))

    def m(a):
        return 1.0 if s <= 1 else 0.1 * a * math.log(s) + 1.0
    mscale2 = m(rs["mscale_all_dim"]) ** 2
    return torch.tensor(out, dtype=torch.float64), mscale2


def rope_interleaved(x, cos, sin, half=False):
    """x [..., T, d_r] as d_r/2 complex pairs (x[2i], x[2i+1]); cos/sin [T, d_r/2].
    half=True pairs (x[i], x[i+d_r/2]) instead: the wrong convention, kept only to
    show that the comparison with transformers can tell the two apart."""
    if half:
        d = x.shape[-1] // 2
        x0, x1 = x[..., :d], x[..., d:]
        return torch.cat([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def ref_rms(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def ref_mlp(x, W, p):
    g = x @ W[p + ".gate_proj.weight"].T
    u = x @ W[p + ".up_proj.weight"].T
    return (F.silu(g) * u) @ W[p + ".down_proj.weight"].T


def ref_route(x, W, p, cfg, margins, alt):
    """Returns (weights [N,k], indices [N,k]); appends the smallest decision margin."""
    E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    logits = x @ W[p + ".gate.weight"].T
    if cfg["model_type"] == "deepseek_v2":          # softmax, greedy, no renormalisation
        s = torch.softmax(logits, dim=-1)
        top = torch.topk(s, k + 1, dim=-1).values
        margins.append((top[:, k - 1] - top[:, k]).min().item())
        idx = torch.topk(s, k, dim=-1).indices
        w = s.gather(1, idx)
        if cfg["norm_topk_prob"] != ("flip_norm_topk" in alt):
            w = w / w.sum(-1, keepdim=True)
        return w * cfg["routed_scaling_factor"], idx
    G, kg = cfg["n_group"], cfg["topk_group"]
    s = torch.sigmoid(logits)
    c = s + W[p + ".gate.e_score_correction_bias"]
    gs = c.view(-1, G, E // G).topk(2, dim=-1).values.sum(-1)
    gtop = gs.topk(kg + 1, dim=-1).values
    margins.append((gtop[:, kg - 1] - gtop[:, kg]).min().item())
    gidx = gs.topk(kg, dim=-1).indices
    keep = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, gidx, True)
    keep = keep.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
    c = c.masked_fill(~keep, float("-inf"))
    top = torch.topk(c, k + 1, dim=-1).values
    margins.append((top[:, k - 1] - top[:, k]).min().item())
    idx = torch.topk(c, k, dim=-1).indices
    w = s.gather(1, idx)
    if cfg["norm_topk_prob"] != ("flip_norm_topk" in alt):
        w = w / w.sum(-1, keepdim=True)
    return w * cfg["routed_scaling_factor"], idx


def ref_moe(x, W, p, cfg, margins, alt):
    N, H = x.shape
    w, idx = ref_route(x, W, p, cfg, margins, alt)
    out = torch.zeros_like(x)
    for n in range(N):
        for j in range(idx.shape[1]):
            e = int(idx[n, j])
            out[n] += w[n, j] * ref_mlp(x[n:n + 1], W, f"{p}.experts.{e}")[0]
    return out + ref_mlp(x, W, p + ".shared_experts")


def ref_attention(x, W, p, cfg, cos, sin, mscale2, alt):
    B, T, H = x.shape
    nh, dn, dr, dv = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    dc = cfg["kv_lora_rank"]
    if cfg.get("q_lora_rank"):
        q = ref_rms(x @ W[p + ".q_a_proj.weight"].T, W[p + ".q_a_layernorm.weight"], 1e-6) @ W[p + ".q_b_proj.weight"].T
    else:
        q = x @ W[p + ".q_proj.weight"].T
    q = q.view(B, T, nh, dn + dr).transpose(1, 2)                      # [B, nh, T, dn+dr]
    kv = x @ W[p + ".kv_a_proj_with_mqa.weight"].T                      # [B, T, dc+dr]
    c_kv = ref_rms(kv[..., :dc], W[p + ".kv_a_layernorm.weight"], 1e-6)  # latent norm eps is always 1e-6
    half = "half_rope" in alt
    k_pe = rope_interleaved(kv[..., dc:], cos, sin, half).unsqueeze(1)  # [B, 1, T, dr]
    q_pe = rope_interleaved(q[..., dn:], cos, sin, half)
    up = (c_kv @ W[p + ".kv_b_proj.weight"].T).view(B, T, nh, dn + dv).transpose(1, 2)
    k_nope, v = up[..., :dn], up[..., dn:]
    scale = (dn + dr) ** -0.5 * (1.0 if "no_mscale2" in alt else mscale2)
    s = (q[..., :dn] @ k_nope.transpose(-1, -2) + q_pe @ k_pe.transpose(-1, -2)) * scale
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v                                    # [B, nh, T, dv]
    return o.transpose(1, 2).reshape(B, T, nh * dv) @ W[p + ".o_proj.weight"].T


def ref_forward(W, cfg, ids, alt=()):
    """float64 logits [B, T, V] and the smallest routing margin seen. `alt` names
    deliberate deviations (no_mscale2, flip_norm_topk, half_rope) used only to
    show that the comparison with transformers detects each of them."""
    W = {k: v.to(torch.float64) for k, v in W.items()}
    B, T = ids.shape
    eps = cfg["rms_norm_eps"]
    inv_freq, mscale2 = yarn_inv_freq(cfg)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos, sin = ang.cos(), ang.sin()
    margins = []
    h = W["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        h = h + ref_attention(ref_rms(h, W[p + ".input_layernorm.weight"], eps), W, p + ".self_attn",
                              cfg, cos, sin, mscale2, alt)
        x = ref_rms(h, W[p + ".post_attention_layernorm.weight"], eps)
        if l < cfg["first_k_dense_replace"]:
            h = h + ref_mlp(x, W, p + ".mlp")
        else:
            h = h + ref_moe(x.reshape(B * T, -1), W, p + ".mlp", cfg, margins, alt).view(B, T, -1)
    h = ref_rms(h, W["model.norm.weight"], eps)
    return h @ W["lm_head.weight"].T, min(margins) if margins else float("inf")


# ----------------------------------------------------------------------------
# checks of transformers' own code paths for the reference choices

def check_rope_pairing(model_type):
    """HF's RoPE helper on random data must equal interleaved complex pairs."""
    g = torch.Generator().manual_seed(0)
    T, d = 5, 16
    q = torch.randn(1, 2, T, d, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, T, d, generator=g, dtype=torch.float64)
    ang = torch.rand(T, d // 2, generator=g, dtype=torch.float64) * 3
    want_q = rope_interleaved(q, ang.cos(), ang.sin())
    want_k = rope_interleaved(k, ang.cos(), ang.sin())
    if model_type == "deepseek_v3":
        from transformers.models.deepseek_v3 import modeling_deepseek_v3 as M
        emb = torch.cat([ang, ang], -1)[None]
        got_q, got_k = M.apply_rotary_pos_emb_interleave(q, k, emb.cos(), emb.sin())
        # HF-V3 stores the rotated pairs de-interleaved: [evens..., odds...]
        deint = lambda x: torch.cat([x[..., 0::2], x[..., 1::2]], -1)
        return max((got_q - deint(want_q)).abs().max().item(), (got_k - deint(want_k)).abs().max().item())
    from transformers.models.deepseek_v2 import modeling_deepseek_v2 as M
    fc = torch.polar(torch.ones_like(ang), ang)[None]
    got_q, got_k = M.apply_rotary_emb(q, k, fc)
    return max((got_q - want_q).abs().max().item(), (got_k - want_k).abs().max().item())


def attention_scalings(model):
    return sorted({float(l.self_attn.scaling) for l in model.model.layers})


# ----------------------------------------------------------------------------

def make_checkpoint(cfg_path, args, tmp, meta):
    """Step 1: the checkpoint (grpo init, checked deterministic) and its tensors."""
    ck_dir = tmp / "ck"
    if args.self_init:
        self_init(cfg_path, ck_dir, SEED)
        meta["checkpoint_source"] = "transformers save_pretrained (development mode, not grpo init)"
    else:
        run_grpo_init(args.grpo, cfg_path, ck_dir, SEED)
        meta["checkpoint_source"] = f"grpo init --seed {SEED}"
    files = checkpoint_files(ck_dir)
    meta["checkpoint_sha256"] = sha256_of(files)
    if not args.self_init and not args.skip_determinism:
        again = tmp / "ck2"
        run_grpo_init(args.grpo, cfg_path, again, SEED)
        if sha256_of(checkpoint_files(again)) != meta["checkpoint_sha256"]:
            die(f"{cfg_path.name}: two runs of grpo init --seed {SEED} wrote different checkpoints")
        shutil.rmtree(again)
        meta["grpo_init_deterministic"] = "yes"
    ck = read_checkpoint(files)
    bad = [n for n, t in ck.items() if t.dtype != torch.float32]
    if bad:
        die(f"{ck_dir}: checkpoint tensors not F32: {bad[:5]}")
    return ck_dir, ck


def load_and_verify(ck_dir, ck, cfg, meta):
    """Step 2: load in transformers; check the loading info and that every loaded
    tensor (fused experts included) equals its checkpoint tensor."""
    from transformers import AutoModelForCausalLM
    L, moe_inter = cfg["num_hidden_layers"], cfg["moe_intermediate_size"]
    model, info = AutoModelForCausalLM.from_pretrained(
        ck_dir, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager",
        output_loading_info=True)
    model.eval()
    want_cls = {"deepseek_v3": "DeepseekV3ForCausalLM", "deepseek_v2": "DeepseekV2ForCausalLM"}[cfg["model_type"]]
    if type(model).__name__ != want_cls:
        die(f"{ck_dir}: transformers built {type(model).__name__}, expected {want_cls}")
    if info["missing_keys"] or info.get("mismatched_keys") or info.get("error_msgs"):
        die(f"{ck_dir}: missing keys {sorted(info['missing_keys'])}, "
            f"mismatched {info.get('mismatched_keys')}, errors {info.get('error_msgs')}")
    unexpected = sorted(info["unexpected_keys"])
    if any(not is_mtp(k, L) for k in unexpected):
        die(f"{ck_dir}: unexpected keys outside the MTP layer: {[k for k in unexpected if not is_mtp(k, L)]}")
    meta["unexpected_keys"] = f"{len(unexpected)} (all model.layers.{L}.*, the MTP layer)"
    meta["mtp_tensors_in_checkpoint"] = str(sum(1 for n in ck if is_mtp(n, L)))

    params, bufs = dict(model.named_parameters()), dict(model.named_buffers())
    names = trainable_names(ck, L)
    covered = 0
    for n in ck:
        if is_mtp(n, L):
            continue
        src = bufs if n.endswith("e_score_correction_bias") else params
        got = hf_tensor_for(n, src, moe_inter)(src)
        if got.shape != ck[n].shape or not torch.equal(got, ck[n]):
            die(f"{ck_dir}: loaded tensor for {n} differs from the checkpoint")
        covered += ck[n].numel() if n in names else 0
    n_trainable = sum(p.numel() for p in params.values())
    if covered != n_trainable:
        die(f"{ck_dir}: checkpoint covers {covered} trainable elements, the model has {n_trainable}")
    meta["trainable_tensors"] = str(len(names))
    meta["trainable_params"] = str(n_trainable)
    return model, names


def check_reference_choices(model, cfg, meta):
    """RoPE pairing, softmax scale with mscale^2, YaRN frequencies of this transformers."""
    meta["check_rope_pairing_maxdiff"] = f"{check_rope_pairing(cfg['model_type']):.3e}"
    inv_freq, mscale2 = yarn_inv_freq(cfg)
    want = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5 * mscale2
    got = attention_scalings(model)
    if len(got) != 1 or abs(got[0] - want) > 1e-12 * want:
        die(f"transformers attention scaling {got}, expected {want} ((d_n+d_r)^-0.5 * mscale^2): "
            "this transformers lacks the mscale^2 fix; patch the reference before making fixtures")
    meta["softmax_scale"] = f"{want:.8f} (includes mscale^2 = {mscale2:.6f}; transformers applies it, no patch)"
    hf_inv = model.model.rotary_emb.inv_freq.to(torch.float64)
    meta["check_yarn_inv_freq_maxrel"] = f"{((hf_inv - inv_freq).abs() / inv_freq).max().item():.3e}"
    meta["rope_interleave"] = str(getattr(model.config, "rope_interleave", "n/a (V2: complex pairs)"))


def check_against_ref64(logits, loss, pck, cfg, ids, meta):
    """The float64 re-implementation must agree with transformers, and each
    deliberate deviation must move the logits far more than that."""
    V = cfg["vocab_size"]
    with torch.no_grad():
        ref, margin = ref_forward(pck, cfg, ids)
        ref_loss = F.cross_entropy(ref[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        diff = (logits.double() - ref).abs().max().item()
        meta["check_ref64_max_abs_logit_diff"] = f"{diff:.3e}"
        meta["check_ref64_loss_diff"] = f"{abs(loss.item() - ref_loss.item()):.3e}"
        meta["min_routing_margin"] = f"{margin:.3e}"
        meta["max_abs_logit"] = f"{logits.abs().max().item():.4f}"
        if diff > 1e-4 * max(1.0, logits.abs().max().item()):
            die(f"{cfg['model_type']}: float64 reference forward differs from transformers by {diff:.3e}")
        for alt in ("no_mscale2", "flip_norm_topk", "half_rope"):
            d = (logits.double() - ref_forward(pck, cfg, ids, (alt,))[0]).abs().max().item()
            meta[f"sensitivity_{alt}_max_abs_logit_diff"] = f"{d:.3e}"
            if d < 100 * diff:
                die(f"the comparison cannot tell {alt} apart ({d:.3e} vs {diff:.3e})")
    return ref, diff, margin


def grad_tensors(grads, names, moe_inter):
    """grad.N (whole, or 1024 samples at (j * GOLDEN) % numel) and gradnorm.N."""
    out = {}
    for n in names:
        g = hf_tensor_for(n, grads, moe_inter)(grads)
        g = g.detach().reshape(-1).float()
        out["gradnorm." + n] = g.double().norm().float().reshape(1)
        if g.numel() <= FULL_GRAD_MAX:
            out["grad." + n] = g.clone()
        else:
            idx = torch.tensor([(j * GOLDEN) % g.numel() for j in range(GRAD_SAMPLES)], dtype=torch.long)
            out["grad." + n] = g[idx].clone()
    return out


def check_noise(model, ids, logits, loss, ref, names, cfg, meta, skip_f64):
    """Bounds on the reference's own float32 noise (for choosing test tolerances):
    the same model in float64, and transformers' default grouped_mm experts + sdpa."""
    V, moe_inter = cfg["vocab_size"], cfg["moe_intermediate_size"]
    if not skip_f64:
        grads32 = {n: p.grad.clone() for n, p in model.named_parameters()}
        m64 = model.to(torch.float64)
        m64.zero_grad(set_to_none=True)
        l64 = m64(input_ids=ids).logits          # HF's loss_function casts logits to f32: CE by hand
        loss64 = F.cross_entropy(l64[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        loss64.backward()
        meta["check_hf64_max_abs_logit_diff"] = f"{(logits.double() - l64.detach()).abs().max().item():.3e}"
        meta["check_hf64_vs_ref64_max_abs_logit_diff"] = f"{(l64.detach() - ref).abs().max().item():.3e}"
        meta["check_hf64_loss_diff"] = f"{abs(loss.item() - loss64.item()):.3e}"
        g64 = {n: p.grad for n, p in m64.named_parameters()}
        worst = 0.0
        for n in names:
            a = hf_tensor_for(n, grads32, moe_inter)(grads32).double()
            b = hf_tensor_for(n, g64, moe_inter)(g64)
            worst = max(worst, ((a - b).norm() / max(b.norm().item(), 1e-30)).item())
        meta["check_hf64_worst_grad_rel_l2"] = f"{worst:.3e}"
        model = m64.to(torch.float32)
    with torch.no_grad():
        model.set_experts_implementation("grouped_mm")
        model.set_attn_implementation("sdpa")
        alt = model(input_ids=ids).logits
    meta["check_grouped_mm_sdpa_max_abs_logit_diff"] = f"{(alt - logits).abs().max().item():.3e}"


def canonicalise_header(path):
    """safetensors writes its metadata map in hash order; rewrite the header with
    the metadata keys sorted (same length) so that regenerating an unchanged
    fixture gives a byte-identical file."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
        meta = hdr.pop("__metadata__", {})
        canon = {"__metadata__": dict(sorted(meta.items())), **hdr}
        text = json.dumps(canon, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > n:
            die(f"{path}: canonical header longer than the original ({len(text)} > {n})")
        f.seek(8)
        f.write(text + b" " * (n - len(text)))   # the format allows space padding


def fixture_for_case(case, args, shared_dir):
    from safetensors.torch import save_file
    cfg_name, where, B, T = CASES[case]
    cfg_path = (Path(args.out) if where == "fixtures" else shared_dir / "reference" / "tiny-configs") / cfg_name
    cfg = json.loads(cfg_path.read_text())
    L, V, moe_inter = cfg["num_hidden_layers"], cfg["vocab_size"], cfg["moe_intermediate_size"]
    meta = {"case": case, "config": cfg_name, "B": str(B), "T": str(T), "seed": str(SEED),
            "torch": torch.__version__, "transformers": __import__("transformers").__version__,
            "dtype": "float32", "attn_implementation": "eager", "experts_implementation": "eager"}
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f"grpo-golden-{case}-"))
    try:
        ck_dir, ck = make_checkpoint(cfg_path, args, tmp, meta)                   # 1
        model, names = load_and_verify(ck_dir, ck, cfg, meta)                     # 2
        check_reference_choices(model, cfg, meta)
        ids = batch_ids(B, T, V)                                                   # 3
        cols = list(range(V)) if V <= LOGIT_COLS_ALL_MAX else list(range(0, V, math.ceil(V / LOGIT_COLS_TARGET)))
        cols = torch.tensor(cols, dtype=torch.long)
        with torch.no_grad():                                                      # 4
            init_logits = model(input_ids=ids).logits.float()
            ref0, margin0 = ref_forward(ck, cfg, ids)
        meta["check_init_ref64_max_abs_logit_diff"] = f"{(init_logits.double() - ref0).abs().max().item():.3e}"
        meta["init_max_abs_logit"] = f"{init_logits.abs().max().item():.4f}"
        meta["init_min_routing_margin"] = f"{margin0:.3e}"

        pck = perturb_checkpoint(ck)                                               # 5
        load_state_into(model, pck, L, moe_inter)
        model.zero_grad(set_to_none=True)                                          # 6
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        logits, loss = out.logits.detach().float(), out.loss.detach().float()
        ref1, ref_diff, margin1 = check_against_ref64(logits, loss, pck, cfg, ids, meta)

        tensors = {"input_ids": ids.to(torch.int32), "logit_cols": cols.to(torch.int32),   # 7
                   "init_logits": init_logits[:, :, cols].contiguous(), "logits": logits[:, :, cols].contiguous(),
                   "loss": loss.reshape(1)}
        tensors.update(grad_tensors({n: p.grad for n, p in model.named_parameters()}, names, moe_inter))
        check_noise(model, ids, logits, loss, ref1, names, cfg, meta, args.skip_f64)

        meta["loss"] = f"{loss.item():.8f}"
        meta["reference_patches"] = "none"
        out_path = Path(args.out) / f"{case}.safetensors"
        save_file(tensors, str(out_path), metadata=meta)
        canonicalise_header(out_path)
        os.chmod(out_path, 0o644)
        log(f"{case}: loss {loss.item():.6f}, ref64 diff {ref_diff:.2e}, min margin {margin1:.2e}, "
            f"{len(names)} grads, {out_path.stat().st_size / 1e6:.2f} MB, {time.time() - t0:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grpo", help="path of the grpo binary (runs `grpo init`)")
    ap.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "model"), help="fixture folder")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"), help="the shared/ folder (reference configs)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--self-init", action="store_true",
                    help="development only: make the checkpoint with transformers save_pretrained, not grpo init")
    ap.add_argument("--skip-f64", action="store_true", help="skip the float64 transformers cross-check")
    ap.add_argument("--skip-determinism", action="store_true", help="run grpo init once per case, not twice")
    args = ap.parse_args()
    if not args.self_init and not args.grpo:
        ap.error("--grpo PATH is required (or --self-init for development)")
    torch.set_num_threads(args.threads)
    import transformers
    transformers.logging.set_verbosity_error()   # the MTP keys' UNEXPECTED table; checked below instead
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = Path(args.shared)
    make_v2_config(shared / "reference" / "tiny-configs" / "dsv3-small-10m.json", out / "dsv2-small-10m.json")
    for case in args.cases.split(","):
        if case not in CASES:
            ap.error(f"unknown case {case!r}; cases: {', '.join(CASES)}")
        fixture_for_case(case, args, shared)


if __name__ == "__main__":
    main()
