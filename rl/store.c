/* store: see store.h. The schema (tables in migration 1, views in migration 2,
 * evaluated completions in migration 3) is documented in docs/store.md; change both together, and only by appending
 * a migration: a database in users' hands is upgraded, never rebuilt. */
#include "store.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

#ifndef GRPO_VERSION
#define GRPO_VERSION "0.0.0"
#endif

enum { BUSY_TIMEOUT_MS = 30000 };

/* Migration N upgrades a database from user_version N-1 to N. */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
    /* 1: tables and indexes. */
    "CREATE TABLE run("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  name TEXT NOT NULL,"
    "  model TEXT,"
    "  recipe_path TEXT,"
    "  recipe TEXT,"
    "  config_json TEXT,"
    "  grpo_version TEXT NOT NULL,"
    "  started_at TEXT NOT NULL);"
    "CREATE TABLE run_starts("
    "  id INTEGER PRIMARY KEY,"
    "  started_at TEXT NOT NULL,"
    "  grpo_version TEXT NOT NULL,"
    "  resumed_from_step INTEGER);"
    "CREATE TABLE steps("
    "  step INTEGER PRIMARY KEY,"
    "  written_at TEXT NOT NULL,"
    "  num_prompts INTEGER NOT NULL,"
    "  num_rollouts INTEGER NOT NULL);"
    "CREATE TABLE metrics("
    "  step INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  value REAL,"
    "  PRIMARY KEY (step, name)) WITHOUT ROWID;"
    "CREATE INDEX metrics_by_name ON metrics(name, step);"
    "CREATE TABLE prompts("
    "  step INTEGER NOT NULL,"
    "  prompt_index INTEGER NOT NULL,"
    "  dataset_index INTEGER,"
    "  prompt TEXT NOT NULL,"
    "  UNIQUE (step, prompt_index));"
    "CREATE INDEX prompts_by_dataset_index ON prompts(dataset_index);"
    "CREATE TABLE rollouts("
    "  id INTEGER PRIMARY KEY,"
    "  step INTEGER NOT NULL,"
    "  prompt_index INTEGER NOT NULL,"
    "  sample_index INTEGER NOT NULL,"
    "  completion TEXT NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL,"
    "  completion_tokens INTEGER NOT NULL,"
    "  finish_reason TEXT NOT NULL,"
    "  reward REAL,"
    "  advantage REAL,"
    "  logprob_sum REAL,"
    "  UNIQUE (step, prompt_index, sample_index));"
    "CREATE TABLE rewards("
    "  rollout_id INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  value REAL,"
    "  error TEXT,"
    "  PRIMARY KEY (rollout_id, name)) WITHOUT ROWID;"
    "CREATE TABLE router_load("
    "  step INTEGER NOT NULL,"
    "  layer INTEGER NOT NULL,"
    "  expert INTEGER NOT NULL,"
    "  tokens INTEGER NOT NULL,"
    "  PRIMARY KEY (step, layer, expert)) WITHOUT ROWID;"
    "CREATE TABLE evals("
    "  id INTEGER PRIMARY KEY,"
    "  step INTEGER NOT NULL,"
    "  dataset TEXT NOT NULL,"
    "  metric TEXT NOT NULL,"
    "  value REAL,"
    "  num_samples INTEGER,"
    "  written_at TEXT NOT NULL);"
    "CREATE INDEX evals_by_step ON evals(step);",

    /* 2: views for the common questions. */
    "CREATE VIEW rollout_texts AS"
    "  SELECT r.id, r.step, r.prompt_index, r.sample_index, p.dataset_index, p.prompt,"
    "         r.completion, r.prompt_tokens, r.completion_tokens, r.finish_reason,"
    "         r.reward, r.advantage, r.logprob_sum"
    "  FROM rollouts r JOIN prompts p USING (step, prompt_index);"
    "CREATE VIEW step_metrics AS"
    "  SELECT step,"
    "    max(CASE WHEN name = 'reward' THEN value END) AS reward,"
    "    max(CASE WHEN name = 'reward_std' THEN value END) AS reward_std,"
    "    max(CASE WHEN name = 'frac_reward_zero_std' THEN value END) AS frac_reward_zero_std,"
    "    max(CASE WHEN name = 'completions/mean_length' THEN value END) AS mean_length,"
    "    max(CASE WHEN name = 'completions/clipped_ratio' THEN value END) AS clipped_ratio,"
    "    max(CASE WHEN name = 'kl' THEN value END) AS kl,"
    "    max(CASE WHEN name = 'entropy' THEN value END) AS entropy,"
    "    max(CASE WHEN name = 'clip_ratio/low_mean' THEN value END) AS clip_ratio_low,"
    "    max(CASE WHEN name = 'clip_ratio/high_mean' THEN value END) AS clip_ratio_high,"
    "    max(CASE WHEN name = 'clip_ratio/region_mean' THEN value END) AS clip_ratio_region,"
    "    max(CASE WHEN name = 'grad_norm' THEN value END) AS grad_norm,"
    "    max(CASE WHEN name = 'learning_rate' THEN value END) AS learning_rate,"
    "    max(CASE WHEN name = 'loss' THEN value END) AS loss,"
    "    max(CASE WHEN name = 'num_tokens' THEN value END) AS num_tokens,"
    "    max(CASE WHEN name = 'step_time' THEN value END) AS step_time,"
    "    max(CASE WHEN name = 'tokens_per_s' THEN value END) AS tokens_per_s"
    "  FROM metrics GROUP BY step;"
    "CREATE VIEW reward_per_step AS"
    "  SELECT step, count(*) AS rollouts, avg(reward) AS reward_mean,"
    "    sqrt(max(avg(reward * reward) - avg(reward) * avg(reward), 0)) AS reward_std,"
    "    min(reward) AS reward_min, max(reward) AS reward_max,"
    "    sum(reward IS NULL) AS reward_nulls"
    "  FROM rollouts GROUP BY step;"
    "CREATE VIEW reward_components_per_step AS"
    "  SELECT r.step, c.name, count(*) AS rollouts, avg(c.value) AS mean,"
    "    min(c.value) AS min, max(c.value) AS max, avg(c.value > 0) AS frac_positive,"
    "    sum(c.value IS NULL) AS nulls, sum(c.error IS NOT NULL) AS errors"
    "  FROM rewards c JOIN rollouts r ON r.id = c.rollout_id GROUP BY r.step, c.name;"
    "CREATE VIEW length_per_step AS"
    "  SELECT step, avg(completion_tokens) AS mean_length, min(completion_tokens) AS min_length,"
    "    max(completion_tokens) AS max_length, avg(finish_reason = 'length') AS truncated_frac,"
    "    avg(prompt_tokens) AS mean_prompt_length"
    "  FROM rollouts GROUP BY step;"
    "CREATE VIEW prompt_groups AS"
    "  SELECT step, prompt_index, count(*) AS samples, avg(reward) AS reward_mean,"
    "    min(reward) AS reward_min, max(reward) AS reward_max,"
    "    coalesce(min(reward) = max(reward), 1) AS zero_std"
    "  FROM rollouts GROUP BY step, prompt_index;"
    "CREATE VIEW zero_std_groups AS"
    "  SELECT g.*, p.dataset_index, p.prompt FROM prompt_groups g"
    "  JOIN prompts p USING (step, prompt_index) WHERE g.zero_std;"
    "CREATE VIEW zero_std_per_step AS"
    "  SELECT step, count(*) AS groups_total, sum(zero_std) AS zero_std_groups,"
    "    avg(zero_std) AS frac_reward_zero_std"
    "  FROM prompt_groups GROUP BY step;"
    "CREATE VIEW best_completions AS"
    "  SELECT * FROM (SELECT t.*, row_number() OVER"
    "    (PARTITION BY t.prompt ORDER BY t.reward DESC, t.id) AS rank"
    "    FROM rollout_texts t WHERE t.reward IS NOT NULL) WHERE rank = 1;"
    "CREATE VIEW worst_completions AS"
    "  SELECT * FROM (SELECT t.*, row_number() OVER"
    "    (PARTITION BY t.prompt ORDER BY t.reward ASC, t.id) AS rank"
    "    FROM rollout_texts t WHERE t.reward IS NOT NULL) WHERE rank = 1;"
    "CREATE VIEW router_share AS"
    "  SELECT step, layer, expert, tokens,"
    "    CAST(tokens AS REAL) / sum(tokens) OVER (PARTITION BY step, layer) AS share"
    "  FROM router_load;"
    "CREATE VIEW router_imbalance AS"
    "  SELECT step, layer, count(*) AS experts, max(share) * count(*) AS max_over_mean,"
    "    min(share) * count(*) AS min_over_mean, sum(tokens = 0) AS idle_experts"
    "  FROM router_share GROUP BY step, layer;"
    "CREATE VIEW router_imbalance_per_step AS"
    "  SELECT step, count(*) AS layers, avg(max_over_mean) AS mean_max_over_mean,"
    "    max(max_over_mean) AS worst_max_over_mean, sum(idle_experts) AS idle_experts"
    "  FROM router_imbalance GROUP BY step;",

    /* 3: the evaluated completions, their reward components, and views over them. */
    "CREATE TABLE eval_samples("
    "  id INTEGER PRIMARY KEY,"
    "  step INTEGER NOT NULL,"
    "  dataset TEXT NOT NULL,"
    "  dataset_index INTEGER NOT NULL,"
    "  sample_index INTEGER NOT NULL,"
    "  prompt TEXT NOT NULL,"
    "  completion TEXT NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL,"
    "  completion_tokens INTEGER NOT NULL,"
    "  finish_reason TEXT NOT NULL,"
    "  correct INTEGER NOT NULL,"
    "  reward REAL,"
    "  pred TEXT,"
    "  UNIQUE (step, dataset, dataset_index, sample_index));"
    "CREATE INDEX eval_samples_by_row ON eval_samples(dataset, dataset_index, step);"
    "CREATE TABLE eval_rewards("
    "  sample_id INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  value REAL,"
    "  error TEXT,"
    "  extras TEXT,"
    "  PRIMARY KEY (sample_id, name)) WITHOUT ROWID;"
    "CREATE INDEX evals_by_dataset ON evals(dataset, step);"
    "CREATE VIEW eval_rows AS"
    "  SELECT step, dataset, dataset_index, count(*) AS samples, sum(correct) AS correct,"
    "    avg(correct) AS pass_rate, max(correct) AS solved, avg(completion_tokens) AS mean_length,"
    "    min(prompt) AS prompt"
    "  FROM eval_samples GROUP BY step, dataset, dataset_index;"
    "CREATE VIEW eval_per_step AS"
    "  SELECT step, dataset, count(*) AS rows, sum(samples) AS samples, avg(pass_rate) AS pass_at_1,"
    "    avg(solved) AS pass_at_k, avg(mean_length) AS mean_length"
    "  FROM eval_rows GROUP BY step, dataset;"
    "CREATE VIEW eval_row_changes AS"
    "  WITH span AS (SELECT dataset, min(step) AS first_step, max(step) AS last_step"
    "                FROM eval_samples GROUP BY dataset)"
    "  SELECT a.dataset, a.dataset_index, s.first_step, a.pass_rate AS first_pass_rate,"
    "    s.last_step, b.pass_rate AS last_pass_rate, b.pass_rate - a.pass_rate AS change, a.prompt"
    "  FROM span s JOIN eval_rows a ON a.dataset = s.dataset AND a.step = s.first_step"
    "  JOIN eval_rows b ON b.dataset = s.dataset AND b.step = s.last_step"
    "    AND b.dataset_index = a.dataset_index;"
    "CREATE VIEW eval_newly_solved AS"
    "  SELECT * FROM eval_row_changes WHERE first_pass_rate = 0 AND last_pass_rate > 0;",
};

