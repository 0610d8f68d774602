/* evaluate: see evaluate.h. */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/xalloc.h"
#include "rl/rollout.h"
#include "rl/runctx.h"

EvalOpts evaluate_defaults(void) {
    EvalOpts o = {0};
    o.k = 8, o.max_new_tokens = 512, o.batch = 32, o.seed = 1234;
    o.sampling = sampler_defaults();
    o.prompt_template = "{question}\n";
    return o;
}

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

/* The batch being evaluated: rows b0 .. b0+P-1, N = P*G samples. */
typedef struct EvalBatch {
    int b0, P, G, N, K;
    TokText *pt;            /* [P] prompt text */
    TokIds *pi;             /* [P] prompt ids */
    RolloutResult res;
    char **txt;             /* [N] completion text */
    RewardResult *rr;       /* [N*K] */
    double *tot;            /* [N] weighted totals */
} EvalBatch;

static void batch_free(EvalBatch *b) {
    for (int p = 0; p < b->P && b->pt; p++) free(b->pt[p].s), tok_ids_free(&b->pi[p]);
    for (int i = 0; i < b->N && b->txt; i++) free(b->txt[i]);
    if (b->rr) reward_results_clear(b->rr, (size_t)b->N * b->K);
    rollout_result_free(&b->res);
    free(b->pt), free(b->pi), free(b->txt), free(b->rr), free(b->tot);
}

/* Prompts, completions and rewards of one batch. */
static int batch_run(Model *m, const Tokenizer *tok, const Dataset *d, RewardSet *rs, const EvalOpts *o, EvalBatch *b,
                     Err *err) {
    const int P = b->P, G = b->G, N = b->N;
    b->pt = xcalloc(P, sizeof(TokText)), b->pi = xcalloc(P, sizeof(TokIds));
    const int **pp = xcalloc(P, sizeof(int *));
    int *pl = xcalloc(P, sizeof(int)), rc = -1;
    for (int p = 0; p < P; p++) {
        if (runctx_prompt(tok, o->prompt_template, d->rows[b->b0 + p], &b->pt[p], &b->pi[p], err)) {
            err_wrap(err, "%s:%d", d->path, d->line[b->b0 + p]);
            goto out;
        }
        pp[p] = (const int *)b->pi[p].v, pl[p] = (int)b->pi[p].n;
    }
    RolloutOpts ro = rollout_defaults();
    ro.group_size = G, ro.max_new_tokens = o->max_new_tokens, ro.seed = o->seed;
    ro.sample_base = (uint64_t)b->b0 * G; /* sample g of row i: id i*G + g, whatever the batch */
    ro.sampling = o->sampling;
    int eos = tok_eos(tok);
    if (eos >= 0) ro.eos_ids = &eos, ro.n_eos = 1;
    RunStop stops = {.tok = tok};
    for (int s = 0; s < o->n_stop && s < RUNCTX_MAX_STOP; s++) stops.stop[stops.n++] = o->stop[s];
    if (stops.n) ro.stop = runctx_stop_check, ro.stop_ctx = &stops;
    if (o->engine ? rollout_generate_on(o->engine, &m->cfg, P, pp, pl, &ro, &b->res, err)
                  : rollout_generate(m, P, pp, pl, &ro, &b->res, err))
        goto out;
    RewardSample *smp = xcalloc(N, sizeof *smp);
    b->txt = xcalloc(N, sizeof(char *));
    for (int i = 0; i < N; i++) {
        const RolloutSample *s = &b->res.s[i];
        if (!(b->txt[i] = runctx_completion_text(tok, s, err))) { free(smp); goto out; }
        long at = s->finish == FINISH_STOP ? runctx_stop_find(&stops, b->txt[i]) : -1;
        if (at >= 0) b->txt[i][at] = 0;
        smp[i] = (RewardSample){b->pt[s->prompt].s ? b->pt[s->prompt].s : "", b->txt[i], d->rows[b->b0 + s->prompt],
                                pl[s->prompt], s->n, finish_reason_name(s->finish)};
    }
    b->rr = xcalloc((size_t)N * b->K, sizeof *b->rr);
    b->tot = xcalloc(N, sizeof(double));
    rc = reward_set_score(rs, smp, N, b->rr, b->tot, err);
    free(smp);
out:
    free(pp), free(pl);
    return rc;
}

