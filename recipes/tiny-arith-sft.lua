-- tiny-arith-sft: rebuilds the base checkpoint of the tiny demo (recipes/tiny-arith/base):
-- a random-initialised ~2.8M-parameter DeepSeek-V3 model trained by next-token prediction
-- on imperfect solutions (30% carry a wrong step, 25% lack the think/answer tags), so the
-- base model is right only part of the time and GRPO has something to fix.
--   grpo init --config recipes/tiny-arith/model.json --out runs/tiny-arith-init --seed 1
--   grpo sft recipes/tiny-arith-sft.lua
-- The result is written to runs/tiny-arith-sft/checkpoints/final.
return {
  name = "tiny-arith-sft",
  model = "runs/tiny-arith-init",
  tokenizer = "recipes/tiny-arith",
  train_data = "recipes/tiny-arith/sft.jsonl",
  prompt_template = "{question}\n",
  completion_field = "solution",
  learning_rate = 3e-3,
  lr_scheduler_type = "cosine",
  warmup_ratio = 0.05,
  micro_batch = 32,
  sft_epochs = 2,
  max_prompt_length = 128,
  max_completion_length = 128,
  save_dtype = "bf16",
}
