/* store: the rollout store, one SQLite database per run (runs/NAME/rollouts.db).
 *
 * This is the only module that calls SQLite. The trainer writes through the
 * writer API below: one transaction per training step holding that step's
 * metrics, prompts, rollouts, reward components and MoE router load, so a
 * step is either fully in the database or absent (also after SIGKILL). Readers
 * (the sqlite3 shell, `grpo report`, `grpo runs`) read concurrently: the
 * database is in WAL mode and every connection sets a busy timeout.
 *
 * The schema is a user interface (people query it with `sqlite3`); it is
 * documented in docs/store.md together with its views. It is versioned with
 * PRAGMA user_version and upgraded in place by store_open.
 *
 * It is not a metrics logger for anything but GRPO runs, and it keeps no
 * tensors: checkpoints live in runs/NAME/checkpoints/. */
#ifndef GRPO_STORE_H
#define GRPO_STORE_H

#include <stdint.h>

#include "base/err.h"

/* The schema version store_open upgrades a database to, and the oldest one
 * store_open_read reads as it is (its tables and views but not later ones:
 * version 3 added eval_samples). */
#define STORE_SCHEMA_VERSION 3
#define STORE_SCHEMA_READ_MIN 2

typedef struct Store Store;

/* Recommended metric names (TRL's where TRL has one). Any other name is
 * allowed: metrics are a name -> value set per step. Timings per phase are
 * "timing_s/<phase>" in seconds (the report plots every such metric). */
#define STORE_M_REWARD "reward"                       /* mean total reward of the step */
#define STORE_M_REWARD_STD "reward_std"               /* mean over groups of the group std */
#define STORE_M_FRAC_ZERO_STD "frac_reward_zero_std"  /* groups whose rewards are all equal */
#define STORE_M_MEAN_LENGTH "completions/mean_length" /* tokens */
#define STORE_M_CLIPPED_RATIO "completions/clipped_ratio" /* truncated at max length */
#define STORE_M_KL "kl"
#define STORE_M_ENTROPY "entropy"
#define STORE_M_CLIP_LOW "clip_ratio/low_mean"
#define STORE_M_CLIP_HIGH "clip_ratio/high_mean"
#define STORE_M_CLIP_REGION "clip_ratio/region_mean"
#define STORE_M_GRAD_NORM "grad_norm"
#define STORE_M_LR "learning_rate"
#define STORE_M_LOSS "loss"
#define STORE_M_NUM_TOKENS "num_tokens"
#define STORE_M_STEP_TIME "step_time"                 /* seconds */
#define STORE_M_TOKENS_PER_S "tokens_per_s"
#define STORE_M_TIMING_PREFIX "timing_s/"             /* timing_s/rollout, timing_s/reward, ... */

/* The run, recorded once when the database is created (store_run_record). */
typedef struct StoreRun {
    const char *name;          /* run name, usually the folder name */
    const char *model;         /* model directory or id */
    const char *recipe_path;   /* may be NULL */
    const char *recipe;        /* full recipe text, may be NULL */
    const char *config_json;   /* resolved configuration as JSON, may be NULL */
    const char *grpo_version;  /* NULL: this binary's version */
} StoreRun;

/* One completion. Doubles that are NAN are stored as NULL. */
typedef struct StoreRollout {
    int prompt_index;          /* index of the prompt in the step's batch */
    int sample_index;          /* 0..G-1 within the prompt's group */
    long dataset_index;        /* row of the prompt in the data set, -1 unknown */
    const char *prompt;        /* prompt text as given to the model (stored once per group) */
    const char *completion;    /* generated text */
    int prompt_tokens, completion_tokens;
    const char *finish_reason; /* "stop", "length", ... */
    double reward;             /* total (weighted) reward; NAN = every function returned nil */
    double advantage;
    double logprob_sum;        /* sum of the sampling log-probabilities of the completion tokens */
} StoreRollout;

/* One reward function's result for one rollout. */
typedef struct StoreReward {
    const char *name;          /* reward function name */
    double value;              /* NAN = no value (stored as NULL) */
    const char *error;         /* NULL or the error message */
} StoreReward;

/* ---- writer --------------------------------------------------------------- */

/* Opens (creating if needed) the database at path for writing: WAL, busy
 * timeout, schema upgraded to STORE_SCHEMA_VERSION. A database written by a
 * newer grpo is refused (ERR_INPUT). */
Store *store_open(const char *path, Err *err);
void store_close(Store *st);

/* Records the run. Call once after creating; a second call (a resumed run)
 * keeps the original row and adds a row to run_starts. */
