/* cmd_sample: `grpo sample --model DIR --prompt TEXT`: n completions of one
 * prompt through the rollout engine (one prefill, batched decoding), printed
 * as text, or as JSON lines with tokens, finish reason and log-prob sums. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "rollout.h"
#include "model/template.h"
#include "runctx.h"

int cmd_sample(int argc, char **argv) {
    CliOpt opts[] = {
        {"--model", "DIR", NULL, "checkpoint directory (required)", 0},
        {"--tokenizer", "DIR", "", "tokenizer directory (default: the model directory)", 0},
        {"--prompt", "TEXT", NULL, "prompt text, used as is (required; \\n for a newline)", 0},
        {"--chat", NULL, NULL, "render the prompt as one user turn with the tokenizer's chat template", 0},
        {"-n", "N", "1", "completions", 0},
        {"--max-new-tokens", "N", "256", "completion length limit", 0},
        {"--temperature", "T", "1.0", "sampling temperature (0 = greedy)", 0},
        {"--top-p", "P", "1.0", "nucleus sampling (1 = off)", 0},
        {"--top-k", "K", "0", "top-k sampling (0 = off)", 0},
        {"--min-p", "P", "0", "min-p sampling (0 = off)", 0},
        {"--seed", "N", "1", "sampling seed", 0},
        {"--json", NULL, NULL, "one JSON object per completion instead of text", 0},
        {"--threads", "N", "0", "threads (0 = all cores)", 0},
        {0}};
    CliSpec spec = {"grpo sample --model DIR --prompt TEXT [options]",
                    "Samples completions of one prompt from a checkpoint.", opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    long n, maxnew, topk, seed, threads;
    double temp, top_p, min_p;
    if (cli_require(&spec, "--model") || cli_require(&spec, "--prompt") || cli_long(&spec, "-n", &n) ||
        cli_long(&spec, "--max-new-tokens", &maxnew) || cli_long(&spec, "--top-k", &topk) ||
        cli_long(&spec, "--seed", &seed) || cli_long(&spec, "--threads", &threads) ||
        cli_double(&spec, "--temperature", &temp) || cli_double(&spec, "--top-p", &top_p) ||
        cli_double(&spec, "--min-p", &min_p))
        return 2;
    if (n < 1 || maxnew < 1) { fprintf(stderr, "grpo sample: -n and --max-new-tokens must be >= 1\n"); return 2; }
    if (threads > 0) omp_set_num_threads((int)threads);
    Err err = {0};
    Recipe r;
    recipe_defaults(&r);
    snprintf(r.model, sizeof r.model, "%s", cli_str(&spec, "--model"));
    snprintf(r.tokenizer, sizeof r.tokenizer, "%s", cli_str(&spec, "--tokenizer"));
    Model m;
    Tokenizer *tok;
    if (runctx_load(&r, &m, &tok, &err)) goto fail;
    const char *in = cli_str(&spec, "--prompt");
    char *text = xmalloc(strlen(in) + 1);
    runctx_unescape(text, strlen(in) + 1, in);
    TokText chat = {0};
    if (cli_flag(&spec, "--chat")) {
        cJSON *msgs = cJSON_CreateArray(), *u = cJSON_CreateObject();
        cJSON_AddStringToObject(u, "role", "user");
        cJSON_AddStringToObject(u, "content", text);
        cJSON_AddItemToArray(msgs, u);
        rc = chat_apply(tok, msgs, 1, &chat, &err);
        cJSON_Delete(msgs);
        if (rc) goto fail;
    }
    const char *ptxt = chat.s ? chat.s : text;
    TokIds ids = {0};
    if (tok_encode(tok, ptxt, strlen(ptxt), 0, &ids, &err)) goto fail;
    RolloutOpts ro = rollout_defaults();
    ro.group_size = (int)n, ro.max_new_tokens = (int)maxnew, ro.seed = (uint64_t)seed;
    ro.sampling.temperature = (float)temp, ro.sampling.top_p = top_p, ro.sampling.top_k = (int)topk;
    ro.sampling.min_p = min_p;
    int eos = tok_eos(tok);
    if (eos >= 0) ro.eos_ids = &eos, ro.n_eos = 1;
    const int *pp = (const int *)ids.v;
    int pl = (int)ids.n;
    RolloutResult res;
    if (rollout_generate(&m, 1, &pp, &pl, &ro, &res, &err)) goto fail;
    for (int i = 0; i < res.nsamples; i++) {
        const RolloutSample *s = &res.s[i];
        if (s->finish == FINISH_ERROR) { err_set(&err, ERR_INPUT, "%s", s->error); goto fail; }
        TokText out = {.s = runctx_completion_text(tok, s, &err)};
        if (!out.s) goto fail;
        if (cli_flag(&spec, "--json")) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "index", i);
            cJSON_AddStringToObject(j, "completion", out.s ? out.s : "");
            cJSON_AddNumberToObject(j, "tokens", s->n);
            cJSON_AddStringToObject(j, "finish_reason", finish_reason_name(s->finish));
            cJSON_AddNumberToObject(j, "logprob_sum", s->logp_sum);
            char *line = cJSON_PrintUnformatted(j);
            printf("%s\n", line);
            cJSON_free(line);
            cJSON_Delete(j);
        } else {
            printf("%s--- completion %d (%d tokens, %s)\n%s%s\n", i ? "\n" : "", i, s->n, finish_reason_name(s->finish),
                   ptxt, out.s ? out.s : "");
        }
        free(out.s);
    }
    rollout_result_free(&res);
    tok_ids_free(&ids);
    free(chat.s), free(text);
    tok_free(tok);
    model_free(&m);
    return 0;
fail:
    fprintf(stderr, "grpo sample: %s\n", err.msg);
    return err.code ? err.code : 1;
}
