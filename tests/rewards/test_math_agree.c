/* test_math_agree: grpo.math against math-verify on the committed fixture
 * (tests/golden/make_math_verify_fixture.py): MATH-500 and GSM8K gold
 * answers against correct rewritings and wrong answers, each inside a
 * completion. Prints agreement per category; requires >= 98% overall and no
 * pair where math-verify says wrong and we say right.
 * MATH_AGREE_VERBOSE=1 lists every disagreement. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "rewards/mathans.h"
#include "test.h"

enum { MAX_CAT = 32 };

typedef struct Tally {
    char name[32];
    int n, agree, false_pos, false_neg;
} Tally;

static Tally *tally_for(Tally *t, int *nt, const char *name) {
    for (int i = 0; i < *nt; i++) if (!strcmp(t[i].name, name)) return &t[i];
    if (*nt == MAX_CAT) return &t[MAX_CAT - 1];
    snprintf(t[*nt].name, sizeof t[*nt].name, "%s", name);
    return &t[(*nt)++];
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

int main(void) {
    const char *path = GRPO_TESTS_DIR "/fixtures/rewards/math_verify_pairs.jsonl";
    FILE *f = fopen(path, "r");
    if (!f) TEST_SKIP("%s missing", path);
    int verbose = getenv("MATH_AGREE_VERBOSE") != NULL;
    Tally cats[MAX_CAT] = {0}, total = {.name = "all"};
    int ncat = 0, wrong_set_fp = 0, lineno = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        cJSON *o = cJSON_Parse(line);
        if (!o) { CHECK(0, "%s:%d: bad JSON", path, lineno); continue; }
        const char *gold = str(o, "gold"), *comp = str(o, "completion");
        int mv = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "mv"));
        char pred[2048];
        int ours = mathans_extract(comp, pred, sizeof pred) && mathans_equal(gold, pred);
        Tally *c = tally_for(cats, &ncat, str(o, "category"));
        Tally *ts[2] = {c, &total};
        for (int k = 0; k < 2; k++) {
            ts[k]->n++;
            ts[k]->agree += ours == mv;
            ts[k]->false_pos += ours && !mv;
            ts[k]->false_neg += !ours && mv;
        }
        if (ours && !mv && !strcmp(str(o, "kind"), "wrong")) wrong_set_fp++;
        if (verbose && ours != mv)
            fprintf(stderr, "%s:%d %s/%s mv=%d ours=%d gold=%s pred=%s\n", path, lineno, str(o, "category"),
                    str(o, "transform"), mv, ours, gold, pred);
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    printf("%-16s %6s %8s %6s %6s\n", "category", "pairs", "agree%", "we+mv-", "we-mv+");
    for (int i = 0; i <= ncat; i++) {
        Tally *t = i < ncat ? &cats[i] : &total;
        printf("%-16s %6d %7.2f%% %6d %6d\n", t->name, t->n, t->n ? 100.0 * t->agree / t->n : 0, t->false_pos,
               t->false_neg);
    }
    printf("wrong-answer set: %d pairs where math-verify says wrong and grpo.math says right\n", wrong_set_fp);
    CHECK(total.n >= 3000, "only %d pairs in the fixture", total.n);
    CHECK(total.agree >= 0.98 * total.n, "agreement %.2f%% < 98%%", 100.0 * total.agree / total.n);
    CHECK(wrong_set_fp == 0, "%d wrong answers accepted", wrong_set_fp);
    return test_report();
}
