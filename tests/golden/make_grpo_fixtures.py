#!/usr/bin/env python3
"""make_grpo_fixtures: golden numbers for rl/grpo (advantages, loss, d loss / d logp)
and rl/optim (AdamW, clipping, schedules) from PyTorch re-implementations of TRL,
verl, torch.optim.AdamW, clip_grad_norm_ and transformers.get_scheduler.

The loss is copied in structure from TRL 1.16.0 `GRPOTrainer._compute_loss` and
`_generate_and_score_completions` (trl/trainer/grpo_trainer.py, nanstd from
trl/trainer/utils.py) and verl 0.9.1 `agg_loss` (verl/trainer/ppo/core_algos.py),
read from `pip download trl verl --no-deps`; neither package is imported. The
gradient is torch autograd's, in float64, from float32 inputs. The optimizer
side runs the real torch.optim.AdamW (foreach=False, the CPU default path),
torch.nn.utils.clip_grad_norm_ and transformers.get_scheduler in float32, with
HF Trainer's weight-decay grouping (Trainer.get_decay_parameter_names).

Writes tests/fixtures/rl/grpo_loss.txt and tests/fixtures/rl/optim.txt, a plain
token format read by tests/rl/test_grpo_fixture.h:
    case NAME / opt KEY VALUE / arr NAME COUNT v... / end
Not part of the test suite (the tests read the committed files, never Python).

    python3 tests/golden/make_grpo_fixtures.py --out tests/fixtures/rl
"""
import argparse
import math
from pathlib import Path

import torch
import torch.nn as nn

SEED = 20261123
GRPO_STD_EPS = 1e-4  # TRL: advantages / (std + 1e-4)


