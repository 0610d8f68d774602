/* trainer: see trainer.h. Sections: data order and prompts, one generation
 * round (rollouts, stop strings, rewards), the step's batch (dynamic
 * sampling), the train pass (policy, reference, loss, backward), the store,
 * checkpoints, open/close. */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/rng.h"
#include "base/xalloc.h"
#include "grpo.h"
#include "rollout.h"
#include "runctx.h"
#include "trainer_cuda.h"

/* ---- data order and prompts ------------------------------------------------ */

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

/* Rows skipped while picking a step's prompts, by reason, with the first of each in full. */
typedef struct SkipCount {
    int missing_field, too_long;
    char first_missing[600], first_long[300];
} SkipCount;

/* Next usable row: its prompt text and ids. Rows whose template cannot be
 * filled (a missing field) or gives an empty prompt, and prompts longer than
 * max_prompt_length or the context, are skipped and counted. */
static int pick_prompt(Trainer *t, int P, int *row, TokText *text, TokIds *ids, SkipCount *sk, Err *err) {
    const Recipe *r = &t->r;
    const int ctx = t->m.cfg.max_position_embeddings;
    for (int tries = 0;; tries++) {
        if (tries > 4 * t->data.n + P)
            return err_set(err, ERR_INPUT, "%s: no usable prompts (%s)", r->train_data,
                           sk->first_missing[0] ? sk->first_missing : sk->first_long[0] ? sk->first_long : "no rows");
        int k = next_row(t);
        Err e2 = {0};
        int bad = runctx_prompt(t->tok, r->prompt_template, t->data.rows[k], text, ids, &e2) != 0;
        int n = bad ? 0 : (int)ids->n;
        if (n > 0 && n <= r->max_prompt_length && (ctx <= 0 || n < ctx)) {
            *row = k;
            return 0;
        }
        const char *path = t->data.path;
        int line = t->data.line[k];
        if (n == 0 && !sk->missing_field++)
            snprintf(sk->first_missing, sizeof sk->first_missing, "%s:%d: %s", path, line, bad ? e2.msg : "empty prompt");
        if (n > 0 && !sk->too_long++)
            snprintf(sk->first_long, sizeof sk->first_long, "%s:%d: prompt of %d tokens, over %s %d", path, line, n,
                     n > r->max_prompt_length ? "max_prompt_length" : "the context of", n > r->max_prompt_length ? r->max_prompt_length : ctx);
    }
}

/* ---- one generation round ---------------------------------------------------- */

/* One batch of P prompts with G samples each, scored: what a step trains on
 * without dynamic sampling. Groups move out of it into the Step. */
typedef struct Round {
    int P, G, N, K;
    int *row;               /* [P] dataset row per prompt */
    TokIds *pids;           /* [P] prompt ids */
    TokText *ptext;         /* [P] prompt text */
    RolloutResult res;      /* [N] samples, sample p*G + g */
    char **ctext;           /* [N] completion text (stop string cut off) */
    RewardResult *rr;       /* [N*K] */
    float *per_func;        /* [N*K] value or NaN */
    float *reward;          /* [N] weighted sum, NaN when every component is nil */
} Round;

static void round_free(Round *d) {
    for (int p = 0; p < d->P; p++) tok_ids_free(&d->pids[p]), free(d->ptext[p].s);
    for (int i = 0; d->ctext && i < d->N; i++) free(d->ctext[i]);
    if (d->rr) reward_results_clear(d->rr, (size_t)d->N * d->K);
    rollout_result_free(&d->res);
    free(d->row), free(d->pids), free(d->ptext), free(d->ctext), free(d->rr), free(d->per_func), free(d->reward);
    memset(d, 0, sizeof *d);
}

/* Prompts and rollouts of round `round` of step `step`, and the completion
 * texts (for finish "stop" cut before the stop string, as vLLM's
 * include_stop_str_in_output = False; the sampled tokens are kept whole). */
static int round_generate(Trainer *t, long step, int round, Round *d, SkipCount *sk, Err *err) {
    const Recipe *r = &t->r;
    d->P = r->prompts_per_step, d->G = r->num_generations, d->N = d->P * d->G, d->K = t->K;
    d->row = xcalloc(d->P, sizeof(int));
    d->pids = xcalloc(d->P, sizeof(TokIds));
    d->ptext = xcalloc(d->P, sizeof(TokText));
    const int **pp = xcalloc(d->P, sizeof(int *));
    int *plen = xcalloc(d->P, sizeof(int));
    for (int p = 0; p < d->P; p++) {
        if (pick_prompt(t, d->P, &d->row[p], &d->ptext[p], &d->pids[p], sk, err)) { free(pp), free(plen); return -1; }
        pp[p] = (const int *)d->pids[p].v; /* int32_t == int on every supported target */
        plen[p] = (int)d->pids[p].n;
    }
    RolloutOpts ro = rollout_defaults();
    ro.sampling.temperature = (float)r->temperature, ro.sampling.top_p = r->top_p, ro.sampling.top_k = r->top_k;
    ro.sampling.min_p = r->min_p;
    ro.group_size = d->G, ro.max_new_tokens = r->max_completion_length;
    /* round 0 keeps the plain seed; refills draw from other random streams */
    ro.seed = (uint64_t)r->seed + (uint64_t)round * RNG_GOLDEN;
    ro.sample_base = (uint64_t)step * (uint64_t)d->N;
    int eos = tok_eos(t->tok);
    if (eos >= 0) ro.eos_ids = &eos, ro.n_eos = 1;
    RunStop stops = {.tok = t->tok};
    for (int s = 0; s < r->n_stop && s < RUNCTX_MAX_STOP; s++) stops.stop[stops.n++] = r->stop[s];
    if (stops.n) ro.stop = runctx_stop_check, ro.stop_ctx = &stops;
    int rc = t->cuda ? rollout_generate_on(trainer_cuda_engine(t->cuda), &t->m.cfg, d->P, pp, plen, &ro, &d->res, err)
                     : rollout_generate(&t->m, d->P, pp, plen, &ro, &d->res, err);
    free(pp), free(plen);
    if (rc) return -1;
    d->ctext = xcalloc(d->N, sizeof(char *));
    for (int i = 0; i < d->N; i++) {
        if (!(d->ctext[i] = runctx_completion_text(t->tok, &d->res.s[i], err))) return -1;
        long at = d->res.s[i].finish == FINISH_STOP ? runctx_stop_find(&stops, d->ctext[i]) : -1;
        if (at >= 0) d->ctext[i][at] = 0;
    }
    return 0;
}

