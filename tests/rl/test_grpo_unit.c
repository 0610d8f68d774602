/* test_grpo_unit: properties of rl/grpo that the golden fixture does not
 * cover: the gradient against central finite differences of the loss itself
 * (every loss type, token and sequence ratio, k1/k2/k3, bias correction,
 * delta), ratio exactly 1 when old_logp is absent, masked positions untouched
 * by the loss and zero in the gradient, micro-batches summing to the whole
 * batch with global counts, the dynamic-sampling test, non-finite
 * inputs reported, and bad input rejected with a message. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/grpo.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double urand(void) /* xorshift64*, in [0, 1) */
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

enum { S = 6, L = 9 };

typedef struct Inputs {
    float newl[S * L], oldl[S * L], refl[S * L], ent[S * L], mask[S * L], adv[S];
} Inputs;

static void make_inputs(Inputs *x)
{
    int len[S] = {9, 4, 1, 7, 0, 5}; /* a full row, a one-token row, an empty row */
    grpo_mask_from_lengths(x->mask, S, L, NULL, len);
    for (int i = 0; i < S * L; i++) {
        x->oldl[i] = (float)(-3.0 * urand() - 0.05);
        x->newl[i] = x->oldl[i] + (float)(0.6 * (urand() - 0.5));
        x->refl[i] = x->oldl[i] + (float)(0.4 * (urand() - 0.5));
        x->ent[i] = (float)(2 * urand());
    }
    for (int s = 0; s < S; s++) x->adv[s] = (float)(2 * urand() - 1);
}

/* The loss in double at new_logp + h*e_j, for finite differences. */
static double loss_at(const GrpoLossOpts *o, const Inputs *x, int j, double h)
{
    Inputs y = *x;
    if (j >= 0) y.newl[j] = (float)(x->newl[j] + h);
    GrpoLossIn in = {S, L, y.newl, y.oldl, y.refl, y.adv, y.mask, y.ent};
    GrpoLossStats st;
    Err err = {0};
    grpo_loss(o, &in, NULL, &st, &err);
    return st.loss;
}

/* Finite differences away from the clip kinks: a token whose ratio sits
 * within h of a clip boundary is skipped (the derivative jumps there). */
static void check_fd(const char *what, const GrpoLossOpts *o, const Inputs *x)
{
    float dlogp[S * L], dent[S * L];
    GrpoLossIn in = {S, L, x->newl, x->oldl, x->refl, x->adv, x->mask, x->ent};
    GrpoLossGrad gr = {dlogp, dent};
    GrpoLossStats st;
    Err err = {0};
    CHECK(grpo_loss(o, &in, &gr, &st, &err) == 0, "%s: %s", what, err.msg);
    double h = 1e-3, worst = 0, scale = 1e-12;
    for (int j = 0; j < S * L; j++) scale = fmax(scale, fabs(dlogp[j]));
    for (int j = 0; j < S * L; j++) {
        if (x->mask[j] == 0) {
            CHECK(dlogp[j] == 0, "%s: masked position %d has gradient %g", what, j, dlogp[j]);
            continue;
        }
        double w = exp((double)x->newl[j] - x->oldl[j]);
        double lo = 1 - o->epsilon_low, hi = 1 + o->epsilon_high;
        if (o->is_level == GRPO_IS_TOKEN && (fabs(w - lo) < 3 * h || fabs(w - hi) < 3 * h ||
                                             (o->delta > 0 && fabs(w - o->delta) < 3 * h) ||
                                             (o->dual_clip_c > 0 && fabs(w - o->dual_clip_c) < 3 * h)))
            continue;
        double fd = (loss_at(o, x, j, h) - loss_at(o, x, j, -h)) / (2 * h);
        worst = fmax(worst, fabs(fd - dlogp[j]) / scale);
    }
    CHECK(worst < 2e-3, "%s: gradient vs finite differences: worst %.3g of max |g|", what, worst);
}

static void test_finite_differences(void)
{
    Inputs x;
    make_inputs(&x);
    GrpoLossOpts o;
    const GrpoLossType types[] = {GRPO_LOSS_DAPO, GRPO_LOSS_GRPO, GRPO_LOSS_BNPO, GRPO_LOSS_DR_GRPO,
                                  GRPO_LOSS_SEQ_MEAN_TOKEN_SUM, GRPO_LOSS_SEQ_MEAN_TOKEN_MEAN,
                                  GRPO_LOSS_SEQ_MEAN_TOKEN_SUM_NORM};
    for (int t = 0; t < 7; t++)
        for (int lvl = 0; lvl < 2; lvl++)
            for (int kl = 0; kl < 3; kl++) {
                grpo_loss_opts_default(&o);
                o.loss_type = types[t];
                o.is_level = (GrpoIsLevel)lvl;
                o.kl = (GrpoKl)kl;
                o.beta = 0.1f;
                o.kl_bias_correction = kl == 0;
                o.epsilon_high = 0.28f;
                o.delta = t == 0 ? 1.2f : 0.0f;
                o.dual_clip_c = t == 1 ? 1.1f : 0.0f;
                o.max_completion_length = L;
                char what[96];
                snprintf(what, sizeof what, "%s/%s/k%d", grpo_loss_type_name(types[t]),
                         lvl ? "sequence" : "token", kl == 0 ? 3 : kl);
                check_fd(what, &o, &x);
            }
}