# ---------------------------------------------------------------- TRL helpers
def nanstd(tensor, dim=None, keepdim=False):
    """trl/trainer/utils.py::nanstd (Bessel, NaN with < 2 values)."""
    mean = torch.nanmean(tensor, dim=dim, keepdim=True)
    variance = torch.nanmean((tensor - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(tensor), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    variance = variance * correction
    std = torch.sqrt(variance)
    if keepdim:
        return std
    return std.squeeze(dim) if dim is not None else std.squeeze()


def trl_advantages(rewards_per_func, weights, num_generations, scale_rewards, multi):
    """_generate_and_score_completions, reward -> advantage part (single process)."""
    unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)
    if multi == "sum_then_normalize":
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        rewards[unscorable_mask] = torch.nan
        mean_grouped = torch.nanmean(rewards.view(-1, num_generations), dim=1)
        mean_grouped = mean_grouped.repeat_interleave(num_generations, dim=0)
        if scale_rewards in ["group", "none"]:
            if num_generations > 1:
                std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
                std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
            else:
                std_rewards = torch.zeros_like(rewards)
        else:
            std_rewards = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        advantages = rewards - mean_grouped
        if scale_rewards != "none":
            advantages = advantages / (std_rewards + GRPO_STD_EPS)
        is_std_zero = torch.isclose(std_rewards, torch.zeros_like(std_rewards))
    else:
        K = rewards_per_func.shape[1]
        grouped = rewards_per_func.view(-1, num_generations, K)
        mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
        std_k = nanstd(grouped, dim=1, keepdim=True) if num_generations > 1 else torch.zeros_like(mean_k)
        reward_k = ((grouped - mean_k) / (std_k + GRPO_STD_EPS)).view(-1, K)
        rewards = (reward_k * weights.unsqueeze(0)).nansum(dim=1)
        rewards[unscorable_mask] = torch.nan
        std_rewards = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        advantages = (rewards - torch.nanmean(rewards)) / (std_rewards + GRPO_STD_EPS)
        is_std_zero = torch.isclose(std_rewards, torch.zeros_like(std_rewards))
    advantages = torch.nan_to_num(advantages, nan=0.0)
    logged = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
    logged[unscorable_mask] = torch.nan
    stats = {
        "reward_mean": torch.nanmean(logged).item(),
        "reward_std": nanstd(logged).item(),
        "frac_reward_zero_std": is_std_zero.float().mean().item(),
    }
    return logged, advantages, stats


def kl_estimate(kind, logp, ref):
    """TRL's k3 (grpo_trainer.py); k1/k2 as verl's kl_penalty 'kl' and 'mse'."""
    if kind == "k3":
        return torch.exp(ref - logp) - (ref - logp) - 1
    if kind == "k1":
        return logp - ref
    return 0.5 * (logp - ref).square()


def verl_agg_loss(loss_mat, loss_mask, loss_agg_mode, batch_num_tokens=None, global_batch_size=None,
                  loss_scale_factor=None, dp_size=1):
    """verl/trainer/ppo/core_algos.py::agg_loss."""
    def masked_sum(x, m):
        return (x * m).sum()
    if loss_agg_mode == "token-mean":
        if batch_num_tokens is None:
            batch_num_tokens = loss_mask.sum()
        return masked_sum(loss_mat, loss_mask) / batch_num_tokens * dp_size
    if loss_agg_mode in ["seq-mean-token-sum", "seq-mean-token-sum-norm"]:
        seq_losses = torch.sum(loss_mat * loss_mask, dim=-1)
        seq_mask = (torch.sum(loss_mask, dim=-1) > 0).to(loss_mat.dtype)
        if global_batch_size is None:
            global_batch_size = seq_mask.sum()
        loss = masked_sum(seq_losses, seq_mask) / global_batch_size * dp_size
        if loss_agg_mode == "seq-mean-token-sum-norm":
            if loss_scale_factor is None:
                loss_scale_factor = loss_mask.shape[-1]
            loss = loss / loss_scale_factor
        return loss
    if loss_agg_mode == "seq-mean-token-mean":
        seq_mask = torch.sum(loss_mask, dim=-1)
        seq_losses = torch.sum(loss_mat * loss_mask, dim=-1) / (seq_mask + 1e-8)
        seq_mask = (seq_mask > 0).to(loss_mat.dtype)
        if global_batch_size is None:
            global_batch_size = seq_mask.sum()
        return masked_sum(seq_losses, seq_mask) / global_batch_size * dp_size
    raise ValueError(loss_agg_mode)


def trl_compute_loss(cfg, per_token_logps, old_logps, ref_logps, advantages, mask, entropies):
    """GRPOTrainer._compute_loss for grpo/bnpo/dr_grpo/dapo (train mode, one process,
    no vLLM IS, no off-policy or entropy mask), with verl's agg_loss for the verl modes.
    Returns (loss, policy_loss, per_token_kl or None, coef_1)."""
    advantages = advantages.unsqueeze(1)
    old = per_token_logps.detach() if old_logps is None else old_logps
    log_ratio = per_token_logps - old
    if cfg["is_level"] == "token":
        log_importance_weights = log_ratio
    else:
        log_importance_weights = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        log_importance_weights = log_importance_weights.unsqueeze(-1)
    coef_1 = torch.exp(log_importance_weights)
    beta = cfg["beta"]
    per_token_kl = None
    if beta != 0.0:
        per_token_kl = kl_estimate(cfg["kl"], per_token_logps, ref_logps)
        if cfg["kl_bias_correction"]:
            per_token_kl = per_token_kl * coef_1
    coef_2 = torch.clamp(coef_1, 1 - cfg["epsilon_low"], 1 + cfg["epsilon_high"])
    if cfg["delta"] > 0:
        coef_1 = torch.clamp(coef_1, max=cfg["delta"])
    per_token_loss1 = coef_1 * advantages
    per_token_loss2 = coef_2 * advantages
    per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
    if cfg.get("dual_clip_c", 0) > 0:  # verl compute_policy_loss_vanilla's dual clip
        pg_losses3 = -advantages * cfg["dual_clip_c"]
        per_token_loss = torch.where(advantages < 0, torch.min(pg_losses3, per_token_loss), per_token_loss)
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl
    # (B,1) GSPO losses broadcast to (B,T) in the masked sums below, as in TRL.
    per_token_loss = per_token_loss.expand_as(mask) if per_token_loss.shape[1] == 1 else per_token_loss
    lt, ga = cfg["loss_type"], cfg["grad_accum"]
    if lt == "grpo":
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / ga
    elif lt == "bnpo":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0) / ga
    elif lt == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * cfg["max_completion_length"]) / ga
    elif lt == "dapo":
        loss = (per_token_loss * mask).sum() / cfg["normalizer"]
    else:
        loss = verl_agg_loss(per_token_loss, mask, lt,
                             global_batch_size=cfg["num_seqs"] if cfg["num_seqs"] > 0 else None,
                             loss_scale_factor=cfg["loss_scale_factor"] if cfg["loss_scale_factor"] > 0 else None)
    policy_loss = loss
    if cfg["entropy_coef"] != 0.0 and entropies is not None:
        entropy_loss = (entropies * mask).sum() / mask.sum().clamp(min=1.0) / ga
        loss = loss - cfg["entropy_coef"] * entropy_loss
    return loss, policy_loss, per_token_kl, coef_1


