-- overlong: DAPO's soft overlong punishment (arXiv 2503.14476), as in TRL
-- `get_soft_overlong_punishment`. With L = completion tokens:
--   0                            when L <= L_MAX - L_CACHE
--   ((L_MAX - L_CACHE) - L) / L_CACHE   when L_MAX - L_CACHE < L <= L_MAX
--   -1                           when L > L_MAX
-- nil when the token count is unknown. L_MAX should be the run's
-- max completion length; copy this file and edit the two numbers.
local L_MAX, L_CACHE = 20480, 4096

return {
  name = "overlong",
  score = function(sample)
    local L = sample.completion_tokens
    if not L then return nil end
    local soft = L_MAX - L_CACHE
    if L <= soft then return 0.0 end
    if L <= L_MAX then return (soft - L) / L_CACHE end
    return -1.0
  end,
}