typedef enum {
    S_STEP, S_METRIC, S_PROMPT, S_ROLLOUT, S_REWARD, S_ROUTER, S_EVAL, S_EVAL_SAMPLE, S_EVAL_REWARD,
    S_COUNT
} StmtId;

static const char *const stmt_sql[S_COUNT] = {
    [S_STEP] = "INSERT INTO steps(step, written_at, num_prompts, num_rollouts)"
               " VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?)",
    [S_METRIC] = "INSERT INTO metrics(step, name, value) VALUES (?, ?, ?)"
                 " ON CONFLICT (step, name) DO UPDATE SET value = excluded.value",
    [S_PROMPT] = "INSERT OR IGNORE INTO prompts(step, prompt_index, dataset_index, prompt)"
                 " VALUES (?, ?, ?, ?)",
    [S_ROLLOUT] = "INSERT INTO rollouts(step, prompt_index, sample_index, completion,"
                  " prompt_tokens, completion_tokens, finish_reason, reward, advantage,"
                  " logprob_sum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_REWARD] = "INSERT INTO rewards(rollout_id, name, value, error) VALUES (?, ?, ?, ?)",
    [S_ROUTER] = "INSERT INTO router_load(step, layer, expert, tokens) VALUES (?, ?, ?, ?)",
    [S_EVAL] = "INSERT INTO evals(step, dataset, metric, value, num_samples, written_at)"
               " VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    [S_EVAL_SAMPLE] = "INSERT INTO eval_samples(step, dataset, dataset_index, sample_index, prompt,"
                      " completion, prompt_tokens, completion_tokens, finish_reason, correct, reward,"
                      " pred) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_EVAL_REWARD] = "INSERT INTO eval_rewards(sample_id, name, value, error, extras)"
                      " VALUES (?, ?, ?, ?, ?)",
};

struct Store {
    sqlite3 *db;
    char *path;
    int readonly;
    sqlite3_stmt *stmt[S_COUNT];  /* writer only */
    int in_step;
    long step;
    int in_eval;                  /* store_eval_begin .. commit */
    long eval_step;
    char *eval_dataset;
    int last_prompt_index;        /* prompts are inserted once per group */
    long nprompts, nrollouts;     /* of the open step */
};

static int db_fail(Store *st, Err *err, const char *what) {
    return err_set(err, ERR_WORK, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

static int exec(Store *st, const char *sql, Err *err) {
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    err_set(err, ERR_WORK, "%s: %s", st->path, msg ? msg : sqlite3_errmsg(st->db));
    sqlite3_free(msg);
    return -1;
}

static int pragma_int(Store *st, const char *sql, int *out, Err *err) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) return db_fail(st, err, sql);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) return db_fail(st, err, sql);
    return 0;
}