/* The round's rewards: every script on every sample, and the weighted sums. */
static int round_score(Trainer *t, Round *d, Err *err) {
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
    float w[RECIPE_MAX_REWARDS];
    for (int k = 0; k < K; k++) w[k] = (float)t->r.reward_weights[k];
    d->reward = xmalloc(sizeof(float) * N);
    grpo_rewards_combine(d->per_func, w, N, K, d->reward);
    return 0;
}

/* ---- the step's batch ------------------------------------------------------ */

/* The groups a step trains on, moved out of one or more rounds. */
typedef struct Step {
    int P, G, N, K, cap;    /* groups kept, samples N = P*G, capacity in groups */
    int *row;               /* [P] */
    TokIds *pids;           /* [P] */
    TokText *ptext;         /* [P] */
    RolloutSample *s;       /* [N] owned; s[i].prompt is the group's index in the step */
    char **ctext;           /* [N] */
    RewardResult *rr;       /* [N*K] */
    float *per_func;        /* [N*K] */
    float *reward, *adv;    /* [N] */
    RolloutStats stats;     /* summed over rounds */
    double gen_reward_sum;  /* every generated sample's reward (dropped groups too), for the metric */
    int gen_reward_n;
} Step;

static void step_free(Step *d) {
    for (int p = 0; p < d->P; p++) tok_ids_free(&d->pids[p]), free(d->ptext[p].s);
    for (int i = 0; i < d->N; i++) free(d->ctext[i]), free(d->s[i].tokens), free(d->s[i].logp), free(d->s[i].logp_filtered);
    if (d->rr) reward_results_clear(d->rr, (size_t)d->N * d->K);
    free(d->row), free(d->pids), free(d->ptext), free(d->s), free(d->ctext), free(d->rr), free(d->per_func),
        free(d->reward), free(d->adv);
    memset(d, 0, sizeof *d);
}

/* Moves group p of round rd to the end of the step (rd keeps empty husks). */
static void step_take_group(Step *d, Round *rd, int p) {
    const int G = rd->G, K = rd->K;
    if (d->P == d->cap) {
        d->cap = d->cap ? 2 * d->cap : rd->P;
        d->row = xrealloc(d->row, sizeof(int) * d->cap);
        d->pids = xrealloc(d->pids, sizeof(TokIds) * d->cap);
        d->ptext = xrealloc(d->ptext, sizeof(TokText) * d->cap);
        d->s = xrealloc(d->s, sizeof(RolloutSample) * d->cap * G);
        d->ctext = xrealloc(d->ctext, sizeof(char *) * d->cap * G);
        d->rr = xrealloc(d->rr, sizeof(RewardResult) * d->cap * G * K);
        d->per_func = xrealloc(d->per_func, sizeof(float) * d->cap * G * K);
        d->reward = xrealloc(d->reward, sizeof(float) * d->cap * G);
    }
    int q = d->P++;
    d->G = G, d->K = K, d->N = d->P * G;
    d->row[q] = rd->row[p];
    d->pids[q] = rd->pids[p], memset(&rd->pids[p], 0, sizeof(TokIds));
    d->ptext[q] = rd->ptext[p], memset(&rd->ptext[p], 0, sizeof(TokText));
    for (int g = 0; g < G; g++) {
        int i = p * G + g, j = q * G + g;
        d->s[j] = rd->res.s[i], d->s[j].prompt = q;
        rd->res.s[i].tokens = NULL, rd->res.s[i].logp = NULL, rd->res.s[i].logp_filtered = NULL;
        d->ctext[j] = rd->ctext[i], rd->ctext[i] = NULL;
        for (int k = 0; k < K; k++) {
            d->rr[j * K + k] = rd->rr[i * K + k], memset(&rd->rr[i * K + k], 0, sizeof(RewardResult));
            d->per_func[j * K + k] = rd->per_func[i * K + k];
        }
        d->reward[j] = rd->reward[i];
    }
}

static void stats_add(RolloutStats *a, const RolloutStats *b) {
    a->prompts += b->prompts, a->samples += b->samples, a->failed_prompts += b->failed_prompts;
    a->prompt_tokens += b->prompt_tokens, a->new_tokens += b->new_tokens, a->steps += b->steps;
    a->prefill_s += b->prefill_s, a->decode_s += b->decode_s, a->sample_s += b->sample_s, a->total_s += b->total_s;
    a->tokens_per_s = a->total_s > 0 ? a->new_tokens / a->total_s : 0;
}

/* Rounds until the step holds prompts_per_step groups. Without dynamic
 * sampling that is one round, taken whole. With it (DAPO), groups whose
 * reward std is zero are dropped and more rounds run; the surplus of the last
 * round is discarded (verl). It stops refilling after max_num_gen_batches
 * rounds (0: no limit) or once a step has read as many rows as the data set
 * holds, and then trains on the groups it has (the last round whole if none). */
