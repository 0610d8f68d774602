/* test_store: the writer API, the schema, the views and the migrations, on a
 * SYNTHETIC run (tests/store/synth.c); expected numbers are recomputed here
 * from the generator, not read back from the database. */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl/store.h"
#include "synth.h"
#include "test.h"

static char dir[256];
static const SynthCfg cfg = {.prompts = 4, .group = 4, .nlayers = 2, .nexperts = 8, .steps = 12};

static double q1(Store *st, const char *sql) {
    Err err = {0};
    StoreTable *t = store_query(st, sql, &err);
    double v = t && t->nrows ? store_cell_num(t, 0, 0) : NAN;
    if (!t) fprintf(stderr, "query failed: %s\n", err.msg);
    store_table_free(t);
    return v;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * (1 + fabs(b)); }

/* The per-step views against the generator's numbers. */
static void check_views(Store *st) {
    int n = cfg.prompts * cfg.group;
    SynthRollout *ro = malloc(n * sizeof *ro);
    Err err = {0};
    StoreTable *rw = store_query(st, "SELECT step, reward_mean, reward_std, reward_min, reward_max,"
                                     " rollouts FROM reward_per_step ORDER BY step", &err);
    StoreTable *len = store_query(st, "SELECT step, mean_length, min_length, max_length,"
                                      " truncated_frac FROM length_per_step ORDER BY step", &err);
    StoreTable *zs = store_query(st, "SELECT step, zero_std_groups FROM zero_std_per_step ORDER BY step",
                                 &err);
    StoreTable *comp = store_query(st, "SELECT step, mean, nulls, errors FROM"
                                       " reward_components_per_step WHERE name = 'format' ORDER BY step",
                                   &err);
    CHECK(rw && len && zs && comp, "views: %s", err.msg);
    if (!rw || !len || !zs || !comp) goto done;
    CHECK(rw->nrows == cfg.steps && len->nrows == cfg.steps && zs->nrows == cfg.steps, "rows per step view");
    for (long s = 0; s < cfg.steps && s < rw->nrows; s++) {
        synth_rollouts(&cfg, s, ro);
        double sum = 0, sum2 = 0, mn = INFINITY, mx = -INFINITY, lsum = 0, lmin = 1e9, lmax = 0, trunc = 0;
        double fsum = 0;
        int fn = 0, nulls = 0, zero = 0;
        for (int i = 0; i < n; i++) {
            double r = ro[i].r.reward;
            sum += r, sum2 += r * r, mn = fmin(mn, r), mx = fmax(mx, r);
            lsum += ro[i].r.completion_tokens;
            lmin = fmin(lmin, ro[i].r.completion_tokens), lmax = fmax(lmax, ro[i].r.completion_tokens);
            trunc += !strcmp(ro[i].r.finish_reason, "length");
            if (isnan(ro[i].rewards[1].value)) nulls++;
            else fsum += ro[i].rewards[1].value, fn++;
        }
        for (int p = 0; p < cfg.prompts; p++) {
            int same = 1;
            for (int g = 1; g < cfg.group; g++)
                same &= ro[p * cfg.group + g].r.reward == ro[p * cfg.group].r.reward;
            zero += same;
        }
        double mean = sum / n, sd = sqrt(fmax(sum2 / n - mean * mean, 0));
        CHECK(store_cell_num(rw, s, 0) == s && store_cell_num(rw, s, 5) == n, "step %ld rows", s);
        CHECK(near(store_cell_num(rw, s, 1), mean), "step %ld reward_mean %g vs %g", s, store_cell_num(rw, s, 1), mean);
        CHECK(fabs(store_cell_num(rw, s, 2) - sd) < 1e-6, "step %ld reward_std %g vs %g", s, store_cell_num(rw, s, 2), sd);
        CHECK(store_cell_num(rw, s, 3) == mn && store_cell_num(rw, s, 4) == mx, "step %ld min/max", s);
        CHECK(near(store_cell_num(len, s, 1), lsum / n), "step %ld mean_length", s);
        CHECK(store_cell_num(len, s, 2) == lmin && store_cell_num(len, s, 3) == lmax, "step %ld min/max length", s);
        CHECK(near(store_cell_num(len, s, 4), trunc / n), "step %ld truncated_frac", s);
        CHECK(store_cell_num(zs, s, 1) == zero, "step %ld zero-std groups %g vs %d", s, store_cell_num(zs, s, 1), zero);
        CHECK(near(store_cell_num(comp, s, 1), fsum / fn), "step %ld format mean", s);
        CHECK(store_cell_num(comp, s, 2) == nulls && store_cell_num(comp, s, 3) == nulls,
              "step %ld format nulls/errors %g vs %d", s, store_cell_num(comp, s, 2), nulls);
    }
done:
    store_table_free(rw), store_table_free(len), store_table_free(zs), store_table_free(comp);
    free(ro);
}

