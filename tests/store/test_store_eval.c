/* test_store_eval: the evaluated completions in the store (schema version 3).
 *
 * 1. A real version-2 database (tests/fixtures/store/schema-v2.db, written by
 *    grpo before eval_samples existed) is read as it is by the reader, upgraded
 *    by the writer with every row kept, and then takes evaluations.
 * 2. store_eval_begin/metric/sample/commit: rows and reward components land,
 *    a second evaluation of the same (step, dataset) replaces the first, an
 *    aborted one leaves nothing, misuse is refused, store_truncate_after drops
 *    later evaluations.
 * 3. The views eval_rows, eval_per_step, eval_row_changes, eval_newly_solved
 *    against numbers recomputed here from the samples written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl/store.h"
#include "test.h"

static char dir[256];

static double q1(Store *st, const char *sql) {
    Err err = {0};
    StoreTable *t = store_query(st, sql, &err);
    double v = t && t->nrows ? store_cell_num(t, 0, 0) : NAN;
    if (!t) fprintf(stderr, "query failed: %s\n", err.msg);
    store_table_free(t);
    return v;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * (1 + fabs(b)); }

enum { ROWS = 5, K = 4 };

/* Whether sample g of row i is correct at step: a fixed pattern in which row
 * 0 is never solved, row 1 only after training, row 2 always, row 3 is lost,
 * row 4 improves from 1/4 to 3/4. */
static int correct_at(long step, int i, int g) {
    static const int before[ROWS] = {0, 0, 4, 2, 1}, after[ROWS] = {0, 3, 4, 0, 3};
    return g < (step == 0 ? before[i] : after[i]);
}

/* Writes an evaluation of "arith" at step: ROWS x K samples, two reward components. */
static int write_eval(Store *st, long step, int commit, Err *err) {
    if (store_eval_begin(st, step, "arith", err)) return -1;
    double pass1 = 0;
    for (int i = 0; i < ROWS; i++)
        for (int g = 0; g < K; g++) {
            char prompt[64], completion[64], pred[16];
            snprintf(prompt, sizeof prompt, "What is %d + %d?\n", i, i);
            snprintf(completion, sizeof completion, "<answer>%d</answer>", correct_at(step, i, g) ? 2 * i : -1);
            snprintf(pred, sizeof pred, "%d", correct_at(step, i, g) ? 2 * i : -1);
            int c = correct_at(step, i, g);
            pass1 += c / (double)(ROWS * K);
            StoreEvalSample s = {i, g, prompt, completion, 7, 10 + g, g == 3 ? "length" : "eos", c, c + 0.5,
                                 g == 2 ? NULL : pred};
            StoreEvalReward r[2] = {{"math_accuracy", c, NULL, "{\"pred\":\"x\"}"},
                                    {"format", g == 1 ? NAN : 1.0, g == 1 ? "format.lua:3: boom" : NULL, NULL}};
            if (store_eval_sample(st, &s, r, 2, err)) return -1;
        }
    if (store_eval_metric(st, "pass@1", pass1, ROWS, err)) return -1;
    if (!commit) {
        store_eval_abort(st);
        return 0;
    }
    return store_eval_commit(st, err);
}