static int is_correct(const RewardResult *r) { return r->has_value && r->value >= 1.0; }

/* maj@k of prompt p: whether the most frequent prediction of the correctness
 * reward c (the first reached on ties) belongs to a correct sample. */
static int majority_correct(const EvalBatch *b, int p, int c) {
    const int G = b->G, K = b->K;
    int best = -1, bestn = 0;
    for (int g = 0; g < G; g++) {
        char *pg = extra_pred(b->rr[(p * G + g) * K + c].extras);
        int cnt = 0;
        for (int h = 0; h < G && pg; h++) {
            char *ph = extra_pred(b->rr[(p * G + h) * K + c].extras);
            cnt += ph && !strcmp(pg, ph);
            free(ph);
        }
        if (pg && cnt > bestn) bestn = cnt, best = g;
        free(pg);
    }
    return best >= 0 && is_correct(&b->rr[(p * G + best) * K + c]);
}

/* Adds one batch to the sums (pass@1, pass@k, maj@k, reward means) and, with
 * keep_samples, moves its completions into res->samples. */
static void batch_account(const EvalOpts *o, EvalBatch *b, EvalResult *res, double *rsum, long *rcnt) {
    const int G = b->G, K = b->K, c = o->correct;
    for (int p = 0; p < b->P; p++) {
        int nc = 0;
        for (int g = 0; g < G; g++) nc += is_correct(&b->rr[(p * G + g) * K + c]);
        res->pass1 += (double)nc / G;
        res->passk += pass_at_k(G, nc, G);
        res->maj += majority_correct(b, p, c);
    }
    for (int i = 0; i < b->N; i++) {
        const RolloutSample *s = &b->res.s[i];
        res->tokens += s->n;
        for (int j = 0; j < K; j++)
            if (b->rr[i * K + j].has_value) rsum[j] += b->rr[i * K + j].value, rcnt[j]++;
        if (!o->keep_samples) continue;
        EvalSample *e = &res->samples[(long)b->b0 * G + i];
        *e = (EvalSample){b->b0 + s->prompt, s->index, xstrdup(b->pt[s->prompt].s ? b->pt[s->prompt].s : ""),
                          b->txt[i], (int)b->pi[s->prompt].n, s->n, finish_reason_name(s->finish),
                          is_correct(&b->rr[i * K + c]), b->tot[i], extra_pred(b->rr[i * K + c].extras),
                          xcalloc(K, sizeof(RewardResult))};
        b->txt[i] = NULL;
        memcpy(e->rr, &b->rr[i * K], K * sizeof(RewardResult)); /* strings moved, not copied */
        memset(&b->rr[i * K], 0, K * sizeof(RewardResult));
    }
}

int evaluate(Model *m, const Tokenizer *tok, const Dataset *d, RewardSet *rs, const EvalOpts *o, EvalResult *res,
             Err *err) {
    memset(res, 0, sizeof *res);
    const int K = reward_set_count(rs), G = o->k, n = o->limit > 0 && o->limit < d->n ? o->limit : d->n;
    if (G < 1 || o->batch < 1 || o->max_new_tokens < 1)
        return err_set(err, ERR_INPUT, "evaluate: k, batch and max_new_tokens must be >= 1");
    if (K > EVAL_MAX_REWARDS || o->correct < 0 || o->correct >= K)
        return err_set(err, ERR_INPUT, "evaluate: correctness reward %d of %d scripts (at most %d)", o->correct, K,
                       EVAL_MAX_REWARDS);
    if (n < 1) return err_set(err, ERR_INPUT, "%s: no rows to evaluate", d->path);
    if (sampler_check(&o->sampling, err)) return -1;
    res->rows = n, res->k = G, res->nrewards = K;
    for (int j = 0; j < K; j++) res->reward_names[j] = xstrdup(reward_set_name(rs, j));
    if (o->keep_samples) res->nsamples = n * G, res->samples = xcalloc((size_t)n * G, sizeof(EvalSample));
    double rsum[EVAL_MAX_REWARDS] = {0}, t0 = clock_now();
    long rcnt[EVAL_MAX_REWARDS] = {0};
    for (int b0 = 0; b0 < n; b0 += o->batch) {
        int P = n - b0 < o->batch ? n - b0 : o->batch;
        EvalBatch b = {.b0 = b0, .P = P, .G = G, .N = P * G, .K = K};
        if (batch_run(m, tok, d, rs, o, &b, err)) {
            batch_free(&b);
            evaluate_result_free(res);
            return -1;
        }
        batch_account(o, &b, res, rsum, rcnt);
        batch_free(&b);
        int done = b0 + P;
        double el = clock_now() - t0;
        if (o->progress)
            runctx_progress(o->progress, done == n, "eval %d/%d  pass@1 %.3f  %.0f tok/s  ETA %.0fs", done, n,
                            res->pass1 / done, res->tokens / el, el / done * (n - done));
    }
    res->pass1 /= n, res->passk /= n, res->maj /= n;
    for (int j = 0; j < K; j++) res->reward_mean[j] = rcnt[j] ? rsum[j] / rcnt[j] : NAN;
    res->seconds = clock_now() - t0;
    return 0;
}

