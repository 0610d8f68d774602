/* test_grpo_golden: rl/grpo against tests/fixtures/rl/grpo_loss.txt, made by
 * tests/golden/make_grpo_fixtures.py from a PyTorch re-implementation of TRL's
 * _compute_loss / advantage code and verl's agg_loss (float64 autograd).
 *
 * Per case: rewards -> advantages (every scale_rewards x aggregation used),
 * the truncation mask, then loss, d loss / d new_logp, d loss / d entropy and
 * TRL's clip / KL / entropy metrics. Errors are relative to the largest
 * reference magnitude of each quantity; the worst ones are printed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl/grpo.h"
#include "test.h"
#include "test_grpo_fixture.h"

#define TOL_ADV 1e-5   /* float advantages vs float64 reference, relative to max |adv| */
#define TOL_LOSS 1e-5  /* loss, relative to max(|loss|, 1e-3) */
#define TOL_GRAD 1e-5  /* gradient, max abs error relative to max |reference| */

static double worst_adv, worst_loss, worst_grad;
static char worst_grad_case[96];

/* max |a - ref| / max |ref| (with NaN positions required to match). */
static double rel_err(const float *a, const FxArr *ref, int *nan_mismatch)
{
    double scale = 0, err = 0;
    for (int i = 0; i < ref->n; i++)
        if (!isnan(ref->v[i]) && fabs(ref->v[i]) > scale) scale = fabs(ref->v[i]);
    for (int i = 0; i < ref->n; i++) {
        if (isnan(ref->v[i]) != isnan(a[i])) {
            (*nan_mismatch)++;
            continue;
        }
        if (!isnan(ref->v[i]) && fabs(a[i] - ref->v[i]) > err) err = fabs(a[i] - ref->v[i]);
    }
    return scale > 0 ? err / scale : err;
}

/* Clip fractions are ratios of small integers: equal up to rounding. */
static int same_or_both_nan(double a, double b)
{
    return (isnan(a) && isnan(b)) || fabs(a - b) <= 1e-7;
}

static void parse_opts(const FxCase *c, GrpoLossOpts *o, GrpoAdvOpts *ao)
{
    Err err = {0};
    grpo_loss_opts_default(o);
    grpo_adv_opts_default(ao);
    CHECK(grpo_loss_type_parse(fx_opt(c, "loss_type"), &o->loss_type, &err) == 0, "%s", err.msg);
    CHECK(grpo_is_level_parse(fx_opt(c, "is_level"), &o->is_level, &err) == 0, "%s", err.msg);
    CHECK(grpo_kl_parse(fx_opt(c, "kl"), &o->kl, &err) == 0, "%s", err.msg);
    CHECK(grpo_scale_parse(fx_opt(c, "scale"), &ao->scale, &err) == 0, "%s", err.msg);
    ao->multi = strcmp(fx_opt(c, "multi"), "normalize_then_sum") == 0 ? GRPO_MULTI_NORMALIZE_THEN_SUM
                                                                      : GRPO_MULTI_SUM_THEN_NORMALIZE;
    o->epsilon_low = (float)fx_optd(c, "epsilon_low");
    o->epsilon_high = (float)fx_optd(c, "epsilon_high");
    o->delta = (float)fx_optd(c, "delta");
    o->dual_clip_c = (float)fx_optd(c, "dual_clip_c");
    o->beta = (float)fx_optd(c, "beta");
    o->kl_bias_correction = (int)fx_optd(c, "kl_bias_correction");
    o->entropy_coef = (float)fx_optd(c, "entropy_coef");
    o->grad_accum = (int)fx_optd(c, "grad_accum");
    o->max_completion_length = (int)fx_optd(c, "max_completion_length");
    o->num_items = fx_optd(c, "num_items");
    o->num_seqs = fx_optd(c, "num_seqs");
    o->loss_scale_factor = fx_optd(c, "loss_scale_factor");
}

