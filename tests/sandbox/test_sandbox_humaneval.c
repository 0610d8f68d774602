/* test_sandbox_humaneval: all 164 HumanEval canonical solutions pass their tests in the
 * sandbox (exit 0 and the per-run nonce printed after check()), and a broken version of
 * each fails. The mutant wraps the entry point so that every return value is changed
 * (numbers + 1, booleans negated, strings and sequences extended, anything else None):
 * a real semantic break that no HumanEval test can accept. All 328 programs go through
 * a pool of 2 slots at the best tier. Data: ../shared/data/humaneval.jsonl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sandbox/sandbox_cases.h"
#include "test.h"

enum { MAXP = 200 };

static const char *mutant_wrapper =
    "\n\ndef _grpo_mutant(f):\n"
    "    def g(*a, **k):\n"
    "        r = f(*a, **k)\n"
    "        if isinstance(r, bool): return not r\n"
    "        if isinstance(r, (int, float)): return r + 1\n"
    "        if isinstance(r, str): return r + 'x'\n"
    "        if isinstance(r, list): return r + [None]\n"
    "        if isinstance(r, tuple): return r + (None,)\n"
    "        if r is None: return 0\n"
    "        return None\n"
    "    return g\n"
    "%s = _grpo_mutant(%s)\n";

static char *cat3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

int main(void) {
    const char *path = GRPO_SHARED_DIR "/data/humaneval.jsonl";
    FILE *f = fopen(path, "r");
    if (!f) TEST_SKIP("%s not found", path);
    if (sandbox_probe() < 0 || !sandbox_tool_path(SANDBOX_PYTHON)) TEST_SKIP("no sandbox tier or no python3 here");
    printf("probe: %s\n", sandbox_probe_report());
    static char *progs[2 * MAXP];
    static char nonces[2 * MAXP][33];
    static char ids[MAXP][32];
    static SandboxConfig cfgs[2 * MAXP];
    static SandboxResult res[2 * MAXP];
    int n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0 && n < MAXP) {
        cJSON *o = cJSON_Parse(line);
        const char *k[] = {"task_id", "prompt", "canonical_solution", "test", "entry_point"};
        const char *v[5] = {0};
        for (int j = 0; j < 5; j++) {
            cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k[j]);
            v[j] = cJSON_IsString(x) ? x->valuestring : NULL;
        }
        CHECK(o && v[0] && v[1] && v[2] && v[3] && v[4], "line %d of %s: missing fields", n + 1, path);
        if (!(o && v[0] && v[1] && v[2] && v[3] && v[4])) { cJSON_Delete(o); continue; }
        snprintf(ids[n], sizeof ids[n], "%s", v[0]);
        char *good = cat3(v[1], v[2], "");
        char wrap[1024];
        snprintf(wrap, sizeof wrap, mutant_wrapper, v[4], v[4]);
        char *bad = cat3(v[1], v[2], wrap);
        progs[2 * n] = sandbox_assert_program(good, v[3], v[4], nonces[2 * n], NULL);
        progs[2 * n + 1] = sandbox_assert_program(bad, v[3], v[4], nonces[2 * n + 1], NULL);
        free(good);
        free(bad);
        for (int m = 0; m < 2; m++)
            cfgs[2 * n + m] = (SandboxConfig){.lang = SANDBOX_PYTHON, .code = progs[2 * n + m], .timeout_s = 20,
                                              .memory_mb = 1024, .output_cap = 1 << 16};
        cJSON_Delete(o);
        n++;
    }
    free(line);
    fclose(f);
    CHECK(n == 164, "%d problems read from %s, expected 164", n, path);
    Err err = {0};
    SandboxPool *pool = sandbox_pool_new(2, &err);
    CHECK(pool != NULL, "pool: %s", err.msg);
    if (!pool) return test_report();
    CHECK(sandbox_pool_run(pool, cfgs, res, 2 * n, &err) == 0, "pool run: %s", err.msg);
    int good_pass = 0, bad_fail = 0;
    for (int i = 0; i < n; i++) {
        SandboxResult *g = &res[2 * i], *b = &res[2 * i + 1];
        int gp = sandbox_assert_passed(g, nonces[2 * i]), bp = sandbox_assert_passed(b, nonces[2 * i + 1]);
        good_pass += gp;
        bad_fail += !bp;
        CHECK(gp, "%s canonical solution failed: %s (%s) %.400s", ids[i], sandbox_status_name(g->status), g->message, g->err);
        CHECK(!bp, "%s mutant passed", ids[i]);
        CHECK(b->status == SANDBOX_RUNTIME_ERROR, "%s mutant: status %s, expected runtime_error (AssertionError)",
              ids[i], sandbox_status_name(b->status));
        sandbox_result_free(g);
        sandbox_result_free(b);
        free(progs[2 * i]);
        free(progs[2 * i + 1]);
    }
    printf("HumanEval: %d/%d canonical solutions pass, %d/%d mutants fail (isolation %s)\n", good_pass, n, bad_fail, n,
           sandbox_probe() == SANDBOX_TIER_NAMESPACES ? "namespaces" : "seccomp");
    sandbox_pool_free(pool);
    return test_report();
}
