-- tiny-arith-sft: rebuilds the base checkpoint of the tiny demo (recipes/tiny-arith/base):
-- a random-initialised ~2.8M-parameter DeepSeek-V3 model trained by next-token prediction
-- on imperfect solutions (30% carry a wrong step, 25% lack the think/answer tags), so the
-- base model is right only part of the time when it samples and GRPO has something to fix.
-- The shipped base is the result of three stages (about 45 CPU-minutes; docs/tiny-arith.md):
--   grpo init --config recipes/tiny-arith/model.json --out runs/tiny-arith-init --seed 1
--   grpo sft recipes/tiny-arith-sft.lua                                   # stage 1: 2 epochs of sft.jsonl
--   grpo sft recipes/tiny-arith-sft.lua --set "name=tiny-arith-sft2;model=runs/tiny-arith-sft/checkpoints/final;sft_epochs=4;learning_rate=2e-3;warmup_ratio=0.02"
--   grpo data arith --out runs/tiny-arith-sft60k.jsonl --n 60000 --seed 4 --p-wrong 0.3 --p-noformat 0.25
--   grpo sft recipes/tiny-arith-sft.lua --set "name=tiny-arith-sft3;model=runs/tiny-arith-sft2/checkpoints/final;train_data=runs/tiny-arith-sft60k.jsonl;sft_epochs=1;learning_rate=1.5e-3;warmup_ratio=0.02;threads=1"
-- The result is runs/tiny-arith-sft3/checkpoints/final.
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
