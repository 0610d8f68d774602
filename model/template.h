/* template: prompt templates.
 *
 * (a) Plain templates: text with {field} placeholders filled from a dataset
 *     row (a JSON object), as Python's str.format(**row): "{{" and "}}" are
 *     literal braces; a missing field is an input error naming it. A few
 *     published templates (reference/grpo.md §9) are built in by name.
 * (b) Chat templates: the Jinja templates shipped in tokenizer_config.json
 *     (DeepSeek-R1/V3, Qwen2.5, Llama 3), rendered as transformers'
 *     apply_chat_template(messages, add_generation_prompt=...) does
 *     (trim_blocks, lstrip_blocks, loop controls, tojson, raise_exception,
 *     namespace). Only the Jinja subset those templates use is implemented;
 *     anything else is an error naming the construct, never silent output.
 *     Not here: macros, call blocks, includes, inheritance, autoescape. */
#ifndef GRPO_TEMPLATE_H
#define GRPO_TEMPLATE_H

#include <cjson/cJSON.h>

#include "base/err.h"
#include "model/tokenizer.h"

/* Appends tpl with every {field} replaced by row's value (strings as is,
 * numbers and other JSON values as their JSON text). */
int tpl_fill(const char *tpl, const cJSON *row, TokText *out, Err *err);

/* The text of a built-in template ("r1-zero", "dr-grpo", "qwen-math",
 * "verl-gsm8k", "dapo"), or NULL. names: a NULL-terminated list of them. */
const char *tpl_builtin(const char *name);
extern const char *const tpl_builtin_names[];

/* Renders a Jinja chat template. messages: a JSON array of {"role", "content",
 * ...}; vars: optional JSON object of further variables (bos_token, eos_token,
 * tools, ...). add_generation_prompt as in transformers. */
int chat_render(const char *tpl, const cJSON *messages, const cJSON *vars, int add_generation_prompt,
                TokText *out, Err *err);

/* chat_render with the tokenizer's chat template and its bos/eos/pad/unk
 * tokens as variables (what apply_chat_template passes). */
int chat_apply(const Tokenizer *t, const cJSON *messages, int add_generation_prompt, TokText *out, Err *err);

#endif