static void check_migration(void) {
    char path[400], cmd[1000];
    snprintf(path, sizeof path, "%s/v2.db", dir);
    snprintf(cmd, sizeof cmd, "cp %s/fixtures/store/schema-v2.db %s", GRPO_TESTS_DIR, path);
    CHECK(system(cmd) == 0, "copy fixture");
    Err err = {0};
    /* the reader (grpo report, grpo runs) reads it as it is, without the new tables */
    Store *ro = store_open_read(path, &err);
    CHECK(ro != NULL, "v2 read as it is: %s", err.msg);
    if (ro) {
        CHECK(store_schema_version(ro) == 2 && q1(ro, "SELECT count(*) FROM rollout_texts") == 16, "v2 readable");
        StoreTable *t = store_query(ro, "SELECT count(*) FROM eval_samples", &err);
        CHECK(!t && strstr(err.msg, "no such table"), "no eval_samples before the upgrade: %s", err.msg);
        store_table_free(t);
        store_close(ro);
    }
    err_clear(&err);
    Store *st = store_open(path, &err);
    CHECK(st != NULL, "v2 opened for writing: %s", err.msg);
    if (!st) return;
    CHECK(store_schema_version(st) == STORE_SCHEMA_VERSION && STORE_SCHEMA_VERSION == 3, "migrated to 3");
    /* the fixture's rows (2 steps x 2 prompts x 4 samples, 2 rewards; 5 eval numbers) are all there */
    CHECK(q1(st, "SELECT count(*) FROM rollouts") == 16, "rollouts kept");
    CHECK(q1(st, "SELECT count(*) FROM rewards") == 32, "rewards kept");
    CHECK(q1(st, "SELECT count(*) FROM steps") == 2, "steps kept");
    CHECK(q1(st, "SELECT count(*) FROM evals WHERE step = 2") == 5, "evals kept");
    CHECK(q1(st, "SELECT count(*) FROM rollout_texts") == 16, "old views work");
    CHECK(q1(st, "SELECT count(*) FROM eval_samples") == 0, "eval_samples empty");
    CHECK(q1(st, "SELECT count(*) FROM sqlite_schema WHERE name IN ('eval_rows', 'eval_per_step',"
                 " 'eval_row_changes', 'eval_newly_solved', 'eval_rewards', 'evals_by_dataset')") == 6,
          "new tables, index and views");
    CHECK(write_eval(st, 2, 1, &err) == 0, "evaluation into the migrated db: %s", err.msg);
    /* another data set than the fixture's evaluation at step 2: both are kept */
    CHECK(q1(st, "SELECT count(*) FROM evals WHERE step = 2") == 5 + 1, "old evaluation kept");
    CHECK(q1(st, "SELECT count(*) FROM eval_samples") == ROWS * K, "samples written");
    CHECK(store_integrity_check(st, &err) == 0, "integrity: %s", err.msg);
    store_close(st);
    err_clear(&err);
    ro = store_open_read(path, &err);
    CHECK(ro != NULL, "readable after the upgrade: %s", err.msg);
    store_close(ro);
}

static void check_api(Store *st) {
    Err err = {0};
    CHECK(write_eval(st, 0, 1, &err) == 0, "eval step 0: %s", err.msg);
    CHECK(write_eval(st, 10, 1, &err) == 0, "eval step 10: %s", err.msg);
    CHECK(q1(st, "SELECT count(*) FROM eval_samples") == 2 * ROWS * K, "samples");
    CHECK(q1(st, "SELECT count(*) FROM eval_rewards") == 2 * ROWS * K * 2, "reward components");
    CHECK(q1(st, "SELECT count(*) FROM eval_rewards WHERE value IS NULL AND error LIKE '%boom'") == 2 * ROWS,
          "nil value and error kept");
    CHECK(q1(st, "SELECT count(*) FROM eval_samples WHERE pred IS NULL") == 2 * ROWS, "NULL pred");
    CHECK(q1(st, "SELECT count(*) FROM eval_rewards WHERE extras = '{\"pred\":\"x\"}'") == 2 * ROWS * K, "extras");
    /* again at step 10: replaced, not duplicated */
    CHECK(write_eval(st, 10, 1, &err) == 0, "eval step 10 again: %s", err.msg);
    CHECK(q1(st, "SELECT count(*) FROM eval_samples WHERE step = 10") == ROWS * K, "replaced samples");
    CHECK(q1(st, "SELECT count(*) FROM evals WHERE step = 10") == 1, "replaced numbers");
    CHECK(q1(st, "SELECT count(*) FROM eval_rewards") == 2 * ROWS * K * 2, "no orphan reward components");
    /* an aborted evaluation leaves nothing (and the earlier one of that step is kept) */
    CHECK(write_eval(st, 20, 0, &err) == 0, "aborted eval: %s", err.msg);
    CHECK(q1(st, "SELECT count(*) FROM eval_samples WHERE step = 20") == 0, "abort leaves nothing");
    /* misuse */
    StoreEvalSample s = {0, 0, "p", "c", 1, 1, "eos", 0, 0, NULL};
    err_clear(&err);
    CHECK(store_eval_sample(st, &s, NULL, 0, &err) == -1 && strstr(err.msg, "outside"), "sample outside: %s", err.msg);
    CHECK(store_step_begin(st, 5, &err) == 0, "step begin");
    err_clear(&err);
    CHECK(store_eval_begin(st, 5, "arith", &err) == -1, "eval inside a step refused: %s", err.msg);
    store_step_abort(st);
    CHECK(store_eval_begin(st, 30, "arith", &err) == 0, "begin");
    err_clear(&err);
    CHECK(store_step_begin(st, 30, &err) == -1, "step inside an eval refused: %s", err.msg);
    CHECK(store_eval_sample(st, &s, NULL, 0, &err) == 0 && store_eval_sample(st, &s, NULL, 0, &err) == -1 &&
              strstr(err.msg, "row 0, sample 0"),
          "duplicate sample refused: %s", err.msg);
    CHECK(q1(st, "SELECT count(*) FROM eval_samples WHERE step = 30") == 0, "duplicate rolled back");
    CHECK(store_eval_commit(st, &err) == -1, "nothing to commit after the rollback");
}

