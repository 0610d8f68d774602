/* synth: a SYNTHETIC training run for the store tests. No model, no trainer:
 * a deterministic function of (step, prompt, sample) that produces rollouts,
 * reward components, TRL-named metrics, router load and evaluations, written
 * through the real writer API of rl/store. The tests recompute the same
 * numbers here to check what the database, the views and the report show.
 * Its numbers describe no real run; docs/store.md says so where it uses them. */
#ifndef GRPO_TESTS_STORE_SYNTH_H
#define GRPO_TESTS_STORE_SYNTH_H

#include "rl/store.h"

typedef struct SynthCfg {
    int prompts, group;      /* P prompts x G samples per step */
    int nlayers, nexperts;   /* MoE router table per step (layers start at 1) */
    long steps;              /* for synth_write_run */
    int eval_every;          /* evaluation every N steps (0 = none) */
} SynthCfg;

enum { SYNTH_NREWARDS = 2, SYNTH_NMETRICS = 19 };

typedef struct SynthRollout {
    StoreRollout r;
    StoreReward rewards[SYNTH_NREWARDS];  /* accuracy, format */
    char prompt[160], completion[400], error[80];
} SynthRollout;

/* Fills out[P*G] (prompt-major) for step. */
void synth_rollouts(const SynthCfg *cfg, long step, SynthRollout *out);
/* The metric names and values written for step (SYNTH_NMETRICS of them). */
void synth_metrics(const SynthCfg *cfg, long step, const char **names, double *values);
/* Routed-token count of (step, layer row, expert). */
long synth_router_tokens(long step, int layer, int expert);
/* One step in one transaction. */
int synth_write_step(Store *st, const SynthCfg *cfg, long step, Err *err);
/* Creates db (must not exist) with cfg->steps steps, the run row and evals. */
int synth_write_run(const char *db, const char *name, const SynthCfg *cfg, Err *err);

#endif
