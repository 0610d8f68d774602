/* test_eval_train: evaluation during `grpo train` (eval_data, eval_steps, ...)
 * on the first rows of the tiny-arith test split.
 *
 * `test_eval_train base` uses the shipped tiny-arith base model: about a
 * quarter of its samples are correct, so pass@k and maj@k are not trivially 0,
 * and the learning rate is high enough to change them (~20 s in Release; the
 * sanitizer pass skips it). Without an argument, a random 1M-parameter model
 * from `grpo init` with short completions runs the same checks (all rewards
 * 0, so only the completions themselves are compared) fast enough for ASan.
 *
 * - A 5-step run with eval_steps = 2 writes evaluations at steps 0 (before
 *   training), 2, 4 and 5 (the end): the numbers in evals, every completion
 *   in eval_samples with its reward components, and one progress line each.
 * - The step-0 evaluation equals `grpo eval` of the initial checkpoint, and
 *   the step-5 one `grpo eval` of checkpoints/step-5, run separately with the
 *   same options and seed (and another thread count): every number and every
 *   stored completion bitwise.
 * - Evaluating does not change the training: the run's rollouts and final
 *   weights equal those of the same run without eval_data.
 * - A run stopped at step 3 and resumed re-evaluates step 3 and then writes
 *   the same evaluations at steps 4 and 5 as the uninterrupted run.
 * - A missing eval_data file fails before training (exit 2, file named). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rl/store.h"
#include "test.h"

static char tmp[256];

#define TESTDATA GRPO_TESTS_DIR "/../recipes/tiny-arith/test.jsonl"
#define REWARDS GRPO_TESTS_DIR "/../rewards/math_accuracy.lua", GRPO_TESTS_DIR "/../rewards/format.lua"

/* The training options, and the evaluation options in both spellings. */
static char SET[1024], EVAL_CLI[1024], model[512];
/* eval_max_new_tokens and eval_temperature left at their defaults: max_completion_length and temperature */
static const char *EVAL_SET = "eval_data=" TESTDATA ";eval_steps=2;eval_num_samples=3;eval_limit=6";

/* The options of both modes: model, completion length. */
static void set_mode(int base) {
    int maxnew = base ? 40 : 12;
    if (base) snprintf(model, sizeof model, "%s/../recipes/tiny-arith/base", GRPO_TESTS_DIR);
    else snprintf(model, sizeof model, "%s/init", tmp);
    snprintf(SET, sizeof SET,
             "tokenizer=%s/../recipes/tiny-arith;train_data=%s/../recipes/tiny-arith/train.jsonl;prompts_per_step=2;"
             "num_generations=4;max_completion_length=%d;max_prompt_length=96;micro_batch=8;learning_rate=1e-3;"
             "lr_scheduler_type=constant;threads=1;top_p=0.95;stop=So the answer;max_steps=5",
             GRPO_TESTS_DIR, GRPO_TESTS_DIR, maxnew);
    snprintf(EVAL_CLI, sizeof EVAL_CLI,
             "--data %s -k 3 --max-new-tokens %d --limit 6 --top-p 0.95 --stop 'So the answer' --seed 1234 "
             "--temperature 1 --tokenizer %s/../recipes/tiny-arith", TESTDATA, maxnew, GRPO_TESTS_DIR);
}

static StoreTable *query(const char *db, const char *sql) {
    Err err = {0};
    Store *st = store_open_read(db, &err);
    StoreTable *t = st ? store_query(st, sql, &err) : NULL;
    if (!t) fprintf(stderr, "%s: %s\n", db, err.msg);
    store_close(st);
    return t;
}

static long count(const char *db, const char *sql) {
    StoreTable *t = query(db, sql);
    long v = t && t->nrows ? (long)store_cell_num(t, 0, 0) : -1;
    store_table_free(t);
    return v;
}

/* Every cell equal: text exactly, numbers bitwise (doubles as stored). */
static int tables_equal(const StoreTable *a, const StoreTable *b, const char *what) {
    if (!a || !b || a->nrows != b->nrows || a->ncols != b->ncols || a->nrows == 0) {
        fprintf(stderr, "%s: %d vs %d rows\n", what, a ? a->nrows : -1, b ? b->nrows : -1);
        return 0;
    }
    for (long i = 0; i < (long)a->nrows * a->ncols; i++) {
        const char *x = a->text[i], *y = b->text[i];
        int same = (!x && !y) || (x && y && !strcmp(x, y));
        same = same && (memcmp(&a->num[i], &b->num[i], sizeof(double)) == 0);
        if (!same) {
            fprintf(stderr, "%s: row %ld column %s: '%s' vs '%s'\n", what, i / a->ncols, a->names[i % a->ncols],
                    x ? x : "NULL", y ? y : "NULL");
            return 0;
        }
    }
    return 1;
}