static int step_collect(Trainer *t, long step, Step *d, TrainerStepInfo *info, SkipCount *sk, Err *err) {
    const Recipe *r = &t->r;
    const long cursor0 = t->cursor;
    for (int round = 0;; round++) {
        Round rd = {0};
        double t0 = clock_now();
        if (round_generate(t, step, round, &rd, sk, err)) { round_free(&rd); return -1; }
        double t1 = clock_now();
        if (round_score(t, &rd, err)) { round_free(&rd); return -1; }
        info->t_rollout += t1 - t0, info->t_reward += clock_now() - t1;
        info->gen_rounds = round + 1;
        stats_add(&d->stats, &rd.res.stats);
        for (int i = 0; i < rd.N; i++)
            if (!isnan(rd.reward[i])) d->gen_reward_sum += rd.reward[i], d->gen_reward_n++;
        if (!r->dynamic_sampling) {
            for (int p = 0; p < rd.P; p++) step_take_group(d, &rd, p);
            round_free(&rd);
            return 0;
        }
        unsigned char *keep = xmalloc(rd.P);
        grpo_groups_with_signal(rd.reward, rd.P, rd.G, keep);
        for (int p = 0; p < rd.P; p++) {
            if (!keep[p]) info->groups_dropped++;
            else if (d->P < r->prompts_per_step) step_take_group(d, &rd, p);
        }
        free(keep);
        int full = d->P >= r->prompts_per_step;
        int limit = (r->max_num_gen_batches > 0 && round + 1 >= r->max_num_gen_batches) ||
                    t->cursor - cursor0 + r->prompts_per_step > t->data.n;
        if (!full && limit) {
            fprintf(stderr, "grpo train: step %ld: dynamic sampling: %d of %d groups with reward signal after %d "
                    "round(s) (%s); training on %s\n", step + 1, d->P, r->prompts_per_step, round + 1,
                    r->max_num_gen_batches > 0 && round + 1 >= r->max_num_gen_batches ? "max_num_gen_batches"
                                                                                      : "one pass over the data",
                    d->P ? "those" : "the last round's groups (advantages 0)");
            if (!d->P)
                for (int p = 0; p < rd.P; p++) step_take_group(d, &rd, p);
        }
        round_free(&rd);
        if (full || limit) return 0;
    }
}

/* Advantages of the step's groups (after refills, so batch scaling sees the
 * final batch), and one message per group whose every reward was nil. */
static int step_advantages(Trainer *t, long step, Step *d, GrpoAdvStats *as, TrainerStepInfo *info, Err *err) {
    GrpoAdvOpts ao;
    grpo_adv_opts_default(&ao);
    if (grpo_scale_parse(t->r.scale_rewards, &ao.scale, err)) return -1;
    float w[RECIPE_MAX_REWARDS];
    for (int k = 0; k < d->K; k++) w[k] = (float)t->r.reward_weights[k];
    ao.weights = w;
    d->adv = xmalloc(sizeof(float) * d->N);
    if (grpo_advantages(&ao, d->per_func, d->P, d->G, d->K, d->reward, d->adv, as, err)) return -1;
    for (int p = 0; p < d->P; p++) {
        int nil = 1;
        const char *first = NULL;
        for (int i = p * d->G; i < (p + 1) * d->G; i++) {
            nil &= isnan(d->reward[i]);
            for (int k = 0; k < d->K && !first; k++) first = d->rr[i * d->K + k].error;
        }
        if (!nil) continue;
        info->groups_all_nil++;
        fprintf(stderr, "grpo train: step %ld, group %d (%s:%d): every reward was nil or failed, advantages 0%s%s\n",
                step + 1, p, t->data.path, t->data.line[d->row[p]], first ? "; first error: " : "", first ? first : "");
    }
    return 0;
}

/* ---- the train pass ------------------------------------------------------------ */

typedef struct TrainStats {
    double loss, ntok, entropy_sum, clip_low, clip_high, clip_region, clip_count, kl_sum;
    double pass_ratio_sum, pass_ntok, pass_clip_region, pass_clip_count; /* the current pass only */
    double diff_max, diff_sum, diff_n; /* |sampler logp - trainer logp|, first pass */
    AdamWStepInfo info;
} TrainStats;

/* Completion mask of sample i (0 for refused prompts, and for truncated ones when asked). */
static int sample_active(const Trainer *t, const RolloutSample *s) {
    if (s->finish == FINISH_ERROR || s->n == 0) return 0;
    return !(t->r.mask_truncated_completions && s->finish == FINISH_LENGTH);
}

/* Buffers of one micro-batch, packed without padding (model.h PackedBatch,
 * docs/model.md "Packed batches"): samples s0..s0+B-1 (the same samples a
 * padded micro-batch would hold, so per-micro-batch loss normalisations are
 * unchanged). A prompt with >= 2 samples here and >= 2 tokens becomes one
 * prefix segment prompt[0..pl-2], computed once; each of its samples is a
 * segment [prompt[pl-1], completion[0..n-2]] attending to it, so every
 * position has exactly one target (the next token). Any other sample is one
 * segment [prompt, completion[0..n-2]]. Samples without tokens (or
 * prompt) get no segment. Completion token k of sample i has its log-prob at off[i] + k. */
typedef struct Micro {
    int B, L, ntok, nseg;
    int *ids, *tg, *off;           /* [ntok], [ntok], [B] */
    PackSeg *seg;                  /* [nseg], nseg <= 2B */
    float *lp, *ent, *dl;          /* [ntok] forward log-probs, entropy, d loss / d logp */
    float *nl, *ol, *rl, *en, *mk; /* [B*L] new, old, ref log-probs, entropy, mask; L the longest completion */
    float *adv, *g;                /* [B], [B*L] */
} Micro;

/* Appends a segment with ids a[0..na-1] then b[0..nb-1] and targets -1 for its
 * first ntg_skip positions, then tg[0..] (all -1 when tg is NULL); returns its index. */
