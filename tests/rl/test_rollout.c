/* test_rollout: the rollout engine on a random dsv3-tiny-1m model.
 * Same seed -> identical tokens and log-probs, also across thread counts; a
 * group's samples differ at T = 1; greedy decoding equals the argmax of
 * model_logits over the growing sequence (the full-forward path) token by
 * token; the recorded log-probs equal model_forward's (what the trainer
 * recomputes); EOS, stop callback and length finishes; bad prompts fail alone
 * and do not move the other samples' random streams (sample_base). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "rl/rollout.h"
#include "test.h"

enum { P = 3 };
static const int plen[P] = {5, 9, 2};
static int pbuf[P][16];
static const int *prompts[P];

static void make_prompts(int V) {
    for (int p = 0; p < P; p++) {
        for (int t = 0; t < plen[p]; t++) pbuf[p][t] = (int)((3 + 131L * t + 977L * p * p + 17L * p) % V);
        prompts[p] = pbuf[p];
    }
}

static int same_tokens(const RolloutResult *a, const RolloutResult *b) {
    if (a->nsamples != b->nsamples) return 0;
    for (int i = 0; i < a->nsamples; i++) {
        const RolloutSample *x = &a->s[i], *y = &b->s[i];
        if (x->n != y->n || x->finish != y->finish) return 0;
        if (memcmp(x->tokens, y->tokens, sizeof(int) * x->n) || memcmp(x->logp, y->logp, sizeof(float) * x->n))
            return 0;
    }
    return 1;
}

/* Largest |logp - model_forward's log-prob| over every sampled token. */
static double logp_vs_forward(Model *m, const RolloutResult *r, float T) {
    double worst = 0;
    for (int i = 0; i < r->nsamples; i++) {
        const RolloutSample *s = &r->s[i];
        int L = plen[s->prompt] + s->n - 1;
        if (s->n < 2) continue;
        int *ids = malloc(sizeof(int) * L), *tg = malloc(sizeof(int) * L);
        float *lp = malloc(sizeof(float) * L);
        memcpy(ids, prompts[s->prompt], sizeof(int) * plen[s->prompt]);
        memcpy(ids + plen[s->prompt], s->tokens, sizeof(int) * (s->n - 1));
        for (int t = 0; t < L; t++) tg[t] = t >= plen[s->prompt] - 1 ? s->tokens[t - plen[s->prompt] + 1] : -1;
        Batch b = {1, L, ids, tg, NULL};
        Err err = {0};
        CHECK(model_forward(m, &b, T, lp, NULL, &err) == 0, "%s", err.msg);
        for (int j = 0; j < s->n; j++) worst = fmax(worst, fabs(lp[plen[s->prompt] - 1 + j] - s->logp[j]));
        free(ids), free(tg), free(lp);
    }
    return worst;
}

/* stop callback of the test: sample 1 stops after 5 tokens, sample 6 after 1 */
static int stop_fn(void *ctx, int sample, const int *tokens, int n) {
    ((int *)ctx)[0]++;
    return (sample == 1 && n == 5) || (sample == 6 && n == 1);
}

