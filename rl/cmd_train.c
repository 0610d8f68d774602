/* cmd_train: `grpo train RECIPE.lua`: the GRPO loop.
 *
 * Per step: take prompts_per_step rows, sample G completions each (rollout.c,
 * one prefill per prompt), score them with the recipe's Lua rewards, form
 * group-relative advantages (grpo.c), compute the clipped objective's
 * gradient with respect to the per-token log-probs of the same model and
 * push it through model_backward in micro-batches, take one AdamW step per
 * inner iteration, and write the step (metrics, every rollout, every reward
 * component, router load) to the run's SQLite store in one transaction.
 * The sampler and the trainer share one set of weights in one process. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/rng.h"
#include "base/xalloc.h"
#include "cli.h"
#include "cmd.h"
#include "dataset.h"
#include "grpo.h"
#include "optim.h"
#include "rewards/reward.h"
#include "rollout.h"
#include "runctx.h"
#include "store.h"

typedef struct Trainer {
    Recipe r;
    Model m;
    Tokenizer *tok;
    Dataset data;
    RewardSet *rs;
    int K;                  /* reward scripts */
    AdamW opt;
    LrSchedule sch;
    Store *st;
    int *order;             /* data order, reshuffled per epoch */
    long cursor;            /* rows consumed */
    char rundir[1024];
} Trainer;

typedef struct StepData {   /* everything one step produces, [N = P*G] samples */
    int P, G, N;
    int *row;               /* [P] dataset row per prompt */
    TokIds *pids;           /* [P] prompt ids */
    TokText *ptext;         /* [P] prompt text */
    RolloutResult res;
    char **ctext;           /* [N] completion text */
    RewardResult *rr;       /* [N*K] */
    float *per_func;        /* [N*K] value or NaN */
    float *reward, *adv;    /* [N] */
} StepData;

static uint64_t mix64(uint64_t z) { return rng_fmix64(z + RNG_GOLDEN); }

/* Row for the cursor's position: a fresh permutation per epoch, from the seed. */
static int next_row(Trainer *t) {
    int n = t->data.n;
    long epoch = t->cursor / n, k = t->cursor % n;
    if (k == 0) {
        for (int i = 0; i < n; i++) t->order[i] = i;
        uint64_t s = mix64((uint64_t)t->r.seed * 1000003u + (uint64_t)epoch);
        for (int i = n - 1; i > 0; i--) {
            s = mix64(s);
            int j = (int)(s % (uint64_t)(i + 1)), x = t->order[i];
            t->order[i] = t->order[j], t->order[j] = x;
        }
    }
    t->cursor++;
    return t->order[k];
}

typedef struct StopCtx { const Trainer *t; } StopCtx;

/* Stops a sample when its decoded text ends with a stop string. */
static int stop_check(void *ctx, int sample, const int *tokens, int n) {
    const Trainer *t = ((StopCtx *)ctx)->t;
    TokText txt = {0};
    Err err = {0};
    int32_t *ids = xmalloc(sizeof(int32_t) * (n ? n : 1));
    for (int i = 0; i < n; i++) ids[i] = tokens[i];
    int hit = 0;
    if (!tok_decode(t->tok, ids, n, 0, &txt, &err))
        for (int s = 0; s < t->r.n_stop && !hit; s++) {
            size_t L = strlen(t->r.stop[s]);
            hit = L && txt.n >= L && !memcmp(txt.s + txt.n - L, t->r.stop[s], L);
        }
    free(ids);
    free(txt.s);
    (void)sample;
    return hit;
}

static void step_free(StepData *d, int K) {
    for (int p = 0; p < d->P; p++) tok_ids_free(&d->pids[p]), free(d->ptext[p].s);
    for (int i = 0; i < d->N; i++) free(d->ctext[i]);
    if (d->rr) reward_results_clear(d->rr, (size_t)d->N * K);
    rollout_result_free(&d->res);
    free(d->row), free(d->pids), free(d->ptext), free(d->ctext), free(d->rr), free(d->per_func), free(d->reward),
        free(d->adv);
    memset(d, 0, sizeof *d);
}

