/* rollout: see rollout.h. One call owns its latent cache: P'*G slots (P' the
 * prompts that passed the checks) of max(prompt_len + limit) - 1 positions,
 * because the last sampled token is never fed back. The CPU engine (model_extend,
 * kvcache.h, the sampler on OpenMP threads) is at the end. */
#include "base/clock.h"
#include "rl/rollout.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/xalloc.h"
#include "kernels/cpu/gemm.h"
#include "model/kvcache.h"

const char *finish_reason_name(FinishReason r) {
    switch (r) {
    case FINISH_EOS: return "eos";
    case FINISH_STOP: return "stop";
    case FINISH_LENGTH: return "length";
    case FINISH_ERROR: return "error";
    default: return "running";
    }
}

RolloutOpts rollout_defaults(void) {
    return (RolloutOpts){.sampling = sampler_defaults(), .group_size = 8, .max_new_tokens = 512};
}

/* State of one call. Sample i = p*G + g; groups are the prompts that passed. */
typedef struct Run {
    const RolloutEngine *e;
    const ModelConfig *c;
    const RolloutOpts *o;
    RolloutResult *res;
    int G, V, ngroups;
    int *slot;     /* [P*G] cache slot, -1 for a refused prompt */
    int *limit;    /* [P*G] token limit of the sample */
    int *cap;      /* [P*G] allocated token capacity */
    int eos[16], neos;
    int open;      /* the engine's cache is open */
} Run;

static int check_opts(const ModelConfig *c, int P, const int *const *prompts, const int *len, const RolloutOpts *o,
                      Err *err) {
    if (sampler_check(&o->sampling, err)) return err_wrap(err, "rollout");
    if (o->group_size < 1) return err_set(err, ERR_INPUT, "rollout: group_size must be >= 1 (got %d)", o->group_size);
    if (o->max_new_tokens < 1)
        return err_set(err, ERR_INPUT, "rollout: max_new_tokens must be >= 1 (got %d)", o->max_new_tokens);
    if (o->max_seq_len < 0 || o->prefill_tokens < 0)
        return err_set(err, ERR_INPUT, "rollout: max_seq_len and prefill_tokens must be >= 0 (0 = default)");
    if (P < 0 || (P > 0 && (!prompts || !len))) return err_set(err, ERR_INPUT, "rollout: no prompts given (P = %d)", P);
    if (o->eos_ids && (o->n_eos < 0 || o->n_eos > 16))
        return err_set(err, ERR_INPUT, "rollout: between 0 and 16 EOS ids (got %d)", o->n_eos);
    for (int i = 0; o->eos_ids && i < o->n_eos; i++)
        if (o->eos_ids[i] < 0 || o->eos_ids[i] >= c->vocab_size)
            return err_set(err, ERR_INPUT, "rollout: EOS id %d is outside the vocabulary [0, %d)", o->eos_ids[i],
                           c->vocab_size);
    return 0;
}

/* Why prompt p cannot be generated (into msg), or 0 when it can. */
static int check_prompt(const ModelConfig *c, int ctx, int ctx_is_model, int p, const int *ids, int len, char *msg,
                        size_t n) {
    if (len <= 0) {
        snprintf(msg, n, "prompt %d is empty: a completion needs at least one prompt token (e.g. BOS)", p);
        return -1;
    }
    for (int t = 0; t < len; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size) {
            snprintf(msg, n, "prompt %d: token %d at position %d is outside the vocabulary [0, %d)", p, ids[t], t,
                     c->vocab_size);
            return -1;
        }
    if (len >= ctx) {
        snprintf(msg, n, "prompt %d has %d tokens but the context holds %d (%s): no room for a completion", p, len, ctx,
                 ctx_is_model ? "model max_position_embeddings" : "rollout max_seq_len");
        return -1;
    }
    return 0;
}

