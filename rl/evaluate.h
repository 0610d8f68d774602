/* evaluate: score a loaded model on a data set, the part `grpo eval` and
 * `grpo train` (eval_data / eval_steps) share.
 *
 * For each of the first `limit` rows it fills the prompt template, samples k
 * completions (rows batched `batch` at a time, one prefill per row), scores
 * them with a reward set and computes:
 *   pass@1  the mean over the k samples of "correct", averaged over rows;
 *   pass@k  the unbiased estimator 1 - C(n-c, k) / C(n, k) with n = k;
 *   maj@k   whether the most frequent "pred" extra of the correctness reward
 *           (first reached on ties) belongs to a correct sample;
 *   the mean of every reward script (over the samples where it gave a value).
 * A sample is correct when the correctness reward (EvalOpts.correct, by
 * default script 0) gives >= 1.
 *
 * Sample g of data-set row i draws its random numbers from
 * (seed, i * k + g, token): whatever the batch, the thread count or the
 * caller, the same (model, row, k, seed, options) gives the same completions,
 * which is why an evaluation inside training equals `grpo eval` of the same
 * checkpoint.
 *
 * With keep_samples the completions are kept in the result so that
 * evaluate_store can write them (eval_samples) with the numbers (evals) in
 * one transaction. It does not load models, data or rewards, and it does not
 * print the JSON summary (evaluate_print_json does). */
#ifndef GRPO_EVALUATE_H
#define GRPO_EVALUATE_H

#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "model/tokenizer.h"
#include "rewards/reward.h"
#include "rl/dataset.h"
#include "rl/rollout.h"
#include "rl/sampler.h"
#include "rl/store.h"

enum { EVAL_MAX_STOP = 4, EVAL_MAX_REWARDS = 16 };

typedef struct EvalOpts {
    int k;                     /* samples per row */
    int max_new_tokens;
    int limit;                 /* rows from the start of the data set, 0 = all */
    int batch;                 /* rows generated together (does not change results) */
    uint64_t seed;
    SamplerOpts sampling;
    const char *prompt_template; /* {field}s filled from each row */
    const char *stop[EVAL_MAX_STOP]; /* stop strings: as in training, a completion ends at the first
                                      * one it contains and its text is cut before it */
    int n_stop;
    int correct;               /* reward script deciding correctness (index in the set) */
    int keep_samples;          /* keep every completion for evaluate_store */
    FILE *progress;            /* progress lines ("eval i/n ..."), NULL = none */
    const RolloutEngine *engine; /* where the model runs (e.g. the GPU's, rollout_cuda.h); NULL = the CPU model */
} EvalOpts;

/* grpo eval's defaults: k 8, 512 new tokens, all rows, batch 32, seed 1234,
 * temperature 1, template "{question}\n", script 0 decides. */
EvalOpts evaluate_defaults(void);

/* One evaluated completion (with keep_samples). */
typedef struct EvalSample {
    int row;                   /* data-set row index (0-based) */
    int index;                 /* 0..k-1 */
    char *prompt;              /* prompt text as given to the model */
    char *completion;
    int prompt_tokens, completion_tokens;
    const char *finish_reason; /* static string */
    int correct;               /* 0/1 as counted by pass@1 */
    double reward;             /* weighted total of the reward set, NAN when every script gave nil */
    char *pred;                /* "pred" extra of the correctness reward, or NULL */
    RewardResult *rr;          /* [nrewards] value, error, extras of each script */
} EvalSample;

typedef struct EvalResult {
    int rows, k;
    double pass1, passk, maj;
    int nrewards;
    char *reward_names[EVAL_MAX_REWARDS];
    double reward_mean[EVAL_MAX_REWARDS]; /* NAN when the script never gave a value */
    long tokens;               /* completion tokens sampled */
    double seconds;
    int nsamples;              /* rows * k when keep_samples, else 0 */
    EvalSample *samples;       /* [nsamples], row-major */
} EvalResult;

/* Evaluates the model on the first rows of d. Returns -1 (err names the
 * file:line of a row whose prompt cannot be built, or what failed) with res
 * emptied. Free res with evaluate_result_free. */
int evaluate(Model *m, const Tokenizer *tok, const Dataset *d, RewardSet *rs, const EvalOpts *o,
             EvalResult *res, Err *err);
void evaluate_result_free(EvalResult *res);

/* Prints `grpo eval`'s one JSON line: rows, k, pass@1, pass@k, maj@k, each
 * reward's mean, seconds. */
void evaluate_print_json(const EvalResult *res, FILE *f);
/* One short line for progress output: "pass@1 0.250  pass@4 0.500  maj@4 0.250  math_accuracy 0.250 ...". */
void evaluate_format(const EvalResult *res, char *buf, size_t n);

/* Writes the evaluation of `dataset` at `step` in one transaction: its
 * numbers (evals: "pass@1", "pass@K", "maj@K", "rewards/NAME/mean") and, when
 * kept, its samples (eval_samples, eval_rewards). It replaces an earlier
 * evaluation of the same (step, dataset). */
int evaluate_store(Store *st, long step, const char *dataset, const EvalResult *res, Err *err);

#endif