static Store *store_new(const char *path, int readonly, Err *err) {
    Store *st = xcalloc(1, sizeof *st);
    st->path = xstrdup(path);
    st->readonly = readonly;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        err_set(err, readonly ? ERR_INPUT : ERR_WORK, "%s: cannot open: %s", path,
                st->db ? sqlite3_errmsg(st->db) : "out of memory");
        store_close(st);
        return NULL;
    }
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    /* The last connection to close checkpoints the WAL under an exclusive lock;
     * a sqlite3 shell reading at that moment without .timeout would get
     * "database is locked". None of ours does it on close: the writer runs a
     * passive checkpoint before closing instead (store_close). */
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    return st;
}

/* Brings the schema to STORE_SCHEMA_VERSION inside one write transaction, so
 * a concurrent second writer or a crash never sees half a migration. */
static int migrate(Store *st, Err *err) {
    if (exec(st, "BEGIN IMMEDIATE", err)) return -1;
    int version = 0;
    if (pragma_int(st, "PRAGMA user_version", &version, err)) goto fail;
    if (version > STORE_SCHEMA_VERSION) {
        err_set(err, ERR_INPUT, "%s: schema version %d is newer than this grpo's (%d)", st->path,
                version, STORE_SCHEMA_VERSION);
        goto fail;
    }
    for (; version < STORE_SCHEMA_VERSION; version++) {
        if (exec(st, migrations[version], err)) {
            err_wrap(err, "migrating to schema version %d", version + 1);
            goto fail;
        }
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version + 1);
        if (exec(st, sql, err)) goto fail;
    }
    return exec(st, "COMMIT", err);