/* 1-3: prompts, rollouts, completion text. */
static int step_rollouts(Trainer *t, long step, StepData *d, Err *err) {
    const Recipe *r = &t->r;
    d->P = r->prompts_per_step, d->G = r->num_generations, d->N = d->P * d->G;
    d->row = xcalloc(d->P, sizeof(int));
    d->pids = xcalloc(d->P, sizeof(TokIds));
    d->ptext = xcalloc(d->P, sizeof(TokText));
    const int **pp = xcalloc(d->P, sizeof(int *));
    int *plen = xcalloc(d->P, sizeof(int)), tries = 0, skipped = 0;
    for (int p = 0; p < d->P; p++) {
        for (;;) {
            if (++tries > 4 * t->data.n + d->P) { free(pp), free(plen); return err_set(err, ERR_INPUT, "%s: no usable prompts", r->train_data); }
            int row = next_row(t);
            Err e2 = {0};
            if (runctx_prompt(t->tok, r->prompt_template, t->data.rows[row], &d->ptext[p], &d->pids[p], &e2) ||
                (int)d->pids[p].n > r->max_prompt_length || d->pids[p].n == 0) {
                skipped++;
                if (skipped <= 3)
                    fprintf(stderr, "grpo train: skipping %s:%d: %s\n", t->data.path, t->data.line[row],
                            e2.msg[0] ? e2.msg : "prompt longer than max_prompt_length");
                continue;
            }
            d->row[p] = row;
            break;
        }
        pp[p] = (const int *)d->pids[p].v; /* int32_t == int on every supported target */
        plen[p] = (int)d->pids[p].n;
    }
    RolloutOpts ro = rollout_defaults();
    ro.sampling.temperature = (float)r->temperature, ro.sampling.top_p = r->top_p, ro.sampling.top_k = r->top_k;
    ro.sampling.min_p = r->min_p;
    ro.group_size = d->G, ro.max_new_tokens = r->max_completion_length, ro.seed = (uint64_t)r->seed;
    ro.sample_base = (uint64_t)step * (uint64_t)d->N;
    int eos = tok_eos(t->tok);
    if (eos >= 0) ro.eos_ids = &eos, ro.n_eos = 1;
    StopCtx sc = {t};
    if (r->n_stop) ro.stop = stop_check, ro.stop_ctx = &sc;
    int rc = rollout_generate(&t->m, d->P, pp, plen, &ro, &d->res, err);
    free(pp), free(plen);
    if (rc) return -1;
    d->ctext = xcalloc(d->N, sizeof(char *));
    for (int i = 0; i < d->N; i++)
        if (!(d->ctext[i] = runctx_completion_text(t->tok, &d->res.s[i], err))) return -1;
    return 0;
}

/* 4-5: rewards and advantages. */
static int step_rewards(Trainer *t, StepData *d, GrpoAdvStats *as, Err *err) {
    const int N = d->N, K = t->K;
    RewardSample *rs = xcalloc(N, sizeof *rs);
    for (int i = 0; i < N; i++) {
        int p = i / d->G;
        rs[i].prompt = d->ptext[p].s ? d->ptext[p].s : "";
        rs[i].completion = d->ctext[i];
        rs[i].row = t->data.rows[d->row[p]];
        rs[i].prompt_tokens = (long)d->pids[p].n;
        rs[i].completion_tokens = d->res.s[i].n;
        rs[i].finish_reason = finish_reason_name(d->res.s[i].finish);
    }
    d->rr = xcalloc((size_t)N * K, sizeof(RewardResult));
    double *total = xcalloc(N, sizeof(double));
    int rc = reward_set_score(t->rs, rs, N, d->rr, total, err);
    free(rs), free(total);
    if (rc) return -1;
    d->per_func = xmalloc(sizeof(float) * N * K);
    for (int i = 0; i < N * K; i++) d->per_func[i] = d->rr[i].has_value ? (float)d->rr[i].value : NAN;
    d->reward = xmalloc(sizeof(float) * N), d->adv = xmalloc(sizeof(float) * N);
    GrpoAdvOpts ao;
    grpo_adv_opts_default(&ao);
    if (grpo_scale_parse(t->r.scale_rewards, &ao.scale, err)) return -1;
    float w[RECIPE_MAX_REWARDS];
    for (int k = 0; k < K; k++) w[k] = (float)t->r.reward_weights[k];
    ao.weights = w;
    return grpo_advantages(&ao, d->per_func, d->P, d->G, K, d->reward, d->adv, as, err);
}