def trl_clip_metrics(cfg, coef_1, advantages, mask):
    """The clip_ratio metrics of _compute_loss (coef_1 after the delta clamp, as TRL)."""
    if cfg["delta"] > 0:
        coef_1 = torch.clamp(coef_1, max=cfg["delta"])
    adv = advantages.unsqueeze(1)
    low = ((coef_1 < 1 - cfg["epsilon_low"]) & (adv < 0)).double()
    high = ((coef_1 > 1 + cfg["epsilon_high"]) & (adv > 0)).double()
    region = ((low > 0) | (high > 0)).double()

    def gmean(x):
        if x.shape[1] == 1:
            return (x.sum() / max(float(x.shape[0]), 1.0)).item()
        return ((x * mask).sum() / mask.sum().clamp(min=1.0)).item()

    def seq_mean(x):
        if x.shape[1] == 1:
            return x.squeeze(1)
        return (x * mask).sum(-1) / mask.sum(-1)

    def nanmin(t):
        t = t[~torch.isnan(t)]
        return t.min().item() if t.numel() else float("nan")

    def nanmax(t):
        t = t[~torch.isnan(t)]
        return t.max().item() if t.numel() else float("nan")

    return {
        "clip_low_mean": gmean(low), "clip_high_mean": gmean(high), "clip_region_mean": gmean(region),
        "clip_low_min": nanmin(seq_mean(low)), "clip_high_max": nanmax(seq_mean(high)),
    }


# ---------------------------------------------------------------- writing
class Writer:
    def __init__(self):
        self.lines = []

    def case(self, name):
        self.lines.append(f"case {name}")

    def opt(self, key, value):
        self.lines.append(f"opt {key} {value}")

    def arr(self, name, values, f32=False):
        if not torch.is_tensor(values):  # python floats: keep float64 (as_tensor would make float32)
            values = torch.tensor(values, dtype=torch.float64)
        vals = [float(v) for v in values.reshape(-1).tolist()]
        fmt = (lambda v: "%.9g" % v) if f32 else (lambda v: "%.17g" % v)
        out = []
        for v in vals:
            out.append("nan" if math.isnan(v) else ("inf" if v == math.inf else ("-inf" if v == -math.inf else fmt(v))))
        self.lines.append(f"arr {name} {len(vals)} " + " ".join(out))

    def end(self):
        self.lines.append("end")

    def save(self, path, header):
        path.write_text("".join(f"# {h}\n" for h in header) + "\n".join(self.lines) + "\n")


def f32(t):
    return t.to(torch.float32).to(torch.float64)