fail:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

Store *store_open(const char *path, Err *err) {
    Store *st = store_new(path, 0, err);
    if (!st) return NULL;
    /* WAL: readers never block the writer nor the writer them. synchronous=NORMAL
     * in WAL mode survives a process crash (SIGKILL) without losing a committed
     * step; a power loss may lose the last steps, never corrupt the file. */
    int wal_ok = 0;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            wal_ok = !strcmp((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
    }
    if (!wal_ok) {
        err_set(err, ERR_INPUT, "%s: cannot switch to WAL mode (not a database, or read-only?): %s",
                path, sqlite3_errmsg(st->db));
        goto fail;
    }
    /* A checkpoint (WAL -> database file, with an fsync) every 16 MB of WAL
     * rather than SQLite's 4 MB: fewer fsyncs per rollout written. */
    if (exec(st, "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;"
                 " PRAGMA wal_autocheckpoint = 4096;"
                 " PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = OFF", err))
        goto fail;
    if (migrate(st, err)) goto fail;
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK) {
            db_fail(st, err, stmt_sql[i]);
            goto fail;
        }
    return st;
fail:
    store_close(st);
    return NULL;
}

Store *store_open_read(const char *path, Err *err) {
    Store *st = store_new(path, 1, err);
    if (!st) return NULL;
    int version = 0;
    if (pragma_int(st, "PRAGMA user_version", &version, err)) {
        if (err) err->code = ERR_INPUT;  /* unreadable: not a database, or no permission */
        goto fail;
    }
    /* An older database that has the views readers use (version 2) is read as
     * it is: `grpo report` works on runs written before evaluated completions
     * were stored; the tables added since appear when a writer opens it. */
    if (version < STORE_SCHEMA_READ_MIN || version > STORE_SCHEMA_VERSION) {
        if (version == 0)
            err_set(err, ERR_INPUT, "%s: not a grpo rollout store (no schema)", path);
        else
            err_set(err, ERR_INPUT, "%s: schema version %d, this grpo reads %d to %d%s", path, version,
                    STORE_SCHEMA_READ_MIN, STORE_SCHEMA_VERSION,
                    version < STORE_SCHEMA_VERSION ? " (opening it for writing upgrades it)" : "");
        goto fail;
    }
    return st;
fail:
    store_close(st);
    return NULL;
}