static void check_rows(Store *st) {
    long P = cfg.prompts, G = cfg.group, S = cfg.steps;
    CHECK(q1(st, "SELECT count(*) FROM rollouts") == S * P * G, "rollout count");
    CHECK(q1(st, "SELECT count(*) FROM prompts") == S * P, "prompts stored once per group");
    CHECK(q1(st, "SELECT count(*) FROM rewards") == S * P * G * SYNTH_NREWARDS, "reward rows");
    CHECK(q1(st, "SELECT count(*) FROM metrics") == S * SYNTH_NMETRICS, "metric rows");
    CHECK(q1(st, "SELECT count(*) FROM router_load") == S * cfg.nlayers * cfg.nexperts, "router rows");
    CHECK(q1(st, "SELECT sum(num_rollouts) FROM steps") == S * P * G, "steps.num_rollouts");
    CHECK(q1(st, "SELECT count(*) FROM rollouts WHERE reward IS NULL") == 0, "no null totals");
    CHECK(q1(st, "SELECT count(*) FROM rewards WHERE value IS NULL AND error IS NOT NULL") > 0,
          "failed reward stored as NULL with its error");
    /* a text round trip, escapes and all */
    SynthRollout *ro = malloc(P * G * sizeof *ro);
    synth_rollouts(&cfg, 3, ro);
    Err err = {0};
    StoreTable *t = store_query(st, "SELECT prompt, completion, advantage, logprob_sum, dataset_index"
                                    " FROM rollout_texts WHERE step = 3 AND prompt_index = 2 AND sample_index = 1", &err);
    CHECK(t && t->nrows == 1, "rollout_texts row: %s", err.msg);
    if (t && t->nrows == 1) {
        SynthRollout *r = &ro[2 * G + 1];
        CHECK(!strcmp(store_cell_text(t, 0, 0), r->prompt), "prompt text");
        CHECK(!strcmp(store_cell_text(t, 0, 1), r->completion), "completion text");
        CHECK(store_cell_num(t, 0, 2) == r->r.advantage, "advantage exact");
        CHECK(store_cell_num(t, 0, 3) == r->r.logprob_sum, "logprob_sum exact");
        CHECK(store_cell_num(t, 0, 4) == r->r.dataset_index, "dataset_index");
    }
    store_table_free(t);
    free(ro);
    const char *names[SYNTH_NMETRICS];
    double values[SYNTH_NMETRICS];
    synth_metrics(&cfg, 7, names, values);
    CHECK(q1(st, "SELECT kl FROM step_metrics WHERE step = 7") == values[4], "step_metrics.kl");
    CHECK(q1(st, "SELECT learning_rate FROM step_metrics WHERE step = 7") == values[10], "learning_rate");
    CHECK(q1(st, "SELECT value FROM metrics WHERE step = 7 AND name = 'timing_s/train'") == values[17],
          "timing metric");
    CHECK(near(q1(st, "SELECT max(abs(s - 1)) FROM (SELECT sum(share) AS s FROM router_share GROUP BY step, layer)"), 0),
          "router shares sum to 1");
    CHECK(q1(st, "SELECT tokens FROM router_load WHERE step = 5 AND layer = 2 AND expert = 3") ==
              synth_router_tokens(5, 2, 3), "router tokens");
    CHECK(q1(st, "SELECT count(*) FROM router_imbalance") == S * cfg.nlayers, "router_imbalance rows");
    CHECK(q1(st, "SELECT count(*) FROM best_completions") == S * P, "one best completion per prompt");
    CHECK(q1(st, "SELECT count(*) FROM best_completions b WHERE reward <>"
                 " (SELECT max(reward) FROM rollouts r WHERE r.step = b.step AND r.prompt_index = b.prompt_index)") == 0,
          "best = group max");
    CHECK(q1(st, "SELECT count(*) FROM worst_completions w WHERE reward <>"
                 " (SELECT min(reward) FROM rollouts r WHERE r.step = w.step AND r.prompt_index = w.prompt_index)") == 0,
          "worst = group min");
    CHECK(q1(st, "SELECT count(*) FROM zero_std_groups") == q1(st, "SELECT sum(zero_std_groups) FROM zero_std_per_step"),
          "zero_std_groups");
}