# ---------------------------------------------------------------- loss cases
def make_rewards(g, P, G, K, pattern):
    """Rewards [P*G, K] with nil (NaN) entries, one all-nil sample, and a
    zero-variance group; pattern 'binary' uses 0/1 accuracies."""
    N = P * G
    if pattern == "binary":
        r = (torch.rand(N, K, generator=g) < 0.5).double()
    else:
        r = torch.randn(N, K, generator=g, dtype=torch.float64)
    r = f32(r)
    r[0:G, 0] = 1.0  # group 0: component 0 constant ...
    if K > 1:
        r[0:G, 1:] = torch.nan  # ... and every other component nil: zero std
    r[G + 1, :] = torch.nan  # an unscorable sample
    if K > 1:
        r[G + 2, 1] = torch.nan  # a partly nil sample
    return r


def loss_case(w, g, name, cfg, P, G, L, K=2, scale="group", multi="sum_then_normalize", pattern="normal",
              truncate=True, with_old=True, with_entropy=False, num_items_factor=None):
    S = P * G
    per_func = make_rewards(g, P, G, K, pattern)
    weights = f32(torch.tensor([1.0, 0.5, 2.0][:K], dtype=torch.float64))
    logged, adv, stats = trl_advantages(per_func, weights, G, scale, multi)
    lens = torch.randint(1, L + 1, (S,), generator=g)
    lens[1] = L  # a full row
    mask = torch.zeros(S, L, dtype=torch.float64)
    for s in range(S):
        mask[s, : lens[s]] = 1.0
    truncated = torch.zeros(S, dtype=torch.float64)
    if truncate:
        truncated[2] = 1.0
        truncated[S - 1] = 1.0
    if cfg.get("mask_truncated", 0):
        mask = mask * (1 - truncated).unsqueeze(1)  # TRL mask_truncated_completions
    old = f32(-torch.rand(S, L, generator=g, dtype=torch.float64) * 3.0 - 0.01)
    new = f32(old + 0.3 * torch.randn(S, L, generator=g, dtype=torch.float64))
    ref = f32(old + 0.2 * torch.randn(S, L, generator=g, dtype=torch.float64))
    ent = f32(torch.rand(S, L, generator=g, dtype=torch.float64) * 2.0)
    if not with_old:
        old = None
    cfg = dict(cfg)
    ntok = mask.sum().item()
    cfg.setdefault("grad_accum", 1)
    # dapo normaliser = num_items_in_batch.clamp(min=1) / processes * GA / steps_per_generation
    if num_items_factor is not None:
        num_items_in_batch = max(ntok * num_items_factor, 1.0)
        steps_per_generation = cfg["grad_accum"]
        cfg["normalizer"] = num_items_in_batch / 1 * cfg["grad_accum"] / steps_per_generation
        cfg["num_items"] = cfg["normalizer"]
    else:
        cfg["normalizer"] = max(ntok, 1.0)
        cfg["num_items"] = 0.0
    x = new.clone().requires_grad_(True)
    e = ent.clone().requires_grad_(True) if with_entropy else None
    adv_in = f32(adv)  # the C loss takes float advantages: evaluate the reference on the same values
    loss, policy_loss, kl, coef_1 = trl_compute_loss(cfg, x, old, ref, adv_in, mask, e)
    loss.backward()
    w.case(name)
    for k in ["loss_type", "is_level", "epsilon_low", "epsilon_high", "delta", "dual_clip_c", "beta", "kl",
              "kl_bias_correction", "entropy_coef", "grad_accum", "max_completion_length", "num_items",
              "num_seqs", "loss_scale_factor", "mask_truncated"]:
        w.opt(k, cfg.get(k, 0))
    w.opt("scale", scale)
    w.opt("multi", multi)
    w.opt("P", P)
    w.opt("G", G)
    w.opt("K", K)
    w.opt("L", L)
    w.arr("per_func", per_func, f32=True)
    w.arr("weights", weights, f32=True)
    w.arr("reward", logged)
    w.arr("adv", adv)
    w.arr("reward_mean", [stats["reward_mean"]])
    w.arr("reward_std", [stats["reward_std"]])
    w.arr("frac_reward_zero_std", [stats["frac_reward_zero_std"]])
    w.arr("lens", lens.double())
    w.arr("truncated", truncated)
    w.arr("new_logp", new, f32=True)
    if old is not None:
        w.arr("old_logp", old, f32=True)
    w.arr("ref_logp", ref, f32=True)
    if with_entropy:
        w.arr("entropy", ent, f32=True)
    w.arr("loss", [loss.item()])
    w.arr("policy_loss", [policy_loss.item()])
    w.arr("dlogp", x.grad)
    if with_entropy:
        w.arr("dentropy", e.grad)
    if kl is not None:
        klm = kl.expand_as(mask) if kl.shape[1] == 1 else kl
        w.arr("kl_mean", [((klm * mask).sum() / mask.sum().clamp(min=1.0)).item()])
    if with_entropy:
        w.arr("entropy_mean", [((ent * mask).sum() / mask.sum().clamp(min=1.0)).item()])
    for k, v in trl_clip_metrics(cfg, coef_1.detach(), adv_in, mask).items():
        w.arr(k, [v])
    w.end()