/* Validates prompts, assigns slots and limits, allocates the result and cache. */
static int run_setup(Run *r, int P, const int *const *prompts, const int *len, Err *err) {
    const RolloutOpts *o = r->o;
    const ModelConfig *c = r->c;
    const int G = o->group_size, N = P * G;
    int ctx = c->max_position_embeddings, ctx_is_model = 1;
    if (o->max_seq_len > 0 && o->max_seq_len < ctx) ctx = o->max_seq_len, ctx_is_model = 0;
    RolloutResult *res = r->res;
    res->nsamples = N;
    res->s = xcalloc(N > 0 ? N : 1, sizeof *res->s);
    r->slot = xmalloc(sizeof(int) * (N + 1)), r->limit = xmalloc(sizeof(int) * (N + 1));
    r->cap = xcalloc(N + 1, sizeof(int));
    int max_len = 1;
    for (int p = 0; p < P; p++) {
        char msg[256];
        int bad = check_prompt(c, ctx, ctx_is_model, p, prompts[p], len[p], msg, sizeof msg);
        int lim = bad ? 0 : (ctx - len[p] < o->max_new_tokens ? ctx - len[p] : o->max_new_tokens);
        for (int g = 0; g < G; g++) {
            RolloutSample *s = &res->s[p * G + g];
            s->prompt = p, s->index = g;
            r->slot[p * G + g] = bad ? -1 : r->ngroups * G + g;
            r->limit[p * G + g] = lim;
            if (bad) s->finish = FINISH_ERROR, snprintf(s->error, sizeof s->error, "%s", msg);
        }
        if (bad) {
            res->stats.failed_prompts++;
            continue;
        }
        r->ngroups++;
        if (len[p] + lim - 1 > max_len) max_len = len[p] + lim - 1;
    }
    if (!r->ngroups) return 0;
    if (r->e->open(r->e->ctx, r->ngroups * G, max_len, &res->stats.cache_bytes, err)) return err_wrap(err, "rollout");
    r->open = 1;
    res->stats.cache_slots = r->ngroups * G, res->stats.cache_len = max_len;
    return 0;
}

/* Prefills every accepted prompt once, whole prompts per model_extend call up
 * to the token budget, into the group's first slot; logits row = group; then
 * copies the cache to the group's other slots. */
static int run_prefill(Run *r, int P, const int *const *prompts, const int *len, Err *err) {
    const int G = r->G, budget = r->o->prefill_tokens ? r->o->prefill_tokens : 8192;
    int *ids = NULL, *slots = xmalloc(sizeof(int) * (P + 1)), *ntok = xmalloc(sizeof(int) * (P + 1));
    int cap = 0, rc = 0;
    for (int p = 0, gi = 0; p < P && !rc;) {
        int nseq = 0, ntot = 0, g0 = gi;
        for (; p < P; p++) {
            if (r->slot[p * G] < 0) continue;
            if (nseq && ntot + len[p] > budget) break;
            if (ntot + len[p] > cap) ids = xrealloc(ids, sizeof(int) * (cap = 2 * (ntot + len[p])));
            memcpy(ids + ntot, prompts[p], sizeof(int) * len[p]);
            slots[nseq] = r->slot[p * G], ntok[nseq++] = len[p], ntot += len[p], gi++;
        }
        if (!nseq) break;
        rc = r->e->extend(r->e->ctx, nseq, slots, ntok, ids, g0, err);
        r->res->stats.prompt_tokens += ntot;
        for (int k = 0; k < nseq && !rc; k++)
            for (int g = 1; g < G && !rc; g++) rc = r->e->copy(r->e->ctx, slots[k] + g, slots[k], err);
    }
    free(ids), free(slots), free(ntok);
    return rc ? err_wrap(err, "rollout: prefill") : 0;
}

static int is_eos(const Run *r, int tok) {
    for (int i = 0; i < r->neos; i++)
        if (r->eos[i] == tok) return 1;
    return 0;
}

static void append(Run *r, int i, const SampleOut *so) {
    RolloutSample *s = &r->res->s[i];
    if (s->n == r->cap[i]) {
        r->cap[i] = r->cap[i] ? 2 * r->cap[i] : 32;
        s->tokens = xrealloc(s->tokens, sizeof(int) * r->cap[i]);
        s->logp = xrealloc(s->logp, sizeof(float) * r->cap[i]);
        s->logp_filtered = xrealloc(s->logp_filtered, sizeof(float) * r->cap[i]);
    }
    s->tokens[s->n] = so->token, s->logp[s->n] = so->logp, s->logp_filtered[s->n] = so->logp_filtered;
    s->logp_sum += so->logp;
    s->n++;
}

/* Samples the next token of run[0..nrun) from logits rows row[k]. Every
 * running sample has as many tokens as the others (all start together and
 * gain one per step), so one step index serves them all. */
