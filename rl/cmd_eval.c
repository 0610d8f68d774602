/* cmd_eval: `grpo eval`: sample k completions per row of a JSONL file, score
 * them with reward scripts and report pass@1 (mean over the k samples),
 * pass@k (unbiased estimator), maj@k (majority vote over the "pred" extra a
 * reward returns, e.g. math_accuracy's extracted answer) and every reward's
 * mean. A sample counts as correct when the first reward script (or the one
 * named by --correct) gives >= 1. With --store, the numbers and every
 * evaluated completion are added to a run's rollouts.db (evals, eval_samples).
 * The evaluation itself is rl/evaluate.c, shared with `grpo train`. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "dataset.h"
#include "evaluate.h"
#include "rewards/reward.h"
#include "runctx.h"
#include "store.h"

/* Index of the reward named name ("" = the first script), -1 if none. */
static int reward_index(const RewardSet *rs, const char *name) {
    if (!name[0]) return 0;
    for (int j = 0; j < reward_set_count(rs); j++)
        if (!strcmp(reward_set_name(rs, j), name)) return j;
    return -1;
}

/* --stop "A,B": comma-separated stop strings (\n escapes) into o->stop; buf keeps them. */
static int parse_stops(const char *arg, char *buf, size_t n, EvalOpts *o, Err *err) {
    runctx_unescape(buf, n, arg);
    for (char *s = strtok(buf, ","); s; s = strtok(NULL, ",")) {
        if (o->n_stop == EVAL_MAX_STOP) return err_set(err, ERR_INPUT, "--stop: at most %d strings", EVAL_MAX_STOP);
        o->stop[o->n_stop++] = s;
    }
    return 0;
}

