-- tiny-arith: the tiny reasoner demo. A ~2.8M-parameter DeepSeek-V3-architecture model,
-- pre-trained with `grpo sft` on imperfect solutions (recipes/tiny-arith-sft.lua), learns
-- by GRPO to get multi-step arithmetic word problems right and to keep the R1 format.
-- Run: grpo train recipes/tiny-arith.lua   (docs/tiny-arith.md)
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
  max_steps = 150,
  micro_batch = 64,
  save_steps = 50,
}
