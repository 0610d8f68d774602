/* test_train_bad_input: `grpo train` (GRPO_BIN) on small crafted recipes and
 * data in a temp dir. Where training can go on it does, says what it skipped
 * (one line per step) and records the counts as store metrics:
 *  - rows missing the template's field, prompts over max_prompt_length;
 *  - a reward that fails on every sample of a group (advantages 0, message
 *    naming the step, the group and the first error).
 * Where it cannot, it stops with exit 2 and a message naming the file and
 * the line or field: a reward script that does not load, a checkpoint of the
 * wrong architecture, a tokenizer larger than the model's vocabulary, a
 * reference model of another shape, data with no usable row. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl/store.h"
#include "test.h"

static char tmp[256];

static double query(const char *name, const char *sql) {
    char db[512];
    snprintf(db, sizeof db, "%s/runs/%s/rollouts.db", tmp, name);
    Err err = {0};
    Store *st = store_open_read(db, &err);
    if (!st) return -1;
    StoreTable *t = store_query(st, sql, &err);
    double v = t && t->nrows ? store_cell_num(t, 0, 0) : -1;
    store_table_free(t);
    store_close(st);
    return v;
}

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* grpo train on r.lua with the common settings and extra overrides; returns the exit code. */
static int train(const char *name, const char *sets) {
    return test_sh("cd %s && %s train r.lua --set 'name=%s;%s' > %s.out 2> %s.err", tmp, GRPO_BIN, name, sets, name, name);
}

/* 1 when file tmp/NAME.err contains text (fixed string). */
static int said(const char *name, const char *text) {
    return test_sh("grep -qF -- '%s' %s/%s.err", text, tmp, name) == 0;
}

static void show(const char *name) { test_sh("sed 's/^/    /' %s/%s.err >&2", tmp, name); }

static void check_skipped_rows(void) {
    /* rows 2 and 4 lack "question"; row 5's prompt is far over max_prompt_length */
    char *long_q = malloc(4000);
    strcpy(long_q, "{\"question\": \"");
    for (int i = 0; i < 300; i++) strcat(long_q, "Ava has 3 ");
    strcat(long_q, "\", \"answer\": \"1\"}\n");
    FILE *f = fopen(strcat(strcpy((char[512]){0}, tmp), "/data.jsonl"), "w");
    fprintf(f, "{\"question\": \"Ava has 3 pens. Ava finds 2 more pens. How many pens does Ava have now?\", \"answer\": \"5\"}\n"
               "{\"prompt\": \"no question here\", \"answer\": \"1\"}\n"
               "{\"question\": \"Leo has 7 cards. Leo gives away 2. How many cards does Leo have now?\", \"answer\": \"5\"}\n"
               "{\"answer\": \"2\"}\n%s"
               "{\"question\": \"Mia has 4 cups. Mia finds 4 more cups. How many cups does Mia have now?\", \"answer\": \"8\"}\n",
            long_q);
    fclose(f);
    free(long_q);
    int rc = train("skip", "train_data=data.jsonl;max_steps=3");
    CHECK(rc == 0, "training with bad rows exited %d", rc);
    if (rc) show("skip");
    CHECK(said("skip", "data.jsonl:2: template: the row has no field \"question\"") ||
              said("skip", "data.jsonl:4: template: the row has no field \"question\""),
          "the skip line names file:line and the field");
    CHECK(said("skip", "over max_prompt_length 96"), "the too-long prompt is named");
    CHECK(query("skip", "select count(distinct step) from rollouts") == 3, "every step stored");
    CHECK(query("skip", "select sum(value) from metrics where name = 'skipped/prompts_missing_field'") >= 2,
          "missing-field skips counted");
    CHECK(query("skip", "select sum(value) from metrics where name = 'skipped/prompts_too_long'") >= 1,
          "too-long skips counted");
    CHECK(query("skip", "select count(*) from rollouts where prompt_tokens > 96") == 0, "a too-long prompt was used");
    /* nothing usable: exit 2 naming the reason */
    write_file("none.jsonl", "{\"prompt\": \"x\"}\n{\"answer\": \"1\"}\n");
    rc = train("none", "train_data=none.jsonl");
    CHECK(rc == 2 && said("none", "none.jsonl: no usable prompts") && said("none", "no field \"question\""),
          "no usable rows: exit %d", rc);
}