/* The views against the pattern of correct_at. */
static void check_views(Store *st) {
    Err err = {0};
    StoreTable *t = store_query(st, "SELECT step, dataset_index, samples, correct, pass_rate, solved, mean_length,"
                                    " prompt FROM eval_rows ORDER BY step, dataset_index", &err);
    CHECK(t && t->nrows == 2 * ROWS, "eval_rows: %s", err.msg);
    for (int r = 0; t && r < t->nrows && r < 2 * ROWS; r++) {
        long step = r < ROWS ? 0 : 10;
        int i = r % ROWS, c = 0;
        for (int g = 0; g < K; g++) c += correct_at(step, i, g);
        char prompt[64];
        snprintf(prompt, sizeof prompt, "What is %d + %d?\n", i, i);
        CHECK(store_cell_num(t, r, 0) == step && store_cell_num(t, r, 1) == i && store_cell_num(t, r, 2) == K &&
                  store_cell_num(t, r, 3) == c && near(store_cell_num(t, r, 4), (double)c / K) &&
                  store_cell_num(t, r, 5) == (c > 0) && near(store_cell_num(t, r, 6), 10 + (K - 1) / 2.0) &&
                  !strcmp(store_cell_text(t, r, 7), prompt),
              "eval_rows row %d", r);
    }
    store_table_free(t);
    t = store_query(st, "SELECT step, rows, samples, pass_at_1, pass_at_k FROM eval_per_step ORDER BY step", &err);
    CHECK(t && t->nrows == 2, "eval_per_step: %s", err.msg);
    for (int r = 0; t && r < t->nrows && r < 2; r++) {
        long step = r ? 10 : 0;
        double p1 = 0, pk = 0;
        for (int i = 0; i < ROWS; i++) {
            int c = 0;
            for (int g = 0; g < K; g++) c += correct_at(step, i, g);
            p1 += (double)c / K / ROWS, pk += (c > 0) / (double)ROWS;
        }
        CHECK(store_cell_num(t, r, 1) == ROWS && store_cell_num(t, r, 2) == ROWS * K &&
                  near(store_cell_num(t, r, 3), p1) && near(store_cell_num(t, r, 4), pk),
              "eval_per_step step %ld: %g %g", step, store_cell_num(t, r, 3), store_cell_num(t, r, 4));
        /* pass_at_1 from the samples equals the pass@1 number written with them */
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT value FROM evals WHERE step = %ld AND metric = 'pass@1'", step);
        CHECK(near(q1(st, sql), p1), "pass@1 of step %ld", step);
    }
    store_table_free(t);
    t = store_query(st, "SELECT dataset_index, first_step, last_step, first_pass_rate, last_pass_rate, change"
                        " FROM eval_row_changes ORDER BY dataset_index", &err);
    CHECK(t && t->nrows == ROWS, "eval_row_changes: %s", err.msg);
    for (int i = 0; t && i < t->nrows && i < ROWS; i++) {
        int a = 0, b = 0;
        for (int g = 0; g < K; g++) a += correct_at(0, i, g), b += correct_at(10, i, g);
        CHECK(store_cell_num(t, i, 1) == 0 && store_cell_num(t, i, 2) == 10 &&
                  near(store_cell_num(t, i, 3), (double)a / K) && near(store_cell_num(t, i, 4), (double)b / K) &&
                  near(store_cell_num(t, i, 5), (double)(b - a) / K),
              "eval_row_changes row %d", i);
    }
    store_table_free(t);
    /* only row 1 goes from no correct sample to some */
    CHECK(q1(st, "SELECT count(*) FROM eval_newly_solved") == 1 && q1(st, "SELECT dataset_index FROM eval_newly_solved") == 1,
          "eval_newly_solved");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/grpo-test-store-eval-XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    check_migration();
    char db[300];
    snprintf(db, sizeof db, "%s/rollouts.db", dir);
    Err err = {0};
    Store *st = store_open(db, &err);
    CHECK(st != NULL, "open: %s", err.msg);
    if (st) {
        check_api(st);
        check_views(st);
        /* resume: evaluations after the checkpoint's step go with the steps */
        CHECK(store_truncate_after(st, 5, &err) == 0, "truncate: %s", err.msg);
        CHECK(q1(st, "SELECT count(*) FROM eval_samples WHERE step > 5") == 0 &&
                  q1(st, "SELECT count(*) FROM eval_samples WHERE step = 0") == ROWS * K,
              "truncate drops later eval samples only");
        CHECK(q1(st, "SELECT count(*) FROM eval_rewards") == ROWS * K * 2, "and their reward components");
        store_close(st);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return test_report();
}
