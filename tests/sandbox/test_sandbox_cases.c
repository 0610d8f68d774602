/* test_sandbox_cases: output comparison rules, the stdin/stdout case runner, the pool,
 * and the `grpo sandbox run` JSON contract (DESIGN.md §5) through the real binary. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sandbox/sandbox_cases.h"
#include "test.h"

static void test_compare(void) {
    struct { const char *exp, *act; int match; } c[] = {
        {"1\n2\n", "1\n2", 1},
        {"1 2\n", "  1   2  \n\n\n", 1},
        {"a\n", "a\r\n", 1},
        {"1\n2\n", "1\n", 0},          // a missing line fails (no zip-style compare)
        {"1\n", "1\n2\n", 0},          // an extra line fails
        {"\na\n", "a\n", 0},           // a leading empty line counts
        {"0.333333", "0.3333333", 1},  // decimals within 1e-6
        {"0.3", "0.31", 0},
        {"3", "3.0", 1},
        {"3", "4", 0},
        {"10", "010", 0},              // integers must be written the same
        {"1 2 3", "1 2", 0},
        {"abc", "ABC", 0},
        {"1e-9", "0", 1},
        {"YES", "YES", 1},
        {"", "", 1},
        {"", "\n\n", 1},
        {"x", "", 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        CHECK(sandbox_output_matches(c[i].exp, c[i].act, 1e-6) == c[i].match, "case %zu: '%s' vs '%s' should %s",
              i, c[i].exp, c[i].act, c[i].match ? "match" : "differ");
}

static void test_cases_and_pool(void) {
    Err err = {0};
    SandboxPool *pool = sandbox_pool_new(2, &err);
    CHECK(pool != NULL, "pool: %s", err.msg);
    if (!pool) return;
    SandboxCase cases[] = {{"1 2\n", "3\n"}, {"10 20\n", "30"}, {"2 2\n", "5\n"}, {"-1 1\n", "0\n"}};
    int passed[4];
    SandboxConfig base = {.lang = SANDBOX_PYTHON, .code = "a, b = map(int, input().split())\nprint(a + b)\n",
                          .timeout_s = 10};
    CHECK(sandbox_run_cases(pool, &base, cases, 4, 1e-6, passed, &err) == 3, "sum: %s", err.msg);
    CHECK(passed[0] && passed[1] && !passed[2] && passed[3], "sum: per-case results");
    CHECK(sandbox_run_cases(NULL, &base, cases, 4, 1e-6, passed, &err) == 3, "sum without a pool: %s", err.msg);
    // Prints only the first of two expected lines: zip-style judging would accept it.
    SandboxCase two[] = {{"", "1\n2\n"}};
    base.code = "print(1)\n";
    CHECK(sandbox_run_cases(pool, &base, two, 1, 1e-6, passed, &err) == 0, "a missing line must fail");
    // A crashing program fails even if its partial output matched.
    base.code = "print(1)\nprint(2)\nraise SystemExit(3)\n";
    CHECK(sandbox_run_cases(pool, &base, two, 1, 1e-6, passed, &err) == 0, "a non-zero exit must fail");
    // Many jobs from one batch: all results come back in order.
    enum { N = 24 };
    SandboxConfig cfgs[N];
    SandboxResult res[N];
    char codes[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(codes[i], sizeof codes[i], "print(%d * %d)\n", i, i);
        cfgs[i] = (SandboxConfig){.lang = SANDBOX_PYTHON, .code = codes[i], .timeout_s = 10};
    }
    CHECK(sandbox_pool_run(pool, cfgs, res, N, &err) == 0, "pool batch: %s", err.msg);
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "%d\n", i * i);
        CHECK(res[i].status == SANDBOX_OK && !strcmp(res[i].out, want), "pool job %d: %s %s", i,
              sandbox_status_name(res[i].status), res[i].out);
        sandbox_result_free(&res[i]);
    }
    // An invalid config in a batch is reported, the others still run.
    cfgs[1].code = NULL;
    CHECK(sandbox_pool_run(pool, cfgs, res, 3, &err) < 0 && err.code == ERR_INPUT, "invalid config in a batch");
    CHECK(res[0].status == SANDBOX_OK && res[1].status == SANDBOX_ERROR && res[2].status == SANDBOX_OK, "batch statuses");
    for (int i = 0; i < 3; i++) sandbox_result_free(&res[i]);
    // Warm mode (root only): Python jobs go through a zygote per slot, shell still runs normally.
    if (geteuid() == 0) {
        CHECK(sandbox_pool_use_zygotes(pool, 0, &err) == 0, "warm mode: %s", err.msg);
        cfgs[1].code = codes[1];
        cfgs[N - 1] = (SandboxConfig){.lang = SANDBOX_SHELL, .code = "echo c\n", .timeout_s = 20};
        CHECK(sandbox_pool_run(pool, cfgs, res, N, &err) == 0, "warm batch: %s", err.msg);
        for (int i = 0; i < N; i++) {
            char want[32];
            snprintf(want, sizeof want, "%d\n", i * i);
            int is_c = i == N - 1;
            CHECK(res[i].status == SANDBOX_OK && !strcmp(res[i].out, is_c ? "c\n" : want) &&
                  (strstr(res[i].isolation, "zygote") != NULL) == !is_c,
                  "warm job %d: %s %s %s", i, sandbox_status_name(res[i].status), res[i].out, res[i].isolation);
            sandbox_result_free(&res[i]);
        }
        CHECK(sandbox_run_cases(pool, &base, two, 1, 1e-6, passed, &err) == 0, "warm: a non-zero exit must fail");
    }
    sandbox_pool_free(pool);
}

/* Runs the grpo binary; returns its exit code and its stdout in *out (malloc'd). */
static int run_cli(const char *args, char **out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", GRPO_BIN, args);
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, n = 0;
    *out = calloc(cap, 1);
    for (size_t got; p && (got = fread(*out + n, 1, cap - n - 1, p)) > 0;) n += got;
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    char dir[] = "/tmp/grpo-sandbox-cli-XXXXXX";
    if (!mkdtemp(dir)) return;
    char prog[128], in[128], args[512];
    snprintf(prog, sizeof prog, "%s/p.py", dir);
    snprintf(in, sizeof in, "%s/in.txt", dir);
    FILE *f = fopen(prog, "w");
    fputs("import sys\nprint(input()[::-1], sys.argv[1])\nsys.stderr.write('\\xff\\n')\nsys.exit(4)\n", f);
    fclose(f);
    f = fopen(in, "w");
    fputs("abc\n", f);
    fclose(f);
    for (int tier = 1; tier <= 2; tier++) {
        if (tier == 1 && sandbox_probe() != SANDBOX_TIER_NAMESPACES) continue;
        char *out;
        snprintf(args, sizeof args, "sandbox run --tier %d --timeout 5 --memory 256 --stdin %s %s ARG", tier, in, prog);
        int rc = run_cli(args, &out);
        CHECK(rc == 0, "cli tier %d: exit %d", tier, rc);
        cJSON *o = cJSON_Parse(out);
        CHECK(o != NULL, "cli tier %d: not JSON: %s", tier, out);
        const char *keys[] = {"status", "exit_code", "stdout", "stderr", "wall_ms", "cpu_ms", "isolation", "cgroup"};
        for (int i = 0; o && i < 8; i++)
            CHECK(cJSON_GetObjectItemCaseSensitive(o, keys[i]) != NULL, "cli: missing '%s'", keys[i]);
        if (o) {
            CHECK(!strcmp(cJSON_GetObjectItem(o, "status")->valuestring, "runtime_error"), "cli: status");
            CHECK(cJSON_GetObjectItem(o, "exit_code")->valueint == 4, "cli: exit_code");
            CHECK(!strcmp(cJSON_GetObjectItem(o, "stdout")->valuestring, "cba ARG\n"), "cli: stdout %s",
                  cJSON_GetObjectItem(o, "stdout")->valuestring);
            CHECK(!strcmp(cJSON_GetObjectItem(o, "isolation")->valuestring, tier == 1 ? "namespaces" : "seccomp+landlock") ||
                  (tier == 2 && !strcmp(cJSON_GetObjectItem(o, "isolation")->valuestring, "seccomp")), "cli: isolation");
            const char *cg = cJSON_GetObjectItem(o, "cgroup") ? cJSON_GetObjectItem(o, "cgroup")->valuestring : "";
            CHECK(cg && (!strcmp(cg, "v2") || !strcmp(cg, "none")), "cli: cgroup '%s'", cg ? cg : "(null)");
            // Python writes U+00FF as UTF-8; the JSON must stay valid UTF-8 whatever the bytes.
            CHECK(strstr(cJSON_GetObjectItem(o, "stderr")->valuestring, "\xc3\xbf") != NULL, "cli: stderr");
        }
        cJSON_Delete(o);
        free(out);
    }
    char *out;
    snprintf(args, sizeof args, "sandbox run %s/missing.py", dir);
    CHECK(run_cli(args, &out) == 2, "cli: a missing file is exit 2");
    free(out);
    snprintf(args, sizeof args, "sandbox run --lang cobol %s", prog);
    CHECK(run_cli(args, &out) == 2, "cli: an unknown language is exit 2");
    free(out);
    CHECK(run_cli("sandbox run --help", &out) == 0 && strstr(out, "--timeout"), "cli: --help");
    free(out);
    unlink(prog);
    unlink(in);
    rmdir(dir);
}

int main(void) {
    test_compare();
    if (sandbox_probe() < 0 || !sandbox_tool_path(SANDBOX_PYTHON)) {
        test_report();
        TEST_SKIP("comparison rules checked; no sandbox tier or python3 for the runner and CLI parts");
    }
    test_cases_and_pool();
    test_cli();
    return test_report();
}