static int micro_seg(Micro *mb, int prefix, const int *a, int na, const int *b, int nb, int ntg_skip, const int *tg) {
    PackSeg *g = &mb->seg[mb->nseg++];
    *g = (PackSeg){mb->ntok, na + nb, prefix};
    for (int k = 0; k < na + nb; k++) {
        mb->ids[mb->ntok + k] = k < na ? a[k] : b[k - na];
        mb->tg[mb->ntok + k] = k < ntg_skip || !tg ? -1 : tg[k - ntg_skip];
    }
    mb->ntok += na + nb;
    return (int)(g - mb->seg);
}

/* Samples of prompt p with tokens in this micro-batch. */
static int micro_group_size(const Step *d, int s0, int B, int p) {
    int c = 0;
    for (int j = 0; j < B; j++) c += d->s[s0 + j].prompt == p && d->s[s0 + j].n > 0;
    return c;
}

static void micro_pack(Micro *mb, const Step *d, int s0) {
    int *root = xmalloc(sizeof(int) * mb->B); /* prefix segment of sample i's prompt, or -1 */
    for (int i = 0; i < mb->B; i++) {
        const RolloutSample *s = &d->s[s0 + i];
        const TokIds *pi = &d->pids[s->prompt];
        int pl = (int)pi->n, n = s->n;
        root[i] = -1, mb->off[i] = 0;
        if (n == 0 || pl == 0) continue; /* rollout refuses empty prompts: nothing to predict from */
        if (pl < 2 || micro_group_size(d, s0, mb->B, s->prompt) < 2) {
            mb->off[i] = mb->ntok + pl - 1;
            micro_seg(mb, -1, pi->v, pl, s->tokens, n - 1, pl - 1, s->tokens);
            continue;
        }
        for (int j = 0; j < i && root[i] < 0; j++)
            if (d->s[s0 + j].prompt == s->prompt) root[i] = root[j];
        if (root[i] < 0) root[i] = micro_seg(mb, -1, pi->v, pl - 1, NULL, 0, 0, NULL);
        mb->off[i] = mb->ntok;
        micro_seg(mb, root[i], pi->v + pl - 1, 1, s->tokens, n - 1, 0, s->tokens);
    }
    free(root);
}

static void micro_alloc(Micro *mb, const Step *d, int s0, int B) {
    int L = 1;
    long cap = 1;
    for (int i = 0; i < B; i++) {
        const RolloutSample *s = &d->s[s0 + i];
        cap += (long)d->pids[s->prompt].n + s->n;
        L = s->n > L ? s->n : L;
    }
    memset(mb, 0, sizeof *mb);
    mb->B = B, mb->L = L;
    mb->ids = xmalloc(sizeof(int) * cap), mb->tg = xmalloc(sizeof(int) * cap), mb->off = xmalloc(sizeof(int) * B);
    mb->seg = xmalloc(sizeof(PackSeg) * 2 * B);
    mb->lp = xmalloc(sizeof(float) * cap), mb->ent = xmalloc(sizeof(float) * cap);
    mb->dl = xcalloc((size_t)cap, sizeof(float));
    mb->nl = xcalloc((size_t)B * L, sizeof(float)), mb->ol = xcalloc((size_t)B * L, sizeof(float));
    mb->rl = xcalloc((size_t)B * L, sizeof(float));
    mb->en = xcalloc((size_t)B * L, sizeof(float)), mb->mk = xcalloc((size_t)B * L, sizeof(float));
    mb->adv = xmalloc(sizeof(float) * B), mb->g = xcalloc((size_t)B * L, sizeof(float));
    for (int i = 0; i < B; i++) mb->adv[i] = d->adv[s0 + i];
    micro_pack(mb, d, s0);
}

/* The forward of the policy (ref = 0: its router load counted) or of the
 * reference over the micro-batch, on the trainer's device. */
static int micro_forward(Trainer *t, int ref, const Micro *mb, float temp, float *lp, float *ent, Err *err) {
    PackedBatch b = {mb->ntok, mb->nseg, mb->ids, mb->tg, mb->seg};
    if (t->cuda) return trainer_cuda_forward(t->cuda, ref, &b, temp, lp, ent, ref ? NULL : t->load, err);
    if (model_forward_packed(ref ? &t->ref : &t->m, &b, temp, lp, ent, err)) return -1;
    if (!ref) optim_router_load_add(t->load, &t->m);
    return 0;
}

static int micro_backward(Trainer *t, const Micro *mb, Err *err) {
    PackedBatch b = {mb->ntok, mb->nseg, mb->ids, mb->tg, mb->seg};
    if (t->cuda) return trainer_cuda_backward(t->cuda, &b, mb->dl, err);
    model_backward_packed(&t->m, &b, mb->dl, NULL);
    return 0;
}

static void micro_free(Micro *mb) {
    free(mb->ids), free(mb->tg), free(mb->off), free(mb->seg), free(mb->lp), free(mb->ent), free(mb->dl), free(mb->nl), free(mb->ol);
    free(mb->rl), free(mb->en), free(mb->mk), free(mb->adv), free(mb->g);
}

/* Reference log-probs of the micro-batch into mb->rl, computed on the first
 * pass by the frozen model (same batch, same temperature) and cached in
 * ref_logp [N][max_new] for the later passes. */
static int micro_ref(Trainer *t, const Step *d, int s0, int pass, float *ref_logp, Micro *mb, float temp, Err *err) {
    const int Lmax = t->r.max_completion_length;
    if (pass == 0 && micro_forward(t, 1, mb, temp, mb->lp, NULL, err)) return err_wrap(err, "reference model");
    for (int i = 0; i < mb->B; i++) {
        const RolloutSample *s = &d->s[s0 + i];
        for (int k = 0; k < s->n; k++) {
            float *o = ref_logp + (long)(s0 + i) * Lmax + k;
            if (pass == 0) *o = mb->lp[mb->off[i] + k];
            mb->rl[(long)i * mb->L + k] = *o;
        }
    }
    return 0;
}