/* mu = 1: no old log-probs means ratio 1 exactly; the loss is then
 * -sum(A m)/N and the gradient -A/N per token (the "loss is 0 but the
 * gradient is not" situation of open-r1 #239). */
static void test_ratio_one(void)
{
    Inputs x;
    make_inputs(&x);
    GrpoLossOpts o;
    grpo_loss_opts_default(&o);
    float dlogp[S * L];
    GrpoLossIn in = {S, L, x.newl, NULL, NULL, x.adv, x.mask, NULL};
    GrpoLossGrad gr = {dlogp, NULL};
    GrpoLossStats st;
    Err err = {0};
    CHECK(grpo_loss(&o, &in, &gr, &st, &err) == 0, "%s", err.msg);
    double n = grpo_mask_count(x.mask, S, L), want = 0;
    for (int s = 0; s < S; s++)
        for (int t = 0; t < L; t++) want -= x.adv[s] * x.mask[s * L + t] / n;
    CHECK(fabs(st.loss - want) < 1e-12, "ratio-1 loss %.17g, expected %.17g", st.loss, want);
    CHECK(st.ratio_mean == 1.0 && st.clip_region_mean == 0, "ratio mean %.17g, clipped %g", st.ratio_mean,
          st.clip_region_mean);
    int ok = 1;
    for (int s = 0; s < S; s++)
        for (int t = 0; t < L; t++)
            ok &= fabsf(dlogp[s * L + t] - (float)(-(double)x.adv[s] * x.mask[s * L + t] / n)) <=
                  1e-7f * fabsf(x.adv[s]) / (float)n;
    CHECK(ok, "ratio-1 gradient is not -A/N on every active token");
}

/* Values under the mask never reach the loss: NaN there changes nothing. */
static void test_masked_values_ignored(void)
{
    Inputs x;
    make_inputs(&x);
    GrpoLossOpts o;
    grpo_loss_opts_default(&o);
    o.beta = 0.04f;
    GrpoLossIn in = {S, L, x.newl, x.oldl, x.refl, x.adv, x.mask, x.ent};
    GrpoLossStats a, b;
    Err err = {0};
    grpo_loss(&o, &in, NULL, &a, &err);
    for (int i = 0; i < S * L; i++)
        if (x.mask[i] == 0) x.newl[i] = x.oldl[i] = x.refl[i] = x.ent[i] = NAN;
    float dlogp[S * L];
    GrpoLossGrad gr = {dlogp, NULL};
    grpo_loss(&o, &in, &gr, &b, &err);
    CHECK(a.loss == b.loss && b.nonfinite == 0, "NaN under the mask changed the loss (%.17g vs %.17g)", a.loss,
          b.loss);
    /* ... while a NaN on an active token is reported */
    x.newl[0] = NAN;
    grpo_loss(&o, &in, &gr, &b, &err);
    CHECK(isnan(b.loss) && b.nonfinite > 0, "NaN input: loss %g, nonfinite %zu", b.loss, b.nonfinite);
}

/* Micro-batches: with the step's global counts passed in (num_items for
 * dapo, num_seqs for verl seq-mean-*), two half-batch calls give the same
 * loss sum and the same gradient rows as one call on the whole batch. */
static void test_accumulation(void)
{
    Inputs x;
    make_inputs(&x);
    const GrpoLossType types[] = {GRPO_LOSS_DAPO, GRPO_LOSS_SEQ_MEAN_TOKEN_SUM, GRPO_LOSS_SEQ_MEAN_TOKEN_MEAN,
                                  GRPO_LOSS_SEQ_MEAN_TOKEN_SUM_NORM};
    for (int k = 0; k < 4; k++) {
        GrpoLossOpts o;
        grpo_loss_opts_default(&o);
        o.loss_type = types[k];
        o.beta = 0.05f;
        o.loss_scale_factor = L;
        float whole[S * L], parts[S * L];
        GrpoLossStats st, a, b;
        Err err = {0};
        GrpoLossIn in = {S, L, x.newl, x.oldl, x.refl, x.adv, x.mask, NULL};
        GrpoLossGrad gw = {whole, NULL};
        grpo_loss(&o, &in, &gw, &st, &err);
        o.num_items = st.ntok;
        o.num_seqs = st.nseq_active;
        int h = S / 2;
        GrpoLossIn in1 = {h, L, x.newl, x.oldl, x.refl, x.adv, x.mask, NULL};
        GrpoLossIn in2 = {S - h, L, x.newl + h * L, x.oldl + h * L, x.refl + h * L, x.adv + h, x.mask + h * L, NULL};
        GrpoLossGrad g1 = {parts, NULL}, g2 = {parts + h * L, NULL};
        grpo_loss(&o, &in1, &g1, &a, &err);
        grpo_loss(&o, &in2, &g2, &b, &err);
        double worst = 0;
        for (int j = 0; j < S * L; j++) worst = fmax(worst, fabs(whole[j] - parts[j]));
        CHECK(fabs(a.loss + b.loss - st.loss) < 1e-12 && worst < 1e-9,
              "%s: micro-batches differ (loss %.3g, grad %.3g)", grpo_loss_type_name(types[k]),
              a.loss + b.loss - st.loss, worst);
    }
}