void evaluate_result_free(EvalResult *res) {
    for (int j = 0; j < res->nrewards; j++) free(res->reward_names[j]);
    for (int i = 0; i < res->nsamples; i++) {
        EvalSample *e = &res->samples[i];
        free(e->prompt), free(e->completion), free(e->pred);
        if (e->rr) reward_results_clear(e->rr, res->nrewards);
        free(e->rr);
    }
    free(res->samples);
    memset(res, 0, sizeof *res);
}

void evaluate_print_json(const EvalResult *r, FILE *f) {
    fprintf(f, "{\"rows\": %d, \"k\": %d, \"pass@1\": %.4f", r->rows, r->k, r->pass1);
    if (r->k > 1) fprintf(f, ", \"pass@%d\": %.4f", r->k, r->passk); /* at k = 1 pass@k is pass@1 */
    fprintf(f, ", \"maj@%d\": %.4f", r->k, r->maj);
    for (int j = 0; j < r->nrewards; j++) fprintf(f, ", \"%s\": %.4f", r->reward_names[j], r->reward_mean[j]);
    fprintf(f, ", \"seconds\": %.1f}\n", r->seconds);
}

void evaluate_format(const EvalResult *r, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "pass@1 %.3f", r->pass1);
    if (r->k > 1 && used < n) used += (size_t)snprintf(buf + used, n - used, "  pass@%d %.3f", r->k, r->passk);
    if (used < n) used += (size_t)snprintf(buf + used, n - used, "  maj@%d %.3f", r->k, r->maj);
    for (int j = 0; j < r->nrewards && used < n; j++)
        used += (size_t)snprintf(buf + used, n - used, "  %s %.3f", r->reward_names[j], r->reward_mean[j]);
}

int evaluate_store(Store *st, long step, const char *dataset, const EvalResult *r, Err *err) {
    if (store_eval_begin(st, step, dataset, err)) return -1;
    char name[192];
    snprintf(name, sizeof name, "pass@1");
    int bad = store_eval_metric(st, name, r->pass1, r->rows, err);
    snprintf(name, sizeof name, "pass@%d", r->k);
    if (r->k > 1) bad = bad || store_eval_metric(st, name, r->passk, r->rows, err);
    snprintf(name, sizeof name, "maj@%d", r->k);
    bad = bad || store_eval_metric(st, name, r->maj, r->rows, err);
    for (int j = 0; j < r->nrewards && !bad; j++) {
        snprintf(name, sizeof name, "rewards/%s/mean", r->reward_names[j]);
        bad = store_eval_metric(st, name, r->reward_mean[j], r->rows, err);
    }
    StoreEvalReward sr[EVAL_MAX_REWARDS];
    for (int i = 0; i < r->nsamples && !bad; i++) {
        const EvalSample *e = &r->samples[i];
        for (int j = 0; j < r->nrewards; j++)
            sr[j] = (StoreEvalReward){r->reward_names[j], e->rr[j].has_value ? e->rr[j].value : NAN, e->rr[j].error,
                                      e->rr[j].extras};
        StoreEvalSample s = {e->row, e->index, e->prompt, e->completion, e->prompt_tokens, e->completion_tokens,
                             e->finish_reason, e->correct, e->reward, e->pred};
        bad = store_eval_sample(st, &s, sr, r->nrewards, err);
    }
    if (bad) { /* the failing call already rolled the evaluation back */
        store_eval_abort(st);
        return err_wrap(err, "storing the evaluation of %s at step %ld", dataset, step);
    }
    return store_eval_commit(st, err);
}