static void check_sampling(Model *m) {
    RolloutOpts o = rollout_defaults();
    o.group_size = 4, o.max_new_tokens = 24, o.seed = 42;
    RolloutResult a, b, c;
    Err err = {0};
    CHECK(rollout_generate(m, P, prompts, plen, &o, &a, &err) == 0, "%s", err.msg);
    rollout_stats_print(&a.stats, stdout);
    long total = 0;
    int ok = 1;
    for (int i = 0; i < a.nsamples; i++) {
        const RolloutSample *s = &a.s[i];
        double sum = 0;
        total += s->n;
        for (int j = 0; j < s->n; j++) {
            sum += s->logp[j];
            if (!(s->logp[j] <= 0 && s->logp_filtered[j] <= 1e-6 && s->tokens[j] >= 0 &&
                  s->tokens[j] < m->cfg.vocab_size))
                ok = 0;
        }
        if (fabs(sum - s->logp_sum) > 1e-4 || s->prompt != i / 4 || s->index != i % 4) ok = 0;
        if (s->finish == FINISH_LENGTH && s->n != 24) ok = 0;
        if (s->finish == FINISH_EOS && s->tokens[s->n - 1] != m->cfg.eos_token_id) ok = 0;
        if (s->finish != FINISH_LENGTH && s->finish != FINISH_EOS) ok = 0;
    }
    CHECK(ok, "per-sample records are consistent (tokens, log-probs, finish)");
    CHECK(total == a.stats.new_tokens && a.stats.tokens_per_s > 0, "stats count %ld tokens", a.stats.new_tokens);
    /* same seed, same tokens; across thread counts too. (Only 1 and 2: a pool
     * thread that exits when the count drops leaks gemm's thread-local
     * scratch, which LeakSanitizer reports.) */
    int threads = omp_get_max_threads();
    for (int nt = 1; nt <= 2; nt++) {
        omp_set_num_threads(nt);
        CHECK(rollout_generate(m, P, prompts, plen, &o, &b, &err) == 0, "%s", err.msg);
        CHECK(same_tokens(&a, &b), "%d thread(s) vs %d threads: different tokens", nt, threads);
        rollout_result_free(&b);
    }
    omp_set_num_threads(threads);
    /* a group's samples differ from each other; another seed gives other tokens */
    int differ = 1;
    for (int p = 0; p < P; p++)
        for (int g = 0; g < 4; g++)
            for (int h = g + 1; h < 4; h++) {
                const RolloutSample *x = &a.s[p * 4 + g], *y = &a.s[p * 4 + h];
                if (x->n == y->n && !memcmp(x->tokens, y->tokens, sizeof(int) * x->n)) differ = 0;
            }
    CHECK(differ, "two samples of a group are identical at T = 1");
    o.seed = 43;
    CHECK(rollout_generate(m, P, prompts, plen, &o, &c, &err) == 0, "%s", err.msg);
    CHECK(!same_tokens(&a, &c), "seed 43 gave the tokens of seed 42");
    rollout_result_free(&c);
    double w = logp_vs_forward(m, &a, 1.0f);
    printf("sampling log-probs vs model_forward (T=1): max |diff| %.3g\n", w);
    CHECK(w < 1e-4, "recorded log-probs differ from model_forward by %.3g", w);
    /* filtered sampling at another temperature */
    o.seed = 42, o.sampling = (SamplerOpts){.temperature = 0.7f, .top_k = 50, .top_p = 0.9, .min_p = 0.02};
    CHECK(rollout_generate(m, P, prompts, plen, &o, &c, &err) == 0, "%s", err.msg);
    w = logp_vs_forward(m, &c, 0.7f);
    printf("sampling log-probs vs model_forward (T=0.7, top-k/p, min-p): max |diff| %.3g\n", w);
    CHECK(w < 1e-4, "T=0.7 log-probs differ from model_forward by %.3g", w);
    int fl = 1;
    for (int i = 0; i < c.nsamples; i++)
        for (int j = 0; j < c.s[i].n; j++)
            if (c.s[i].logp_filtered[j] < c.s[i].logp[j] - 1e-5) fl = 0;
    CHECK(fl, "a filtered log-prob is below the full one (the kept set renormalises up)");
    rollout_result_free(&c);
    /* stop callback: sample 1 stops after 5 tokens, sample 6 after its first */
    int calls = 0;
    o.sampling = sampler_defaults(), o.stop = stop_fn, o.stop_ctx = &calls;
    CHECK(rollout_generate(m, P, prompts, plen, &o, &c, &err) == 0, "%s", err.msg);
    CHECK(c.s[1].finish == FINISH_STOP && c.s[1].n == 5, "sample 1: %s after %d tokens",
          finish_reason_name(c.s[1].finish), c.s[1].n);
    CHECK(c.s[6].finish == FINISH_STOP && c.s[6].n == 1, "sample 6: %s after %d", finish_reason_name(c.s[6].finish),
          c.s[6].n);
    CHECK(!memcmp(c.s[1].tokens, a.s[1].tokens, sizeof(int) * 5), "stopped sample's tokens are its prefix");
    int others = 1;
    for (int i = 0; i < c.nsamples; i++)
        if (i != 1 && i != 6 && (c.s[i].n != a.s[i].n || memcmp(c.s[i].tokens, a.s[i].tokens, sizeof(int) * a.s[i].n)))
            others = 0;
    CHECK(others, "stopping two samples changed the tokens of the others");
    CHECK(calls > 0, "stop callback called");
    rollout_result_free(&c);
    rollout_result_free(&a);
}

