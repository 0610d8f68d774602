/* test_sandbox_zygote: the fork server (a warm Python per slot). Each run must behave as
 * a fresh process: stdin/args/exit codes as with sandbox_run, no files or processes
 * left for the next run, the wall clock and output cap enforced, host files out of
 * reach, and a run that kills its zygote only costs a restart; and HumanEval's 164
 * canonical solutions pass through it while a broken version of each fails (the same
 * mutants as test_sandbox_humaneval). Needs root. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sandbox/sandbox_cases.h"
#include "sandbox/sandbox_zygote.h"
#include "test.h"

enum { SLOT = 40 };

static SandboxResult zrun(SandboxZygote *z, const char *code, const char *in, double timeout) {
    const char *args[] = {"x y", "z"};
    SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .code = code, .stdin_data = in, .stdin_len = in ? strlen(in) : 0,
                         .args = args, .nargs = 2, .timeout_s = timeout, .output_cap = 1 << 16};
    SandboxResult r;
    Err err = {0};
    if (sandbox_zygote_run(z, &cfg, &r, &err) < 0) {
        fprintf(stderr, "zygote run: %s\n", err.msg);
        r.status = SANDBOX_ERROR;
    }
    return r;
}

static int slot_procs(void) {
    unsigned uid = sandbox_slot_uid(SLOT);
    int n = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = e->d_name[0] >= '0' && e->d_name[0] <= '9' ? fopen(path, "r") : NULL;
        while (f && fgets(line, sizeof line, f)) {
            unsigned u;
            if (sscanf(line, "Uid:\t%u", &u) == 1) { n += u == uid; break; }
        }
        if (f) fclose(f);
    }
    if (d) closedir(d);
    return n;
}

static void humaneval(SandboxZygote *z) {
    FILE *f = fopen(GRPO_SHARED_DIR "/data/humaneval.jsonl", "r");
    if (!f) {
        printf("skipped HumanEval through the zygote: no %s\n", GRPO_SHARED_DIR "/data/humaneval.jsonl");
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    int n = 0, good = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        const char *k[] = {"prompt", "canonical_solution", "test", "entry_point"};
        const char *v[4] = {0};
        for (int j = 0; j < 4; j++) {
            cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k[j]);
            v[j] = cJSON_IsString(x) ? x->valuestring : NULL;
        }
        if (!v[0] || !v[1] || !v[2] || !v[3]) { cJSON_Delete(o); continue; }
        for (int m = 0; m < 2; m++) {
            char tail[256] = "";
            if (m) snprintf(tail, sizeof tail, "\n_f = %s\n%s = lambda *a, **k: (lambda r: not r if isinstance(r, bool) else "
                            "r + 1 if isinstance(r, (int, float)) else None)(_f(*a, **k))\n", v[3], v[3]);
            size_t len = strlen(v[0]) + strlen(v[1]) + strlen(tail) + 1;
            char *prog = malloc(len), nonce[33];
            snprintf(prog, len, "%s%s%s", v[0], v[1], tail);
            char *full = sandbox_assert_program(prog, v[2], v[3], nonce, NULL);
            SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .code = full, .timeout_s = 20};
            SandboxResult r;
            int ok = sandbox_zygote_run(z, &cfg, &r, NULL) == 0 && sandbox_assert_passed(&r, nonce);
            if (m == 0) good += ok;
            else bad += !ok;
            if (m == 0 && !ok) fprintf(stderr, "zygote HumanEval %d: %s %s %.300s\n", n, sandbox_status_name(r.status), r.message, r.err);
            sandbox_result_free(&r);
            free(full);
            free(prog);
        }
        n++;
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    printf("zygote HumanEval: %d/%d canonical pass, %d/%d mutants fail\n", good, n, bad, n);
    CHECK(n == 164 && good == n, "zygote HumanEval: %d of %d canonical solutions passed", good, n);
    // This simpler mutant (numbers + 1, booleans negated, else None) must fail everywhere too.
    CHECK(bad == n, "zygote HumanEval: %d of %d mutants failed", bad, n);
}

int main(void) {
    if (geteuid() != 0) TEST_SKIP("the zygote needs root (a distinct slot uid)");
    if (sandbox_probe() < 0 || !sandbox_tool_path(SANDBOX_PYTHON)) TEST_SKIP("no seccomp or no python3 here");
    Err err = {0};
    SandboxZygote *z = sandbox_zygote_new(SLOT, 512, &err);
    CHECK(z != NULL, "zygote: %s", err.msg);
    if (!z) return test_report();
    SandboxResult r = zrun(z, "import sys\nprint(input(), sys.argv)\nexit(3)\n", "hi\n", 5);
    CHECK(r.status == SANDBOX_RUNTIME_ERROR && r.exit_code == 3 && !strcmp(r.out, "hi ['main.py', 'x y', 'z']\n"),
          "basic: %s %d %s %s", sandbox_status_name(r.status), r.exit_code, r.out, r.err);
    sandbox_result_free(&r);
    r = zrun(z, "import os, time\nopen('left.txt', 'w').write('x')\nglobal_state = 1\n"
                "if os.fork() == 0:\n    time.sleep(60)\nprint('parent')\n", NULL, 5);
    CHECK(r.status == SANDBOX_OK && r.wall_ms < 6000, "background child: %s %ld ms", sandbox_status_name(r.status), r.wall_ms);
    sandbox_result_free(&r);
    CHECK(slot_procs() == 1, "after a run only the zygote is left: %d processes of the slot uid", slot_procs());
    r = zrun(z, "import os\nprint(sorted(os.listdir('.')), 'global_state' in globals())\n", NULL, 5);
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "['main.py'] False\n"), "state left behind: %s %s", r.out, r.err);
    sandbox_result_free(&r);
    r = zrun(z, "while True:\n    pass\n", NULL, 1);
    CHECK(r.status == SANDBOX_TIMEOUT && r.wall_ms < 6000, "cpu loop: %s %ld", sandbox_status_name(r.status), r.wall_ms);
    sandbox_result_free(&r);
    r = zrun(z, "while True:\n    print('x' * 1000)\n", NULL, 5);
    CHECK(r.status == SANDBOX_OUTPUT_LIMIT && r.out_len == 1 << 16, "output: %s %zu", sandbox_status_name(r.status), r.out_len);
    sandbox_result_free(&r);
    r = zrun(z, "x = bytearray(8 << 30)\n", NULL, 5);
    CHECK(r.status == SANDBOX_MEMORY, "memory: %s", sandbox_status_name(r.status));
    sandbox_result_free(&r);
    r = zrun(z, "print(open('/etc/passwd').read())\n", NULL, 5);
    CHECK(r.status == SANDBOX_RUNTIME_ERROR && strstr(r.err, "PermissionError"), "host file: %s %s", r.out, r.err);
    sandbox_result_free(&r);
    r = zrun(z, "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n", NULL, 5);
    CHECK(r.status == SANDBOX_RUNTIME_ERROR && strstr(r.err, "PermissionError"), "network: %s", r.err);
    sandbox_result_free(&r);
    r = zrun(z, "import os\nos.kill(os.getppid(), 9)\n", NULL, 5);
    CHECK(r.status != SANDBOX_OK, "killing the zygote is not ok: %s", sandbox_status_name(r.status));
    sandbox_result_free(&r);
    r = zrun(z, "print('restarted')\n", NULL, 5);
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "restarted\n"), "restart after a killed zygote: %s %s",
          sandbox_status_name(r.status), r.message);
    sandbox_result_free(&r);
    char nonce[33];
    char *prog = sandbox_assert_program("def f(x):\n    return 0\nimport sys\nsys.exit(0)\n",
                                        "def check(c):\n    assert c(1) == 2\n", "f", nonce, NULL);
    r = zrun(z, prog, NULL, 5);
    CHECK(r.status == SANDBOX_OK && !sandbox_assert_passed(&r, nonce), "exit(0) before the asserts counted as a pass");
    sandbox_result_free(&r);
    free(prog);
    for (int i = 0; i < 50; i++) {
        r = zrun(z, "print(sum(range(10)))\n", NULL, 5);
        CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "45\n"), "repeat %d: %s %s", i, sandbox_status_name(r.status), r.message);
        sandbox_result_free(&r);
    }
    humaneval(z);
    sandbox_zygote_free(z);
    for (int i = 0; i < 100 && slot_procs(); i++) usleep(10000);
    CHECK(slot_procs() == 0, "after free: %d processes of the slot uid", slot_procs());
    return test_report();
}
