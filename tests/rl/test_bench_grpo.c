/* test_bench_grpo: `grpo bench grpo` (GRPO_BIN) as a command, not as a
 * measurement (tests never check timings): bad usage exits 2 naming the
 * problem; a tiny run through the trainer prints the table and one JSON line
 * with the four phases and token counts; a missing PyTorch reference script
 * leaves a grpo-only result ("torch": null) and exit 0. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_out.h"
#include "test.h"

static char tmp[256];

static char *slurp(const char *name) { return bench_out_text(tmp, name); }
static cJSON *json_line(const char *name) { return bench_out_json(tmp, name); }

#define TINY "--threads 1 --steps 1 --warmup 0 --set 'prompts_per_step=2;num_generations=2;max_completion_length=4'"

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/test_bench_grpo.%d", (int)getpid());
    char root[512];
    snprintf(root, sizeof root, "%s/..", GRPO_TESTS_DIR);
    CHECK(test_sh("mkdir -p %s", tmp) == 0, "mkdir");

    CHECK(test_sh("%s bench grpo --steps 0 > %s/u.out 2> %s/u.err", GRPO_BIN, tmp, tmp) == 2, "--steps 0 is bad usage");
    char *e = slurp("u.err");
    CHECK(strstr(e, "--steps") != NULL, "message names --steps: %s", e);
    free(e);
    CHECK(test_sh("cd %s && %s bench grpo --recipe no-such.lua > %s/m.out 2> %s/m.err", root, GRPO_BIN, tmp, tmp) == 2,
          "missing recipe is bad input");
    e = slurp("m.err");
    CHECK(strstr(e, "no-such.lua") != NULL, "message names the file: %s", e);
    free(e);

    CHECK(test_sh("cd %s && %s bench grpo " TINY " --no-reference > %s/g.out 2> %s/g.err", root, GRPO_BIN, tmp, tmp) == 0,
          "grpo-only run");
    cJSON *j = json_line("g.out");
    CHECK(j != NULL, "a JSON line");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "grpo");
    CHECK(cJSON_IsObject(g), "grpo side present");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "torch")), "no reference: torch is null");
    static const char *keys[] = {"rollout_s", "reward_s", "train_s", "log_s", "step_s", "cpu_s"};
    for (int k = 0; k < 6; k++) CHECK(bench_out_num(g, keys[k]) > 0, "%s > 0", keys[k]);
    double n = bench_out_num(g, "gen_tokens");
    CHECK(n >= 4 && n <= 16, "2 prompts x 2 samples x <= 4 tokens: %g", n);
    CHECK(bench_out_num(g, "loss_tokens") == n, "every completion token is in the loss (dapo, no masking): %g", bench_out_num(g, "loss_tokens"));
    cJSON_Delete(j);
    char *out = slurp("g.out");
    CHECK(strstr(out, "rollout") && strstr(out, "end-to-end tok/s"), "the table");
    free(out);

    CHECK(test_sh("cd %s && %s bench grpo " TINY " --torch-script %s/none.py > %s/r.out 2> %s/r.err", root, GRPO_BIN, tmp,
             tmp, tmp) == 0,
          "a missing reference script is not an error");
    out = slurp("r.out");
    CHECK(strstr(out, "PyTorch reference unavailable") != NULL, "says so: %s", out);
    free(out);
    j = json_line("r.out");
    CHECK(j && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "torch")), "torch is null");
    cJSON_Delete(j);

    test_sh("rm -rf %s", tmp);
    return test_report();
}
