#!/usr/bin/env python3
"""bench_grpo_torch: one GRPO step of a recipe, in PyTorch + transformers, timed by phase.

The reference side of `grpo bench grpo`: the same step `grpo train` takes, on the same
checkpoint, on the same CPU, with the same number of threads, written the way a PyTorch
user would (TRL's formulas, transformers' DeepseekV3ForCausalLM, eager mode, float32):

  rollout  P prompts (the recipe's data order: the same permutation as rl/cmd_train.c)
           with the recipe's template, tokenized without special tokens; G completions
           each, sampled at the recipe's temperature (no top-k/top-p) up to
           max_completion_length new tokens, stopping at EOS; the log-prob of every
           sampled token recorded (as our sampler does).
           --rollout manual (default): the P prompts are left-padded and prefilled ONCE
             (one forward with a DynamicCache), the cache is repeated G times
             (batch_repeat_interleave, as grpo copies a group's latent cache), then one
             forward per new token over the unfinished samples only (finished rows are
             dropped from the cache with batch_select_indices, as grpo drops them).
           --rollout generate: model.generate(do_sample, num_return_sequences=G), which
             prefills every sample's copy of the prompt and decodes finished rows too.
  reward   the recipe's rewards re-implemented in Python: math_accuracy (the last
           \\boxed{..}, else "#### n", else the last <answer>..</answer>, compared with
           the gold answer as numbers, else as text) and format (open-r1's
           format_reward regex, exactly rewards/format.lua), summed with the weights.
  train    TRL group advantages ((r - mean) / (std + 1e-4), std unbiased, per group),
           then for each micro-batch of the recipe's micro_batch sequences: forward of
           prompt + completion (right-padded, attention mask), log_softmax(logits / T)
           of the completion tokens, entropy (no grad, for the metric, as TRL), the
           clipped objective with ratio exp(logp - logp.detach()) (mu = 1), the loss
           type's aggregation (dapo: sum over tokens / tokens in the whole batch;
           grpo / bnpo / dr_grpo as TRL), backward; then clip_grad_norm_(max_grad_norm)
           and torch.optim.AdamW (lr, weight_decay of the recipe, betas 0.9/0.999,
           eps 1e-8) step.
  log      the step's metrics and every rollout (prompt, completion, tokens, finish,
           reward, advantage, log-prob sum) and reward component into a SQLite file
           (WAL) in one transaction, as grpo's store does.

Prints one JSON line: the mean over --steps timed steps (after --warmup untimed ones) of
seconds per phase, the token counts, and tokens/s:
  gen_tok_s   = completion tokens / rollout seconds
  train_tok_s = completion tokens in the loss (loss_tokens) / train seconds
                (train_tokens: prompt + completion tokens of the trained sequences)
  e2e_tok_s   = completion tokens / step seconds
  cpu_s       = process CPU seconds per step (all threads; on a shared machine the
                least disturbed measure at --threads 1); rollout_cpu_s, train_cpu_s
                the same for those phases
  best_step_s = the fastest timed step (wall seconds)

    python3 tests/golden/bench_grpo_torch.py --recipe recipes/tiny-arith.lua --threads 2 --steps 3

The recipe is read with a small parser for flat Lua tables, one field per line, of
strings, numbers, booleans and lists; fields it does not use are ignored. `grpo bench
grpo` passes the recipe as grpo resolved it (recipe_write: defaults and --set applied),
which is always in that form.
"""
import argparse
import contextlib
import json
import math
import os
import re
import sqlite3
import sys
import tempfile
import time

import torch

# ---------------------------------------------------------------- recipe


DEFAULTS = {  # rl/recipe.c defaults for the fields used here
    "prompt_template": "{question}\n", "num_generations": 8, "prompts_per_step": 8,
    "max_prompt_length": 512, "max_completion_length": 512, "temperature": 1.0,
    "loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.2, "learning_rate": 1e-6,
    "weight_decay": 0.0, "max_grad_norm": 1.0, "micro_batch": 16, "seed": 42,
    "reward_weights": [], "rewards": [], "tokenizer": "",
}