typedef struct TrainStats {
    double loss, ntok, entropy_sum, clip_low, clip_high, clip_region, clip_count, kl_sum;
    AdamWStepInfo info;
} TrainStats;

/* Completion mask of sample i (0 for refused prompts, and for truncated ones when asked). */
static int sample_active(const Trainer *t, const RolloutSample *s) {
    if (s->finish == FINISH_ERROR || s->n == 0) return 0;
    return !(t->r.mask_truncated_completions && s->finish == FINISH_LENGTH);
}

/* One pass over the step's samples in micro-batches: forward, loss gradient, backward.
 * old_logp [N][max_new] is filled on the first pass when mu > 1 (then used as pi_old). */
static int train_pass(Trainer *t, StepData *d, int pass, float *old_logp, int64_t *load, TrainStats *ts, Err *err) {
    const Recipe *r = &t->r;
    const int N = d->N, MB = r->micro_batch > 0 ? r->micro_batch : N, Lmax = r->max_completion_length;
    const int nmicro = (N + MB - 1) / MB;
    double num_items = 0;
    for (int i = 0; i < N; i++)
        if (sample_active(t, &d->res.s[i])) num_items += d->res.s[i].n;
    if (num_items == 0) return 0;
    GrpoLossOpts lo;
    grpo_loss_opts_default(&lo);
    if (grpo_loss_type_parse(r->loss_type, &lo.loss_type, err) ||
        grpo_is_level_parse(r->importance_sampling_level, &lo.is_level, err))
        return -1;
    lo.epsilon_low = (float)r->epsilon, lo.epsilon_high = (float)r->epsilon_high, lo.beta = 0.0f;
    lo.grad_accum = nmicro, lo.max_completion_length = Lmax, lo.num_items = num_items, lo.num_seqs = N;
    for (int s0 = 0; s0 < N; s0 += MB) {
        int B = N - s0 < MB ? N - s0 : MB, T = 1, L = 1;
        for (int i = 0; i < B; i++) {
            const RolloutSample *s = &d->res.s[s0 + i];
            int len = (int)d->pids[s->prompt].n + s->n;
            T = len > T ? len : T;
            L = s->n > L ? s->n : L;
        }
        int *ids = xcalloc((size_t)B * T, sizeof(int)), *tg = xmalloc(sizeof(int) * B * T), *len = xmalloc(sizeof(int) * B);
        float *lp = xmalloc(sizeof(float) * B * T), *ent = xmalloc(sizeof(float) * B * T);
        float *dl = xcalloc((size_t)B * T, sizeof(float));
        float *nl = xcalloc((size_t)B * L, sizeof(float)), *ol = xcalloc((size_t)B * L, sizeof(float));
        float *en = xcalloc((size_t)B * L, sizeof(float)), *mk = xcalloc((size_t)B * L, sizeof(float));
        float *adv = xmalloc(sizeof(float) * B), *g = xcalloc((size_t)B * L, sizeof(float));
        for (int i = 0; i < B * T; i++) tg[i] = -1;
        for (int i = 0; i < B; i++) {
            const RolloutSample *s = &d->res.s[s0 + i];
            const TokIds *pi = &d->pids[s->prompt];
            int pl = (int)pi->n;
            for (int k = 0; k < pl; k++) ids[(long)i * T + k] = pi->v[k];
            for (int k = 0; k < s->n; k++) ids[(long)i * T + pl + k] = s->tokens[k];
            for (int k = 0; k < s->n; k++) tg[(long)i * T + pl - 1 + k] = s->tokens[k];
            len[i] = pl + s->n;
            adv[i] = d->adv[s0 + i];
        }
        Batch b = {B, T, ids, tg, len};
        int rc = model_forward(&t->m, &b, (float)(r->temperature > 0 ? r->temperature : 1.0), lp, ent, err);
        if (!rc) {
            optim_router_load_add(load, &t->m);
            for (int i = 0; i < B; i++) {
                const RolloutSample *s = &d->res.s[s0 + i];
                int pl = (int)d->pids[s->prompt].n, act = sample_active(t, s);
                for (int k = 0; k < s->n; k++) {
                    nl[(long)i * L + k] = lp[(long)i * T + pl - 1 + k];
                    en[(long)i * L + k] = ent[(long)i * T + pl - 1 + k];
                    mk[(long)i * L + k] = (float)act;
                    if (!old_logp) continue;
                    float *o = old_logp + (long)(s0 + i) * Lmax + k;
                    if (pass == 0) *o = nl[(long)i * L + k];
                    ol[(long)i * L + k] = *o;
                }
            }
            /* mu = 1: pi_old is the current policy detached, the ratio is exactly 1 */
            GrpoLossIn in = {B, L, nl, old_logp ? ol : NULL, NULL, adv, mk, en};
            GrpoLossGrad gr = {g, NULL};
            GrpoLossStats ls;
            rc = grpo_loss(&lo, &in, &gr, &ls, err);
            if (!rc) {
                for (int i = 0; i < B; i++) {
                    const RolloutSample *s = &d->res.s[s0 + i];
                    int pl = (int)d->pids[s->prompt].n;
                    for (int k = 0; k < s->n; k++) dl[(long)i * T + pl - 1 + k] = g[(long)i * L + k];
                }
                model_backward(&t->m, &b, dl, NULL);
                ts->loss += ls.loss, ts->ntok += ls.ntok, ts->entropy_sum += ls.entropy_sum;
                ts->clip_low += ls.clip_low_sum, ts->clip_high += ls.clip_high_sum;
                ts->clip_region += ls.clip_region_sum, ts->clip_count += ls.clip_count;
            }
        }
        free(ids), free(tg), free(len), free(lp), free(ent), free(dl), free(nl), free(ol), free(en), free(mk), free(adv),
            free(g);
        if (rc) return -1;
    }
    return 0;
}