static void check_reward_failures(void) {
    /* fails on every sample of questions mentioning Leo, nil for Ava, 1 otherwise */
    write_file("flaky.lua", "return { name = \"flaky\", score = function(s)\n"
                            "  if s.question:find(\"Leo\", 1, true) then error(\"no Leo allowed\") end\n"
                            "  if s.question:find(\"Ava\", 1, true) then return nil end\n"
                            "  return #s.completion % 2 end }\n");
    int rc = train("nil", "train_data=data.jsonl;rewards=flaky.lua;max_steps=3;prompts_per_step=3");
    CHECK(rc == 0, "training with failing rewards exited %d", rc);
    if (rc) show("nil");
    CHECK(said("nil", "every reward was nil or failed, advantages 0; first error:") && said("nil", "no Leo allowed"),
          "the all-nil group's message gives the first error");
    CHECK(test_sh("grep -qE 'step [0-9]+, group [0-9]+ \\(data.jsonl:[0-9]+\\)' %s/nil.err", tmp) == 0,
          "the message names step, group and row");
    double groups = query("nil", "select sum(value) from metrics where name = 'groups_all_nil'");
    CHECK(groups >= 1, "groups_all_nil %g", groups);
    CHECK(query("nil", "select count(*) from rollouts where reward is null and advantage != 0") == 0,
          "an unscorable rollout got a non-zero advantage");
    CHECK(query("nil", "select count(*) from rewards where error like '%no Leo allowed%'") >= 4, "errors stored");
    CHECK(query("nil", "select count(distinct step) from rollouts") == 3, "every step stored");
    /* a script that does not load: exit 2, the script and the Lua line named */
    write_file("broken.lua", "return { name = \"broken\",\n  score = function(s) return 1 +* 2 end }\n");
    rc = train("broken", "rewards=broken.lua");
    CHECK(rc == 2 && said("broken", "broken.lua:2:"), "broken reward script: exit %d", rc);
    if (rc != 2) show("broken");
}

static void check_bad_checkpoints(void) {
    /* wrong architecture: a config whose sizes do not match the weights, or another model_type */
    test_sh("cd %s && cp -r init wide && sed -i 's/\"intermediate_size\":[[:space:]]*[0-9]*/\"intermediate_size\": 7/' wide/config.json"
       " && cp -r init llama && sed -i 's/\"model_type\":[[:space:]]*\"deepseek_v3\"/\"model_type\": \"llama\"/' "
       "llama/config.json", tmp);
    int rc = train("wide", "model=wide");
    CHECK(rc == 2 && said("wide", "wide/model.safetensors: tensor \"model.layers.0.mlp.gate_proj.weight\" has shape"),
          "wrong shapes: exit %d", rc);
    rc = train("llama", "model=llama");
    CHECK(rc == 2 && said("llama", "llama/config.json: field \"model_type\""), "wrong model_type: exit %d", rc);
    /* a tokenizer with more ids than the model's vocabulary */
    test_sh("cd %s && sed 's/\"vocab_size\":[[:space:]]*[0-9]*/\"vocab_size\": 64/' init/config.json > small.json && "
       "%s init --config small.json --out small > /dev/null", tmp, GRPO_BIN);
    rc = train("small", "model=small");
    CHECK(rc == 2 && said("small", "tokenizer.json has") && said("small", "small/config.json field vocab_size is 64"),
          "tokenizer/vocab mismatch: exit %d", rc);
    /* a reference model of another shape */
    rc = train("ref", "beta=0.1;ref_model=small");
    CHECK(rc == 2 && said("ref", "ref_model small:") && said("ref", "vocab_size 64"), "bad ref_model: exit %d", rc);
    if (rc != 2) show("ref");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/grpo-train-bad-%d", (int)getpid());
    CHECK(test_sh("mkdir -p %s && %s init --config %s/../recipes/models/dsv3-tiny-1m.json --out %s/init --seed 3 > /dev/null",
             tmp, GRPO_BIN, GRPO_TESTS_DIR, tmp) == 0, "grpo init");
    char text[2048];
    snprintf(text, sizeof text,
             "return { model = \"init\", output_dir = \"runs\", tokenizer = \"%s/../recipes/tiny-arith\",\n"
             "  train_data = \"%s/../recipes/tiny-arith/train.jsonl\", rewards = {\"%s/../rewards/format.lua\"},\n"
             "  prompts_per_step = 2, num_generations = 4, max_completion_length = 8, max_prompt_length = 96,\n"
             "  learning_rate = 1e-3, lr_scheduler_type = \"constant\", threads = 1, max_steps = 1 }\n",
             GRPO_TESTS_DIR, GRPO_TESTS_DIR, GRPO_TESTS_DIR);
    write_file("r.lua", text);
    check_skipped_rows();
    check_reward_failures();
    check_bad_checkpoints();
    if (!test_failed_ && !getenv("GRPO_TEST_KEEP")) test_sh("rm -rf %s", tmp); /* else kept for a look */
    return test_report();
}