void store_close(Store *st) {
    if (!st) return;
    if (st->in_step) store_step_abort(st);
    if (st->in_eval) store_eval_abort(st);
    /* Copy the WAL into the database file without locking readers out, so
     * rollouts.db alone holds every step (the -wal file stays, stale). */
    if (!st->readonly && st->db)
        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    for (int i = 0; i < S_COUNT; i++) sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st->path);
    free(st->eval_dataset);
    free(st);
}

int store_schema_version(Store *st) {
    int v = -1;
    pragma_int(st, "PRAGMA user_version", &v, NULL);
    return v;
}

/* ---- writer ---------------------------------------------------------------- */

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
    if (v) sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, i);
}

static void bind_real(sqlite3_stmt *s, int i, double v) {
    if (isnan(v)) sqlite3_bind_null(s, i);
    else sqlite3_bind_double(s, i, v);
}

/* Runs a bound statement to completion and resets it for the next use. */
static int run_stmt(Store *st, StmtId id, Err *err) {
    sqlite3_stmt *s = st->stmt[id];
    int rc = sqlite3_step(s);
    sqlite3_reset(s);  /* every parameter is bound again before the next use */
    if (rc == SQLITE_DONE) return 0;
    return err_set(err, ERR_WORK, "%s: step %ld: %s: %s", st->path, st->in_eval ? st->eval_step : st->step, stmt_sql[id],
                   sqlite3_errmsg(st->db));
}

/* A failed write inside a step rolls the step back: a half step is never kept. */
static int step_fail(Store *st) {
    store_step_abort(st);
    return -1;
}

static int need_step(Store *st, const char *fn, Err *err) {
    if (st->readonly) return err_set(err, ERR_WORK, "%s: %s: store opened read-only", st->path, fn);
    if (!st->in_step) return err_set(err, ERR_WORK, "%s: %s outside a step", st->path, fn);
    return 0;
}

int store_run_record(Store *st, const StoreRun *run, long resumed_from_step, Err *err) {
    const char *version = run->grpo_version ? run->grpo_version : GRPO_VERSION;
    sqlite3_stmt *s = NULL;
    if (exec(st, "BEGIN IMMEDIATE", err)) return -1;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR IGNORE INTO run(id, name, model, recipe_path, recipe,"
                           " config_json, grpo_version, started_at) VALUES (1, ?, ?, ?, ?, ?, ?,"
                           " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                           -1, &s, NULL) != SQLITE_OK)
        goto fail;
    bind_text(s, 1, run->name ? run->name : "");
    bind_text(s, 2, run->model);
    bind_text(s, 3, run->recipe_path);
    bind_text(s, 4, run->recipe);
    bind_text(s, 5, run->config_json);
    bind_text(s, 6, version);
    if (sqlite3_step(s) != SQLITE_DONE) goto fail;
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO run_starts(started_at, grpo_version, resumed_from_step)"
                           " VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?)",
                           -1, &s, NULL) != SQLITE_OK)
        goto fail;
    bind_text(s, 1, version);
    if (resumed_from_step >= 0) sqlite3_bind_int64(s, 2, resumed_from_step);
    if (sqlite3_step(s) != SQLITE_DONE) goto fail;
    sqlite3_finalize(s);
    s = NULL;
    return exec(st, "COMMIT", err);
fail:
    db_fail(st, err, "recording the run");
    sqlite3_finalize(s);
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

long store_last_step(Store *st, Err *err) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "SELECT coalesce(max(step), -1) FROM steps", -1, &s, NULL) !=
        SQLITE_OK) {
        db_fail(st, err, "last step");
        return -2;
    }
    long step = -2;
    if (sqlite3_step(s) == SQLITE_ROW) step = (long)sqlite3_column_int64(s, 0);
    else db_fail(st, err, "last step");
    sqlite3_finalize(s);
    return step;
}

int store_truncate_after(Store *st, long step, Err *err) {
    if (st->in_step || st->in_eval)
        return err_set(err, ERR_WORK, "%s: truncate inside a step or evaluation", st->path);
    static const char *const sql[] = {
        "DELETE FROM rewards WHERE rollout_id IN (SELECT id FROM rollouts WHERE step > ?1)",
        "DELETE FROM rollouts WHERE step > ?1",
        "DELETE FROM prompts WHERE step > ?1",
        "DELETE FROM metrics WHERE step > ?1",
        "DELETE FROM router_load WHERE step > ?1",
        "DELETE FROM evals WHERE step > ?1",
        "DELETE FROM eval_rewards WHERE sample_id IN (SELECT id FROM eval_samples WHERE step > ?1)",
        "DELETE FROM eval_samples WHERE step > ?1",
        "DELETE FROM steps WHERE step > ?1",
    };
    if (exec(st, "BEGIN IMMEDIATE", err)) return -1;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(st->db, sql[i], -1, &s, NULL) != SQLITE_OK) {
            db_fail(st, err, sql[i]);
            goto fail;
        }
        sqlite3_bind_int64(s, 1, step);
        int rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE) {
            db_fail(st, err, sql[i]);
            goto fail;
        }
    }
    return exec(st, "COMMIT", err);