/* 6: the step's transaction in the store. */
static int step_store(Trainer *t, long step, const StepData *d, const GrpoAdvStats *as, const TrainStats *ts,
                      const int64_t *load, double tim[4], Err *err) {
    Store *st = t->st;
    const int N = d->N, K = t->K;
    if (store_step_begin(st, step, err)) return -1;
    double len = 0, clipped = 0;
    for (int i = 0; i < N; i++) len += d->res.s[i].n, clipped += d->res.s[i].finish == FINISH_LENGTH;
    double tot = tim[0] + tim[1] + tim[2] + tim[3];
    struct { const char *n; double v; } ms[] = {
        {STORE_M_REWARD, as->reward_mean}, {STORE_M_REWARD_STD, as->reward_std},
        {STORE_M_FRAC_ZERO_STD, as->frac_reward_zero_std}, {STORE_M_MEAN_LENGTH, len / N},
        {STORE_M_CLIPPED_RATIO, clipped / N}, {STORE_M_ENTROPY, ts->ntok ? ts->entropy_sum / ts->ntok : NAN},
        {STORE_M_CLIP_LOW, ts->clip_count ? ts->clip_low / ts->clip_count : NAN},
        {STORE_M_CLIP_HIGH, ts->clip_count ? ts->clip_high / ts->clip_count : NAN},
        {STORE_M_CLIP_REGION, ts->clip_count ? ts->clip_region / ts->clip_count : NAN},
        {STORE_M_GRAD_NORM, ts->info.grad_norm}, {STORE_M_LR, ts->info.lr}, {STORE_M_LOSS, ts->loss},
        {STORE_M_NUM_TOKENS, ts->ntok}, {"timing_s/rollout", tim[0]}, {"timing_s/reward", tim[1]},
        {"timing_s/train", tim[2]}, {"timing_s/log", tim[3]}, {STORE_M_STEP_TIME, tot},
        {STORE_M_TOKENS_PER_S, d->res.stats.tokens_per_s}, {"step_skipped", ts->info.skipped},
    };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (store_metric(st, ms[i].n, ms[i].v, err)) goto fail;
    for (int k = 0; k < K; k++) { /* per reward function mean: rewards/NAME/mean as TRL */
        double s = 0;
        int n = 0;
        for (int i = 0; i < N; i++)
            if (!isnan(d->per_func[i * K + k])) s += d->per_func[i * K + k], n++;
        char name[160];
        snprintf(name, sizeof name, "rewards/%s/mean", reward_set_name(t->rs, k));
        if (store_metric(st, name, n ? s / n : NAN, err)) goto fail;
    }
    StoreReward *sr = xcalloc(K, sizeof *sr);
    for (int i = 0; i < N; i++) {
        const RolloutSample *s = &d->res.s[i];
        StoreRollout ro = {s->prompt, s->index, d->row[s->prompt], d->ptext[s->prompt].s ? d->ptext[s->prompt].s : "",
                           d->ctext[i], (int)d->pids[s->prompt].n, s->n, finish_reason_name(s->finish),
                           isnan(d->reward[i]) ? NAN : d->reward[i], d->adv[i], s->logp_sum};
        for (int k = 0; k < K; k++) {
            const RewardResult *rr = &d->rr[i * K + k];
            sr[k] = (StoreReward){reward_set_name(t->rs, k), rr->has_value ? rr->value : NAN, rr->error};
        }
        if (store_rollout(st, &ro, sr, K, err)) { free(sr); goto fail; }
    }
    free(sr);
    const ModelConfig *c = &t->m.cfg;
    int E = c->n_routed_experts, L0 = c->first_k_dense_replace, nl = c->num_hidden_layers - L0;
    if (E && nl > 0 && store_router_load(st, L0, nl, E, load + (long)L0 * E, err)) goto fail;
    return store_step_commit(st, err);
fail:
    store_step_abort(st);
    return -1;
}