static void test_dynamic_sampling(void)
{
    /* 4 groups of 4: all right, mixed, all wrong, one scored (std undefined) */
    float r[16] = {1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, NAN, NAN, 1, NAN};
    unsigned char keep[4];
    CHECK(grpo_groups_with_signal(r, 4, 4, keep) == 1, "groups kept");
    CHECK(!keep[0] && keep[1] && !keep[2] && !keep[3], "keep = %d %d %d %d", keep[0], keep[1], keep[2], keep[3]);
    /* every reward nil in a group: advantages 0, counted unscorable */
    float adv[16], rw[16];
    GrpoAdvOpts ao;
    grpo_adv_opts_default(&ao);
    GrpoAdvStats st;
    Err err = {0};
    float nil[16];
    for (int i = 0; i < 16; i++) nil[i] = i < 4 ? NAN : r[i];
    CHECK(grpo_advantages(&ao, nil, 4, 4, 1, rw, adv, &st, &err) == 0, "%s", err.msg);
    CHECK(adv[0] == 0 && adv[1] == 0 && adv[2] == 0 && adv[3] == 0 && isnan(rw[0]), "all-nil group");
    CHECK(st.n_unscorable == 7, "unscorable %d", st.n_unscorable);
    CHECK(st.n_zero_std_groups == 3, "zero-std groups %d", st.n_zero_std_groups);
    CHECK(grpo_overlong_penalty(10, 20, 4) == 0 && grpo_overlong_penalty(16, 20, 4) == 0 &&
              grpo_overlong_penalty(18, 20, 4) == -0.5f && grpo_overlong_penalty(20, 20, 4) == -1.0f &&
              grpo_overlong_penalty(25, 20, 4) == -1.0f,
          "overlong penalty");
}

static void test_bad_input(void)
{
    Inputs x;
    make_inputs(&x);
    GrpoLossOpts o;
    grpo_loss_opts_default(&o);
    Err err = {0};
    GrpoLossIn in = {S, L, x.newl, x.oldl, NULL, x.adv, x.mask, NULL};
    o.beta = 0.1f;
    CHECK(grpo_loss(&o, &in, NULL, NULL, &err) == -1 && err.code == ERR_INPUT && strstr(err.msg, "ref_logp"),
          "beta without ref: %s", err.msg);
    o.beta = 0;
    o.epsilon_low = -0.1f;
    CHECK(grpo_loss(&o, &in, NULL, NULL, &err) == -1 && strstr(err.msg, "epsilon"), "%s", err.msg);
    o.epsilon_low = 0.2f;
    in.S = 0;
    CHECK(grpo_loss(&o, &in, NULL, NULL, &err) == -1 && err.code == ERR_INPUT, "S = 0");
    GrpoLossType lt;
    CHECK(grpo_loss_type_parse("ppo", &lt, &err) == -1 && strstr(err.msg, "ppo"), "%s", err.msg);
    CHECK(grpo_loss_type_parse("token-mean", &lt, &err) == 0 && lt == GRPO_LOSS_DAPO, "token-mean alias");
    GrpoScale sc;
    CHECK(grpo_scale_parse("false", &sc, &err) == 0 && sc == GRPO_SCALE_NONE, "scale false = none");
    CHECK(grpo_scale_parse("std", &sc, &err) == -1 && err.code == ERR_INPUT, "bad scale");
    float adv[4], rw[4], pf[4] = {1, 0, 1, 0};
    GrpoAdvOpts ao;
    grpo_adv_opts_default(&ao);
    CHECK(grpo_advantages(&ao, pf, 1, 0, 1, rw, adv, NULL, &err) == -1 && err.code == ERR_INPUT, "G = 0");
    ao.scale = (GrpoScale)7;
    CHECK(grpo_advantages(&ao, pf, 1, 4, 1, rw, adv, NULL, &err) == -1, "bad scale enum");
}

int main(void)
{
    test_finite_differences();
    test_ratio_one();
    test_accumulation();
    test_masked_values_ignored();
    test_dynamic_sampling();
    test_bad_input();
    return test_report();
}
