/* runctx: what `grpo sft`, `grpo train` and `grpo eval` share: loading the
 * model and its tokenizer for a recipe, turning a data row into prompt ids,
 * writing a checkpoint (HF layout + tokenizer files) and the progress line. */
#ifndef GRPO_RUNCTX_H
#define GRPO_RUNCTX_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "base/err.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rl/recipe.h"
#include "rewards/reward.h"
#include "rl/rollout.h"

/* Loads recipe->model (no MTP) and its tokenizer (recipe->tokenizer or the model dir). */
int runctx_load(const Recipe *r, Model *m, Tokenizer **tok, Err *err);
/* Fills the prompt template from row and encodes it (no special tokens added). */
int runctx_prompt(const Tokenizer *tok, const char *tpl, const cJSON *row, TokText *text, TokIds *ids, Err *err);
/* Saves the model to dir in dtype ("f32" or "bf16") and copies tokenizer.json /
 * tokenizer_config.json from tokdir. */
int runctx_save(Model *m, const char *tokdir, const char *dir, const char *dtype, Err *err);
/* The text of a sample's completion (its EOS token left out); malloc'd, NULL on error. */
char *runctx_completion_text(const Tokenizer *tok, const RolloutSample *s, Err *err);
/* The accuracy-like reward, as `grpo report --accuracy auto` picks it: the one
 * named "accuracy", else the alphabetically first whose name contains it
 * (e.g. math_accuracy); -1 when none does. */
int runctx_accuracy_index(const RewardSet *rs);
/* Stop strings, with vLLM's semantics for training and evaluation alike: a
 * stop string anywhere in the decoded output ends the sample, the earliest one
 * wins, and the completion text is cut before it (include_stop_str_in_output =
 * False); the sampled tokens stay whole. */
enum { RUNCTX_MAX_STOP = 4 };
typedef struct RunStop {
    const Tokenizer *tok;
    const char *stop[RUNCTX_MAX_STOP];
    int n;
} RunStop;
/* Where the first stop string starts in text, or -1. */
long runctx_stop_find(const RunStop *rs, const char *text);
/* RolloutOpts.stop callback (ctx: a RunStop): 1 when the decoded tokens contain a stop string. */
int runctx_stop_check(void *ctx, int sample, const int *tokens, int n);
/* Copies src to dst[n] with the two-character escape \\n turned into a newline
 * (so prompts and templates can be typed on a command line). */
void runctx_unescape(char *dst, size_t n, const char *src);
/* Applies ';'-separated key=value recipe overrides (the --set option). */
int runctx_set_recipe(Recipe *r, const char *sets, Err *err);
/* mkdir -p */
int runctx_mkdirs(const char *path, Err *err);
/* Progress: on a terminal, rewrites one line; otherwise prints plain lines. */
void runctx_progress(FILE *f, int final, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
