-- tiny-arith: the tiny reasoner demo. A ~2.8M-parameter DeepSeek-V3-architecture model,
-- pre-trained with `grpo sft` on imperfect solutions (recipes/tiny-arith-sft.lua), learns
-- by GRPO to get multi-step arithmetic word problems right and to keep the R1 format.
-- Run: grpo train recipes/tiny-arith.lua   (docs/tiny-arith.md)
-- It evaluates the policy on the held-out split before training, every 50 steps and at the
-- end (pass@1 over 4 samples at temperature 1); the numbers land in the run's database:
--   sqlite3 runs/tiny-arith/rollouts.db "select * from eval_per_step"
return {
  name = "tiny-arith",
  model = "recipes/tiny-arith/base",
  train_data = "recipes/tiny-arith/train.jsonl",
  prompt_template = "{question}\n",
  rewards = {"rewards/math_accuracy.lua", "rewards/format.lua"},
  reward_weights = {1.0, 0.5},
  num_generations = 8,
  prompts_per_step = 16,
  max_prompt_length = 96,
  max_completion_length = 64,
  temperature = 1.0,
  learning_rate = 1e-4,
  lr_scheduler_type = "constant",
  max_steps = 300,
  micro_batch = 64,
  save_steps = 50,
  eval_data = "recipes/tiny-arith/test.jsonl",
  eval_steps = 50,
  eval_num_samples = 4,
  eval_max_new_tokens = 80,
}
