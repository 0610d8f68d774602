/* test_stock: the stock scripts (rewards/NAME.lua) against reference values made
 * by tests/golden/make_stock_rewards_fixture.py (open-r1, TRL, TinyZero code). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rtest.h"
#include "test.h"

static const char *const scripts[] = {"format", "tag_count", "overlong", "countdown", "cosine"};
enum { NSCRIPTS = sizeof scripts / sizeof scripts[0] };

int main(void) {
    const char *path = GRPO_TESTS_DIR "/fixtures/rewards/stock_rewards.jsonl";
    FILE *f = fopen(path, "r");
    if (!f) TEST_SKIP("%s missing", path);
    RewardSet *rs[NSCRIPTS];
    for (int k = 0; k < NSCRIPTS; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/../rewards/%s.lua", GRPO_TESTS_DIR, scripts[k]);
        const char *pp = p;
        Err err = {0};
        RewardOpts o = {.workers = 1};
        rs[k] = reward_set_load(&pp, 1, NULL, &o, &err);
        CHECK(rs[k] != NULL, "load %s: %s", p, err.msg);
        if (!rs[k]) return test_report();
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, checked[NSCRIPTS] = {0};
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        cJSON *o = cJSON_Parse(line);
        const char *script = cJSON_GetObjectItem(o, "script")->valuestring;
        int k = 0;
        while (k < NSCRIPTS && strcmp(scripts[k], script)) k++;
        if (k == NSCRIPTS) { CHECK(0, "line %d: unknown script %s", lineno, script); cJSON_Delete(o); continue; }
        const cJSON *tok = cJSON_GetObjectItem(o, "completion_tokens");
        RewardSample s = {.prompt = "", .completion = cJSON_GetObjectItem(o, "completion")->valuestring,
                          .row = cJSON_GetObjectItem(o, "row"),
                          .prompt_tokens = -1, .completion_tokens = tok ? (long)tok->valuedouble : -1};
        RewardResult r;
        Err err = {0};
        reward_set_score(rs[k], &s, 1, &r, NULL, &err);
        const cJSON *want = cJSON_GetObjectItem(o, "want");
        if (cJSON_IsNull(want))
            CHECK(!r.has_value && !r.error, "%s line %d: want nil, got %g (%s)", script, lineno, r.value,
                  r.error ? r.error : "");
        else
            CHECK(r.has_value && fabs(r.value - want->valuedouble) < 1e-9, "%s line %d: want %.12g got %.12g (%s)",
                  script, lineno, want->valuedouble, r.value, r.error ? r.error : "no error");
        checked[k]++;
        reward_results_clear(&r, 1);
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    for (int k = 0; k < NSCRIPTS; k++) {
        printf("%-10s %d cases\n", scripts[k], checked[k]);
        CHECK(checked[k] > 0, "no cases for %s", scripts[k]);
        reward_set_free(rs[k]);
    }
    return test_report();
}