def make_loss_fixture(out):
    g = torch.Generator().manual_seed(SEED)
    w = Writer()
    base = dict(is_level="token", epsilon_low=0.2, epsilon_high=0.28, delta=0.0, beta=0.0, kl="k3",
                kl_bias_correction=0, entropy_coef=0.0, grad_accum=1, max_completion_length=24,
                num_seqs=0.0, loss_scale_factor=0.0, mask_truncated=1)
    types = ["grpo", "bnpo", "dr_grpo", "dapo", "seq-mean-token-sum", "seq-mean-token-mean",
             "seq-mean-token-sum-norm"]
    n = 0
    # every loss type x every scaling option x token/sequence ratio, with KL (k3, beta 0.04)
    for lt in types:
        for scale in ["group", "batch", "none"]:
            for level in ["token", "sequence"]:
                cfg = dict(base, loss_type=lt, is_level=level, beta=0.04 if level == "token" else 0.0,
                           grad_accum=2 if lt in ("grpo", "bnpo", "dr_grpo") else 1)
                if lt == "dapo":
                    nif = 2.5
                else:
                    nif = None
                P, G, L = (2, 4, 16) if level == "token" else (3, 4, 12)
                loss_case(w, g, f"{lt}-{scale}-{level}", cfg, P, G, L, scale=scale, num_items_factor=nif)
                n += 1
    # the options one at a time
    extras = [
        ("dapo-local-count", dict(base, loss_type="dapo"), {}),
        ("dapo-eps-sym-k1", dict(base, loss_type="dapo", epsilon_high=0.2, beta=0.1, kl="k1"), {}),
        ("bnpo-k2", dict(base, loss_type="bnpo", beta=0.1, kl="k2"), {}),
        ("grpo-k3-biascorr", dict(base, loss_type="grpo", beta=0.05, kl_bias_correction=1), {}),
        ("gspo-k3-biascorr", dict(base, loss_type="dapo", is_level="sequence", beta=0.05,
                                  kl_bias_correction=1, epsilon_low=3e-4, epsilon_high=4e-4), {}),
        ("dapo-delta", dict(base, loss_type="dapo", delta=1.25, epsilon_high=0.1), {}),
        ("dapo-entropy", dict(base, loss_type="dapo", entropy_coef=0.01, grad_accum=2),
         {"with_entropy": True, "num_items_factor": 1.0}),
        ("grpo-entropy-beta", dict(base, loss_type="grpo", entropy_coef=0.02, beta=0.02, grad_accum=3),
         {"with_entropy": True}),
        ("dapo-ratio-one", dict(base, loss_type="dapo", beta=0.04), {"with_old": False}),
        ("gspo-ratio-one", dict(base, loss_type="grpo", is_level="sequence"), {"with_old": False}),
        ("dapo-no-truncation-mask", dict(base, loss_type="dapo", mask_truncated=0), {}),
        ("dapo-dual-clip", dict(base, loss_type="dapo", dual_clip_c=1.3, beta=0.04), {}),
        ("smtm-dual-clip-gspo", dict(base, loss_type="seq-mean-token-mean", is_level="sequence",
                                     dual_clip_c=1.05, epsilon_high=0.01), {}),
        ("smts-global-bs", dict(base, loss_type="seq-mean-token-sum", num_seqs=20.0), {}),
        ("smtm-global-bs", dict(base, loss_type="seq-mean-token-mean", num_seqs=20.0), {}),
        ("smtsn-factor", dict(base, loss_type="seq-mean-token-sum-norm", loss_scale_factor=64.0), {}),
        ("dr_grpo-binary-gdpo", dict(base, loss_type="dr_grpo"), {"pattern": "binary",
                                                                  "multi": "normalize_then_sum"}),
        ("dapo-binary-K1", dict(base, loss_type="dapo"), {"pattern": "binary", "K": 1}),
        ("dapo-gdpo-batch", dict(base, loss_type="dapo"), {"multi": "normalize_then_sum", "scale": "batch"}),
    ]
    for name, cfg, kw in extras:
        loss_case(w, g, name, cfg, 2, 4, 16, **kw)
        n += 1
    w.save(out / "grpo_loss.txt", [
        "GRPO loss golden cases: TRL 1.16.0 _compute_loss / verl 0.9.1 agg_loss in float64 autograd",
        f"made by tests/golden/make_grpo_fixtures.py with torch {torch.__version__}, seed {SEED}",
        "inputs are float32 values; outputs float64 (see docs/grpo.md)",
    ])
    return n