/* The evaluation at step of db_a equals the one at step_b of db_b: numbers, samples, reward components. */
static int evals_equal(const char *db_a, long step_a, const char *db_b, long step_b) {
    static const char *const sql[] = {
        "SELECT dataset, metric, value, num_samples FROM evals WHERE step = %ld ORDER BY metric",
        "SELECT dataset, dataset_index, sample_index, prompt, completion, prompt_tokens, completion_tokens,"
        " finish_reason, correct, reward, pred FROM eval_samples WHERE step = %ld ORDER BY dataset_index, sample_index",
        /* extras compared key by key: a Lua table's key order differs from one process to the next */
        "SELECT s.dataset_index, s.sample_index, r.name, r.value, r.error, (SELECT group_concat(key || '=' || value, ';')"
        " FROM (SELECT key, value FROM json_each(r.extras) ORDER BY key)) FROM eval_rewards r"
        " JOIN eval_samples s ON s.id = r.sample_id WHERE s.step = %ld ORDER BY 1, 2, 3",
    };
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        char qa[512], qb[512];
        snprintf(qa, sizeof qa, sql[i], step_a);
        snprintf(qb, sizeof qb, sql[i], step_b);
        StoreTable *a = query(db_a, qa), *b = query(db_b, qb);
        ok = ok && tables_equal(a, b, sql[i]);
        store_table_free(a), store_table_free(b);
    }
    return ok;
}

static void write_recipe(const char *path) {
    FILE *f = fopen(path, "w");
    fprintf(f, "return { model = \"%s\", output_dir = \"%s/runs\", rewards = {\"%s\", \"%s\"} }\n", model, tmp,
            REWARDS);
    fclose(f);
}

