/* test_train_e2e: `grpo train` end to end on a random tiny model (tokenizer and
 * data of the tiny-arith demo, stock rewards): every step lands in the store,
 * and a run stopped after a checkpoint and resumed with --resume continues
 * bitwise identically to the uninterrupted run (weights and rollouts).
 * Also recipe errors: an unknown field, a wrong type, a missing reward script. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl/recipe.h"
#include "rl/store.h"
#include "test.h"

static char tmp[256];

static const char *SET =
    "tokenizer=" GRPO_TESTS_DIR "/../recipes/tiny-arith;train_data=" GRPO_TESTS_DIR "/../recipes/tiny-arith/train.jsonl;"
    "prompts_per_step=2;num_generations=4;max_completion_length=12;max_prompt_length=96;micro_batch=5;"
    "learning_rate=1e-3;lr_scheduler_type=constant;threads=1";

static long count(const char *db, const char *sql) {
    Err err = {0};
    Store *st = store_open_read(db, &err);
    if (!st) return -1;
    StoreTable *t = store_query(st, sql, &err);
    long v = t && t->nrows ? (long)store_cell_num(t, 0, 0) : -1;
    store_table_free(t);
    store_close(st);
    return v;
}

static int files_equal(const char *a, const char *b) { return test_sh("cmp -s '%s' '%s'", a, b) == 0; }

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/grpo-train-e2e-%d", (int)getpid());
    char recipe[512];
    snprintf(recipe, sizeof recipe, "%s/r.lua", tmp);
    CHECK(test_sh("mkdir -p %s && %s init --config %s/../recipes/models/dsv3-tiny-1m.json --out %s/init --seed 3 > /dev/null",
             tmp, GRPO_BIN, GRPO_TESTS_DIR, tmp) == 0, "grpo init");
    FILE *f = fopen(recipe, "w");
    fprintf(f, "return { model = \"%s/init\", output_dir = \"%s/runs\", rewards = {\"%s/../rewards/math_accuracy.lua\", "
               "\"%s/../rewards/format.lua\"}, max_steps = 4 }\n", tmp, tmp, GRPO_TESTS_DIR, GRPO_TESTS_DIR);
    fclose(f);
    /* the uninterrupted run */
    CHECK(test_sh("%s train %s --set '%s;name=full' > %s/full.log 2>&1", GRPO_BIN, recipe, SET, tmp) == 0, "train full");
    char db[512];
    snprintf(db, sizeof db, "%s/runs/full/rollouts.db", tmp);
    CHECK(count(db, "select count(distinct step) from rollouts") == 4, "4 steps stored");
    CHECK(count(db, "select count(*) from rollouts") == 4 * 2 * 4, "32 rollouts stored");
    CHECK(count(db, "select count(*) from rewards") == 4 * 2 * 4 * 2, "every reward component stored");
    /* stopped after step 2 (a checkpoint), then resumed */
    CHECK(test_sh("%s train %s --set '%s;name=cut;max_steps=2' > %s/cut.log 2>&1", GRPO_BIN, recipe, SET, tmp) == 0, "train to 2");
    CHECK(test_sh("%s train %s --resume --set '%s;name=cut' > %s/resume.log 2>&1", GRPO_BIN, recipe, SET, tmp) == 0, "resume");
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/runs/full/checkpoints/step-4/model.safetensors", tmp);
    snprintf(b, sizeof b, "%s/runs/cut/checkpoints/step-4/model.safetensors", tmp);
    CHECK(files_equal(a, b), "resumed weights bitwise equal to the uninterrupted run's");
    snprintf(a, sizeof a, "%s/runs/full/checkpoints/step-4/optimizer.bin", tmp);
    snprintf(b, sizeof b, "%s/runs/cut/checkpoints/step-4/optimizer.bin", tmp);
    CHECK(files_equal(a, b), "resumed optimizer state equal");
    CHECK(test_sh("sqlite3 %s/runs/full/rollouts.db 'select step, prompt_index, sample_index, completion, reward, advantage "
             "from rollouts order by 1,2,3' > %s/a.txt && sqlite3 %s/runs/cut/rollouts.db 'select step, prompt_index, "
             "sample_index, completion, reward, advantage from rollouts order by 1,2,3' > %s/b.txt && cmp -s %s/a.txt %s/b.txt",
             tmp, tmp, tmp, tmp, tmp, tmp) == 0, "resumed rollouts equal");
    /* grpo sample on the trained checkpoint: n JSON lines, seeded (two runs agree) */
    CHECK(test_sh("%s sample --model %s/runs/full/checkpoints/step-4 --prompt 'Ava has 3 pens.\\n' -n 3 --max-new-tokens 8 "
             "--json --threads 1 > %s/s1.txt && test $(wc -l < %s/s1.txt) -eq 3 && grep -q finish_reason %s/s1.txt",
             GRPO_BIN, tmp, tmp, tmp, tmp) == 0, "grpo sample prints 3 completions");
    CHECK(test_sh("%s sample --model %s/runs/full/checkpoints/step-4 --prompt 'Ava has 3 pens.\\n' -n 3 --max-new-tokens 8 "
             "--json --threads 2 > %s/s2.txt && cmp -s %s/s1.txt %s/s2.txt", GRPO_BIN, tmp, tmp, tmp, tmp) == 0,
          "grpo sample is reproducible across thread counts");
    /* recipe errors name the file and field, exit 2 */
    f = fopen(recipe, "w");
    fprintf(f, "return { modle = \"x\" }\n");
    fclose(f);
    CHECK(test_sh("%s train %s 2> %s/err.txt; test $? -eq 2 && grep -q \"unknown recipe field 'modle'\" %s/err.txt", GRPO_BIN,
             recipe, tmp, tmp) == 0, "unknown field");
    Recipe r;
    Err err = {0};
    recipe_defaults(&r);
    CHECK(recipe_set(&r, "num_generations=abc", &err) == -1 && strstr(err.msg, "num_generations"), "%s", err.msg);
    CHECK(recipe_set(&r, "rewards=a.lua,b.lua", &err) == 0 && r.n_rewards == 2 && !strcmp(r.rewards[1], "b.lua"), "list");
    f = fopen(recipe, "w");
    fprintf(f, "return { model = \"%s/init\", output_dir = \"%s/runs\", rewards = {\"%s/missing.lua\"} }\n", tmp, tmp, tmp);
    fclose(f);
    CHECK(test_sh("%s train %s --set '%s;name=bad' 2> %s/err2.txt; test $? -eq 2 && grep -q missing.lua %s/err2.txt", GRPO_BIN,
             recipe, SET, tmp, tmp) == 0, "missing reward script named");
    test_sh("rm -rf %s", tmp);
    return test_report();
}
