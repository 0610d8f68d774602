/* test_grpo_model: grpo_loss wired to the model as the trainer will wire it:
 * model_forward -> grpo_loss (on the model's own [B x T] log-prob rows, the
 * mask marking completion tokens) -> model_backward(dlogp, dentropy). The
 * parameter gradient must match central finite differences of the whole GRPO
 * loss. Only the head and the final norm are perturbed: they sit after every
 * MoE router, so a perturbation cannot change the routing (a discontinuity).
 * Also: with old_logp absent, or equal to the forward's own log-probs, every
 * ratio is exactly 1 (mu = 1 on the CPU). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "rl/grpo.h"
#include "test.h"

enum { G = 4, T = 16, PROMPT = 5, N = G * T };

typedef struct Setup {
    Model m;
    Batch b;
    int ids[N], tg[N], len[G];
    float mask[N], oldl[N], refl[N], adv[G];
    GrpoLossOpts o;
} Setup;

static double grpo_loss_of(Setup *s, float *dlogp, float *dent)
{
    float lp[N], ent[N];
    Err err = {0};
    if (model_forward(&s->m, &s->b, 1.0f, lp, ent, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    GrpoLossIn in = {G, T, lp, s->oldl, s->refl, s->adv, s->mask, ent};
    GrpoLossGrad gr = {dlogp, dent};
    GrpoLossStats st;
    if (grpo_loss(&s->o, &in, &gr, &st, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return st.loss;
}

static void check_fd(Setup *s, const char *name, const char *what)
{
    const Param *p = model_find_param(&s->m, name);
    CHECK(p != NULL, "no %s", name);
    if (!p) return;
    float *w = s->m.params + p->offset, *g = s->m.grads + p->offset;
    double worst = 0;
    for (int k = 0; k < 3; k++) { /* the three largest gradients (fp32 FD resolves those) */
        size_t best = 0;
        for (size_t j = 0; j < p->numel; j++)
            if (fabsf(g[j]) > fabsf(g[best])) best = j;
        double h = 1e-2, w0 = w[best];
        w[best] = (float)(w0 + h);
        double lp = grpo_loss_of(s, NULL, NULL);
        w[best] = (float)(w0 - h);
        double lm = grpo_loss_of(s, NULL, NULL);
        w[best] = (float)w0;
        double fd = (lp - lm) / (2 * h), err = fabs(fd - g[best]) / fmax(fabs(g[best]), 1e-8);
        worst = fmax(worst, err);
        g[best] = 0; /* next-largest on the next round */
    }
    printf("%-10s %-24s worst relative FD error %.3g\n", what, name, worst);
    CHECK(worst < 1e-2, "%s: %s gradient vs finite differences %.3g", what, name, worst);
}

static void run(Setup *s, const char *what)
{
    float dlogp[N], dent[N];
    model_zero_grads(&s->m);
    grpo_loss_of(s, dlogp, dent);
    model_backward(&s->m, &s->b, dlogp, dent);
    check_fd(s, "lm_head.weight", what);
    check_fd(s, "model.norm.weight", what);
}

int main(void)
{
    static Setup s;
    Err err = {0};
    ModelConfig cfg;
    if (config_load(&cfg, GRPO_SHARED_DIR "/reference/tiny-configs/dsv3-tiny-1m.json", &err))
        TEST_SKIP("tiny config not available: %s", err.msg);
    ModelOpts mo = {0};
    CHECK(model_create(&s.m, &cfg, &mo, &err) == 0, "%s", err.msg);
    model_init_random(&s.m, 11, 0.08f);
    model_alloc_grads(&s.m);

    /* one prompt, G completions of different lengths (a padded tail) */
    unsigned r = 5;
    for (int i = 0; i < N; i++) s.ids[i] = (int)((r = r * 1664525u + 1013904223u) >> 8) % cfg.vocab_size;
    for (int g = 0; g < G; g++) {
        for (int t = 0; t < PROMPT; t++) s.ids[g * T + t] = s.ids[t];
        s.len[g] = T - 3 * (g % 2) - g;
    }
    int start[G], clen[G];
    for (int g = 0; g < G; g++) {
        for (int t = 0; t < T; t++) /* target of position t is token t+1: completion from PROMPT-1 */
            s.tg[g * T + t] = (t + 1 < s.len[g]) ? s.ids[g * T + t + 1] : -1;
        start[g] = PROMPT - 1;
        clen[g] = s.len[g] - PROMPT;
    }
    grpo_mask_from_lengths(s.mask, G, T, start, clen);
    s.b = (Batch){G, T, s.ids, s.tg, s.len};

    /* mu = 1: old = the forward's own log-probs -> ratio exactly 1 */
    float lp[N], ent[N];
    CHECK(model_forward(&s.m, &s.b, 1.0f, lp, ent, &err) == 0, "%s", err.msg);
    float per_func[G] = {1, 0, 0, 1}, reward[G];
    GrpoAdvOpts ao;
    grpo_adv_opts_default(&ao);
    CHECK(grpo_advantages(&ao, per_func, 1, G, 1, reward, s.adv, NULL, &err) == 0, "%s", err.msg);
    grpo_loss_opts_default(&s.o);
    GrpoLossStats st;
    GrpoLossIn in = {G, T, lp, lp, NULL, s.adv, s.mask, ent};
    grpo_loss(&s.o, &in, NULL, &st, &err);
    CHECK(st.ratio_mean == 1.0 && st.clip_region_sum == 0, "ratio mean %.17g with old = new", st.ratio_mean);

    /* off-policy (mu > 1): old and ref a little away, inside the clip range */
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u;
        s.oldl[i] = lp[i] + 0.05f * (float)((r >> 8) % 1000 / 500.0 - 1.0);
        s.refl[i] = lp[i] + 0.1f * (float)((r >> 18) % 1000 / 500.0 - 1.0);
    }
    s.o.beta = 0.04f;
    s.o.entropy_coef = 0.05f;
    run(&s, "dapo");
    s.o.loss_type = GRPO_LOSS_GRPO;
    s.o.is_level = GRPO_IS_SEQUENCE;
    s.o.kl = GRPO_KL_K2;
    run(&s, "gspo/grpo");
    model_free(&s.m);
    return test_report();
}