/* Per-token loss inputs of the micro-batch from the forward's packed stream; the
 * first pass fills old_logp [N][max_new] (when mu > 1) and measures how far the
 * trainer's log-probs are from the sampler's. */
static void micro_gather(Trainer *t, const Step *d, int s0, int pass, float *old_logp, Micro *mb, TrainStats *ts) {
    const int Lmax = t->r.max_completion_length, L = mb->L;
    for (int i = 0; i < mb->B; i++) {
        const RolloutSample *s = &d->s[s0 + i];
        int act = sample_active(t, s);
        for (int k = 0; k < s->n; k++) {
            float x = mb->lp[mb->off[i] + k];
            mb->nl[(long)i * L + k] = x;
            mb->en[(long)i * L + k] = mb->ent[mb->off[i] + k];
            mb->mk[(long)i * L + k] = (float)act;
            if (pass == 0 && act) {
                double e = fabs((double)x - (double)s->logp[k]);
                ts->diff_max = e > ts->diff_max ? e : ts->diff_max, ts->diff_sum += e, ts->diff_n++;
            }
            if (!old_logp) continue;
            float *o = old_logp + (long)(s0 + i) * Lmax + k;
            if (pass == 0) *o = x;
            mb->ol[(long)i * L + k] = *o;
        }
    }
}

static int loss_opts(const Trainer *t, const Step *d, int nmicro, double num_items, GrpoLossOpts *lo, Err *err) {
    const Recipe *r = &t->r;
    grpo_loss_opts_default(lo);
    if (grpo_loss_type_parse(r->loss_type, &lo->loss_type, err) ||
        grpo_is_level_parse(r->importance_sampling_level, &lo->is_level, err) || grpo_kl_parse(r->kl_estimator, &lo->kl, err))
        return -1;
    lo->epsilon_low = (float)r->epsilon, lo->epsilon_high = (float)r->epsilon_high, lo->beta = (float)r->beta;
    lo->grad_accum = nmicro, lo->max_completion_length = r->max_completion_length, lo->num_items = num_items;
    lo->num_seqs = d->N;
    return 0;
}

/* One pass over the step's samples in micro-batches: forward (and the
 * reference's), loss gradient, backward. old_logp / ref_logp [N][max_new]
 * are filled on the first pass (old only when mu > 1: then it is pi_old). */
static int train_pass(Trainer *t, const Step *d, int pass, float *old_logp, float *ref_logp, TrainStats *ts, Err *err) {
    const Recipe *r = &t->r;
    const int N = d->N, MB = r->micro_batch > 0 ? r->micro_batch : N;
    const int nmicro = (N + MB - 1) / MB;
    const float temp = (float)(r->temperature > 0 ? r->temperature : 1.0);
    double num_items = 0;
    for (int i = 0; i < N; i++)
        if (sample_active(t, &d->s[i])) num_items += d->s[i].n;
    ts->pass_ratio_sum = ts->pass_ntok = ts->pass_clip_region = ts->pass_clip_count = 0;
    if (num_items == 0) return 0;
    GrpoLossOpts lo;
    if (loss_opts(t, d, nmicro, num_items, &lo, err)) return -1;
    for (int s0 = 0; s0 < N; s0 += MB) {
        Micro mb;
        micro_alloc(&mb, d, s0, N - s0 < MB ? N - s0 : MB);
        if (mb.ntok == 0) { /* every sample refused: nothing to train */
            micro_free(&mb);
            continue;
        }
        int rc = t->has_ref ? micro_ref(t, d, s0, pass, ref_logp, &mb, temp, err) : 0;
        if (!rc) rc = micro_forward(t, 0, &mb, temp, mb.lp, mb.ent, err);
        if (!rc) {
            micro_gather(t, d, s0, pass, old_logp, &mb, ts);
            /* mu = 1: pi_old is the current policy detached, the ratio is exactly 1 */
            GrpoLossIn in = {mb.B, mb.L, mb.nl, old_logp ? mb.ol : NULL, t->has_ref ? mb.rl : NULL, mb.adv, mb.mk, mb.en};
            GrpoLossGrad gr = {mb.g, NULL};
            GrpoLossStats ls;
            rc = grpo_loss(&lo, &in, &gr, &ls, err);
            if (!rc) {
                for (int i = 0; i < mb.B; i++)
                    for (int k = 0; k < d->s[s0 + i].n; k++) mb.dl[mb.off[i] + k] = mb.g[(long)i * mb.L + k];
                rc = micro_backward(t, &mb, err);
            }
            if (!rc) {
                ts->loss += ls.loss, ts->ntok += ls.ntok, ts->entropy_sum += ls.entropy_sum, ts->kl_sum += ls.kl_sum;
                ts->clip_low += ls.clip_low_sum, ts->clip_high += ls.clip_high_sum;
                ts->clip_region += ls.clip_region_sum, ts->clip_count += ls.clip_count;
                ts->pass_ratio_sum += ls.ratio_mean * ls.ntok, ts->pass_ntok += ls.ntok;
                ts->pass_clip_region += ls.clip_region_sum, ts->pass_clip_count += ls.clip_count;
            }
        }
        micro_free(&mb);
        if (rc) return -1;
    }
    return 0;
}

/* ---- the store --------------------------------------------------------------- */

