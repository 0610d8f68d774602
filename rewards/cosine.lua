-- cosine: open-r1 `get_cosine_scaled_reward` (length scaling of accuracy).
-- progress = len / MAX_LEN with len the completion length in
-- characters (UTF-8 code points), cosine = cos(progress * pi);
--   correct: 0.5 + 0.5 * (1.0 - 0.5) * (1 + cosine)    in [0.5, 1.0], shorter is better
--   wrong:  -0.5 + 0.5 * (-1.0 + 0.5) * (1 + cosine)   in [-1.0, -0.5], longer is better
-- Correctness as in math_accuracy.lua. Differences from open-r1: a row without
-- a gold answer gives nil (open-r1 gives 1.0). Like open-r1, progress is not
-- capped: past MAX_LEN the cosine rises again.
local m = grpo.math
local MAX_LEN = 1000
local MIN_WRONG, MAX_WRONG, MIN_CORRECT, MAX_CORRECT = -1.0, -0.5, 0.5, 1.0

return {
  name = "cosine",
  score = function(sample)
    local gold = sample.answer
    if type(gold) == "number" then gold = tostring(gold) end
    if type(gold) ~= "string" or gold == "" then return nil end
    gold = m.gsm8k(gold) or gold
    local pred = m.extract(sample.completion)
    local correct = pred ~= nil and m.equal(gold, pred)
    local len = utf8.len(sample.completion) or #sample.completion
    local cosine = math.cos(len / MAX_LEN * math.pi)
    local lo, hi = MAX_WRONG, MIN_WRONG
    if correct then lo, hi = MIN_CORRECT, MAX_CORRECT end
    return lo + 0.5 * (hi - lo) * (1.0 + cosine), { correct = correct, length = len }
  end,
}