int store_run_record(Store *st, const StoreRun *run, long resumed_from_step, Err *err);

/* The highest step fully written, or -1 if none (-2 on error). A resumed
 * trainer continues at that step + 1, or calls store_truncate_after first when
 * its checkpoint is older than the database. */
long store_last_step(Store *st, Err *err);
/* Deletes every step > step (and its rows) in one transaction. */
int store_truncate_after(Store *st, long step, Err *err);

/* One training step = one transaction. Between begin and commit call the
 * record functions below in any order; store_step_abort rolls it back.
 * Writing a step that is already stored fails (ERR_WORK) at its first
 * colliding row, or at commit. Any failure rolls the whole step back. */
int store_step_begin(Store *st, long step, Err *err);
int store_metric(Store *st, const char *name, double value, Err *err);
int store_rollout(Store *st, const StoreRollout *r, const StoreReward *rewards, int nrewards, Err *err);
/* tokens: [nlayers][nexperts] routed-token counts; row 0 is model layer layer0. */
int store_router_load(Store *st, int layer0, int nlayers, int nexperts, const int64_t *tokens, Err *err);
int store_step_commit(Store *st, Err *err);
void store_step_abort(Store *st);

/* An evaluation result. Inside a step or an evaluation (below) it joins that
 * transaction; otherwise it is its own transaction. */
int store_eval(Store *st, long step, const char *dataset, const char *metric, double value,
               long num_samples, Err *err);

/* One evaluated completion (eval_samples). Doubles that are NAN are stored as NULL. */
typedef struct StoreEvalSample {
    long dataset_index;        /* row of the evaluation data set (0-based) */
    int sample_index;          /* 0..k-1 */
    const char *prompt;
    const char *completion;
    int prompt_tokens, completion_tokens;
    const char *finish_reason;
    int correct;               /* 1 when the correctness reward gave >= 1 (what pass@1 counts) */
    double reward;             /* weighted total of every reward; NAN = every function gave nil */
    const char *pred;          /* the correctness reward's "pred" extra, or NULL */
} StoreEvalSample;

/* One reward function's result for one evaluated completion (eval_rewards). */
typedef struct StoreEvalReward {
    const char *name;
    double value;              /* NAN = no value */
    const char *error;         /* NULL or the message */
    const char *extras;        /* NULL or the JSON object of extras the script returned */
} StoreEvalReward;

/* One evaluation of `dataset` at `step` = one transaction that first deletes
 * an earlier evaluation of the same (step, dataset): evals rows, samples and
 * their rewards. Between begin and commit call store_eval_metric and
 * store_eval_sample; any failure rolls the whole evaluation back. Not inside a
 * training step. */
int store_eval_begin(Store *st, long step, const char *dataset, Err *err);
int store_eval_metric(Store *st, const char *metric, double value, long num_samples, Err *err);
int store_eval_sample(Store *st, const StoreEvalSample *s, const StoreEvalReward *rewards, int nrewards,
                      Err *err);
int store_eval_commit(Store *st, Err *err);
void store_eval_abort(Store *st);

/* ---- reader ----------------------------------------------------------------
 * For `grpo report` and `grpo runs`: read-only, and the SQL they pass is
 * written against the documented tables and views, as a sqlite3 shell user's
 * would be. Results are materialised in memory. */

/* Refuses (ERR_INPUT) a file that is not a store, or whose schema version is
 * below STORE_SCHEMA_READ_MIN or above STORE_SCHEMA_VERSION. */
Store *store_open_read(const char *path, Err *err);

typedef struct StoreTable {
    int nrows, ncols;
    char **names;      /* [ncols] column names */
    char **text;       /* [nrows*ncols] cell as text, NULL for SQL NULL */
    double *num;       /* [nrows*ncols] cell as a number (NAN for NULL or non-numeric) */
} StoreTable;

StoreTable *store_query(Store *st, const char *sql, Err *err);
void store_table_free(StoreTable *t);
/* Column index by name, -1 if absent. */
int store_table_col(const StoreTable *t, const char *name);
static inline const char *store_cell_text(const StoreTable *t, int row, int col) {
    return t->text[(long)row * t->ncols + col];
}
static inline double store_cell_num(const StoreTable *t, int row, int col) {
    return t->num[(long)row * t->ncols + col];
}

/* PRAGMA integrity_check: 0 when "ok", else -1 with the first problem in err. */
int store_integrity_check(Store *st, Err *err);
/* The schema version of an open database. */
int store_schema_version(Store *st);

#endif