def lua_value(s):
    s = s.strip().rstrip(",").strip()
    if s.startswith("{"):
        return [lua_value(x) for x in re.findall(r'"(?:[^"\\]|\\.)*"|[^,{}\s]+', s[1:-1])]
    if s.startswith('"'):
        return bytes(s[1:-1], "utf-8").decode("unicode_escape")
    if s in ("true", "false"):
        return s == "true"
    return float(s) if any(c in s for c in ".eE") else int(s)


def strip_comment(line):
    """The line without a trailing Lua comment (-- outside a string)."""
    q = None
    for i, c in enumerate(line):
        if q:
            q = None if c == q and line[i - 1] != "\\" else q
        elif c in "\"'":
            q = c
        elif line.startswith("--", i):
            return line[:i]
    return line


def load_recipe(path, sets):
    r = dict(DEFAULTS)
    with open(path) as f:
        for line in f:
            line = strip_comment(line)
            m = re.match(r"\s*([A-Za-z_]+)\s*=\s*(.+)$", line)
            if m:
                r[m.group(1)] = lua_value(m.group(2))
    for a in sets:
        k, _, v = a.partition("=")
        r[k.strip()] = lua_value(v if not isinstance(r.get(k.strip()), str) else json.dumps(v))
    if not r["reward_weights"]:
        r["reward_weights"] = [1.0] * len(r["rewards"])
    return r


# ---------------------------------------------------------------- data order (rl/cmd_train.c next_row)

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fmix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix64(z):
    return fmix64((z + GOLDEN) & M64)


class DataOrder:
    """The permutation grpo train uses: a fresh Fisher-Yates shuffle per epoch from the seed."""

    def __init__(self, n, seed):
        self.n, self.seed, self.cursor, self.order = n, seed, 0, list(range(n))

    def next(self):
        epoch, k = divmod(self.cursor, self.n)
        if k == 0:
            self.order = list(range(self.n))
            s = mix64((self.seed * 1000003 + epoch) & M64)
            for i in range(self.n - 1, 0, -1):
                s = mix64(s)
                j = s % (i + 1)
                self.order[i], self.order[j] = self.order[j], self.order[i]
        self.cursor += 1
        return self.order[k]


# ---------------------------------------------------------------- rewards (rewards/*.lua in Python)

FORMAT_RE = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL | re.MULTILINE)


def format_reward(completion, row):
    return 1.0 if FORMAT_RE.match(completion) else 0.0


def extract_answer(c):
    i = c.rfind("\\boxed{")
    if i >= 0:
        depth, j = 1, i + 7
        while j < len(c) and depth:
            depth += {"{": 1, "}": -1}.get(c[j], 0)
            j += 1
        if depth == 0:
            return c[i + 7:j - 1].strip()
    m = re.findall(r"####\s*([^\n]+)", c)
    if m:
        return m[-1].strip()
    m = re.findall(r"<answer>(.*?)</answer>", c, re.DOTALL)
    return m[-1].strip() if m else None


def as_number(s):
    s = s.strip().replace(",", "").rstrip(".")
    try:
        return float(s)
    except ValueError:
        return None


def math_accuracy(completion, row):
    gold = row.get("answer")
    if isinstance(gold, (int, float)):
        gold = str(gold)
    if not isinstance(gold, str) or not gold:
        return None
    if "####" in gold:
        gold = gold.rsplit("####", 1)[1].strip()
    pred = extract_answer(completion)
    if pred is None:
        return 0.0
    a, b = as_number(gold), as_number(pred)
    if a is not None and b is not None:
        return 1.0 if abs(a - b) <= 1e-9 * max(1.0, abs(a)) else 0.0
    return 1.0 if gold.strip() == pred.strip() else 0.0


