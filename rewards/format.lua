-- format: the DeepSeek-R1 format reward (open-r1 `format_reward`).
-- 1.0 when the completion is exactly
--   <think>\n ... \n</think>\n<answer>\n ... \n</answer>
-- (Python: re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", c, re.DOTALL | re.MULTILINE)),
-- else 0.0. Like re.match, the pattern is anchored at the start (\A); with
-- MULTILINE, the final $ also accepts a newline after </answer>.
local match = grpo.re.match
local PATTERN = "\\A<think>\\n.*?\\n</think>\\n<answer>\\n.*?\\n</answer>$"

return {
  name = "format",
  weight = 1.0,
  score = function(sample)
    -- A pathological completion (thousands of tag lines) can exhaust PCRE2's
    -- match limit, where Python's re would grind on; it scores 0.0 then.
    local ok, m = pcall(match, sample.completion, PATTERN, "sm")
    if not ok then return 0.0, { format_error = m } end
    return m and 1.0 or 0.0
  end,
}
