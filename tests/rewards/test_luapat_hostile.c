/* test_luapat_hostile: Lua patterns that backtrack for minutes on long
 * completions are stopped by the step limit inside the reward engine. Each
 * case scores a 10k-100k character completion with the engine's default
 * budget (50 M instructions, 10 M steps per pattern call); the sample must
 * get the step-limit error (or the instruction-budget error when the script
 * swallows it with pcall), and the same set must then score the next sample.
 * The patterns are the ones the issue names: the R1 think/answer pattern over
 * a completion that does not match, runs of '-', %b over unbalanced text. */
#include "rtest.h"
#include "test.h"

typedef struct Case {
    const char *name;
    const char *subject; /* Lua expression for the evil subject; `c` is the completion */
    const char *call;    /* statements using `s` */
    const char *want;
} Case;

#define R1 "'<think>(.-)</think>%s*<answer>(.-)</answer>'"

static const Case cases[] = {
    {"r1_match", "c", "return s:match(" R1 ") and 1 or 0", "pattern matching step limit exceeded"},
    {"r1_string_find", "c", "return string.find(s, " R1 ") and 1 or 0", "pattern matching step limit exceeded"},
    {"r1_gmatch", "c", "for a, b in s:gmatch(" R1 ") do end return 0", "pattern matching step limit exceeded"},
    {"r1_gsub", "c", "return select(2, s:gsub(" R1 ", '%2'))", "pattern matching step limit exceeded"},
    {"dash_run", "string.rep('a', 10000)", "return s:find(string.rep('a-', 6) .. 'b') and 1 or 0",
     "pattern matching step limit exceeded"},
    {"star_run", "string.rep('a', 20000)", "return s:find('a*a*a*a*c') and 1 or 0", "pattern matching step limit exceeded"},
    {"balance_unclosed", "string.rep('(', 50000)", "return s:find('%b()') and 1 or 0", "pattern matching step limit exceeded"},
    {"backref", "string.rep('a', 50000)", "return s:find('(.-)%1b') and 1 or 0", "pattern matching step limit exceeded"},
    {"frontier_words", "string.rep('ab ', 20000)", "return s:find('%f[%w]%w+%f[%W].-x') and 1 or 0",
     "pattern matching step limit exceeded"},
    {"gsub_function", "c", "return select(2, s:gsub('<think>', function() return s:match(" R1 ") end))",
     "pattern matching step limit exceeded"},
    {"pcall_swallow", "c", "while true do pcall(string.match, s, " R1 ") end", "instruction budget exceeded"},
    {"pcall_swallow_gmatch", "c", "while true do pcall(function() for x in s:gmatch(" R1 ") do end end) end",
     "instruction budget exceeded"},
    {"many_plain_finds", "c", "while true do s:find('<answer>', 1, true) end", "instruction budget exceeded"},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* "evil" then n characters of think blocks with no <answer>: the R1 pattern
 * opens at every <think> and scans the rest for each </think>. */
static char *evil_completion(size_t n) {
    static const char unit[] = "<think> step </think>\n";
    char *s = malloc(n + 8);
    size_t k = 4;
    memcpy(s, "evil", 4);
    while (k + sizeof unit - 1 <= n) { memcpy(s + k, unit, sizeof unit - 1); k += sizeof unit - 1; }
    s[k] = 0;
    return s;
}

static void run_case(const Case *c, const char *evil) {
    char code[2048], name[96];
    snprintf(name, sizeof name, "luapat_%s.lua", c->name);
    snprintf(code, sizeof code,
             "return { name = '%s', score = function(sample)\n"
             "  local c = sample.completion\n"
             "  if c:sub(1, 4) == 'evil' then local s = %s\n %s\n end\n"
             "  local a = c:match('<answer>(.-)</answer>') return tonumber(a) end }\n",
             c->name, c->subject, c->call);
    RewardOpts o = {.workers = 1};
    Err err = {0};
    RewardSet *rs = rt_load(name, code, &o, &err);
    CHECK(rs != NULL, "%s: load: %s", c->name, err.msg);
    if (!rs) return;
    RewardResult r;
    rt_score1(rs, evil, &r);
    CHECK(!r.has_value && r.error && strstr(r.error, c->want), "%s: value %g error '%s', want '%s'", c->name, r.value,
          r.error ? r.error : "(none)", c->want);
    if (getenv("RTEST_VERBOSE")) fprintf(stderr, "%s: %s\n", c->name, r.error ? r.error : "-");
    reward_results_clear(&r, 1);
    rt_score1(rs, "<think>\nok\n</think>\n<answer>42</answer>", &r);
    CHECK(r.has_value && r.value == 42 && !r.error, "%s: next sample: value %g error %s", c->name, r.value,
          r.error ? r.error : "-");
    reward_results_clear(&r, 1);
    reward_set_free(rs);
}

/* A long completion that does match costs few steps: the same pattern finds
 * the answer after 100k characters of thinking. */
static void test_long_match_ok(void) {
    size_t n = 100000;
    char *s = malloc(n + 64);
    memcpy(s, "<think>", 7);
    memset(s + 7, 'x', n);
    strcpy(s + 7 + n, "</think>\n<answer>7</answer>");
    const char *code =
        "return { name = 'ok', score = function(sample)\n"
        "  local t, a = sample.completion:match(" R1 ")\n"
        "  local n = select(2, sample.completion:gsub('x', 'y'))\n"
        "  return tonumber(a) + #t + n end }\n";
    RewardOpts o = {.workers = 1};
    Err err = {0};
    RewardSet *rs = rt_load("luapat_ok.lua", code, &o, &err);
    CHECK(rs != NULL, "load: %s", err.msg);
    if (rs) {
        RewardResult r;
        rt_score1(rs, s, &r);
        CHECK(r.has_value && r.value == 7.0 + 2.0 * (double)n, "value %g error %s", r.value, r.error ? r.error : "-");
        reward_results_clear(&r, 1);
        reward_set_free(rs);
    }
    free(s);
}

/* Several workers, evil and good samples interleaved: every evil one fails
 * with the step limit, every good one scores, in its own slot. */
static void test_parallel(const char *evil) {
    const char *code =
        "return { name = 'par', score = function(sample)\n"
        "  local t, a = sample.completion:match(" R1 ")\n"
        "  return tonumber(a) end }\n";
    RewardOpts o = {.workers = 3};
    Err err = {0};
    RewardSet *rs = rt_load("luapat_par.lua", code, &o, &err);
    CHECK(rs != NULL, "load: %s", err.msg);
    if (!rs) return;
    enum { N = 12 };
    RewardSample smp[N];
    char good[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(good[i], sizeof good[i], "<think>a</think> <answer>%d</answer>", i);
        smp[i] = (RewardSample){.prompt = "", .completion = i % 3 == 1 ? evil : good[i], .prompt_tokens = -1,
                                .completion_tokens = -1};
    }
    RewardResult r[N];
    CHECK(reward_set_score(rs, smp, N, r, NULL, &err) == 0, "score: %s", err.msg);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        if (i % 3 == 1) ok &= !r[i].has_value && r[i].error && strstr(r[i].error, "step limit") != NULL;
        else ok &= r[i].has_value && r[i].value == i;
    }
    CHECK(ok, "mixed batch results wrong");
    reward_results_clear(r, N);
    reward_set_free(rs);
}

int main(void) {
    char *evil = evil_completion(100000);
    for (int k = 0; k < NCASES; k++) run_case(&cases[k], evil);
    test_long_match_ok();
    char *evil30k = evil_completion(30000);
    test_parallel(evil30k);
    free(evil30k);
    free(evil);
    return test_report();
}