REWARDS = {"math_accuracy": math_accuracy, "format": format_reward}


# ---------------------------------------------------------------- the step


class Step:
    def __init__(self, args, recipe):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.r, self.args = recipe, args
        self.P, self.G = recipe["prompts_per_step"], recipe["num_generations"]
        self.T = float(recipe["temperature"]) or 1.0
        tokdir = recipe["tokenizer"] or recipe["model"]
        self.tok = AutoTokenizer.from_pretrained(tokdir)
        self.model = AutoModelForCausalLM.from_pretrained(
            recipe["model"], dtype=torch.float32, attn_implementation=args.attn,
            experts_implementation=args.experts)
        # --device cuda: fp32 master weights and AdamW, bf16 autocast compute (PyTorch's
        # usual mixed precision, as grpo's bf16 compute copy + fp32 master)
        self.dev = torch.device(args.device)
        self.model.to(self.dev)
        self.amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if self.dev.type == "cuda" else contextlib.nullcontext
        self.model.train()  # attention_dropout is 0.0: train mode changes nothing numerically
        self.eos = self.model.config.eos_token_id
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos  # masked out everywhere
        with open(recipe["train_data"]) as f:
            self.rows = [json.loads(l) for l in f if l.strip()]
        self.order = DataOrder(len(self.rows), int(recipe["seed"]))
        self.funcs = []
        for path in recipe["rewards"]:
            name = os.path.splitext(os.path.basename(path))[0]
            if name not in REWARDS:
                sys.exit(f"bench_grpo_torch: no Python version of reward {path}")
            self.funcs.append((name, REWARDS[name]))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=float(recipe["learning_rate"]),
                                     betas=(0.9, 0.999), eps=1e-8, weight_decay=float(recipe["weight_decay"]))
        self.gen = torch.Generator(device=self.dev).manual_seed(int(recipe["seed"]))
        self.db_dir = tempfile.mkdtemp(prefix="bench_grpo_torch.")
        self.db = sqlite3.connect(os.path.join(self.db_dir, "rollouts.db"))
        self.db.execute("pragma journal_mode=wal")
        self.db.executescript(
            "create table if not exists steps(step int, name text, value real);"
            "create table if not exists rollouts(id integer primary key, step int, prompt_index int,"
            " sample_index int, data_row int, prompt text, completion text, prompt_tokens int,"
            " completion_tokens int, finish_reason text, reward real, advantage real, logp_sum real);"
            "create table if not exists rewards(rollout_id int, name text, value real, error text);")
        self.step_no = 0

    def close(self):
        self.db.close()
        for f in os.listdir(self.db_dir):
            os.unlink(os.path.join(self.db_dir, f))
        os.rmdir(self.db_dir)

    # -- 1-3: prompts and rollouts
    def prompts(self):
        rows, ids = [], []
        while len(ids) < self.P:
            row = self.order.next()
            text = self.r["prompt_template"].format(**self.rows[row])
            t = self.tok(text, add_special_tokens=False)["input_ids"]
            if 0 < len(t) <= self.r["max_prompt_length"]:
                rows.append(row), ids.append(t)
        return rows, ids

    def left_pad(self, ids):
        L = max(len(t) for t in ids)
        x = torch.full((len(ids), L), self.pad, dtype=torch.long)
        mask = torch.zeros((len(ids), L), dtype=torch.long)
        for i, t in enumerate(ids):
            x[i, L - len(t):] = torch.tensor(t)
            mask[i, L - len(t):] = 1
        return x.to(self.dev), mask.to(self.dev)

    @torch.no_grad()
    def rollout_manual(self, pids):
        from transformers import DynamicCache
        G, N, maxnew = self.G, self.P * self.G, self.r["max_completion_length"]
        x, mask = self.left_pad(pids)
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        with self.amp():
            out = self.model(input_ids=x, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(G)  # the group shares its prompt's cache
        logits = out.logits[:, -1].float().repeat_interleave(G, 0)
        mask = mask.repeat_interleave(G, 0)
        nextpos = pos[:, -1].repeat_interleave(G, 0) + 1
        live = torch.arange(N, device=self.dev)  # sample index of each cache row
        toks = [[] for _ in range(N)]
        logps = [[] for _ in range(N)]
        finish = ["length"] * N
        for k in range(maxnew):
            lp = torch.log_softmax(logits / self.T, dim=-1)
            nxt = torch.multinomial(lp.exp(), 1, generator=self.gen).squeeze(1)
            lpn = lp.gather(1, nxt[:, None]).squeeze(1)
            keep = []
            for r, (i, t, l) in enumerate(zip(live.tolist(), nxt.tolist(), lpn.tolist())):
                toks[i].append(t), logps[i].append(l)
                if t == self.eos:
                    finish[i] = "eos"
                else:
                    keep.append(r)
            if not keep or k + 1 == maxnew:
                break
            if len(keep) < len(live):  # drop finished samples from the batch and the cache
                idx = torch.tensor(keep, device=self.dev)
                cache.batch_select_indices(idx)
                live, nxt, mask, nextpos = live[idx], nxt[idx], mask[idx], nextpos[idx]
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long, device=self.dev)], 1)
            with self.amp():
                out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=nextpos[:, None],
                             past_key_values=cache, use_cache=True)
            logits, nextpos = out.logits[:, -1].float(), nextpos + 1
        return toks, logps, finish

    @torch.no_grad()
    def rollout_generate(self, pids):
        x, mask = self.left_pad(pids)
        torch.manual_seed(int(self.gen.initial_seed()) + self.step_no)
        with self.amp():
            out = self.model.generate(input_ids=x, attention_mask=mask, do_sample=True, temperature=self.T, top_k=0,
                                  top_p=1.0, max_new_tokens=self.r["max_completion_length"],
                                  num_return_sequences=self.G, eos_token_id=self.eos, pad_token_id=self.pad,
                                  output_logits=True, return_dict_in_generate=True)
        seq = out.sequences[:, x.shape[1]:]
        lp = torch.stack([torch.log_softmax(l / self.T, -1) for l in out.logits], 1)  # [N, steps, V]
        lpt = lp.gather(2, seq[:, :lp.shape[1], None]).squeeze(2)
        toks, logps, finish = [], [], []
        for i in range(seq.shape[0]):
            t = seq[i].tolist()
            n = t.index(self.eos) + 1 if self.eos in t else len(t)
            toks.append(t[:n]), logps.append(lpt[i, :n].tolist())
            finish.append("eos" if t[n - 1] == self.eos else "length")
        return toks, logps, finish

    # -- 4-5: rewards and advantages
    def rewards(self, rows, toks, finish):
        N, G = len(toks), self.G
        texts = [self.tok.decode(t[:-1] if f == "eos" else t, skip_special_tokens=False) for t, f in zip(toks, finish)]
        comps = [[fn(texts[i], self.rows[rows[i // G]]) for name, fn in self.funcs] for i in range(N)]
        w = self.r["reward_weights"]
        # TRL: nansum over the functions (a None counts as absent)
        total = torch.tensor([sum(wk * v for wk, v in zip(w, c) if v is not None) for c in comps])
        grouped = total.view(-1, G)
        mean = grouped.mean(1).repeat_interleave(G)
        std = grouped.std(1).repeat_interleave(G)
        adv = (total - mean) / (std + 1e-4)
        return texts, comps, total, adv

    # -- 4-5: loss, backward, optimizer
    def train(self, pids, pidx, toks, adv):
        r, N = self.r, len(toks)
        MB = r["micro_batch"] if r["micro_batch"] > 0 else N
        num_items = sum(len(t) for t in toks)
        lt, eps_lo, eps_hi = r["loss_type"], float(r["epsilon"]), float(r["epsilon_high"])
        nmicro = (N + MB - 1) // MB
        self.opt.zero_grad(set_to_none=True)
        ntok_trained = 0
        for s0 in range(0, N, MB):
            rows = range(s0, min(N, s0 + MB))
            seqs = [pids[pidx[i]] + toks[i] for i in rows]
            B, T = len(seqs), max(len(s) for s in seqs)
            L = max(len(toks[i]) for i in rows)
            ids = torch.full((B, T), self.pad, dtype=torch.long)
            am = torch.zeros((B, T), dtype=torch.long)
            gidx = torch.zeros((B, L), dtype=torch.long)   # position predicting completion token k
            tgt = torch.zeros((B, L), dtype=torch.long)
            cm = torch.zeros((B, L))
            for b, i in enumerate(rows):
                s, pl, n = seqs[b], len(pids[pidx[i]]), len(toks[i])
                ids[b, :len(s)] = torch.tensor(s)
                am[b, :len(s)] = 1
                gidx[b, :n] = torch.arange(pl - 1, pl - 1 + n)
                tgt[b, :n] = torch.tensor(toks[i])
                cm[b, :n] = 1
            ntok_trained += int(am.sum())
            ids, am, gidx, tgt, cm = (v.to(self.dev) for v in (ids, am, gidx, tgt, cm))
            with self.amp():
                logits = self.model(input_ids=ids, attention_mask=am).logits.float()  # [B, T, V]
            logits = logits.gather(1, gidx[:, :, None].expand(-1, -1, logits.shape[2])) / self.T  # [B, L, V]
            lsm = torch.log_softmax(logits, -1)
            logp = lsm.gather(2, tgt[:, :, None]).squeeze(2)
            with torch.no_grad():
                entropy = -(lsm.exp() * lsm).sum(-1)  # the entropy metric, as TRL logs it
            a = adv[s0:s0 + B][:, None].to(self.dev)
            ratio = torch.exp(logp - logp.detach())
            ptl = -torch.min(ratio * a, torch.clamp(ratio, 1 - eps_lo, 1 + eps_hi) * a)
            if lt == "dapo":
                loss = (ptl * cm).sum() / num_items
            elif lt == "grpo":
                loss = ((ptl * cm).sum(-1) / cm.sum(-1).clamp(min=1)).sum() / N
            elif lt == "bnpo":
                loss = (ptl * cm).sum() / num_items
            elif lt == "dr_grpo":
                loss = (ptl * cm).sum() / (N * r["max_completion_length"])
            else:
                sys.exit(f"bench_grpo_torch: loss_type {lt} not implemented here")
            loss.backward()
            del entropy
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(r["max_grad_norm"]))
        self.opt.step()
        return ntok_trained, float(gnorm), nmicro

    # -- 6: the store
    def log(self, rows, pids, texts, toks, logps, finish, comps, total, adv, metrics):
        G, db = self.G, self.db
        with db:
            db.executemany("insert into steps values (?, ?, ?)", [(self.step_no, k, v) for k, v in metrics.items()])
            for i in range(len(toks)):
                p = i // G
                cur = db.execute("insert into rollouts(step, prompt_index, sample_index, data_row, prompt, completion,"
                                 " prompt_tokens, completion_tokens, finish_reason, reward, advantage, logp_sum)"
                                 " values (?,?,?,?,?,?,?,?,?,?,?,?)",
                                 (self.step_no, p, i % G, rows[p], self.r["prompt_template"].format(**self.rows[rows[p]]),
                                  texts[i], len(pids[p]), len(toks[i]), finish[i], float(total[i]), float(adv[i]),
                                  sum(logps[i])))
                db.executemany("insert into rewards values (?, ?, ?, null)",
                               [(cur.lastrowid, name, v) for (name, _), v in zip(self.funcs, comps[i])])

    def run(self):
        c0, t0 = time.process_time(), time.perf_counter()
        rows, pids = self.prompts()
        roll = self.rollout_manual if self.args.rollout == "manual" else self.rollout_generate
        toks, logps, finish = roll(pids)
        t1, c1 = time.perf_counter(), time.process_time()
        texts, comps, total, adv = self.rewards(rows, toks, finish)
        t2 = time.perf_counter()
        pidx = [i // self.G for i in range(len(toks))]
        c2 = time.process_time()
        ntrain, gnorm, _ = self.train(pids, pidx, toks, adv)
        t3, c3 = time.perf_counter(), time.process_time()
        gen = sum(len(t) for t in toks)
        metrics = {"reward": float(total.mean()), "completions/mean_length": gen / len(toks), "grad_norm": gnorm,
                   "timing_s/rollout": t1 - t0, "timing_s/reward": t2 - t1, "timing_s/train": t3 - t2}
        self.log(rows, pids, texts, toks, logps, finish, comps, total, adv, metrics)
        t4, c4 = time.perf_counter(), time.process_time()
        self.step_no += 1
        return {"rollout_s": t1 - t0, "reward_s": t2 - t1, "train_s": t3 - t2, "log_s": t4 - t3,
                "gen_tokens": gen, "loss_tokens": gen, "train_tokens": ntrain, "reward": float(total.mean()), "cpu_s": c4 - c0, "rollout_cpu_s": c1 - c0,
                "train_cpu_s": c3 - c2, "grad_norm": gnorm}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/tiny-arith.lua", help="recipe .lua (default recipes/tiny-arith.lua)")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE recipe override (repeatable)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--rollout", choices=["manual", "generate"], default="manual",
                    help="manual: prefill once per group + KV-cache decode loop; generate: model.generate")
    ap.add_argument("--attn", default="eager", help="attention implementation (default eager)")
    ap.add_argument("--experts", default="grouped_mm", help="experts implementation (default grouped_mm)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (bf16 autocast, fp32 weights and AdamW)")
    args = ap.parse_args()
    if args.threads < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("--threads and --steps must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    recipe = load_recipe(args.recipe, args.set)
    step = Step(args, recipe)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step.run()
    runs = [step.run() for _ in range(args.steps)]
    step.close()
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    tot = mean["rollout_s"] + mean["reward_s"] + mean["train_s"] + mean["log_s"]
    res = {"threads": args.threads, "steps": args.steps, "warmup": args.warmup, "rollout": args.rollout,
           "attn": args.attn, "experts": args.experts, "device": args.device,
           "prompts": step.P, "generations": step.G,
           **{k: round(mean[k], 4) for k in ("rollout_s", "reward_s", "train_s", "log_s")},
           "step_s": round(tot, 4), "gen_tokens": round(mean["gen_tokens"], 1),
           "loss_tokens": round(mean["loss_tokens"], 1), "train_tokens": round(mean["train_tokens"], 1),
           "gen_tok_s": round(mean["gen_tokens"] / mean["rollout_s"], 1),
           "train_tok_s": round(mean["loss_tokens"] / mean["train_s"], 1),
           "e2e_tok_s": round(mean["gen_tokens"] / tot, 1), "reward": round(mean["reward"], 4),
           "cpu_s": round(mean["cpu_s"], 4), "rollout_cpu_s": round(mean["rollout_cpu_s"], 4),
           "train_cpu_s": round(mean["train_cpu_s"], 4),
           "best_step_s": round(min(r["rollout_s"] + r["reward_s"] + r["train_s"] + r["log_s"] for r in runs), 4),
           "per_step": [{k: round(v, 4) for k, v in r.items()} for r in runs],
           "torch": torch.__version__}
    print(json.dumps(res), flush=True)
    print(f"bench_grpo_torch: {time.perf_counter() - start:.1f} s timed+warm-up", file=sys.stderr)


if __name__ == "__main__":
    main()
