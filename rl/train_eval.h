/* train_eval: evaluation during `grpo train` (recipe fields eval_data,
 * eval_steps, eval_num_samples, eval_max_new_tokens, eval_limit,
 * eval_temperature, eval_seed).
 *
 * train_eval_hook(t, done) evaluates the trainer's model when `done` steps
 * are done and an evaluation is due: before training (done = the run's first
 * step: 0, or the checkpoint's step on --resume), every eval_steps steps, and
 * at max_steps. It runs rl/evaluate.c with the recipe's prompt template,
 * reward scripts and weights, sampling filters and stop strings; the first
 * accuracy-like reward decides correctness (as `grpo report --accuracy auto`
 * picks: "accuracy", else the first name containing it, else the first
 * script). The numbers go to the evals table and every completion to
 * eval_samples at step `done`, and one line to stdout. With the same
 * options, `grpo eval --model runs/NAME/checkpoints/step-N --seed eval_seed`
 * gives the same numbers bitwise (evaluate.h: the sampling seed scheme).
 *
 * It keeps no state (the evaluation data is read at each evaluation) and does
 * not change the training: sampling is counter-based, so a run with
 * evaluations trains exactly as one without. */
#ifndef GRPO_TRAIN_EVAL_H
#define GRPO_TRAIN_EVAL_H

#include "base/err.h"
#include "rl/evaluate.h"
#include "rl/trainer.h"

/* The evaluation options the recipe asks for (k, lengths, sampling, stop strings, correctness reward). */
EvalOpts train_eval_opts(const Recipe *r, const RewardSet *rs);
/* 1 when an evaluation is due after `done` steps of a run that started at step `start`. */
int train_eval_due(const Recipe *r, long start, long done);
/* Evaluates when due (no-op when eval_data is ""). Errors: ERR_INPUT for bad eval data. */
int train_eval_hook(Trainer *t, long done, Err *err);

#endif