static int eval_store(const char *rundir, long step, const char *data, const EvalResult *res, Err *err) {
    char db[1200];
    snprintf(db, sizeof db, "%s/rollouts.db", rundir);
    if (runctx_mkdirs(rundir, err)) return -1;
    Store *st = store_open(db, err);
    if (!st) return -1;
    int rc = evaluate_store(st, step, data, res, err);
    store_close(st);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    CliOpt opts[] = {
        {"--model", "DIR", NULL, "checkpoint directory (required)", 0},
        {"--tokenizer", "DIR", "", "tokenizer directory (default: the model directory)", 0},
        {"--data", "FILE", NULL, "JSONL rows to evaluate (required)", 0},
        {"--reward", "SCRIPT[,SCRIPT...]", NULL, "reward scripts; the first decides correctness unless --correct (required)", 0},
        {"--correct", "NAME", "", "the reward whose value >= 1 counts as correct; empty = the first script", 0},
        {"--template", "TEXT", "{question}\\n", "prompt template with {field}s (\\n for newline)", 0},
        {"-k", "K", "8", "samples per row", 0},
        {"--temperature", "T", "1.0", "sampling temperature (0 = greedy)", 0},
        {"--top-p", "P", "1.0", "nucleus sampling", 0},
        {"--top-k", "K", "0", "top-k sampling (0 = off)", 0},
        {"--min-p", "P", "0.0", "min-p sampling (0 = off)", 0},
        {"--stop", "S[,S...]", "", "stop strings (\\n for newline)", 0},
        {"--max-new-tokens", "N", "512", "completion length limit", 0},
        {"--limit", "N", "0", "evaluate the first N rows (0 = all)", 0},
        {"--batch", "N", "32", "prompts generated together", 0},
        {"--seed", "N", "1234", "sampling seed", 0},
        {"--store", "RUNDIR", "", "also record the results and completions in RUNDIR/rollouts.db", 0},
        {"--step", "N", "-1", "training step the evaluation belongs to (with --store)", 0},
        {"--threads", "N", "0", "threads (0 = all cores)", 0},
        {0}};
    CliSpec spec = {"grpo eval --model DIR --data FILE.jsonl --reward SCRIPT.lua [-k 8] [options]",
                    "Samples k completions per row and prints pass@1 (mean over k), pass@k, maj@k and the mean\n"
                    "of every reward, with progress.",
                    opts, 0, 0};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    long k, maxnew, limit, batch, seed, step, threads, top_k;
    double temp, top_p, min_p;
    if (cli_require(&spec, "--model") || cli_require(&spec, "--data") || cli_require(&spec, "--reward") ||
        cli_long(&spec, "-k", &k) || cli_long(&spec, "--max-new-tokens", &maxnew) || cli_long(&spec, "--limit", &limit) ||
        cli_long(&spec, "--batch", &batch) || cli_long(&spec, "--seed", &seed) || cli_long(&spec, "--step", &step) ||
        cli_long(&spec, "--threads", &threads) || cli_double(&spec, "--temperature", &temp) ||
        cli_double(&spec, "--top-p", &top_p) || cli_long(&spec, "--top-k", &top_k) || cli_double(&spec, "--min-p", &min_p))
        return 2;
    if (k < 1 || batch < 1 || maxnew < 1) { fprintf(stderr, "grpo eval: -k, --batch, --max-new-tokens must be >= 1\n"); return 2; }
    if (threads > 0) omp_set_num_threads((int)threads);
    Err err = {0};
    Model m = {0};
    Tokenizer *tok = NULL;
    Dataset d = {0};
    RewardSet *rs = NULL;
    EvalResult res = {0};
    Recipe r;
    recipe_defaults(&r);
    snprintf(r.model, sizeof r.model, "%s", cli_str(&spec, "--model"));
    snprintf(r.tokenizer, sizeof r.tokenizer, "%s", cli_str(&spec, "--tokenizer"));
    EvalOpts eo = evaluate_defaults();
    /* the template option takes "\n" escapes so it can be typed on a command line */
    runctx_unescape(r.prompt_template, sizeof r.prompt_template, cli_str(&spec, "--template"));
    char stops[1024];
    if (parse_stops(cli_str(&spec, "--stop"), stops, sizeof stops, &eo, &err)) goto fail;
    eo.k = (int)k, eo.max_new_tokens = (int)maxnew, eo.limit = limit > 0 ? (int)limit : 0, eo.batch = (int)batch;
    eo.seed = (uint64_t)seed, eo.prompt_template = r.prompt_template, eo.progress = stderr;
    eo.sampling.temperature = (float)temp, eo.sampling.top_p = top_p, eo.sampling.top_k = (int)top_k;
    eo.sampling.min_p = min_p, eo.keep_samples = cli_str(&spec, "--store")[0] != 0;
    if (runctx_load(&r, &m, &tok, &err) || dataset_load(&d, cli_str(&spec, "--data"), &err)) goto fail;
    char rbuf[4096];
    const char *paths[RECIPE_MAX_REWARDS];
    int K = 0;
    snprintf(rbuf, sizeof rbuf, "%s", cli_str(&spec, "--reward"));
    for (char *s = strtok(rbuf, ","); s && K < RECIPE_MAX_REWARDS; s = strtok(NULL, ",")) paths[K++] = s;
    RewardOpts ropt = {.workers = (int)threads};
    if (!(rs = reward_set_load(paths, K, NULL, &ropt, &err))) goto fail;
    if ((eo.correct = reward_index(rs, cli_str(&spec, "--correct"))) < 0) {
        err_set(&err, ERR_INPUT, "--correct %s: no reward script of that name", cli_str(&spec, "--correct"));
        goto fail;
    }
    if (evaluate(&m, tok, &d, rs, &eo, &res, &err)) goto fail;
    evaluate_print_json(&res, stdout);
    if (cli_str(&spec, "--store")[0] && eval_store(cli_str(&spec, "--store"), step, cli_str(&spec, "--data"), &res, &err))
        goto fail;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "grpo eval: %s\n", err.msg);
    rc = err.code ? err.code : 1;
done:
    evaluate_result_free(&res);
    if (rs) reward_set_free(rs);
    if (tok) tok_free(tok);
    model_free(&m);
    dataset_free(&d);
    return rc;
}