static void check_advantages(const FxCase *c, const GrpoAdvOpts *ao0, int P, int G, int K, float *adv)
{
    Err err = {0};
    GrpoAdvOpts ao = *ao0;
    float *per_func = fx_floats(c, "per_func"), *weights = fx_floats(c, "weights");
    float *reward = malloc(sizeof(float) * P * G);
    ao.weights = weights;
    GrpoAdvStats st;
    CHECK(grpo_advantages(&ao, per_func, P, G, K, reward, adv, &st, &err) == 0, "%s: %s", c->name, err.msg);
    int nanmis = 0;
    double er = rel_err(reward, fx_arr(c, "reward"), &nanmis);
    double ea = rel_err(adv, fx_arr(c, "adv"), &nanmis);
    CHECK(nanmis == 0, "%s: %d NaN (nil) positions differ", c->name, nanmis);
    CHECK(er <= TOL_ADV && ea <= TOL_ADV, "%s: reward err %.3g, advantage err %.3g", c->name, er, ea);
    if (ea > worst_adv) worst_adv = ea;
    double rm = fx_arr(c, "reward_mean")->v[0], rs = fx_arr(c, "reward_std")->v[0];
    CHECK(fabs(st.reward_mean - rm) <= 1e-6 * (1 + fabs(rm)), "%s: reward_mean %.9g vs %.9g", c->name,
          st.reward_mean, rm);
    CHECK(fabs(st.reward_std - rs) <= 1e-6 * (1 + fabs(rs)), "%s: reward_std %.9g vs %.9g", c->name,
          st.reward_std, rs);
    CHECK(fabs(st.frac_reward_zero_std - fx_arr(c, "frac_reward_zero_std")->v[0]) <= 1e-6,
          "%s: frac_reward_zero_std %g vs %g", c->name, st.frac_reward_zero_std,
          fx_arr(c, "frac_reward_zero_std")->v[0]);
    free(per_func);
    free(weights);
    free(reward);
}