/* Same logits in, same log-prob out: the sampler's full-vocabulary log-prob
 * is bitwise model_forward's at the sampled token (T = 1 and T = 0.7). */
static void check_logp_bitwise(Model *m) {
    enum { L = 8 };
    const int V = m->cfg.vocab_size;
    int ids[L], tg[L];
    for (int t = 0; t < L; t++) ids[t] = (5 + 37 * t) % V;
    float *lg = malloc(sizeof(float) * L * V), lp[L];
    Err err = {0};
    Batch b = {1, L, ids, NULL, NULL};
    CHECK(model_logits(m, &b, lg, &err) == 0, "%s", err.msg);
    SamplerWork *w = sampler_work_new(V);
    const float temps[2] = {1.0f, 0.7f};
    for (int k = 0; k < 2; k++) {
        SamplerOpts o = sampler_defaults();
        o.temperature = temps[k];
        SampleOut so[L];
        for (int t = 0; t < L; t++) {
            CHECK(sampler_sample(&o, lg + (size_t)t * V, w, 1, 2, t, &so[t], &err) == 0, "%s", err.msg);
            tg[t] = so[t].token;
        }
        Batch bt = {1, L, ids, tg, NULL};
        CHECK(model_forward(m, &bt, temps[k], lp, NULL, &err) == 0, "%s", err.msg);
        int same = 1;
        for (int t = 0; t < L; t++) same &= lp[t] == so[t].logp;
        CHECK(same, "T=%g: sampler log-prob is not bitwise model_forward's on the same logits", temps[k]);
    }
    sampler_work_free(w);
    free(lg);
}

/* argmax with the gap to the runner-up */
static int argmax_gap(const float *x, int V, float *gap) {
    int a = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[a]) a = v;
    float second = -INFINITY;
    for (int v = 0; v < V; v++)
        if (v != a && x[v] > second) second = x[v];
    *gap = x[a] - second;
    return a;
}