/* Mean of the reward component whose name contains "accuracy" (NaN if none). */
static double accuracy_of(const Trainer *t, const StepData *d) {
    for (int k = 0; k < t->K; k++) {
        if (!strstr(reward_set_name(t->rs, k), "accuracy")) continue;
        double s = 0;
        int n = 0;
        for (int i = 0; i < d->N; i++)
            if (!isnan(d->per_func[i * t->K + k])) s += d->per_func[i * t->K + k], n++;
        return n ? s / n : NAN;
    }
    return NAN;
}

static int save_state(Trainer *t, long step, Err *err) {
    char dir[1200], path[1300];
    snprintf(dir, sizeof dir, "%s/checkpoints/step-%ld", t->rundir, step);
    const char *tokdir = t->r.tokenizer[0] ? t->r.tokenizer : t->r.model;
    if (runctx_save(&t->m, tokdir, dir, t->r.save_dtype, err)) return -1;
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    if (adamw_save(&t->opt, path, err)) return -1;
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return err_set(err, ERR_WORK, "cannot write %s", path);
    fprintf(f, "{\"step\": %ld, \"data_cursor\": %ld, \"seed\": %d}\n", step, t->cursor, t->r.seed);
    return fclose(f) ? err_set(err, ERR_WORK, "cannot write %s", path) : 0;
}

/* Latest checkpoints/step-N with a trainer state; returns N (0 = none). */
static long find_resume(const Trainer *t, long *cursor) {
    for (long s = t->r.max_steps; s > 0; s--) {
        char path[1300];
        snprintf(path, sizeof path, "%s/checkpoints/step-%ld/trainer_state.json", t->rundir, s);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        long st = 0, cur = 0;
        int ok = fscanf(f, "{\"step\": %ld, \"data_cursor\": %ld", &st, &cur) == 2;
        fclose(f);
        if (ok && st == s) { *cursor = cur; return s; }
    }
    return 0;
}

