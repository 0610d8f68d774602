/* test_cmd_reward: `grpo reward` end to end (DESIGN.md §5): one JSON object
 * per sample with index, reward, error and the extras; exit codes and
 * file:line messages on bad input. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rtest.h"
#include "test.h"

/* Runs cmd, captures stdout+stderr into out; returns the exit code. */
static int run(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t len = fread(out, 1, n - 1, p);
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void) {
    if (access(GRPO_BIN, X_OK)) TEST_SKIP("%s not built", GRPO_BIN);
    const char *data = rt_write("data.jsonl",
                                "{\"question\": \"q0\", \"answer\": \"work\\n#### 1,200\"}\n"
                                "{\"question\": \"q1\", \"answer\": \"work\\n#### 7\"}\n"
                                "\n"
                                "{\"question\": \"q2\", \"answer\": \"\"}\n");
    const char *comp = rt_write("comp.jsonl",
                                "{\"completion\": \"so \\\\boxed{1200}\", \"completion_tokens\": 5}\n"
                                "{\"completion\": \"so \\\\boxed{8}\"}\n"
                                "{\"completion\": \"x\"}\n");
    char cmd[2048], out[16384];
    snprintf(cmd, sizeof cmd, "%s reward %s/../rewards/math_accuracy.lua --data %s --completions %s --workers 2 2>/dev/null",
             GRPO_BIN, GRPO_TESTS_DIR, data, comp);
    int rc = run(cmd, out, sizeof out);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    char *lines[8];
    int n = 0;
    for (char *save, *l = strtok_r(out, "\n", &save); l && n < 8; l = strtok_r(NULL, "\n", &save)) lines[n++] = l;
    CHECK(n == 3, "%d lines", n);
    if (n == 3) {
        cJSON *a = cJSON_Parse(lines[0]), *b = cJSON_Parse(lines[1]), *c = cJSON_Parse(lines[2]);
        CHECK(a && cJSON_GetObjectItem(a, "index")->valuedouble == 0 && cJSON_GetObjectItem(a, "reward")->valuedouble == 1 &&
                  cJSON_IsNull(cJSON_GetObjectItem(a, "error")) &&
                  !strcmp(cJSON_GetObjectItem(a, "pred")->valuestring, "1200") &&
                  !strcmp(cJSON_GetObjectItem(a, "gold")->valuestring, "1200"),
              "line 0: %s", lines[0]);
        CHECK(b && cJSON_GetObjectItem(b, "reward")->valuedouble == 0, "line 1: %s", lines[1]);
        CHECK(c && cJSON_IsNull(cJSON_GetObjectItem(c, "reward")) && cJSON_GetObjectItem(c, "index")->valuedouble == 2,
              "line 2 (no gold -> null): %s", lines[2]);
        cJSON_Delete(a);
        cJSON_Delete(b);
        cJSON_Delete(c);
    }
    /* two scripts: weighted total and per-script values */
    snprintf(cmd, sizeof cmd, "%s reward %s/../rewards/math_accuracy.lua %s/../rewards/format.lua --data %s --completions %s --limit 1 2>/dev/null",
             GRPO_BIN, GRPO_TESTS_DIR, GRPO_TESTS_DIR, data, comp);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "\"reward\":1,") && strstr(out, "\"rewards\":{\"math_accuracy\":{\"reward\":1") &&
              strstr(out, "\"format\":{\"reward\":0}"),
          "two scripts (exit %d): %s", rc, out);
    /* a syntax error names file:line, exit 2 */
    const char *bad = rt_write("bad.lua", "return {\nscore = function( end }\n");
    snprintf(cmd, sizeof cmd, "%s reward %s --data %s 2>&1", GRPO_BIN, bad, data);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "bad.lua:2:"), "syntax error (exit %d): %s", rc, out);
    /* a bad data line names file:line, exit 2 */
    const char *bdata = rt_write("bdata.jsonl", "{\"completion\": \"a\"}\nnot json\n");
    snprintf(cmd, sizeof cmd, "%s reward %s/../rewards/format.lua --data %s 2>&1", GRPO_BIN, GRPO_TESTS_DIR, bdata);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "bdata.jsonl:2: not a JSON object"), "bad data (exit %d): %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s reward %s/../rewards/format.lua 2>&1", GRPO_BIN, GRPO_TESTS_DIR);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 2, "missing --data: exit %d", rc);
    return test_report();
}