static int sample_all(Run *r, int nrun, const int *run, const int *row, SampleOut *out, Err *err) {
    uint64_t *id = xmalloc(sizeof(uint64_t) * (nrun + 1));
    for (int k = 0; k < nrun; k++) id[k] = r->o->sample_base + (uint64_t)run[k];
    int bad = -1;
    int rc = r->e->sample(r->e->ctx, &r->o->sampling, nrun, row, r->o->seed, id, (uint64_t)r->res->s[run[0]].n, out,
                          &bad, err);
    free(id);
    if (rc && bad >= 0)
        return err_set(err, ERR_WORK, "rollout: sample %d (prompt %d), token %d: the model's logits are not finite",
                       run[bad], r->res->s[run[bad]].prompt, r->res->s[run[bad]].n);
    return rc ? err_wrap(err, "rollout: sampler") : 0;
}

/* The decode loop: sample, record, finish, and feed the survivors back. */
static int run_decode(Run *r, double t_start, Err *err) {
    const int N = r->res->nsamples;
    RolloutStats *st = &r->res->stats;
    int *run = xmalloc(sizeof(int) * (N + 1)), *row = xmalloc(sizeof(int) * (N + 1));
    int *slots = xmalloc(sizeof(int) * (N + 1)), *ids = xmalloc(sizeof(int) * (N + 1));
    int *ones = xmalloc(sizeof(int) * (N + 1));
    SampleOut *out = xmalloc(sizeof(SampleOut) * (N + 1));
    int nrun = 0, rc = 0;
    for (int i = 0; i < N; i++)
        if (r->slot[i] >= 0) run[nrun] = i, row[nrun++] = r->slot[i] / r->G; /* first token: the group's row */
    for (int k = 0; k < N; k++) ones[k] = 1;
    while (nrun > 0) {
        double t0 = clock_now();
        if ((rc = sample_all(r, nrun, run, row, out, err))) break;
        st->sample_s += clock_now() - t0;
        int nn = 0;
        for (int k = 0; k < nrun; k++) {
            int i = run[k];
            RolloutSample *s = &r->res->s[i];
            append(r, i, &out[k]);
            st->new_tokens++;
            if (is_eos(r, out[k].token)) s->finish = FINISH_EOS;
            else if (r->o->stop && r->o->stop(r->o->stop_ctx, i, s->tokens, s->n)) s->finish = FINISH_STOP;
            else if (s->n >= r->limit[i]) s->finish = FINISH_LENGTH;
            if (s->finish) {
                s->seconds = clock_now() - t_start;
                continue;
            }
            run[nn] = i, row[nn] = nn, slots[nn] = r->slot[i], ids[nn++] = out[k].token;
        }
        nrun = nn;
        if (!nrun) break;
        t0 = clock_now();
        rc = r->e->extend(r->e->ctx, nrun, slots, ones, ids, 0, err);
        st->decode_s += clock_now() - t0;
        st->steps++;
        if (rc) {
            err_wrap(err, "rollout: decode step %d", st->steps);
            break;
        }
    }
    free(run), free(row), free(slots), free(ids), free(ones), free(out);
    return rc ? -1 : 0;
}

int rollout_generate_on(const RolloutEngine *e, const ModelConfig *c, int P, const int *const *prompts,
                        const int *prompt_len, const RolloutOpts *o, RolloutResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    if (check_opts(c, P, prompts, prompt_len, o, err)) return -1;
    double t_start = clock_now();
    Run r = {.e = e, .c = c, .o = o, .res = res, .G = o->group_size, .V = c->vocab_size};
    if (o->eos_ids) {
        r.neos = o->n_eos;
        memcpy(r.eos, o->eos_ids, sizeof(int) * o->n_eos);
    } else if (c->eos_token_id >= 0 && c->eos_token_id < r.V) {
        r.neos = 1, r.eos[0] = c->eos_token_id;
    }
    res->stats.prompts = P, res->stats.samples = P * o->group_size;
    int rc = run_setup(&r, P, prompts, prompt_len, err);
    if (!rc && r.ngroups) {
        double t0 = clock_now();
        rc = run_prefill(&r, P, prompts, prompt_len, err);
        res->stats.prefill_s = clock_now() - t0;
        if (!rc) rc = run_decode(&r, t_start, err);
    }
    if (r.open) e->close(e->ctx);
    free(r.slot), free(r.limit), free(r.cap);
    res->stats.total_s = clock_now() - t_start;
    res->stats.tokens_per_s = res->stats.total_s > 0 ? res->stats.new_tokens / res->stats.total_s : 0;
    if (rc) rollout_result_free(res);
    return rc;
}