# ---------------------------------------------------------------- optimizer
PARAMS = [  # (HF name, shape, trainable)
    ("model.embed_tokens.weight", (24, 8), True),
    ("model.layers.0.input_layernorm.weight", (8,), True),
    ("model.layers.0.self_attn.kv_a_layernorm.weight", (6,), True),
    ("model.layers.0.self_attn.kv_a_proj_with_mqa.weight", (10, 8), True),
    ("model.layers.0.mlp.gate.weight", (4, 8), True),
    ("model.layers.0.mlp.gate.e_score_correction_bias", (4,), False),
    ("model.layers.0.mlp.experts.0.down_proj.weight", (8, 6), True),
    ("model.layers.1.enorm.weight", (8,), True),  # HF's patterns do not exempt it
    ("model.layers.1.shared_head.norm.weight", (8,), True),
    ("model.norm.weight", (8,), True),
    ("lm_head.weight", (24, 8), True),
]

SCHEDULES = [  # (name, schedule, warmup, total, kwargs, weight_decay, max_grad_norm, lr)
    ("linear-warmup", "linear", 3, 10, {}, 0.1, 1.0, 1e-2),
    ("cosine-warmup", "cosine", 2, 10, {}, 0.01, 0.5, 3e-3),
    ("constant", "constant", 0, 10, {}, 0.0, 1.0, 1e-3),
    ("constant-warmup", "constant_with_warmup", 4, 10, {}, 0.1, 0.0, 2e-3),
    ("cosine-min-lr", "cosine_with_min_lr", 1, 8, {"min_lr_rate": 0.1}, 0.05, 2.0, 5e-3),
]


def build_module(params):
    """A module tree with these dotted parameter names (so HF's grouping sees them)."""
    root = nn.Module()
    for name, shape, trainable in params:
        parts = name.split(".")
        mod = root
        for p in parts[:-1]:
            if not hasattr(mod, p):
                mod.add_module(p, nn.Module())
            mod = getattr(mod, p)
        mod.register_parameter(parts[-1], nn.Parameter(torch.zeros(shape), requires_grad=trainable))
    return root