static void check_greedy(Model *m) {
    const int V = m->cfg.vocab_size, NEW = 16;
    RolloutOpts o = rollout_defaults();
    int no_eos = 0;
    o.group_size = 2, o.max_new_tokens = NEW, o.sampling.temperature = 0, o.eos_ids = &no_eos, o.n_eos = 0;
    RolloutResult r;
    Err err = {0};
    CHECK(rollout_generate(m, P, prompts, plen, &o, &r, &err) == 0, "%s", err.msg);
    float *lg = malloc(sizeof(float) * (16 + NEW) * V), min_gap = INFINITY;
    int match = 1;
    for (int p = 0; p < P; p++) {
        const RolloutSample *s = &r.s[p * 2];
        CHECK(s->n == NEW && s->finish == FINISH_LENGTH, "greedy prompt %d: %d tokens", p, s->n);
        CHECK(!memcmp(s->tokens, r.s[p * 2 + 1].tokens, sizeof(int) * s->n), "greedy group members differ");
        int seq[64];
        memcpy(seq, prompts[p], sizeof(int) * plen[p]);
        for (int t = 0; t < s->n; t++) { /* full forward over the growing sequence */
            int L = plen[p] + t;
            Batch b = {1, L, seq, NULL, NULL};
            CHECK(model_logits(m, &b, lg, &err) == 0, "%s", err.msg);
            float gap;
            int want = argmax_gap(lg + (size_t)(L - 1) * V, V, &gap);
            min_gap = fminf(min_gap, gap);
            if (want != s->tokens[t]) {
                match = 0;
                fprintf(stderr, "prompt %d token %d: rollout %d, full forward %d (gap %.3g)\n", p, t, s->tokens[t],
                        want, gap);
                break;
            }
            seq[L] = want;
        }
    }
    printf("greedy: %d tokens per prompt equal the full-forward argmax (smallest top-2 gap %.3g)\n", NEW, min_gap);
    CHECK(match, "greedy rollout differs from the full-forward argmax");
    /* EOS: make the 4th greedy token of prompt 0 the EOS id; it stops at its first occurrence */
    int eos = r.s[0].tokens[3], first = 0;
    while (r.s[0].tokens[first] != eos) first++;
    o.eos_ids = &eos, o.n_eos = 1;
    RolloutResult e;
    CHECK(rollout_generate(m, P, prompts, plen, &o, &e, &err) == 0, "%s", err.msg);
    CHECK(e.s[0].finish == FINISH_EOS && e.s[0].n == first + 1 && e.s[0].tokens[first] == eos,
          "EOS stop: %s after %d tokens (want eos after %d)", finish_reason_name(e.s[0].finish), e.s[0].n, first + 1);
    rollout_result_free(&e);
    rollout_result_free(&r);
    free(lg);
}

static void check_bad_input(Model *m) {
    const int V = m->cfg.vocab_size;
    int good0[4] = {5, 6, 7, 8}, bad_id[3] = {4, V + 3, 2}, good4[3] = {9, 10, 11}, longp[20];
    for (int t = 0; t < 20; t++) longp[t] = t + 2;
    const int *pr[5] = {good0, good0, longp, bad_id, good4};
    int len[5] = {4, 0, 20, 3, 3};
    RolloutOpts o = rollout_defaults();
    int no_eos = 0;
    o.group_size = 2, o.max_new_tokens = 30, o.max_seq_len = 16, o.eos_ids = &no_eos, o.n_eos = 0, o.seed = 5;
    RolloutResult r;
    Err err = {0};
    CHECK(rollout_generate(m, 5, pr, len, &o, &r, &err) == 0, "bad prompts must not fail the call: %s", err.msg);
    CHECK(r.stats.failed_prompts == 3, "%d prompts refused", r.stats.failed_prompts);
    const char *want[5] = {NULL, "empty", "context holds 16 (rollout max_seq_len)", "outside the vocabulary", NULL};
    for (int p = 0; p < 5; p++)
        for (int g = 0; g < 2; g++) {
            const RolloutSample *s = &r.s[p * 2 + g];
            if (want[p]) {
                CHECK(s->finish == FINISH_ERROR && s->n == 0 && strstr(s->error, want[p]), "prompt %d: %s / %s", p,
                      finish_reason_name(s->finish), s->error);
            } else { /* limited by the context: 16 - prompt length */
                CHECK(s->finish == FINISH_LENGTH && s->n == 16 - len[p], "prompt %d: %s after %d tokens", p,
                      finish_reason_name(s->finish), s->n);
            }
        }
    printf("refused prompt messages: \"%s\" | \"%s\" | \"%s\"\n", r.s[2].error, r.s[4].error, r.s[6].error);
    /* prompt 4 alone, with sample_base = its sample ids (8, 9): the same streams, the same tokens */
    RolloutOpts alone = o;
    alone.sample_base = 8;
    RolloutResult r4;
    CHECK(rollout_generate(m, 1, pr + 4, len + 4, &alone, &r4, &err) == 0, "%s", err.msg);
    for (int g = 0; g < 2; g++)
        CHECK(r4.s[g].n == r.s[8 + g].n && !memcmp(r4.s[g].tokens, r.s[8 + g].tokens, sizeof(int) * r4.s[g].n),
              "sample %d depends on the other prompts of the batch", 8 + g);
    rollout_result_free(&r4);
    rollout_result_free(&r);
    /* a prompt as long as the model's context */
    int *full = malloc(sizeof(int) * m->cfg.max_position_embeddings);
    for (int t = 0; t < m->cfg.max_position_embeddings; t++) full[t] = t % V;
    const int *pf[2] = {full, good4};
    int lf[2] = {m->cfg.max_position_embeddings, 3};
    o.max_seq_len = 0, o.max_new_tokens = 4;
    CHECK(rollout_generate(m, 2, pf, lf, &o, &r, &err) == 0, "%s", err.msg);
    CHECK(r.s[0].finish == FINISH_ERROR && strstr(r.s[0].error, "max_position_embeddings"), "%s", r.s[0].error);
    CHECK(r.s[2].finish == FINISH_LENGTH && r.s[2].n == 4, "the other prompt still runs");
    rollout_result_free(&r);
    free(full);
    /* every prompt refused: still a result, no cache */
    const int *pe[1] = {good0};
    int le[1] = {0};
    CHECK(rollout_generate(m, 1, pe, le, &o, &r, &err) == 0 && r.s[0].finish == FINISH_ERROR &&
              r.stats.cache_bytes == 0,
          "all prompts refused");
    rollout_result_free(&r);
    /* bad options fail the call with ERR_INPUT */
    RolloutOpts bad[4] = {o, o, o, o};
    bad[0].group_size = 0, bad[1].max_new_tokens = 0, bad[2].sampling.top_p = 2, bad[3].sampling.temperature = -1;
    for (int i = 0; i < 4; i++) {
        err.code = 0;
        CHECK(rollout_generate(m, 1, pf + 1, lf + 1, &bad[i], &r, &err) == -1 && err.code == ERR_INPUT,
              "bad option set %d accepted", i);
    }
    int bad_eos = V;
    RolloutOpts be = o;
    be.eos_ids = &bad_eos, be.n_eos = 1;
    CHECK(rollout_generate(m, 1, pf + 1, lf + 1, &be, &r, &err) == -1 && strstr(err.msg, "EOS"), "bad EOS id: %s",
          err.msg);
}

