/* trainer: the GRPO training loop's state and one step of it, for any command
 * to drive (`grpo train`, `grpo bench grpo`).
 *
 * One step (trainer_step): take prompts_per_step rows, sample G completions
 * each (rollout.c, one prefill per prompt), score them with the recipe's Lua
 * rewards, form group-relative advantages (grpo.c) -- with DAPO dynamic
 * sampling, drop the groups without reward signal and sample more prompts
 * until the batch is full -- compute the clipped objective's gradient with
 * respect to the per-token log-probs of the same model (plus the KL to a
 * frozen reference when beta > 0) and push it through model_backward in
 * micro-batches, take one AdamW step per inner iteration (mu), and write the
 * step (metrics, every rollout, every reward component, router load) to the
 * run's SQLite store in one transaction. The sampler and the trainer share
 * one set of weights in one process.
 *
 * It does not parse command lines or print progress lines (the caller does,
 * from TrainerStepInfo); it prints one line to stderr per step only when
 * something was skipped. Formulas: docs/grpo.md; recipe fields: docs/recipes.md. */
#ifndef GRPO_TRAINER_H
#define GRPO_TRAINER_H

#include <stdint.h>

#include "base/err.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rewards/reward.h"
#include "rl/dataset.h"
#include "rl/optim.h"
#include "rl/recipe.h"
#include "rl/store.h"

typedef struct Trainer {
    Recipe r;               /* as run (defaults, file, --set applied; model = the checkpoint loaded) */
    Model m;                /* the policy: sampler and trainer share it */
    Model ref;              /* frozen reference, loaded only when beta > 0 */
    int has_ref;
    Tokenizer *tok;
    Dataset data;
    RewardSet *rs;
    int K;                  /* reward scripts */
    AdamW opt;
    LrSchedule sch;
    Store *st;
    int *order;             /* [data.n] data order, reshuffled per epoch */
    long cursor;            /* rows consumed */
    long start_step;        /* steps already done (> 0 after --resume) */
    int64_t *load;          /* [L * E] routed tokens of the current step */
    struct TrainerCuda *cuda; /* recipe device "cuda": the model's work on the GPU (trainer_cuda.h); NULL on the CPU */
    char rundir[1024];      /* output_dir/name */
} Trainer;

/* What one step did. Times in seconds; counts over the whole step (every
 * generation round when dynamic sampling refills the batch). */
typedef struct TrainerStepInfo {
    long step;                   /* 1-based number of the step just done */
    double t_rollout, t_reward, t_train, t_log; /* the time split of the step */
    long prompt_tokens;          /* prefilled prompt tokens (once per group) */
    long tokens_generated;       /* completion tokens sampled, all rounds */
    double tokens_trained;       /* active completion tokens in the loss (one pass) */
    double tokens_per_s;         /* sampled tokens / rollout time */
    int prompts, samples;        /* groups and completions trained on */
    double reward_mean, reward_std, accuracy; /* accuracy: the "*accuracy*" reward's mean, NaN if none */
    double mean_length;          /* completion tokens per trained sample */
    double entropy, kl;          /* token means (kl: NaN when beta = 0) */
    double clip_region;          /* share of clipped tokens, all passes */
    double loss, grad_norm, lr;
    int update_skipped;          /* a non-finite gradient skipped an optimizer step */
    double ratio_mean_last;      /* mean importance ratio of the last inner pass (1 at mu = 1) */
    double clip_region_last;     /* clip share of the last inner pass */
    double sampler_logp_diff_max;/* max |sampler log-prob - trainer log-prob| (first pass, active tokens) */
    double sampler_logp_diff_mean;
    int gen_rounds;              /* generation rounds (1 without dynamic sampling) */
    int groups_dropped;          /* groups without reward signal dropped by dynamic sampling */
    int skipped_missing_field;   /* rows skipped: a template field missing */
    int skipped_too_long;        /* rows skipped: prompt over max_prompt_length or the context */
    int groups_all_nil;          /* groups whose every reward was nil or an error (advantages 0) */
} TrainerStepInfo;

/* Validates the recipe, loads the model (the latest checkpoint with resume),
 * the reference model when beta > 0, tokenizer, data, reward scripts,
 * optimizer (state restored with resume) and opens the run's store. The
 * recipe is copied. t->start_step is the first step to run. On failure the
 * trainer is closed and err says what (ERR_INPUT for bad recipes/data). */
int trainer_open(Trainer *t, const Recipe *r, const char *recipe_path, int resume, Err *err);
/* Runs step `step` (0-based; steps must follow each other from t->start_step)
 * and commits it to the store. out may be NULL. */
int trainer_step(Trainer *t, long step, TrainerStepInfo *out, Err *err);
/* Writes checkpoints/step-<step>/ (HF layout, optimizer.bin, trainer_state.json,
 * and ref/ when the reference model is re-synced). step counts steps done. */
int trainer_save(Trainer *t, long step, Err *err);
void trainer_close(Trainer *t);

#endif
