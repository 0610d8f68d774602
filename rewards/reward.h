/* reward: score completions with reward scripts written in Lua.
 *
 * A reward script is a Lua 5.4 file that returns a table
 *     { name = "format", weight = 1.0, score = function(sample) ... end }
 * score returns a number, or nil for "no opinion", optionally followed by a
 * table of extras to log. A RewardSet holds N scripts and one hardened Lua
 * state per worker thread (rewards/luaenv.c: safe libraries only, read-only
 * globals, a memory cap, an instruction budget per call), and scores a batch
 * of samples in parallel.
 *
 * The total of one sample follows TRL: total = sum_k w_k * r_k over the
 * scripts that returned a number; a sample for which every script returned
 * nil (or failed) gets NaN. A script that fails (runtime error, bad return
 * value, budget or memory exceeded) counts as nil and its message is kept.
 *
 * This layer sees text and dataset fields only: it knows nothing about the
 * model or the tokenizer (token counts come in as numbers). */
#ifndef GRPO_REWARD_H
#define GRPO_REWARD_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "base/err.h"

/* One completion to score. Strings are NUL-terminated UTF-8 (invalid bytes
 * are passed through); row is the dataset row (a JSON object) or NULL. */
typedef struct RewardSample {
    const char *prompt;
    const char *completion;
    const cJSON *row;          /* fields become sample.<field> and sample.row */
    long prompt_tokens;        /* -1 when unknown */
    long completion_tokens;    /* -1 when unknown */
    const char *finish_reason; /* "stop", "length", ... or NULL */
} RewardSample;

/* The outcome of one script on one sample. */
typedef struct RewardResult {
    double value;   /* valid when has_value */
    int has_value;  /* 0: nil or failed */
    char *error;    /* NULL, or what went wrong (malloc'd) */
    char *extras;   /* NULL, or a JSON object with the script's extras (malloc'd) */
} RewardResult;

typedef struct RewardOpts {
    int workers;            /* threads (and Lua states); <= 0: number of online CPUs */
    size_t mem_limit;       /* bytes per Lua state; 0: 128 MiB */
    long instr_limit;       /* VM instructions per score call; 0: 50 million */
    /* grpo.log lines ("[name] text") go here; NULL: stderr. Called from
     * worker threads, possibly at the same time. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} RewardOpts;

typedef struct RewardSet RewardSet;

/* Loads the scripts (file names); every error names the file (and line for
 * Lua syntax errors). weights[i] overrides script i's weight unless NULL. */
RewardSet *reward_set_load(const char *const *paths, int n, const double *weights,
                           const RewardOpts *opts, Err *err);
void reward_set_free(RewardSet *rs);

int reward_set_count(const RewardSet *rs);
const char *reward_set_name(const RewardSet *rs, int script);
double reward_set_weight(const RewardSet *rs, int script);

/* Scores nsamples samples with every script, in parallel.
 * out:   [nsamples * count] results, sample-major (out[s * count + k]);
 *        free their strings with reward_results_clear.
 * total: [nsamples] weighted totals (NaN where every script gave nil); may be NULL.
 * Returns -1 only when the engine itself fails (e.g. a thread cannot start);
 * script failures are per-result errors. */
int reward_set_score(RewardSet *rs, const RewardSample *samples, int nsamples,
                     RewardResult *out, double *total, Err *err);
void reward_results_clear(RewardResult *res, size_t n);

/* TRL's nil semantics for one sample's results (count of them). */
double reward_total(const RewardSet *rs, const RewardResult *res);

#endif