static int trainer_open(Trainer *t, const char *recipe_path, int resume, long *start_step, Err *err) {
    Recipe *r = &t->r;
    if (r->beta != 0) return err_set(err, ERR_INPUT, "recipe: beta > 0 (KL to a reference model) is not supported yet; use beta = 0");
    if (r->n_rewards == 0) return err_set(err, ERR_INPUT, "recipe %s: 'rewards' lists no reward script", recipe_path);
    if (r->num_generations < 2) return err_set(err, ERR_INPUT, "recipe: num_generations must be >= 2 (got %d)", r->num_generations);
    if (r->prompts_per_step < 1 || r->max_steps < 1 || r->num_iterations < 1)
        return err_set(err, ERR_INPUT, "recipe: prompts_per_step, max_steps and num_iterations must be >= 1");
    snprintf(t->rundir, sizeof t->rundir, "%s/%s", r->output_dir, r->name);
    long cursor = 0, from = resume ? find_resume(t, &cursor) : 0;
    if (from > 0) { /* continue from the checkpoint: its weights, optimizer and data cursor */
        snprintf(r->model, sizeof r->model, "%s/checkpoints/step-%ld", t->rundir, from);
    }
    if (runctx_mkdirs(t->rundir, err) || runctx_load(r, &t->m, &t->tok, err)) return -1;
    if (dataset_load(&t->data, r->train_data, err)) return -1;
    t->order = xcalloc(t->data.n, sizeof(int));
    for (long i = 0; i < cursor; i++) next_row(t);
    const char *paths[RECIPE_MAX_REWARDS];
    for (int k = 0; k < r->n_rewards; k++) paths[k] = r->rewards[k];
    RewardOpts ro = {.workers = r->threads};
    t->rs = reward_set_load(paths, r->n_rewards, r->reward_weights, &ro, err);
    if (!t->rs) return -1;
    t->K = reward_set_count(t->rs);
    AdamWOpts ao;
    adamw_opts_default(&ao);
    ao.weight_decay = r->weight_decay, ao.max_grad_norm = r->max_grad_norm;
    if (adamw_init(&t->opt, &ao, t->m.ptab, t->m.nparams, t->m.numel, err)) return -1;
    if (from > 0) {
        char p[1300];
        snprintf(p, sizeof p, "%s/checkpoints/step-%ld/optimizer.bin", t->rundir, from);
        if (adamw_load(&t->opt, p, err)) return -1;
    }
    if (lr_schedule_parse(r->lr_scheduler_type, &t->sch.type, err)) return -1;
    t->sch.lr = r->learning_rate, t->sch.total_steps = r->max_steps, t->sch.num_cycles = 0.5;
    t->sch.warmup_steps = lr_warmup_steps(r->warmup_ratio, r->max_steps);
    char dbp[1200], rp[1200];
    snprintf(dbp, sizeof dbp, "%s/rollouts.db", t->rundir);
    if (!(t->st = store_open(dbp, err))) return -1;
    if (from > 0 && store_truncate_after(t->st, from - 1, err)) return -1;
    snprintf(rp, sizeof rp, "%s/recipe.lua", t->rundir);
    FILE *f = fopen(rp, "w");
    if (f) recipe_write(r, f), fclose(f);
    char *text = NULL;
    size_t n = 0;
    FILE *mf = open_memstream(&text, &n);
    recipe_write(r, mf);
    fclose(mf);
    StoreRun run = {r->name, r->model, recipe_path, text, NULL, NULL};
    int rc = store_run_record(t->st, &run, from > 0 ? from : -1, err);
    free(text);
    *start_step = from;
    return rc;
}

static void trainer_close(Trainer *t) {
    if (t->st) store_close(t->st);
    if (t->rs) reward_set_free(t->rs);
    if (t->tok) tok_free(t->tok);
    adamw_free(&t->opt);
    model_free(&t->m);
    dataset_free(&t->data);
    free(t->order);
    memset(t, 0, sizeof *t);
}