static int step_metrics(Trainer *t, const Step *d, const GrpoAdvStats *as, const TrainStats *ts,
                        const TrainerStepInfo *in, Err *err) {
    const int N = d->N, K = t->K;
    double len = 0, clipped = 0;
    for (int i = 0; i < N; i++) len += d->s[i].n, clipped += d->s[i].finish == FINISH_LENGTH;
    double tot = in->t_rollout + in->t_reward + in->t_train + in->t_log;
    struct { const char *n; double v; int on; } ms[] = {
        {STORE_M_REWARD, as->reward_mean, 1}, {STORE_M_REWARD_STD, as->reward_std, 1},
        {STORE_M_FRAC_ZERO_STD, as->frac_reward_zero_std, 1}, {STORE_M_MEAN_LENGTH, len / N, 1},
        {STORE_M_CLIPPED_RATIO, clipped / N, 1}, {STORE_M_ENTROPY, ts->ntok ? ts->entropy_sum / ts->ntok : NAN, 1},
        {STORE_M_CLIP_LOW, ts->clip_count ? ts->clip_low / ts->clip_count : NAN, 1},
        {STORE_M_CLIP_HIGH, ts->clip_count ? ts->clip_high / ts->clip_count : NAN, 1},
        {STORE_M_CLIP_REGION, ts->clip_count ? ts->clip_region / ts->clip_count : NAN, 1},
        {STORE_M_KL, ts->ntok ? ts->kl_sum / ts->ntok : NAN, t->has_ref},
        {STORE_M_GRAD_NORM, ts->info.grad_norm, 1}, {STORE_M_LR, ts->info.lr, 1}, {STORE_M_LOSS, ts->loss, 1},
        {STORE_M_NUM_TOKENS, ts->ntok, 1}, {"timing_s/rollout", in->t_rollout, 1}, {"timing_s/reward", in->t_reward, 1},
        {"timing_s/train", in->t_train, 1}, {"timing_s/log", in->t_log, 1}, {STORE_M_STEP_TIME, tot, 1},
        {STORE_M_TOKENS_PER_S, d->stats.tokens_per_s, 1}, {"step_skipped", ts->info.skipped, 1},
        {"sampler_logp_diff/max", in->sampler_logp_diff_max, 1}, {"sampler_logp_diff/mean", in->sampler_logp_diff_mean, 1},
        {"skipped/prompts_missing_field", in->skipped_missing_field, 1},
        {"skipped/prompts_too_long", in->skipped_too_long, 1}, {"groups_all_nil", in->groups_all_nil, 1},
        {"dynamic_sampling/gen_rounds", in->gen_rounds, t->r.dynamic_sampling},
        {"dynamic_sampling/groups_dropped", in->groups_dropped, t->r.dynamic_sampling},
        {"dynamic_sampling/reward_generated", d->gen_reward_n ? d->gen_reward_sum / d->gen_reward_n : NAN,
         t->r.dynamic_sampling},
    };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (ms[i].on && store_metric(t->st, ms[i].n, ms[i].v, err)) return -1;
    for (int k = 0; k < K; k++) { /* per reward function mean: rewards/NAME/mean as TRL */
        double s = 0;
        int n = 0;
        for (int i = 0; i < N; i++)
            if (!isnan(d->per_func[i * K + k])) s += d->per_func[i * K + k], n++;
        char name[160];
        snprintf(name, sizeof name, "rewards/%s/mean", reward_set_name(t->rs, k));
        if (store_metric(t->st, name, n ? s / n : NAN, err)) return -1;
    }
    return 0;
}

/* The step's transaction: every rollout and reward component, router load,
 * then the metrics (timing_s/log: the writes so far, the commit not included). */