fail:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int store_step_begin(Store *st, long step, Err *err) {
    if (st->readonly) return err_set(err, ERR_WORK, "%s: store opened read-only", st->path);
    if (st->in_step)
        return err_set(err, ERR_WORK, "%s: step %ld begun while step %ld is open", st->path, step,
                       st->step);
    if (st->in_eval)
        return err_set(err, ERR_WORK, "%s: step %ld begun inside an evaluation", st->path, step);
    if (step < 0) return err_set(err, ERR_INPUT, "%s: negative step %ld", st->path, step);
    if (exec(st, "BEGIN IMMEDIATE", err)) return -1;
    st->in_step = 1;
    st->step = step;
    st->last_prompt_index = -1;
    st->nprompts = st->nrollouts = 0;
    return 0;
}

int store_metric(Store *st, const char *name, double value, Err *err) {
    if (need_step(st, "store_metric", err)) return -1;
    sqlite3_stmt *s = st->stmt[S_METRIC];
    sqlite3_bind_int64(s, 1, st->step);
    bind_text(s, 2, name);
    bind_real(s, 3, value);
    return run_stmt(st, S_METRIC, err) ? step_fail(st) : 0;
}

int store_rollout(Store *st, const StoreRollout *r, const StoreReward *rewards, int nrewards,
                  Err *err) {
    if (need_step(st, "store_rollout", err)) return -1;
    if (r->prompt_index != st->last_prompt_index) {
        sqlite3_stmt *s = st->stmt[S_PROMPT];
        sqlite3_bind_int64(s, 1, st->step);
        sqlite3_bind_int(s, 2, r->prompt_index);
        if (r->dataset_index >= 0) sqlite3_bind_int64(s, 3, r->dataset_index);
        else sqlite3_bind_null(s, 3);
        bind_text(s, 4, r->prompt ? r->prompt : "");
        if (run_stmt(st, S_PROMPT, err)) return step_fail(st);
        st->nprompts += sqlite3_changes(st->db);
        st->last_prompt_index = r->prompt_index;
    }
    sqlite3_stmt *s = st->stmt[S_ROLLOUT];
    sqlite3_bind_int64(s, 1, st->step);
    sqlite3_bind_int(s, 2, r->prompt_index);
    sqlite3_bind_int(s, 3, r->sample_index);
    bind_text(s, 4, r->completion ? r->completion : "");
    sqlite3_bind_int(s, 5, r->prompt_tokens);
    sqlite3_bind_int(s, 6, r->completion_tokens);
    bind_text(s, 7, r->finish_reason ? r->finish_reason : "stop");
    bind_real(s, 8, r->reward);
    bind_real(s, 9, r->advantage);
    bind_real(s, 10, r->logprob_sum);
    if (run_stmt(st, S_ROLLOUT, err)) {
        err_wrap(err, "rollout (prompt %d, sample %d)", r->prompt_index, r->sample_index);
        return step_fail(st);
    }
    sqlite3_int64 id = sqlite3_last_insert_rowid(st->db);
    st->nrollouts++;
    for (int i = 0; i < nrewards; i++) {
        s = st->stmt[S_REWARD];
        sqlite3_bind_int64(s, 1, id);
        bind_text(s, 2, rewards[i].name);
        bind_real(s, 3, rewards[i].value);
        bind_text(s, 4, rewards[i].error);
        if (run_stmt(st, S_REWARD, err)) {
            err_wrap(err, "reward '%s' of rollout (prompt %d, sample %d)",
                     rewards[i].name ? rewards[i].name : "(null)", r->prompt_index, r->sample_index);
            return step_fail(st);
        }
    }
    return 0;
}

int store_router_load(Store *st, int layer0, int nlayers, int nexperts, const int64_t *tokens,
                      Err *err) {
    if (need_step(st, "store_router_load", err)) return -1;
    sqlite3_stmt *s = st->stmt[S_ROUTER];
    for (int l = 0; l < nlayers; l++)
        for (int e = 0; e < nexperts; e++) {
            sqlite3_bind_int64(s, 1, st->step);
            sqlite3_bind_int(s, 2, layer0 + l);
            sqlite3_bind_int(s, 3, e);
            sqlite3_bind_int64(s, 4, tokens[(long)l * nexperts + e]);
            if (run_stmt(st, S_ROUTER, err)) return step_fail(st);
        }
    return 0;
}