def make_optim_fixture(out):
    from transformers import Trainer, get_scheduler

    g = torch.Generator().manual_seed(SEED + 1)
    w = Writer()
    n = 0
    for name, sched, warm, total, kw, wd, max_norm, lr in SCHEDULES:
        model = build_module(PARAMS)
        named = dict(model.named_parameters())
        for pname, shape, _ in PARAMS:
            with torch.no_grad():
                named[pname].copy_(torch.randn(shape, generator=g) * 0.5 + (1.0 if "norm" in pname else 0.0))
        # HF Trainer.create_optimizer grouping (get_decay_parameter_names does not use self)
        decay = set(Trainer.get_decay_parameter_names(None, model))
        groups = [
            {"params": [p for k, p in named.items() if k in decay and p.requires_grad], "weight_decay": wd},
            {"params": [p for k, p in named.items() if k not in decay and p.requires_grad], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
        sch = get_scheduler(sched, opt, num_warmup_steps=warm, num_training_steps=total,
                            scheduler_specific_kwargs=kw)
        w.case(name)
        w.opt("schedule", sched)
        w.opt("warmup", warm)
        w.opt("total", total)
        w.opt("min_lr_rate", kw.get("min_lr_rate", 0.0))
        w.opt("weight_decay", wd)
        w.opt("max_grad_norm", max_norm)
        w.opt("lr", lr)
        w.opt("nparams", len(PARAMS))
        for i, (pname, shape, trainable) in enumerate(PARAMS):
            w.opt(f"param{i}", f"{pname} {len(shape)} {' '.join(map(str, shape))} {int(trainable)} "
                               f"{int(pname in decay)}")
        w.arr("params0", torch.cat([named[p].detach().reshape(-1) for p, _, _ in PARAMS]), f32=True)
        norms, lrs, grads_all = [], [], []
        for step in range(total):
            scale = 3.0 if step % 3 == 0 else 0.05  # some steps clip, some do not
            for pname, shape, trainable in PARAMS:
                gr = torch.randn(shape, generator=g) * scale
                named[pname].grad = gr.clone() if trainable else None
                grads_all.append(gr.reshape(-1))
            lrs.append(opt.param_groups[0]["lr"])
            trainable_params = [p for p in named.values() if p.requires_grad]
            if max_norm > 0:
                norms.append(torch.nn.utils.clip_grad_norm_(trainable_params, max_norm).item())
            else:
                norms.append(torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(p.grad) for p in trainable_params])).item())
            opt.step()
            sch.step()
        w.arr("grads", torch.cat(grads_all), f32=True)
        w.arr("lr", lrs)
        w.arr("grad_norm", norms)
        w.arr("params", torch.cat([named[p].detach().reshape(-1) for p, _, _ in PARAMS]), f32=True)
        ms, vs = [], []
        for pname, shape, trainable in PARAMS:
            st = opt.state.get(named[pname], {})
            ms.append(st["exp_avg"].reshape(-1) if st else torch.zeros(shape).reshape(-1))
            vs.append(st["exp_avg_sq"].reshape(-1) if st else torch.zeros(shape).reshape(-1))
        w.arr("exp_avg", torch.cat(ms), f32=True)
        w.arr("exp_avg_sq", torch.cat(vs), f32=True)
        w.end()
        n += 1
    import transformers
    w.save(out / "optim.txt", [
        "AdamW golden runs: torch.optim.AdamW(foreach=False) + clip_grad_norm_ + transformers.get_scheduler, fp32",
        f"made by tests/golden/make_grpo_fixtures.py with torch {torch.__version__}, "
        f"transformers {transformers.__version__}, seed {SEED + 1}",
        "grads: per step, every tensor in table order (frozen tensors' grads are ignored)",
    ])
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "fixtures" / "rl"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    nl = make_loss_fixture(out)
    no = make_optim_fixture(out)
    for f in ["grpo_loss.txt", "optim.txt"]:
        print(f"{out / f}: {(out / f).stat().st_size / 1e3:.0f} kB")
    print(f"{nl} loss cases, {no} optimizer runs")


if __name__ == "__main__":
    main()
