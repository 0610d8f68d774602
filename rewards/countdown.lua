-- countdown: TinyZero's countdown reward (verl/utils/reward_score/countdown.py).
-- Row fields: target (number) and nums (or numbers): the numbers to use.
--   no <answer>...</answer> in the completion             -> 0.0
--   the last answer's numbers are not exactly `nums`
--   (as a multiset), or it has characters other than
--   digits, + - * / ( ) . and spaces, or does not evaluate -> 0.1
--   |value - target| < 1e-5                                -> 1.0
--   otherwise                                              -> 0.1
-- The expression is evaluated by a small parser below (no load/eval) with
-- Python's rules for + - * / ** and unary signs.
local format_score, full_score = 0.1, 1.0

-- Linear-time trim (a "%s+$" pattern is quadratic on a long run of spaces).
local function trim(s)
  local i = s:find("%S")
  if not i then return "" end
  return s:sub(i, #s - s:reverse():find("%S") + 1)
end

local function last_answer(s)
  local last
  for a in grpo.re.gmatch(s, "<answer>(.*?)</answer>", "s") do last = a end
  return last and trim(last)
end

-- Recursive descent over + - * / and parentheses; nil on a syntax error.
local function evaluate(src)
  local pos, n = 1, #src
  local function skip() while pos <= n and src:sub(pos, pos):match("%s") do pos = pos + 1 end end
  local expr, unary
  local function primary()
    skip()
    if src:sub(pos, pos) == "(" then
      pos = pos + 1
      local v = expr()
      skip()
      if v == nil or src:sub(pos, pos) ~= ")" then return nil end
      pos = pos + 1
      return v
    end
    local num = src:match("^%d+%.?%d*", pos) or src:match("^%.%d+", pos)
    if not num then return nil end
    pos = pos + #num
    return tonumber(num)
  end
  local function power() -- Python's **: binds tighter than unary minus on its left
    local v = primary()
    skip()
    if v ~= nil and src:sub(pos, pos + 1) == "**" then
      pos = pos + 2
      local e = unary()
      return e and v ^ e
    end
    return v
  end
  unary = function()
    skip()
    local c = src:sub(pos, pos)
    if c == "-" or c == "+" then
      pos = pos + 1
      local v = unary()
      return v and (c == "-" and -v or v)
    end
    return power()
  end
  local atom = unary
  local function term()
    local v = atom()
    while v do
      skip()
      local op = src:sub(pos, pos)
      if (op ~= "*" and op ~= "/") or src:sub(pos, pos + 1) == "**" then break end
      pos = pos + 1
      local r = atom()
      if r == nil then return nil end
      if op == "*" then v = v * r else v = v / r end
    end
    return v
  end
  expr = function()
    local v = term()
    while v do
      skip()
      local op = src:sub(pos, pos)
      if op ~= "+" and op ~= "-" then break end
      pos = pos + 1
      local r = term()
      if r == nil then return nil end
      if op == "+" then v = v + r else v = v - r end
    end
    return v
  end
  local v = expr()
  skip()
  if pos <= n then return nil end
  return v
end

local function same_numbers(eq, nums)
  local used = {}
  for d in eq:gmatch("%d+") do used[#used + 1] = tonumber(d) end
  if #used ~= #nums then return false end
  local want = {}
  for i, x in ipairs(nums) do want[i] = tonumber(x) end
  table.sort(used)
  table.sort(want)
  for i = 1, #used do if used[i] ~= want[i] then return false end end
  return true
end

return {
  name = "countdown",
  score = function(sample)
    local nums = sample.nums or sample.numbers
    local target = tonumber(sample.target)
    if type(nums) ~= "table" or not target then return nil end
    local eq = last_answer(sample.completion)
    if not eq then return 0.0 end
    if not same_numbers(eq, nums) or not eq:match("^[%d%+%-%*/%(%)%.%s]+$") then
      return format_score, { equation = eq }
    end
    local ok, v = pcall(evaluate, eq) -- very deep nesting overflows the stack: not evaluable
    if not ok or v == nil or v ~= v then return format_score, { equation = eq } end
    if math.abs(v - target) < 1e-5 then return full_score, { equation = eq, value = v } end
    return format_score, { equation = eq, value = v }
  end,
}
