/* test_code_reward: rewards/code.lua on real HumanEval problems through the
 * sandbox: the canonical solution passes, a wrong body fails, an infinite
 * loop times out, exit(0) before the asserts is not a pass, and a fenced
 * code block is taken from a chatty completion. */
#include <stdlib.h>
#include <string.h>

#include "rtest.h"
#include "sandbox/sandbox.h"
#include "test.h"

static double score(RewardSet *rs, const cJSON *row, const char *completion, char **extras) {
    RewardSample s = {.prompt = "rendered prompt", .completion = completion, .row = row, .prompt_tokens = -1,
                      .completion_tokens = -1};
    RewardResult r;
    Err err = {0};
    reward_set_score(rs, &s, 1, &r, NULL, &err);
    double v = r.has_value ? r.value : -1;
    if (r.error) fprintf(stderr, "error: %s\n", r.error);
    *extras = r.extras ? strdup(r.extras) : NULL;
    reward_results_clear(&r, 1);
    return v;
}

int main(void) {
    if (sandbox_probe() < 0) TEST_SKIP("no sandbox tier available: %s", sandbox_probe_report());
    if (!sandbox_tool_path(SANDBOX_PYTHON)) TEST_SKIP("no python for the sandbox");
    FILE *f = fopen(GRPO_SHARED_DIR "/data/humaneval.jsonl", "r");
    if (!f) TEST_SKIP("humaneval.jsonl missing");
    char *line = NULL;
    size_t cap = 0;
    enum { NP = 6 };
    cJSON *rows[NP] = {0};
    for (int i = 0; i < NP && getline(&line, &cap, f) > 0; i++) rows[i] = cJSON_Parse(line);
    free(line);
    fclose(f);
    const char *path = GRPO_TESTS_DIR "/../rewards/code.lua";
    Err err = {0};
    RewardOpts o = {.workers = 1};
    RewardSet *rs = reward_set_load(&path, 1, NULL, &o, &err);
    CHECK(rs != NULL, "load: %s", err.msg);
    if (!rs || !rows[NP - 1]) return test_report();
    char *x = NULL;
    for (int i = 0; i < 2; i++) {
        const char *sol = cJSON_GetObjectItem(rows[i], "canonical_solution")->valuestring;
        double v = score(rs, rows[i], sol, &x);
        CHECK(v == 1.0, "problem %d canonical solution: %g %s", i, v, x ? x : "");
        free(x);
    }
    double v = score(rs, rows[0], "    return None\n", &x);
    CHECK(v == 0.0 && x && strstr(x, "runtime_error"), "wrong body: %g %s", v, x ? x : "");
    free(x);
    v = score(rs, rows[0], "    while True:\n        pass\n", &x);
    CHECK(v == 0.0, "infinite loop: %g %s", v, x ? x : "");
    free(x);
    v = score(rs, rows[0], "    import sys; sys.exit(0)\n", &x);
    CHECK(v == 0.0, "exit(0) hack: %g %s", v, x ? x : "");
    free(x);
    char chat[8192];
    snprintf(chat, sizeof chat, "Here is my solution:\n```python\n%s%s```\nHope it helps.",
             cJSON_GetObjectItem(rows[1], "prompt")->valuestring,
             cJSON_GetObjectItem(rows[1], "canonical_solution")->valuestring);
    v = score(rs, rows[1], chat, &x);
    CHECK(v == 1.0, "fenced block: %g %s", v, x ? x : "");
    free(x);
    reward_set_free(rs);

    /* grpo.sandbox.run directly: stdin in, stdout out, statuses by name */
    const char *direct =
        "return { score = function(s)\n"
        "  local r = grpo.sandbox.run{ code = 'print(input()[::-1])', stdin = 'olleh\\n', timeout = 5 }\n"
        "  assert(r.ok and r.status == 'ok' and r.stdout == 'hello\\n', r.status .. ' ' .. r.stderr)\n"
        "  local t = grpo.sandbox.run{ code = 'while True: pass', timeout = 1 }\n"
        "  assert(not t.ok and t.status == 'timeout', t.status)\n"
        "  local e = grpo.sandbox.run{ code = 'raise SystemExit(3)' }\n"
        "  assert(e.status == 'runtime_error' and e.exit_code == 3, e.status)\n"
        "  local ok, msg = pcall(grpo.sandbox.run, { lang = 'cobol', code = 'x' })\n"
        "  assert(not ok and msg:find('unknown lang'))\n"
        "  return 1 end }\n";
    rs = rt_load("direct.lua", direct, &o, &err);
    CHECK(rs != NULL, "load: %s", err.msg);
    if (rs) {
        RewardResult r;
        rt_score1(rs, "x", &r);
        CHECK(r.has_value && r.value == 1, "grpo.sandbox.run: %s", r.error ? r.error : "");
        reward_results_clear(&r, 1);
        reward_set_free(rs);
    }

    /* several workers at once: each uses its own sandbox slot */
    RewardOpts o3 = {.workers = 3};
    rs = reward_set_load(&path, 1, NULL, &o3, &err);
    CHECK(rs != NULL, "load: %s", err.msg);
    if (rs) {
        RewardSample s[NP];
        RewardResult r[NP];
        for (int i = 0; i < NP; i++)
            s[i] = (RewardSample){.prompt = "", .row = rows[i], .prompt_tokens = -1, .completion_tokens = -1,
                                  .completion = cJSON_GetObjectItem(rows[i], "canonical_solution")->valuestring};
        reward_set_score(rs, s, NP, r, NULL, &err);
        int passed = 0;
        for (int i = 0; i < NP; i++) passed += r[i].has_value && r[i].value == 1;
        CHECK(passed == NP, "parallel: %d of %d canonical solutions passed", passed, NP);
        reward_results_clear(r, NP);
        reward_set_free(rs);
    }
    for (int i = 0; i < NP; i++) cJSON_Delete(rows[i]);
    return test_report();
}