int store_step_commit(Store *st, Err *err) {
    if (need_step(st, "store_step_commit", err)) return -1;
    sqlite3_stmt *s = st->stmt[S_STEP];
    sqlite3_bind_int64(s, 1, st->step);
    sqlite3_bind_int64(s, 2, st->nprompts);
    sqlite3_bind_int64(s, 3, st->nrollouts);
    if (run_stmt(st, S_STEP, err)) {
        err_wrap(err, "step %ld already stored? (resume with store_truncate_after)", st->step);
        return step_fail(st);
    }
    if (exec(st, "COMMIT", err)) return step_fail(st);
    st->in_step = 0;
    return 0;
}

void store_step_abort(Store *st) {
    if (!st->in_step) return;
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_step = 0;
}

int store_eval(Store *st, long step, const char *dataset, const char *metric, double value,
               long num_samples, Err *err) {
    if (st->readonly) return err_set(err, ERR_WORK, "%s: store opened read-only", st->path);
    int own = !st->in_step && !st->in_eval;
    if (own && exec(st, "BEGIN IMMEDIATE", err)) return -1;
    sqlite3_stmt *s = st->stmt[S_EVAL];
    sqlite3_bind_int64(s, 1, step);
    bind_text(s, 2, dataset ? dataset : "");
    bind_text(s, 3, metric ? metric : "");
    bind_real(s, 4, value);
    if (num_samples >= 0) sqlite3_bind_int64(s, 5, num_samples);
    else sqlite3_bind_null(s, 5);
    if (run_stmt(st, S_EVAL, err)) {
        if (own) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        else if (st->in_eval) store_eval_abort(st);
        else step_fail(st);
        return -1;
    }
    return own ? exec(st, "COMMIT", err) : 0;
}

/* Runs sql with ?1 = step and ?2 = dataset to completion. */
static int exec_step_dataset(Store *st, const char *sql, long step, const char *dataset, Err *err) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) return db_fail(st, err, sql);
    sqlite3_bind_int64(s, 1, step);
    bind_text(s, 2, dataset);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : db_fail(st, err, sql);
}