/* ---- the CPU engine ------------------------------------------------------------ */

typedef struct CpuEngine {
    Model *m;
    KvCache kv;
    float *logits; /* [nslots, V] */
} CpuEngine;

static int cpu_open(void *ctx, int nslots, int max_len, size_t *bytes, Err *err) {
    CpuEngine *c = ctx;
    const ModelConfig *cfg = &c->m->cfg;
    if (kvcache_create(&c->kv, cfg, nslots, max_len, err)) return -1;
    *bytes = (size_t)cfg->num_hidden_layers * nslots * max_len * (c->kv.dc + c->kv.dr) * sizeof(float);
    if (!(c->logits = malloc(sizeof(float) * nslots * (size_t)cfg->vocab_size))) {
        kvcache_free(&c->kv);
        return err_set(err, ERR_WORK, "cannot allocate logits for %d slots", nslots);
    }
    gemm_weights_frozen(1); /* the weights do not change until the rollout ends: pack them once */
    return 0;
}

static void cpu_close(void *ctx) {
    CpuEngine *c = ctx;
    gemm_weights_frozen(0);
    kvcache_free(&c->kv);
    free(c->logits), c->logits = NULL;
}

static int cpu_extend(void *ctx, int nseq, const int *slots, const int *ntok, const int *ids, int row0, Err *err) {
    CpuEngine *c = ctx;
    return model_extend(c->m, &c->kv, nseq, slots, ntok, ids, c->logits + (size_t)row0 * c->m->cfg.vocab_size, 0, err);
}

static int cpu_copy(void *ctx, int dst, int src, Err *err) {
    (void)err;
    kvcache_copy(&((CpuEngine *)ctx)->kv, dst, src);
    return 0;
}

/* In parallel: each sample's random numbers are its own, so the thread count is moot. */
static int cpu_sample(void *ctx, const SamplerOpts *o, int n, const int *row, uint64_t seed, const uint64_t *id,
                      uint64_t step, SampleOut *out, int *bad, Err *err) {
    CpuEngine *c = ctx;
    const int V = c->m->cfg.vocab_size;
    int *st = xcalloc(n + 1, sizeof(int));
#pragma omp parallel if ((long)n * V > (1L << 16)) /* small rows: threads cost more than they save */
    {
        SamplerWork *w = sampler_work_new(V);
        Err e;
#pragma omp for schedule(dynamic, 4)
        for (int k = 0; k < n; k++)
            st[k] = sampler_sample(o, c->logits + (size_t)row[k] * V, w, seed, id[k], step, &out[k], &e);
        sampler_work_free(w);
    }
    *bad = -1;
    for (int k = 0; k < n && *bad < 0; k++)
        if (st[k]) *bad = k;
    free(st);
    return *bad >= 0 ? err_set(err, ERR_WORK, "logits row %d not finite", row[*bad]) : 0;
}

int rollout_generate(Model *m, int P, const int *const *prompts, const int *prompt_len, const RolloutOpts *o,
                     RolloutResult *res, Err *err) {
    CpuEngine c = {.m = m};
    RolloutEngine e = {&c, cpu_open, cpu_close, cpu_extend, cpu_copy, cpu_sample};
    return rollout_generate_on(&e, &m->cfg, P, prompts, prompt_len, o, res, err);
}

void rollout_result_free(RolloutResult *res) {
    for (int i = 0; res->s && i < res->nsamples; i++)
        free(res->s[i].tokens), free(res->s[i].logp), free(res->s[i].logp_filtered);
    free(res->s);
    res->s = NULL, res->nsamples = 0;
}

void rollout_stats_print(const RolloutStats *st, FILE *f) {
    fprintf(f,
            "rollout: %d prompts (%d refused), %d samples, %ld prompt + %ld new tokens, %d decode steps in %.3f s "
            "(prefill %.3f, decode %.3f, sampler %.3f): %.1f new tokens/s; cache %.1f MB (%d slots x %d)\n",
            st->prompts, st->failed_prompts, st->samples, st->prompt_tokens, st->new_tokens, st->steps, st->total_s,
            st->prefill_s, st->decode_s, st->sample_s, st->tokens_per_s, st->cache_bytes / 1e6, st->cache_slots,
            st->cache_len);
}
