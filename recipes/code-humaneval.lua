-- code-humaneval: GRPO with a sandboxed code reward (rewards/code.lua: the row's HumanEval tests
-- run against the completed function in grpo's sandbox; a pass needs the asserts to finish).
-- The prompt is the function header and docstring; the completion continues the body.
-- Meant for a real code model on a GPU:
--   grpo train recipes/code-humaneval.lua --set "model=PATH/TO/CHECKPOINT;tokenizer="
-- It also runs end to end on the CPU with a random tiny model (shared/ beside the repository):
--   grpo init --config recipes/models/dsv3-tiny-text.json --out runs/tiny-text-init
--   grpo train recipes/code-humaneval.lua --set "max_steps=2;max_completion_length=32"
-- (HumanEval is an evaluation set; train on your own problems with prompt/test/entry_point fields.)
return {
  name = "code-humaneval",
  model = "runs/tiny-text-init",
  tokenizer = "recipes/tokenizers/tiny-gsm8k",   -- set to "" to use the checkpoint's own tokenizer
  train_data = "../shared/data/humaneval.jsonl",
  prompt_template = "{prompt}",
  rewards = {"rewards/code.lua"},
  num_generations = 8,
  prompts_per_step = 4,
  max_prompt_length = 1024,
  max_completion_length = 512,
  temperature = 1.0,
  learning_rate = 1e-6,
  lr_scheduler_type = "constant",
  max_steps = 200,
  micro_batch = 8,
  save_steps = 50,
}
