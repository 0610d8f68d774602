/* template: plain {field} prompt templates and the built-in published ones
 * (reference/grpo.md §9). The Jinja chat templates are in template_jinja.c. */
#include "model/template.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

static const struct {
    const char *name, *text;
} builtins[] = {
    /* DeepSeek-R1 paper, Table 1 */
    {"r1-zero",
     "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
     "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
     "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
     "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: {prompt}. "
     "Assistant:"},
    /* understand-r1-zero train_zero_math.py::apply_r1_template */
    {"dr-grpo",
     "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. The "
     "Assistant first thinks about the reasoning process in the mind and then provides the User with the answer. "
     "The reasoning process is enclosed within <think> </think> and answer is enclosed within <answer> </answer> "
     "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.\nUser: "
     "{prompt}\nAssistant: <think>"},
    {"qwen-math",
     "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
     "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"},
    /* verl examples/data_preprocess/gsm8k.py */
    {"verl-gsm8k", "{prompt} Let's think step by step and output the final answer after \"####\"."},
    /* DAPO README */
    {"dapo",
     "Solve the following math problem step by step. The last line of your response should be of the form "
     "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{prompt}"},
};

const char *const tpl_builtin_names[] = {"r1-zero", "dr-grpo", "qwen-math", "verl-gsm8k", "dapo", NULL};

const char *tpl_builtin(const char *name) {
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!strcmp(builtins[i].name, name)) return builtins[i].text;
    return NULL;
}

int tpl_fill(const char *tpl, const cJSON *row, TokText *out, Err *err) {
    const char *p = tpl;
    while (*p) {
        const char *b = strpbrk(p, "{}");
        if (!b) { tok_text_append(out, p, strlen(p)); break; }
        tok_text_append(out, p, (size_t)(b - p));
        if (b[0] == b[1]) { tok_text_append(out, b, 1); p = b + 2; continue; } /* {{ or }} */
        if (*b == '}') return err_set(err, ERR_INPUT, "template: single '}' at offset %ld (write '}}')", (long)(b - tpl));
        const char *e = strchr(b + 1, '}');
        if (!e) return err_set(err, ERR_INPUT, "template: '{' at offset %ld is not closed", (long)(b - tpl));
        char name[256];
        size_t n = (size_t)(e - b - 1);
        if (n == 0 || n >= sizeof name)
            return err_set(err, ERR_INPUT, "template: bad field name at offset %ld", (long)(b - tpl));
        memcpy(name, b + 1, n);
        name[n] = 0;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, name);
        if (!v) return err_set(err, ERR_INPUT, "template: the row has no field \"%s\"", name);
        if (cJSON_IsString(v)) {
            tok_text_append(out, v->valuestring, strlen(v->valuestring));
        } else {
            char *s = cJSON_PrintUnformatted(v);
            tok_text_append(out, s, strlen(s));
            free(s);
        }
        p = e + 1;
    }
    return 0;
}
