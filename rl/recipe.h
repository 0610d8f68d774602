/* recipe: a run configuration, written as a Lua file returning a table.
 *
 * Every field has a type, a default (TRL's where TRL has one) and a line of
 * help, listed in one table (recipe.c) from which loading, `--set key=value`
 * overrides, `grpo train --help` and docs/recipes.md are all derived. Unknown
 * keys are errors (a typo must not silently run with a default). It does not
 * run anything. */
#ifndef GRPO_RECIPE_H
#define GRPO_RECIPE_H

#include <stdio.h>

#include "base/err.h"

enum { RECIPE_MAX_REWARDS = 16 };

typedef struct Recipe {
    char name[128];            /* run name: runs/NAME */
    char output_dir[512];      /* where runs live */
    char model[512];           /* checkpoint directory (HF layout) */
    char tokenizer[512];       /* tokenizer directory ("" = model) */
    char train_data[512];      /* JSONL */
    char prompt_template[2048];/* plain template with {field}s */
    char completion_field[64]; /* sft: the target text field */
    int n_rewards;
    char rewards[RECIPE_MAX_REWARDS][512];
    double reward_weights[RECIPE_MAX_REWARDS];
    char stop[4][64];          /* stop strings */
    int n_stop;
    /* generation */
    int num_generations;       /* G */
    int prompts_per_step;
    int max_prompt_length;
    int max_completion_length;
    double temperature, top_p, min_p;
    int top_k;
    /* objective */
    char loss_type[32];
    char scale_rewards[16];
    char importance_sampling_level[16];
    double beta, epsilon, epsilon_high;
    int num_iterations;        /* mu */
    int mask_truncated_completions;
    char kl_estimator[16];     /* k1 | k2 | k3 */
    char ref_model[512];       /* frozen reference ("" = the run's initial model) */
    int sync_ref_model;        /* TRL: mix the policy into the reference every N steps */
    int ref_model_sync_steps;
    double ref_model_mixup_alpha;
    int dynamic_sampling;      /* DAPO: drop zero-std groups and refill */
    int max_num_gen_batches;   /* verl: generation rounds per step, 0 = no limit */
    /* optimisation */
    int max_steps;
    double learning_rate, weight_decay, max_grad_norm, warmup_ratio;
    char lr_scheduler_type[32];
    int micro_batch;           /* sequences per forward/backward */
    int seed;
    int save_steps;            /* 0 = only at the end */
    int threads;               /* 0 = all cores */
    char device[8];            /* cpu | cuda */
    int sft_epochs;            /* sft */
    double router_bias_gamma;  /* aux-loss-free router bias update, 0 = off */
    char save_dtype[8];        /* checkpoint dtype: f32 | bf16 */
    /* evaluation during training (rl/train_eval.c) */
    char eval_data[512];       /* JSONL, "" = off */
    int eval_steps;            /* every N steps (0 = only before training and at the end) */
    int eval_num_samples;      /* k */
    int eval_max_new_tokens;   /* 0 = max_completion_length */
    int eval_limit;            /* rows, 0 = all */
    double eval_temperature;   /* < 0 = temperature */
    int eval_seed;             /* grpo eval --seed */
} Recipe;

void recipe_defaults(Recipe *r);
/* Loads a Lua recipe file (a table returned by the file) over the defaults. */
int recipe_load(Recipe *r, const char *path, Err *err);
/* Applies "key=value" (value parsed by the field's type). */
int recipe_set(Recipe *r, const char *assignment, Err *err);
/* Prints every field with its current value as a Lua table (the run's copy). */
void recipe_write(const Recipe *r, FILE *f);
/* Prints every field, its type, default and help (for --help and docs). */
void recipe_help(FILE *f);

#endif