int cmd_train(int argc, char **argv) {
    CliOpt opts[] = {{"--set", "KEY=VALUE[;KEY=VALUE...]", "", "override recipe fields (';'-separated)", 0},
                     {"--resume", NULL, NULL, "continue from the run's latest checkpoint (exactly)", 0},
                     {"--help-recipe", NULL, NULL, "list every recipe field with its default", 0},
                     {0}};
    CliSpec spec = {"grpo train RECIPE.lua [--set key=value] [--resume]",
                    "GRPO: sample num_generations completions per prompt, score them with the recipe's Lua\n"
                    "rewards, update the model with group-relative advantages; every rollout goes to\n"
                    "output_dir/name/rollouts.db. Recipe fields: grpo train --help-recipe (or docs/recipes.md).",
                    opts, 0, 1};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (cli_flag(&spec, "--help-recipe")) { recipe_help(stdout); return 0; }
    if (npos != 1) { fprintf(stderr, "usage: %s\n", spec.usage); return 2; }
    static Trainer t;
    Err err = {0};
    int64_t *load = NULL;
    recipe_defaults(&t.r);
    if (recipe_load(&t.r, pos[0], &err)) goto fail;
    if (runctx_set_recipe(&t.r, cli_str(&spec, "--set"), &err)) goto fail;
    if (t.r.threads > 0) omp_set_num_threads(t.r.threads);
    long start = 0;
    if (trainer_open(&t, pos[0], cli_flag(&spec, "--resume"), &start, &err)) goto fail;
    const ModelConfig *c = &t.m.cfg;
    const int mu = t.r.num_iterations;
    load = xcalloc((size_t)c->num_hidden_layers * (c->n_routed_experts ? c->n_routed_experts : 1), sizeof(int64_t));
    double t_start = clock_now();
    printf("grpo train: %s, %d steps x %d prompts x %d samples, %s loss, lr %g, run %s%s\n", t.r.model, t.r.max_steps,
           t.r.prompts_per_step, t.r.num_generations, t.r.loss_type, t.r.learning_rate, t.rundir,
           start ? " (resumed)" : "");
    for (long step = start; step < t.r.max_steps; step++) {
        StepData d = {0};
        GrpoAdvStats as;
        TrainStats ts = {0};
        double tim[4], t0 = clock_now();
        if (step_rollouts(&t, step, &d, &err)) goto fail_step;
        double t1 = clock_now();
        if (step_rewards(&t, &d, &as, &err)) goto fail_step;
        double t2 = clock_now();
        float *old = mu > 1 ? xcalloc((size_t)d.N * t.r.max_completion_length, sizeof(float)) : NULL;
        memset(load, 0, sizeof(int64_t) * c->num_hidden_layers * (c->n_routed_experts ? c->n_routed_experts : 1));
        for (int it = 0; it < mu; it++) {
            model_zero_grads(&t.m);
            if (train_pass(&t, &d, it, old, load, &ts, &err)) { free(old); goto fail_step; }
            adamw_step(&t.opt, t.m.params, t.m.grads, lr_schedule_at(&t.sch, step), &ts.info);
            if (ts.info.skipped)
                fprintf(stderr, "grpo train: step %ld: non-finite gradient in %s, update skipped\n", step + 1, ts.info.bad_param);
        }
        free(old);
        if (t.r.router_bias_gamma > 0 && c->n_routed_experts)
            optim_router_bias_update_model(&t.m, load, (float)t.r.router_bias_gamma);
        double t3 = clock_now();
        tim[0] = t1 - t0, tim[1] = t2 - t1, tim[2] = t3 - t2, tim[3] = 0;
        if (step_store(&t, step, &d, &as, &ts, load, tim, &err)) goto fail_step;
        tim[3] = clock_now() - t3;
        double len = 0;
        for (int i = 0; i < d.N; i++) len += d.res.s[i].n;
        double el = clock_now() - t_start, eta = el / (step + 1 - start) * (t.r.max_steps - step - 1);
        runctx_progress(stdout, step + 1 == t.r.max_steps,
                        "step %ld/%d  reward %.3f  accuracy %.3f  length %.1f  entropy %.3f  clip %.3f  %.0f tok/s  "
                        "[rollout %.1fs reward %.2fs train %.1fs log %.3fs]  ETA %.0fs",
                        step + 1, t.r.max_steps, as.reward_mean, accuracy_of(&t, &d), len / d.N,
                        ts.ntok ? ts.entropy_sum / ts.ntok : 0, ts.clip_count ? ts.clip_region / ts.clip_count : 0,
                        d.res.stats.tokens_per_s, tim[0], tim[1], tim[2], tim[3], eta);
        step_free(&d, t.K);
        if ((t.r.save_steps > 0 && (step + 1) % t.r.save_steps == 0) || step + 1 == t.r.max_steps)
            if (save_state(&t, step + 1, &err)) goto fail;
        continue;
    fail_step:
        step_free(&d, t.K);
        goto fail;
    }
    printf("grpo train: done in %.1f s; checkpoint %s/checkpoints/step-%d, rollouts %s/rollouts.db\n",
           clock_now() - t_start, t.rundir, t.r.max_steps, t.rundir);
    free(load);
    trainer_close(&t);
    return 0;
fail:
    fprintf(stderr, "grpo train: %s\n", err.msg);
    free(load);
    trainer_close(&t);
    return err.code ? err.code : 1;
}