static void check_case(const FxCase *c)
{
    Err err = {0};
    GrpoLossOpts o;
    GrpoAdvOpts ao;
    parse_opts(c, &o, &ao);
    int P = (int)fx_optd(c, "P"), G = (int)fx_optd(c, "G"), K = (int)fx_optd(c, "K");
    int L = (int)fx_optd(c, "L"), S = P * G;
    float *adv = malloc(sizeof(float) * S);
    check_advantages(c, &ao, P, G, K, adv);
    /* The loss gets the reference's advantages so both sides see the same
     * signs (an advantage of exactly 0 vs 1e-9 changes the clip metrics). */
    const FxArr *ref_adv = fx_arr(c, "adv");
    for (int s = 0; s < S; s++) adv[s] = (float)ref_adv->v[s];

    /* the mask: lengths, then TRL's mask_truncated_completions */
    const FxArr *lens = fx_arr(c, "lens"), *tr = fx_arr(c, "truncated");
    int *len = malloc(sizeof(int) * S);
    unsigned char *trunc = malloc(S);
    for (int s = 0; s < S; s++) len[s] = (int)lens->v[s], trunc[s] = tr->v[s] != 0;
    float *mask = malloc(sizeof(float) * S * L);
    grpo_mask_from_lengths(mask, S, L, NULL, len);
    if (fx_optd(c, "mask_truncated") != 0) grpo_mask_truncated(mask, S, L, trunc);

    float *newl = fx_floats(c, "new_logp"), *oldl = fx_floats(c, "old_logp");
    float *refl = fx_floats(c, "ref_logp"), *ent = fx_floats(c, "entropy");
    float *dlogp = malloc(sizeof(float) * S * L), *dent = malloc(sizeof(float) * S * L);
    GrpoLossIn in = {S, L, newl, oldl, refl, adv, mask, ent};
    GrpoLossGrad gr = {dlogp, dent};
    GrpoLossStats st;
    CHECK(grpo_loss(&o, &in, &gr, &st, &err) == 0, "%s: %s", c->name, err.msg);

    double ref_loss = fx_arr(c, "loss")->v[0];
    double el = fabs(st.loss - ref_loss) / fmax(fabs(ref_loss), 1e-3);
    CHECK(el <= TOL_LOSS, "%s: loss %.9g vs %.9g (rel %.3g)", c->name, st.loss, ref_loss, el);
    double rp = fx_arr(c, "policy_loss")->v[0];
    CHECK(fabs(st.policy_loss - rp) / fmax(fabs(rp), 1e-3) <= TOL_LOSS, "%s: policy_loss %.9g vs %.9g",
          c->name, st.policy_loss, rp);
    if (el > worst_loss) worst_loss = el;
    if (getenv("GRPO_TEST_VERBOSE")) printf("%-36s loss %.12g ref %.12g rel %.3g\n", c->name, st.loss, ref_loss, el);
    int nanmis = 0;
    double eg = rel_err(dlogp, fx_arr(c, "dlogp"), &nanmis);
    if (ent) {
        double ee = rel_err(dent, fx_arr(c, "dentropy"), &nanmis);
        CHECK(ee <= TOL_GRAD, "%s: dentropy err %.3g", c->name, ee);
        const FxArr *em = fx_arr(c, "entropy_mean");
        CHECK(fabs(st.entropy_mean - em->v[0]) <= 1e-6, "%s: entropy mean", c->name);
    }
    CHECK(nanmis == 0 && eg <= TOL_GRAD, "%s: dlogp err %.3g", c->name, eg);
    CHECK(st.nonfinite == 0, "%s: %zu non-finite gradient entries", c->name, st.nonfinite);
    if (eg > worst_grad) {
        worst_grad = eg;
        snprintf(worst_grad_case, sizeof worst_grad_case, "%s", c->name);
    }
    const FxArr *km = fx_arr(c, "kl_mean");
    if (km) CHECK(fabs(st.kl_mean - km->v[0]) <= 1e-6 * (1 + fabs(km->v[0])), "%s: kl_mean %.9g vs %.9g",
                  c->name, st.kl_mean, km->v[0]);
    CHECK(same_or_both_nan(st.clip_low_mean, fx_arr(c, "clip_low_mean")->v[0]) &&
              same_or_both_nan(st.clip_high_mean, fx_arr(c, "clip_high_mean")->v[0]) &&
              same_or_both_nan(st.clip_region_mean, fx_arr(c, "clip_region_mean")->v[0]) &&
              same_or_both_nan(st.clip_low_min, fx_arr(c, "clip_low_min")->v[0]) &&
              same_or_both_nan(st.clip_high_max, fx_arr(c, "clip_high_max")->v[0]),
          "%s: clip metrics low %g/%g high %g/%g region %g/%g low_min %g/%g high_max %g/%g", c->name,
          st.clip_low_mean, fx_arr(c, "clip_low_mean")->v[0], st.clip_high_mean,
          fx_arr(c, "clip_high_mean")->v[0], st.clip_region_mean, fx_arr(c, "clip_region_mean")->v[0],
          st.clip_low_min, fx_arr(c, "clip_low_min")->v[0], st.clip_high_max,
          fx_arr(c, "clip_high_max")->v[0]);
    free(adv), free(len), free(trunc), free(mask), free(newl), free(oldl), free(refl), free(ent);
    free(dlogp), free(dent);
}

int main(void)
{
    const char *path = GRPO_TESTS_DIR "/fixtures/rl/grpo_loss.txt";
    FILE *f = fopen(path, "r");
    if (!f) TEST_SKIP("no fixture %s (run tests/golden/make_grpo_fixtures.py)", path);
    FxCase c;
    int n = 0, rc;
    while ((rc = fx_next(f, &c, path)) == 1) {
        check_case(&c);
        fx_free(&c);
        n++;
    }
    fclose(f);
    CHECK(rc == 0, "fixture %s is malformed", path);
    CHECK(n >= 50, "only %d cases in %s", n, path);
    printf("%d golden cases (loss types x scale_rewards x token/sequence ratio, options)\n", n);
    printf("worst errors: advantage %.3g (tol %.0e), loss %.3g (tol %.0e), dlogp %.3g in %s (tol %.0e)\n",
           worst_adv, TOL_ADV, worst_loss, TOL_LOSS, worst_grad, worst_grad_case, TOL_GRAD);
    return test_report();
}