static int step_store(Trainer *t, long step, const Step *d, const GrpoAdvStats *as, const TrainStats *ts,
                      TrainerStepInfo *in, Err *err) {
    Store *st = t->st;
    const int N = d->N, K = t->K;
    const double t0 = clock_now();
    if (store_step_begin(st, step, err)) return -1;
    StoreReward *sr = xcalloc(K, sizeof *sr);
    for (int i = 0; i < N; i++) {
        const RolloutSample *s = &d->s[i];
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
    if (E && nl > 0 && store_router_load(st, L0, nl, E, t->load + (long)L0 * E, err)) goto fail;
    in->t_log = clock_now() - t0;
    if (step_metrics(t, d, as, ts, in, err)) goto fail;
    return store_step_commit(st, err);
fail:
    store_step_abort(st);
    return -1;
}

/* Mean of the accuracy-like reward (runctx_accuracy_index; NaN if none). */
static double accuracy_of(const Trainer *t, const Step *d) {
    int k = runctx_accuracy_index(t->rs);
    if (k < 0) return NAN;
    double s = 0;
    int n = 0;
    for (int i = 0; i < d->N; i++)
        if (!isnan(d->per_func[i * t->K + k])) s += d->per_func[i * t->K + k], n++;
    return n ? s / n : NAN;
}

/* ---- the reference model ----------------------------------------------------- */

/* TRL SyncRefModelCallback: ref <- alpha * policy + (1 - alpha) * ref over the
 * trainable tensors (TRL mixes model.parameters(); buffers such as the router's
 * correction bias are not parameters there). */
static void ref_mixup(Trainer *t) {
    const float a = (float)t->r.ref_model_mixup_alpha;
    for (int i = 0; i < t->m.nparams; i++) {
        const Param *p = &t->m.ptab[i];
        if (!p->trainable) continue;
        float *dst = t->ref.params + p->offset;
        const float *src = t->m.params + p->offset;
        for (size_t k = 0; k < p->numel; k++) dst[k] = dst[k] * (1.0f - a) + src[k] * a;
    }
}

/* The reference must be the policy's architecture: same tensors, same shapes. */
static int ref_check(const Trainer *t, const char *dir, Err *err) {
    const Model *a = &t->m, *b = &t->ref;
    if (a->nparams != b->nparams || a->cfg.vocab_size != b->cfg.vocab_size)
        return err_set(err, ERR_INPUT, "ref_model %s: %d tensors, vocab_size %d; the policy (%s) has %d tensors, vocab_size %d",
                       dir, b->nparams, b->cfg.vocab_size, t->r.model, a->nparams, a->cfg.vocab_size);
    for (int i = 0; i < a->nparams; i++) {
        const Param *p = &a->ptab[i], *q = &b->ptab[i];
        if (strcmp(p->name, q->name) || p->numel != q->numel || memcmp(p->shape, q->shape, sizeof p->shape))
            return err_set(err, ERR_INPUT, "ref_model %s: tensor %s [%lld, %lld] does not match the policy's %s [%lld, %lld]",
                           dir, q->name, (long long)q->shape[0], (long long)q->shape[1], p->name,
                           (long long)p->shape[0], (long long)p->shape[1]);
    }
    return 0;
}

/* ---- one step ------------------------------------------------------------------ */

static void step_info(const Trainer *t, long step, const Step *d, const GrpoAdvStats *as, const TrainStats *ts,
                      TrainerStepInfo *in) {
    double len = 0;
    for (int i = 0; i < d->N; i++) len += d->s[i].n;
    in->step = step + 1;
    in->prompt_tokens = d->stats.prompt_tokens, in->tokens_generated = d->stats.new_tokens;
    in->tokens_per_s = d->stats.tokens_per_s;
    in->tokens_trained = t->r.num_iterations > 0 ? ts->ntok / t->r.num_iterations : ts->ntok;
    in->prompts = d->P, in->samples = d->N;
    in->reward_mean = as->reward_mean, in->reward_std = as->reward_std, in->accuracy = accuracy_of(t, d);
    in->mean_length = d->N ? len / d->N : 0;
    in->entropy = ts->ntok ? ts->entropy_sum / ts->ntok : NAN;
    in->kl = t->has_ref && ts->ntok ? ts->kl_sum / ts->ntok : NAN;
    in->clip_region = ts->clip_count ? ts->clip_region / ts->clip_count : 0;
    in->loss = ts->loss, in->grad_norm = ts->info.grad_norm, in->lr = ts->info.lr;
    in->ratio_mean_last = ts->pass_ntok ? ts->pass_ratio_sum / ts->pass_ntok : NAN;
    in->clip_region_last = ts->pass_clip_count ? ts->pass_clip_region / ts->pass_clip_count : NAN;
    in->sampler_logp_diff_max = ts->diff_n ? ts->diff_max : NAN;
    in->sampler_logp_diff_mean = ts->diff_n ? ts->diff_sum / ts->diff_n : NAN;
}

/* mu passes over the step's samples, one optimizer step each. */
static int step_train(Trainer *t, long step, const Step *d, TrainStats *ts, TrainerStepInfo *in, Err *err) {
    const ModelConfig *c = &t->m.cfg;
    const int mu = t->r.num_iterations, Lmax = t->r.max_completion_length;
    float *old = mu > 1 ? xcalloc((size_t)d->N * Lmax, sizeof(float)) : NULL;
    float *ref = t->has_ref ? xcalloc((size_t)d->N * Lmax, sizeof(float)) : NULL;
    memset(t->load, 0, sizeof(int64_t) * c->num_hidden_layers * (c->n_routed_experts ? c->n_routed_experts : 1));
    for (int it = 0; it < mu; it++) {
        int rc = t->cuda ? trainer_cuda_zero_grads(t->cuda, err) : (model_zero_grads(&t->m), 0);
        if (!rc) rc = train_pass(t, d, it, old, ref, ts, err);
        if (!rc && t->cuda) rc = trainer_cuda_step(t->cuda, lr_schedule_at(&t->sch, step), &ts->info, err);
        else if (!rc) adamw_step(&t->opt, t->m.params, t->m.grads, lr_schedule_at(&t->sch, step), &ts->info);
        if (rc) { free(old), free(ref); return -1; }
        if (ts->info.skipped) {
            in->update_skipped = 1;
            fprintf(stderr, "grpo train: step %ld: non-finite gradient in %s, update skipped\n", step + 1,
                    ts->info.bad_param);
        }
    }
    free(old), free(ref);
    if (t->r.router_bias_gamma > 0 && c->n_routed_experts) {
        optim_router_bias_update_model(&t->m, t->load, (float)t->r.router_bias_gamma);
        if (t->cuda && trainer_cuda_upload_router_bias(t->cuda, &t->m, err)) return -1;
    }
    if (t->has_ref && t->r.sync_ref_model && t->r.ref_model_sync_steps > 0 && (step + 1) % t->r.ref_model_sync_steps == 0) {
        if (t->cuda && trainer_cuda_sync_host(t->cuda, &t->m, NULL, err)) return -1;
        ref_mixup(t);
        if (t->cuda && trainer_cuda_upload_ref(t->cuda, &t->ref, err)) return -1;
    }
    return 0;
}

int trainer_step(Trainer *t, long step, TrainerStepInfo *out, Err *err) {
    TrainerStepInfo in = {0};
    Step d = {0};
    GrpoAdvStats as;
    TrainStats ts = {0};
    SkipCount sk = {0};
    int rc = -1;
    if (step_collect(t, step, &d, &in, &sk, err)) goto done;
    double t1 = clock_now();
    if (step_advantages(t, step, &d, &as, &in, err)) goto done;
    double t2 = clock_now();
    in.t_reward += t2 - t1;
    in.skipped_missing_field = sk.missing_field, in.skipped_too_long = sk.too_long;
    if (sk.missing_field + sk.too_long)
        fprintf(stderr, "grpo train: step %ld: skipped %d rows: %d without a usable prompt%s%s%s, %d too long%s%s%s\n",
                step + 1, sk.missing_field + sk.too_long, sk.missing_field, sk.missing_field ? " (first " : "",
                sk.first_missing, sk.missing_field ? ")" : "", sk.too_long, sk.too_long ? " (first " : "", sk.first_long,
                sk.too_long ? ")" : "");
    if (step_train(t, step, &d, &ts, &in, err)) goto done;
    double t3 = clock_now();
    in.t_train = t3 - t2;
    step_info(t, step, &d, &as, &ts, &in);
    if (step_store(t, step, &d, &as, &ts, &in, err)) goto done;
    in.t_log = clock_now() - t3;
    rc = 0;
done:
    step_free(&d);
    if (out) *out = in;
    return rc;
}

/* ---- checkpoints ------------------------------------------------------------- */

int trainer_save(Trainer *t, long step, Err *err) {
    char dir[1200], path[1300];
    snprintf(dir, sizeof dir, "%s/checkpoints/step-%ld", t->rundir, step);
    const char *tokdir = t->r.tokenizer[0] ? t->r.tokenizer : t->r.model;
    if (t->cuda && trainer_cuda_sync_host(t->cuda, &t->m, &t->opt, err)) return -1; /* the GPU's weights and moments */
    if (runctx_save(&t->m, tokdir, dir, t->r.save_dtype, err)) return -1;
    if (t->has_ref && t->r.sync_ref_model) { /* a re-synced reference is trainer state */
        snprintf(path, sizeof path, "%s/ref", dir);
        if (runctx_save(&t->ref, tokdir, path, t->r.save_dtype, err)) return -1;
    }
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

/* ---- open / close ------------------------------------------------------------ */

static int recipe_check(const Recipe *r, const char *recipe_path, Err *err) {
    if (r->n_rewards == 0) return err_set(err, ERR_INPUT, "recipe %s: 'rewards' lists no reward script", recipe_path);
    if (r->num_generations < 2) return err_set(err, ERR_INPUT, "recipe: num_generations must be >= 2 (got %d)", r->num_generations);
    if (r->prompts_per_step < 1 || r->max_steps < 1 || r->num_iterations < 1)
        return err_set(err, ERR_INPUT, "recipe: prompts_per_step, max_steps and num_iterations must be >= 1");
    if (r->beta < 0) return err_set(err, ERR_INPUT, "recipe: beta must be >= 0 (got %g)", r->beta);
    if (r->sync_ref_model && (r->ref_model_mixup_alpha < 0 || r->ref_model_mixup_alpha > 1 || r->ref_model_sync_steps < 1))
        return err_set(err, ERR_INPUT, "recipe: sync_ref_model needs ref_model_sync_steps >= 1 and ref_model_mixup_alpha in [0, 1]");
    if (r->max_num_gen_batches < 0) return err_set(err, ERR_INPUT, "recipe: max_num_gen_batches must be >= 0");
    if (strcmp(r->device, "cpu") && strcmp(r->device, "cuda"))
        return err_set(err, ERR_INPUT, "recipe: device must be \"cpu\" or \"cuda\" (got \"%s\")", r->device);
    GrpoKl kl;
    return grpo_kl_parse(r->kl_estimator, &kl, err);
}

/* The reference: the run's initial model (or ref_model), or the re-synced copy
 * saved with the checkpoint being resumed. */
static int ref_open(Trainer *t, const char *init_model, long from, Err *err) {
    char dir[1300];
    snprintf(dir, sizeof dir, "%s", t->r.ref_model[0] ? t->r.ref_model : init_model);
    if (from > 0 && t->r.sync_ref_model) {
        snprintf(dir, sizeof dir, "%s/checkpoints/step-%ld/ref", t->rundir, from);
        char cfg[1400];
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        if (access(cfg, R_OK))
            return err_set(err, ERR_INPUT, "%s: missing (sync_ref_model saves the reference with each checkpoint)", dir);
    }
    ModelOpts o = {0};
    if (model_load(&t->ref, dir, &o, err)) return err_wrap(err, "ref_model");
    t->has_ref = 1;
    return ref_check(t, dir, err);
}

static int trainer_open_(Trainer *t, const char *recipe_path, int resume, Err *err) {
    Recipe *r = &t->r;
    if (recipe_check(r, recipe_path, err)) return -1;
    snprintf(t->rundir, sizeof t->rundir, "%s/%s", r->output_dir, r->name);
    char init_model[sizeof r->model];
    snprintf(init_model, sizeof init_model, "%s", r->model);
    long cursor = 0, from = resume ? find_resume(t, &cursor) : 0;
    if (from > 0) /* continue from the checkpoint: its weights, optimizer and data cursor */
        snprintf(r->model, sizeof r->model, "%s/checkpoints/step-%ld", t->rundir, from);
    if (runctx_mkdirs(t->rundir, err) || runctx_load(r, &t->m, &t->tok, err)) return -1;
    if (r->beta > 0 && ref_open(t, init_model, from, err)) return -1;
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
    if (!strcmp(r->device, "cuda") && !(t->cuda = trainer_cuda_open(&t->m, t->has_ref ? &t->ref : NULL, &t->opt, err)))
        return -1;
    if (lr_schedule_parse(r->lr_scheduler_type, &t->sch.type, err)) return -1;
    t->sch.lr = r->learning_rate, t->sch.total_steps = r->max_steps, t->sch.num_cycles = 0.5;
    t->sch.warmup_steps = lr_warmup_steps(r->warmup_ratio, r->max_steps);
    const ModelConfig *c = &t->m.cfg;
    t->load = xcalloc((size_t)c->num_hidden_layers * (c->n_routed_experts ? c->n_routed_experts : 1), sizeof(int64_t));
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
    t->start_step = from;
    return rc;
}

int trainer_open(Trainer *t, const Recipe *r, const char *recipe_path, int resume, Err *err) {
    memset(t, 0, sizeof *t);
    t->r = *r;
    if (trainer_open_(t, recipe_path, resume, err)) {
        trainer_close(t);
        return -1;
    }
    return 0;
}

void trainer_close(Trainer *t) {
    trainer_cuda_close(t->cuda);
    if (t->st) store_close(t->st);
    if (t->rs) reward_set_free(t->rs);
    if (t->tok) tok_free(t->tok);
    adamw_free(&t->opt);
    model_free(&t->m);
    if (t->has_ref) model_free(&t->ref);
    dataset_free(&t->data);
    free(t->order);
    free(t->load);
    memset(t, 0, sizeof *t);
}