static void check_errors(Store *st, const char *db) {
    Err err = {0};
    long before = (long)q1(st, "SELECT count(*) FROM rollouts");
    /* a step already stored: refused at commit, nothing kept */
    CHECK(synth_write_step(st, &cfg, 5, &err) == -1 && err.code == ERR_WORK, "duplicate step refused");
    CHECK(q1(st, "SELECT count(*) FROM rollouts") == before, "nothing kept from the duplicate");
    /* a duplicate rollout inside a step: the step is rolled back */
    err_clear(&err);
    SynthRollout ro[16];
    synth_rollouts(&cfg, 12, ro);
    CHECK(store_step_begin(st, 12, &err) == 0, "begin 12: %s", err.msg);
    CHECK(store_rollout(st, &ro[0].r, ro[0].rewards, 2, &err) == 0, "rollout");
    CHECK(store_rollout(st, &ro[0].r, ro[0].rewards, 2, &err) == -1, "duplicate rollout refused");
    CHECK(strstr(err.msg, "prompt 0, sample 0") != NULL, "message names the rollout: %s", err.msg);
    CHECK(store_step_commit(st, &err) == -1, "no step open after a failed write");
    CHECK(store_last_step(st, &err) == cfg.steps - 1, "step 12 absent");
    /* abort */
    CHECK(store_step_begin(st, 12, &err) == 0 && store_rollout(st, &ro[0].r, ro[0].rewards, 2, &err) == 0,
          "begin again");
    store_step_abort(st);
    CHECK(q1(st, "SELECT count(*) FROM rollouts WHERE step = 12") == 0, "aborted step absent");
    CHECK(store_metric(st, "kl", 1, &err) == -1, "metric outside a step refused");
    /* eval: own transaction and inside a step */
    CHECK(store_eval(st, 11, "synthetic", "pass@1", 0.5, 10, &err) == 0, "eval: %s", err.msg);
    CHECK(q1(st, "SELECT value FROM evals WHERE metric = 'pass@1'") == 0.5, "eval stored");
    /* truncate + rewrite: resume from an older checkpoint */
    CHECK(store_truncate_after(st, 8, &err) == 0, "truncate: %s", err.msg);
    CHECK(store_last_step(st, &err) == 8, "last step after truncate");
    CHECK(q1(st, "SELECT (SELECT count(*) FROM rollouts WHERE step > 8) + (SELECT count(*) FROM prompts WHERE step > 8)"
                 " + (SELECT count(*) FROM metrics WHERE step > 8) + (SELECT count(*) FROM router_load WHERE step > 8)"
                 " + (SELECT count(*) FROM evals WHERE step > 8) + (SELECT count(*) FROM rewards w"
                 "   WHERE NOT EXISTS (SELECT 1 FROM rollouts r WHERE r.id = w.rollout_id))") == 0,
          "nothing after step 8, no orphan rewards");
    for (long s = 9; s < cfg.steps; s++) CHECK(synth_write_step(st, &cfg, s, &err) == 0, "rewrite %ld", s);
    (void)db;
}

