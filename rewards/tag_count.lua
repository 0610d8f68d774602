-- tag_count: open-r1 `tag_count_reward`. 0.25 for each of "<think>\n",
-- "\n</think>\n", "\n<answer>\n" and "\n</answer>" that occurs exactly once
-- in the completion (0, 0.25, 0.5, 0.75 or 1.0).
local find = string.find
local TAGS = { "<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>" }

local function count(s, sub)
  local n, init = 0, 1
  while true do
    local i, j = find(s, sub, init, true)
    if not i then return n end
    n, init = n + 1, j + 1
  end
end

return {
  name = "tag_count",
  score = function(sample)
    local r = 0.0
    for _, tag in ipairs(TAGS) do
      if count(sample.completion, tag) == 1 then r = r + 0.25 end
    end
    return r
  end,
}