int main(int argc, char **argv) {
    const int base = argc > 1 && !strcmp(argv[1], "base");
    snprintf(tmp, sizeof tmp, "/tmp/grpo-eval-train-%d", (int)getpid());
    set_mode(base);
    char recipe[512], db[512], db_eval[512];
    snprintf(recipe, sizeof recipe, "%s/r.lua", tmp);
    CHECK(test_sh("mkdir -p %s", tmp) == 0, "mkdir");
    if (!base)
        CHECK(test_sh("%s init --config %s/../recipes/models/dsv3-tiny-1m.json --out %s --seed 3 > /dev/null 2>&1", GRPO_BIN,
                 GRPO_TESTS_DIR, model) == 0, "grpo init");
    write_recipe(recipe);
    CHECK(test_sh("%s train %s --set '%s;%s;name=full' > %s/full.log 2>&1", GRPO_BIN, recipe, SET, EVAL_SET, tmp) == 0,
          "train with evaluations (log: %s/full.log)", tmp);
    snprintf(db, sizeof db, "%s/runs/full/rollouts.db", tmp);
    /* evaluations at 0 (before training), 2, 4 (eval_steps) and 5 (the end) */
    StoreTable *t = query(db, "SELECT step, count(*) FROM evals GROUP BY step ORDER BY step");
    CHECK(t && t->nrows == 4 && store_cell_num(t, 0, 0) == 0 && store_cell_num(t, 1, 0) == 2 &&
              store_cell_num(t, 2, 0) == 4 && store_cell_num(t, 3, 0) == 5,
          "evaluated at steps 0, 2, 4, 5");
    for (int r = 0; t && r < t->nrows; r++) CHECK(store_cell_num(t, r, 1) == 5, "5 numbers per evaluation");
    store_table_free(t);
    CHECK(count(db, "SELECT count(*) FROM eval_samples") == 4 * 6 * 3, "6 rows x 3 samples per evaluation");
    CHECK(count(db, "SELECT count(*) FROM eval_rewards") == 4 * 6 * 3 * 2, "2 reward components per sample");
    if (base) { /* not a vacuous comparison: some samples are correct, and training changed the completions */
        CHECK(count(db, "SELECT sum(correct) FROM eval_samples WHERE step = 0") > 0, "correct samples at step 0");
        CHECK(count(db, "SELECT count(*) FROM eval_samples a JOIN eval_samples b USING (dataset_index, sample_index)"
                        " WHERE a.step = 0 AND b.step = 5 AND a.completion <> b.completion") > 0, "completions changed");
        /* the base model ends about a third of its completions with "So the answer is N." */
        CHECK(count(db, "SELECT count(*) FROM eval_samples WHERE finish_reason = 'stop'") > 0 &&
                  count(db, "SELECT count(*) FROM eval_samples WHERE completion LIKE '%So the answer%'") == 0,
              "stop strings end completions, texts cut before them");
    }
    CHECK(count(db, "SELECT count(*) FROM evals WHERE metric IN ('pass@1', 'pass@3', 'maj@3',"
                    " 'rewards/math_accuracy/mean', 'rewards/format/mean')") == 4 * 5, "metric names");
    /* pass@1 written equals the samples' mean correctness (the eval_per_step view) */
    CHECK(count(db, "SELECT count(*) FROM evals e JOIN eval_per_step v USING (step, dataset)"
                    " WHERE e.metric = 'pass@1' AND abs(e.value - v.pass_at_1) < 1e-12") == 4, "pass@1 = eval_per_step");
    CHECK(test_sh("grep -c '^eval step [0-9]/5  pass@1' %s/full.log | grep -qx 4", tmp) == 0, "one progress line per evaluation");
    /* the same numbers and completions from grpo eval, step 0 = the initial model, step 5 = the last checkpoint */
    CHECK(test_sh("%s eval --model %s %s --reward %s,%s --store %s/evalrun --step 0 --threads 2 > %s/eval0.json 2> /dev/null"
             " && %s eval --model %s/runs/full/checkpoints/step-5 %s --reward %s,%s --store %s/evalrun --step 5"
             " --threads 1 > %s/eval5.json 2> /dev/null",
             GRPO_BIN, model, EVAL_CLI, REWARDS, tmp, tmp, GRPO_BIN, tmp, EVAL_CLI, REWARDS, tmp, tmp) == 0,
          "grpo eval");
    snprintf(db_eval, sizeof db_eval, "%s/evalrun/rollouts.db", tmp);
    CHECK(evals_equal(db, 0, db_eval, 0), "step 0 in training == grpo eval of the initial model");
    CHECK(evals_equal(db, 5, db_eval, 5), "step 5 in training == grpo eval of checkpoints/step-5");
    /* training is the same without evaluations */
    CHECK(test_sh("%s train %s --set '%s;name=noeval' > %s/noeval.log 2>&1", GRPO_BIN, recipe, SET, tmp) == 0, "train w/o eval");
    CHECK(test_sh("cmp -s %s/runs/full/checkpoints/step-5/model.safetensors %s/runs/noeval/checkpoints/step-5/model.safetensors",
             tmp, tmp) == 0, "weights unchanged by evaluating");
    char dbn[512];
    snprintf(dbn, sizeof dbn, "%s/runs/noeval/rollouts.db", tmp);
    const char *ro = "SELECT step, prompt_index, sample_index, completion, reward, advantage, logprob_sum FROM rollouts"
                     " ORDER BY 1, 2, 3";
    StoreTable *a = query(db, ro), *b = query(dbn, ro);
    CHECK(tables_equal(a, b, "rollouts"), "rollouts unchanged by evaluating");
    store_table_free(a), store_table_free(b);
    CHECK(count(dbn, "SELECT count(*) FROM evals") == 0, "no eval_data, no evaluations");
    /* stopped at 3, resumed: step 3 evaluated again, 4 and 5 as in the uninterrupted run */
    CHECK(test_sh("%s train %s --set '%s;%s;name=cut;max_steps=3' > %s/cut.log 2>&1 && %s train %s --resume --set '%s;%s;name=cut'"
             " > %s/resume.log 2>&1", GRPO_BIN, recipe, SET, EVAL_SET, tmp, GRPO_BIN, recipe, SET, EVAL_SET, tmp) == 0,
          "cut and resume");
    char dbc[512];
    snprintf(dbc, sizeof dbc, "%s/runs/cut/rollouts.db", tmp);
    CHECK(count(dbc, "SELECT count(DISTINCT step) FROM evals") == 5, "evaluations at 0, 2, 3, 4, 5");
    CHECK(count(dbc, "SELECT count(*) FROM eval_samples WHERE step = 3") == 18, "step 3 once, not twice");
    CHECK(evals_equal(db, 4, dbc, 4) && evals_equal(db, 5, dbc, 5), "resumed evaluations equal the uninterrupted run's");
    /* bad eval_data: refused before any step */
    CHECK(test_sh("%s train %s --set '%s;name=bad;eval_data=%s/missing.jsonl' > %s/bad.log 2>&1; test $? -eq 2 && "
             "grep -q 'missing.jsonl' %s/bad.log && test ! -e %s/runs/bad/checkpoints", GRPO_BIN, recipe, SET, tmp,
             tmp, tmp, tmp) == 0, "missing eval_data named, exit 2");
    if (!test_failed_) test_sh("rm -rf %s", tmp);
    return test_report();
}
