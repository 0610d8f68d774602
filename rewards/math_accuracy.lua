-- math_accuracy: 1.0 when the completion's final answer equals the gold
-- answer, 0.0 when it does not or when the completion has no final answer,
-- nil (no opinion) when the row has no usable gold answer.
--   gold: sample.answer; a GSM8K solution ("... #### 72") gives the text
--         after the last ####, a MATH answer ("\frac{1}{2}") is used as is.
--   final answer: grpo.math.extract(completion): the last \boxed{...}, else
--         "#### n", else the content of the last <answer>...</answer>.
--   equality: grpo.math.equal (numbers, fractions, percentages, simple
--         LaTeX, tuples/intervals/sets, light symbolic equivalence).
-- Extras: pred and gold, as logged in the rollout store.
local m = grpo.math

return {
  name = "math_accuracy",
  score = function(sample)
    local gold = sample.answer
    if type(gold) == "number" then gold = tostring(gold) end
    if type(gold) ~= "string" or gold == "" then return nil end
    gold = m.gsm8k(gold) or gold
    local pred = m.extract(sample.completion)
    if not pred then return 0.0, { gold = gold } end
    return m.equal(gold, pred) and 1.0 or 0.0, { pred = pred, gold = gold }
  end,
}