/* Not a timing test: prints what a GRPO-sized batch costs on this machine. */
static void print_throughput(Model *m) {
    enum { BP = 4, BG = 8, NEW = 32 };
    int buf[BP][32], len[BP];
    const int *pr[BP];
    for (int p = 0; p < BP; p++) {
        len[p] = 16 + 2 * p;
        for (int t = 0; t < len[p]; t++) buf[p][t] = (7 + 31 * t + 101 * p) % m->cfg.vocab_size;
        pr[p] = buf[p];
    }
    RolloutOpts o = rollout_defaults();
    int no_eos = 0;
    o.group_size = BG, o.max_new_tokens = NEW, o.eos_ids = &no_eos, o.n_eos = 0;
    RolloutResult r;
    Err err = {0};
    CHECK(rollout_generate(m, BP, pr, len, &o, &r, &err) == 0, "%s", err.msg);
    printf("batch of %d prompts x %d samples x %d tokens, %d threads:\n  ", BP, BG, NEW, omp_get_max_threads());
    rollout_stats_print(&r.stats, stdout);
    rollout_result_free(&r);
}

int main(void) {
    ModelConfig c;
    Err err = {0};
    if (config_load(&c, GRPO_TESTS_DIR "/../recipes/models/dsv3-tiny-1m.json", &err)) {
        CHECK(0, "%s", err.msg);
        return test_report();
    }
    Model m;
    ModelOpts mo = {0};
    CHECK(model_create(&m, &c, &mo, &err) == 0, "%s", err.msg);
    model_init_random(&m, 7, 0.08f);
    make_prompts(c.vocab_size);
    check_logp_bitwise(&m);
    check_sampling(&m);
    check_greedy(&m);
    check_bad_input(&m);
    print_throughput(&m);
    model_free(&m);
    return test_report();
}