static void check_open(const char *db) {
    Err err = {0};
    char path[512], side[600];
    /* read-only: reads, refuses writes */
    Store *ro = store_open_read(db, &err);
    CHECK(ro != NULL, "open read: %s", err.msg);
    if (ro) {
        CHECK(store_step_begin(ro, 100, &err) == -1, "read-only refuses a step");
        CHECK(store_integrity_check(ro, &err) == 0, "integrity: %s", err.msg);
        store_close(ro);
    }
    /* a missing file: read refuses (ERR_INPUT) */
    snprintf(path, sizeof path, "%s/missing.db", dir);
    err_clear(&err);
    CHECK(store_open_read(path, &err) == NULL && err.code == ERR_INPUT, "missing db: %s", err.msg);
    /* not a database */
    snprintf(path, sizeof path, "%s/garbage.db", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not an sqlite database, just text that is long enough to have a header.....\n", f);
    fclose(f);
    err_clear(&err);
    CHECK(store_open(path, &err) == NULL && err.code, "garbage refused: %s", err.msg);
    err_clear(&err);
    CHECK(store_open_read(path, &err) == NULL && err.code == ERR_INPUT, "garbage refused (read): %s", err.msg);
    /* migration 1 -> current: drop the views and later tables, mark version 1, open for writing */
    snprintf(path, sizeof path, "%s/old.db", dir);
    Store *st = store_open(path, &err);
    CHECK(st != NULL, "create: %s", err.msg);
    store_close(st);
    sqlite3 *h;
    sqlite3_open(path, &h);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(h, "SELECT name FROM sqlite_schema WHERE type = 'view'", -1, &s, NULL);
    char drops[4096] = "";
    while (sqlite3_step(s) == SQLITE_ROW)
        snprintf(drops + strlen(drops), sizeof drops - strlen(drops), "DROP VIEW %s;", sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    CHECK(sqlite3_exec(h, drops, NULL, NULL, NULL) == SQLITE_OK && strlen(drops) > 0, "drop views");
    /* and what migration 3 added (evaluated completions), to be back at version 1 */
    CHECK(sqlite3_exec(h, "DROP TABLE eval_samples; DROP TABLE eval_rewards; DROP INDEX evals_by_dataset;", NULL, NULL,
                       NULL) == SQLITE_OK, "drop migration 3");
    sqlite3_exec(h, "PRAGMA user_version = 1", NULL, NULL, NULL);
    sqlite3_close(h);
    err_clear(&err);
    CHECK(store_open_read(path, &err) == NULL && err.code == ERR_INPUT && strstr(err.msg, "upgrades"),
          "old version read: %s", err.msg);
    st = store_open(path, &err);
    CHECK(st && store_schema_version(st) == STORE_SCHEMA_VERSION, "migrated to %d", STORE_SCHEMA_VERSION);
    if (st) CHECK(q1(st, "SELECT count(*) FROM sqlite_schema WHERE type = 'view'") >= 12, "views back");
    store_close(st);
    /* a newer database is refused */
    sqlite3_open(path, &h);
    sqlite3_exec(h, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(h);
    err_clear(&err);
    CHECK(store_open(path, &err) == NULL && err.code == ERR_INPUT && strstr(err.msg, "newer"), "newer: %s", err.msg);
    snprintf(side, sizeof side, "%s/nodir/x.db", dir);
    err_clear(&err);
    CHECK(store_open(side, &err) == NULL && err.code, "no directory: %s", err.msg);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/grpo-test-store-XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char db[300];
    snprintf(db, sizeof db, "%s/rollouts.db", dir);
    Err err = {0};
    Store *st = store_open(db, &err);
    CHECK(st != NULL, "open: %s", err.msg);
    if (!st) return test_report();
    CHECK(store_schema_version(st) == STORE_SCHEMA_VERSION, "schema version");
    Err e2 = {0};
    StoreTable *jm = store_query(st, "PRAGMA journal_mode", &e2);
    CHECK(jm && jm->nrows == 1 && !strcmp(store_cell_text(jm, 0, 0), "wal"), "WAL mode");
    store_table_free(jm);
    CHECK(store_last_step(st, &err) == -1, "empty: last step -1");
    StoreRun run = {.name = "synthetic", .model = "none", .recipe = "-- synthetic"};
    CHECK(store_run_record(st, &run, -1, &err) == 0, "run: %s", err.msg);
    for (long s = 0; s < cfg.steps; s++) CHECK(synth_write_step(st, &cfg, s, &err) == 0, "step %ld: %s", s, err.msg);
    CHECK(store_last_step(st, &err) == cfg.steps - 1, "last step");
    check_rows(st);
    check_views(st);
    check_errors(st, db);
    check_rows(st);  /* same content after truncate + rewrite */
    check_views(st);
    store_close(st);
    /* reopen as a resumed run */
    st = store_open(db, &err);
    CHECK(st && store_run_record(st, &run, 11, &err) == 0, "resume record: %s", err.msg);
    if (st) {
        CHECK(q1(st, "SELECT count(*) FROM run") == 1 && q1(st, "SELECT count(*) FROM run_starts") == 2,
              "one run, two starts");
        CHECK(q1(st, "SELECT resumed_from_step FROM run_starts WHERE id = 2") == 11, "resumed_from_step");
        CHECK(store_integrity_check(st, &err) == 0, "integrity: %s", err.msg);
    }
    store_close(st);
    check_open(db);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!test_failed_) (void)!system(cmd);
    return test_report();
}
