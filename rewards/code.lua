-- code: HumanEval-style code reward through the sandbox (grpo.sandbox.humaneval).
-- Row fields (sample.row): prompt (the function header and docstring), test
-- (defines check(candidate)), entry_point (the function's name), as in
-- openai/human-eval. The program is row.prompt followed by the completion's
-- code: the last ```python (or ```) block if there is one, else the whole
-- completion (a continuation of the function body). A block that redefines
-- the function works too, since it follows the prompt's definition.
-- 1.0 when test + check(entry_point) run to the end (exit 0 and the run's
-- nonce printed: exit(0) before the asserts is not a pass), else 0.0.
-- nil when the row has no test or entry_point, or the sandbox is absent.
local TIMEOUT = 10

local function code_of(completion)
  local last
  for block in grpo.re.gmatch(completion, "```(?:python|py)?[^\\n]*\\n(.*?)```", "s") do last = block end
  return last or completion
end

return {
  name = "code",
  score = function(sample)
    local row = sample.row or {}
    if not grpo.sandbox or type(row.test) ~= "string" or type(row.entry_point) ~= "string" then return nil end
    local program = (row.prompt or "") .. "\n" .. code_of(sample.completion)
    local r = grpo.sandbox.humaneval{ program = program, test = row.test, entry_point = row.entry_point,
                                      timeout = TIMEOUT }
    return r.passed and 1.0 or 0.0, { status = r.status, passed = r.passed, wall_ms = r.wall_ms,
                                      stderr = r.passed and nil or r.stderr:sub(-300) }
  end,
}