int store_eval_begin(Store *st, long step, const char *dataset, Err *err) {
    if (st->readonly) return err_set(err, ERR_WORK, "%s: store opened read-only", st->path);
    if (st->in_step || st->in_eval)
        return err_set(err, ERR_WORK, "%s: evaluation of step %ld begun inside a step or evaluation",
                       st->path, step);
    if (exec(st, "BEGIN IMMEDIATE", err)) return -1;
    /* An evaluation of (step, dataset) replaces the previous one, numbers and samples. */
    static const char *const sql[] = {
        "DELETE FROM eval_rewards WHERE sample_id IN"
        " (SELECT id FROM eval_samples WHERE step = ?1 AND dataset = ?2)",
        "DELETE FROM eval_samples WHERE step = ?1 AND dataset = ?2",
        "DELETE FROM evals WHERE step = ?1 AND dataset = ?2",
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++)
        if (exec_step_dataset(st, sql[i], step, dataset ? dataset : "", err)) {
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    st->in_eval = 1;
    st->eval_step = step;
    free(st->eval_dataset);
    st->eval_dataset = xstrdup(dataset ? dataset : "");
    return 0;
}

int store_eval_metric(Store *st, const char *metric, double value, long num_samples, Err *err) {
    if (!st->in_eval) return err_set(err, ERR_WORK, "%s: store_eval_metric outside an evaluation", st->path);
    return store_eval(st, st->eval_step, st->eval_dataset, metric, value, num_samples, err);
}

/* A failed write inside an evaluation rolls it back. */
static int eval_fail(Store *st) {
    store_eval_abort(st);
    return -1;
}

int store_eval_sample(Store *st, const StoreEvalSample *e, const StoreEvalReward *rewards, int nrewards,
                      Err *err) {
    if (!st->in_eval) return err_set(err, ERR_WORK, "%s: store_eval_sample outside an evaluation", st->path);
    sqlite3_stmt *s = st->stmt[S_EVAL_SAMPLE];
    sqlite3_bind_int64(s, 1, st->eval_step);
    bind_text(s, 2, st->eval_dataset);
    sqlite3_bind_int64(s, 3, e->dataset_index);
    sqlite3_bind_int(s, 4, e->sample_index);
    bind_text(s, 5, e->prompt ? e->prompt : "");
    bind_text(s, 6, e->completion ? e->completion : "");
    sqlite3_bind_int(s, 7, e->prompt_tokens);
    sqlite3_bind_int(s, 8, e->completion_tokens);
    bind_text(s, 9, e->finish_reason ? e->finish_reason : "stop");
    sqlite3_bind_int(s, 10, e->correct != 0);
    bind_real(s, 11, e->reward);
    bind_text(s, 12, e->pred);
    if (run_stmt(st, S_EVAL_SAMPLE, err)) {
        err_wrap(err, "evaluation of step %ld: row %ld, sample %d", st->eval_step, e->dataset_index,
                 e->sample_index);
        return eval_fail(st);
    }
    sqlite3_int64 id = sqlite3_last_insert_rowid(st->db);
    for (int i = 0; i < nrewards; i++) {
        s = st->stmt[S_EVAL_REWARD];
        sqlite3_bind_int64(s, 1, id);
        bind_text(s, 2, rewards[i].name);
        bind_real(s, 3, rewards[i].value);
        bind_text(s, 4, rewards[i].error);
        bind_text(s, 5, rewards[i].extras);
        if (run_stmt(st, S_EVAL_REWARD, err)) {
            err_wrap(err, "evaluation of step %ld: reward '%s' of row %ld, sample %d", st->eval_step,
                     rewards[i].name ? rewards[i].name : "(null)", e->dataset_index, e->sample_index);
            return eval_fail(st);
        }
    }
    return 0;
}

int store_eval_commit(Store *st, Err *err) {
    if (!st->in_eval) return err_set(err, ERR_WORK, "%s: store_eval_commit outside an evaluation", st->path);
    if (exec(st, "COMMIT", err)) return eval_fail(st);
    st->in_eval = 0;
    return 0;
}

void store_eval_abort(Store *st) {
    if (!st->in_eval) return;
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_eval = 0;
}

/* ---- reader ---------------------------------------------------------------- */

void store_table_free(StoreTable *t) {
    if (!t) return;
    for (int c = 0; c < t->ncols; c++) free(t->names[c]);
    for (long i = 0; i < (long)t->nrows * t->ncols; i++) free(t->text[i]);
    free(t->names);
    free(t->text);
    free(t->num);
    free(t);
}

int store_table_col(const StoreTable *t, const char *name) {
    for (int c = 0; c < t->ncols; c++)
        if (!strcmp(t->names[c], name)) return c;
    return -1;
}

/* type: sqlite3_column_type read before any conversion of the cell. */
static double cell_number(sqlite3_stmt *s, int c, int type) {
    switch (type) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT: return sqlite3_column_double(s, c);
    case SQLITE_TEXT: {
        const char *txt = (const char *)sqlite3_column_text(s, c);
        char *end;
        double v = strtod(txt, &end);
        return (end != txt && *end == 0) ? v : NAN;
    }
    default: return NAN;
    }
}

StoreTable *store_query(Store *st, const char *sql, Err *err) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_fail(st, err, sql);
        return NULL;
    }
    StoreTable *t = xcalloc(1, sizeof *t);
    t->ncols = sqlite3_column_count(s);
    t->names = xcalloc(t->ncols ? t->ncols : 1, sizeof *t->names);
    for (int c = 0; c < t->ncols; c++) t->names[c] = xstrdup(sqlite3_column_name(s, c));
    long cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        long need = (long)(t->nrows + 1) * t->ncols;
        if (need > cap) {
            cap = need * 2 + 64;
            t->text = xrealloc(t->text, cap * sizeof *t->text);
            t->num = xrealloc(t->num, cap * sizeof *t->num);
        }
        long base = (long)t->nrows * t->ncols;
        for (int c = 0; c < t->ncols; c++) {
            int type = sqlite3_column_type(s, c);
            double num = cell_number(s, c, type);
            const unsigned char *txt = sqlite3_column_text(s, c);
            t->text[base + c] = txt ? xstrdup((const char *)txt) : NULL;
            t->num[base + c] = num;
        }
        t->nrows++;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        db_fail(st, err, sql);
        store_table_free(t);
        return NULL;
    }
    return t;
}

int store_integrity_check(Store *st, Err *err) {
    StoreTable *t = store_query(st, "PRAGMA integrity_check", err);
    if (!t) return -1;
    int ok = t->nrows >= 1 && t->ncols >= 1 && store_cell_text(t, 0, 0) &&
             !strcmp(store_cell_text(t, 0, 0), "ok");
    if (!ok)
        err_set(err, ERR_WORK, "%s: integrity_check: %s", st->path,
                t->nrows && store_cell_text(t, 0, 0) ? store_cell_text(t, 0, 0) : "(no answer)");
    store_table_free(t);
    return ok ? 0 : -1;
}
