-- r1-zero-math: R1-Zero-style GRPO on MATH (MATH-500 here; point train_data at the MATH train split for real runs) with an accuracy reward
-- (rewards/math_accuracy.lua, math-verify-like equivalence) and the R1 format reward, from the
-- R1-Zero prompt (DeepSeek-R1 paper, Table 1). Hyper-parameters follow TRL's GRPO defaults except
-- where noted. Meant for a real base checkpoint on a GPU:
--   grpo train recipes/r1-zero-math.lua --set "model=PATH/TO/CHECKPOINT;tokenizer="
-- It also runs end to end on the CPU with a random tiny model (shared/ beside the repository):
--   grpo init --config recipes/models/dsv3-tiny-text.json --out runs/tiny-text-init
--   grpo train recipes/r1-zero-math.lua --set "max_steps=2;max_completion_length=32"
return {
  name = "r1-zero-math",
  model = "runs/tiny-text-init",
  tokenizer = "recipes/tokenizers/tiny-gsm8k",   -- set to "" to use the checkpoint's own tokenizer
  train_data = "../shared/data/math500-test.jsonl",
  prompt_template = "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: {problem}. Assistant:",
  rewards = {"rewards/math_accuracy.lua", "rewards/format.lua"},
  reward_weights = {1.0, 1.0},
  num_generations = 8,
  prompts_per_step = 8,
  max_prompt_length = 512,
  max_completion_length = 1024,
  temperature = 1.0,
  loss_type = "dapo",
  epsilon = 0.2,
  epsilon_high = 0.28,          -- DAPO's clip-higher
  learning_rate = 1e-6,
  lr_scheduler_type = "constant",
  max_steps = 500,
  micro_batch = 8,
  save_steps = 50,
}
