/* cmd_eval: `grpo eval`: sample k completions per row of a JSONL file, score
 * them with reward scripts and report pass@1 (mean over the k samples),
 * pass@k (unbiased estimator), maj@k (majority vote over the "pred" extra a
 * reward returns, e.g. math_accuracy's extracted answer) and every reward's
 * mean. A sample counts as correct when the first reward script gives >= 1
 * (it is the accuracy reward by convention: list it first). With --store,
 * the numbers are added to a run's rollouts.db (evals table). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "dataset.h"
#include "rewards/reward.h"
#include "rollout.h"
#include "runctx.h"
#include "store.h"

/* pass@k = 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), here with n = k samples. */
static double pass_at_k(int n, int c, int k) {
    if (n - c < k) return 1.0;
    double p = 1.0;
    for (int i = n - c + 1; i <= n; i++) p *= 1.0 - (double)k / i;
    return 1.0 - p;
}

/* The "pred" string of an extras JSON object (or NULL); caller frees. */
static char *extra_pred(const char *extras) {
    if (!extras) return NULL;
    cJSON *o = cJSON_Parse(extras);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pred");
    char *s = p && cJSON_IsString(p) ? xstrdup(p->valuestring) : NULL;
    cJSON_Delete(o);
    return s;
}

int cmd_eval(int argc, char **argv) {
    CliOpt opts[] = {
        {"--model", "DIR", NULL, "checkpoint directory (required)", 0},
        {"--tokenizer", "DIR", "", "tokenizer directory (default: the model directory)", 0},
        {"--data", "FILE", NULL, "JSONL rows to evaluate (required)", 0},
        {"--reward", "SCRIPT[,SCRIPT...]", NULL, "reward scripts; the first decides correctness (required)", 0},
        {"--template", "TEXT", "{question}\\n", "prompt template with {field}s (\\n for newline)", 0},
        {"-k", "K", "8", "samples per row", 0},
        {"--temperature", "T", "1.0", "sampling temperature (0 = greedy)", 0},
        {"--top-p", "P", "1.0", "nucleus sampling", 0},
        {"--max-new-tokens", "N", "512", "completion length limit", 0},
        {"--limit", "N", "0", "evaluate the first N rows (0 = all)", 0},
        {"--batch", "N", "32", "prompts generated together", 0},
        {"--seed", "N", "1234", "sampling seed", 0},
        {"--store", "RUNDIR", "", "also record the results in RUNDIR/rollouts.db", 0},
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
    long k, maxnew, limit, batch, seed, step, threads;
    double temp, top_p;
    if (cli_require(&spec, "--model") || cli_require(&spec, "--data") || cli_require(&spec, "--reward") ||
        cli_long(&spec, "-k", &k) || cli_long(&spec, "--max-new-tokens", &maxnew) || cli_long(&spec, "--limit", &limit) ||
        cli_long(&spec, "--batch", &batch) || cli_long(&spec, "--seed", &seed) || cli_long(&spec, "--step", &step) ||
        cli_long(&spec, "--threads", &threads) || cli_double(&spec, "--temperature", &temp) ||
        cli_double(&spec, "--top-p", &top_p))
        return 2;
    if (k < 1 || batch < 1 || maxnew < 1) { fprintf(stderr, "grpo eval: -k, --batch, --max-new-tokens must be >= 1\n"); return 2; }
    if (threads > 0) omp_set_num_threads((int)threads);
    Err err = {0};
    Recipe r;
    recipe_defaults(&r);
    snprintf(r.model, sizeof r.model, "%s", cli_str(&spec, "--model"));
    snprintf(r.tokenizer, sizeof r.tokenizer, "%s", cli_str(&spec, "--tokenizer"));
    /* the template option takes "\n" escapes so it can be typed on a command line */
    runctx_unescape(r.prompt_template, sizeof r.prompt_template, cli_str(&spec, "--template"));
    Model m;
    Tokenizer *tok;
    Dataset d;
    if (runctx_load(&r, &m, &tok, &err) || dataset_load(&d, cli_str(&spec, "--data"), &err)) goto fail;
    char rbuf[4096];
    const char *paths[RECIPE_MAX_REWARDS];
    int K = 0;
    snprintf(rbuf, sizeof rbuf, "%s", cli_str(&spec, "--reward"));
    for (char *s = strtok(rbuf, ","); s && K < RECIPE_MAX_REWARDS; s = strtok(NULL, ",")) paths[K++] = s;
    RewardOpts ropt = {.workers = (int)threads};
    RewardSet *rs = reward_set_load(paths, K, NULL, &ropt, &err);
    if (!rs) goto fail;
    int n = limit > 0 && limit < d.n ? (int)limit : d.n;
    double sum_pass1 = 0, sum_passk = 0, sum_maj = 0, *rsum = xcalloc(K, sizeof(double));
    long *rcnt = xcalloc(K, sizeof(long)), tokens = 0;
    double t0 = clock_now();
    for (int b0 = 0; b0 < n; b0 += (int)batch) {
        int P = n - b0 < batch ? n - b0 : (int)batch, G = (int)k, N = P * G;
        TokText *pt = xcalloc(P, sizeof(TokText));
        TokIds *pi = xcalloc(P, sizeof(TokIds));
        const int **pp = xcalloc(P, sizeof(int *));
        int *pl = xcalloc(P, sizeof(int));
        for (int p = 0; p < P; p++) {
            if (runctx_prompt(tok, r.prompt_template, d.rows[b0 + p], &pt[p], &pi[p], &err)) {
                err_wrap(&err, "%s:%d", d.path, d.line[b0 + p]);
                goto fail;
            }
            pp[p] = (const int *)pi[p].v, pl[p] = (int)pi[p].n;
        }
        RolloutOpts ro = rollout_defaults();
        ro.group_size = G, ro.max_new_tokens = (int)maxnew, ro.seed = (uint64_t)seed, ro.sample_base = (uint64_t)b0 * G;
        ro.sampling.temperature = (float)temp, ro.sampling.top_p = top_p;
        int eos = tok_eos(tok);
        if (eos >= 0) ro.eos_ids = &eos, ro.n_eos = 1;
        RolloutResult res;
        if (rollout_generate(&m, P, pp, pl, &ro, &res, &err)) goto fail;
        RewardSample *smp = xcalloc(N, sizeof *smp);
        char **txt = xcalloc(N, sizeof(char *));
        for (int i = 0; i < N; i++) {
            const RolloutSample *s = &res.s[i];
            if (!(txt[i] = runctx_completion_text(tok, s, &err))) goto fail;
            tokens += s->n;
            smp[i] = (RewardSample){pt[s->prompt].s ? pt[s->prompt].s : "", txt[i], d.rows[b0 + s->prompt],
                                    pl[s->prompt], s->n, finish_reason_name(s->finish)};
        }
        RewardResult *rr = xcalloc((size_t)N * K, sizeof *rr);
        double *tot = xcalloc(N, sizeof(double));
        if (reward_set_score(rs, smp, N, rr, tot, &err)) goto fail;
        for (int p = 0; p < P; p++) {
            int c = 0;
            for (int g = 0; g < G; g++) c += rr[(p * G + g) * K].has_value && rr[(p * G + g) * K].value >= 1.0;
            sum_pass1 += (double)c / G;
            sum_passk += pass_at_k(G, c, G);
            /* maj@k: the most frequent prediction (first reached on ties) and whether it was right */
            int best = -1, bestn = 0;
            for (int g = 0; g < G; g++) {
                char *pg = extra_pred(rr[(p * G + g) * K].extras);
                int cnt = 0;
                for (int h = 0; h < G && pg; h++) {
                    char *ph = extra_pred(rr[(p * G + h) * K].extras);
                    cnt += ph && !strcmp(pg, ph);
                    free(ph);
                }
                if (pg && cnt > bestn) bestn = cnt, best = g;
                free(pg);
            }
            sum_maj += best >= 0 && rr[(p * G + best) * K].has_value && rr[(p * G + best) * K].value >= 1.0;
        }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < K; j++)
                if (rr[i * K + j].has_value) rsum[j] += rr[i * K + j].value, rcnt[j]++;
        reward_results_clear(rr, (size_t)N * K);
        for (int i = 0; i < N; i++) free(txt[i]);
        for (int p = 0; p < P; p++) free(pt[p].s), tok_ids_free(&pi[p]);
        free(rr), free(tot), free(smp), free(txt), free(pt), free(pi), free(pp), free(pl);
        rollout_result_free(&res);
        int done = b0 + P;
        double el = clock_now() - t0;
        runctx_progress(stderr, done == n, "eval %d/%d  pass@1 %.3f  %.0f tok/s  ETA %.0fs", done, n, sum_pass1 / done,
                        tokens / el, el / done * (n - done));
    }
    printf("{\"rows\": %d, \"k\": %ld, \"pass@1\": %.4f, \"pass@%ld\": %.4f, \"maj@%ld\": %.4f", n, k, sum_pass1 / n, k,
           sum_passk / n, k, sum_maj / n);
    for (int j = 0; j < K; j++)
        printf(", \"%s\": %.4f", reward_set_name(rs, j), rcnt[j] ? rsum[j] / rcnt[j] : NAN);
    printf(", \"seconds\": %.1f}\n", clock_now() - t0);
    if (cli_str(&spec, "--store")[0]) {
        char db[1200];
        snprintf(db, sizeof db, "%s/rollouts.db", cli_str(&spec, "--store"));
        Store *st = store_open(db, &err);
        if (!st) goto fail;
        char m1[32], mk[32];
        snprintf(m1, sizeof m1, "pass@1");
        snprintf(mk, sizeof mk, "pass@%ld", k);
        int bad = store_eval(st, step, cli_str(&spec, "--data"), m1, sum_pass1 / n, n, &err) ||
                  store_eval(st, step, cli_str(&spec, "--data"), mk, sum_passk / n, n, &err);
        snprintf(mk, sizeof mk, "maj@%ld", k);
        bad = bad || store_eval(st, step, cli_str(&spec, "--data"), mk, sum_maj / n, n, &err);
        for (int j = 0; j < K && !bad; j++) {
            char name[160];
            snprintf(name, sizeof name, "rewards/%s/mean", reward_set_name(rs, j));
            bad = store_eval(st, step, cli_str(&spec, "--data"), name, rcnt[j] ? rsum[j] / rcnt[j] : NAN, n, &err);
        }
        store_close(st);
        if (bad) goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "grpo eval: %s\n", err.msg);
    return err.code ? err.code : 1;
}
