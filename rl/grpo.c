/* grpo: advantages, dynamic-sampling test and the GRPO loss with its
 * gradient w.r.t. the per-token log-probs. See grpo.h for the API and
 * docs/grpo.md for every formula and which toolkit it matches.
 *
 * Everything is computed in double from float inputs and written back as
 * float: the reductions (sums over thousands of tokens) are where fp32 would
 * lose digits, and the cost is nothing next to the model's backward. */
#include "rl/grpo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* TRL adds this to the std before dividing (grpo_trainer.py). */
#define GRPO_STD_EPS 1e-4
/* torch.isclose(std, 0) with its default atol (rtol * 0 = 0). */
#define GRPO_ZERO_STD_ATOL 1e-8

void grpo_adv_opts_default(GrpoAdvOpts *o)
{
    memset(o, 0, sizeof *o);
    o->scale = GRPO_SCALE_GROUP;
    o->multi = GRPO_MULTI_SUM_THEN_NORMALIZE;
}

static const char *const scale_names[] = {"group", "batch", "none"};

int grpo_scale_parse(const char *name, GrpoScale *out, Err *err)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, scale_names[i]) == 0) {
            *out = (GrpoScale)i;
            return 0;
        }
    /* TRL accepts booleans: True = group, False = none. */
    if (strcmp(name, "true") == 0) { *out = GRPO_SCALE_GROUP; return 0; }
    if (strcmp(name, "false") == 0) { *out = GRPO_SCALE_NONE; return 0; }
    return err_set(err, ERR_INPUT, "scale_rewards: unknown value '%s' (group, batch, none)", name);
}

const char *grpo_scale_name(GrpoScale s)
{
    return (unsigned)s < 3 ? scale_names[s] : "?";
}

void grpo_rewards_combine(const float *per_func, const float *weights, int N, int K, float *reward)
{
    for (int n = 0; n < N; n++) {
        double sum = 0;
        int scored = 0;
        for (int k = 0; k < K; k++) {
            double r = per_func[(size_t)n * K + k];
            if (isnan(r)) continue;
            sum += (weights ? weights[k] : 1.0) * r;
            scored = 1;
        }
        reward[n] = scored ? (float)sum : NAN;
    }
}

/* nanmean of x[i*stride], i < n; NaN when nothing is finite-or-inf (TRL: nan). */
static double nanmean_strided(const float *x, int n, int stride, int *count)
{
    double sum = 0;
    int c = 0;
    for (int i = 0; i < n; i++) {
        double v = x[(size_t)i * stride];
        if (isnan(v)) continue;
        sum += v;
        c++;
    }
    if (count) *count = c;
    return c ? sum / c : NAN;
}

/* TRL's nanstd: sqrt(nanmean((x - nanmean)^2) * c/(c-1)), NaN when c < 2. */
static double nanstd_strided(const float *x, int n, int stride)
{
    int c;
    double mean = nanmean_strided(x, n, stride, &c);
    if (c < 2) return NAN;
    double ss = 0;
    for (int i = 0; i < n; i++) {
        double v = x[(size_t)i * stride];
        if (!isnan(v)) ss += (v - mean) * (v - mean);
    }
    return sqrt(ss / c * ((double)c / (c - 1)));
}

/* The same two on a double buffer (GDPO's intermediate sums). */
static double nanmean_d(const double *x, int n)
{
    double sum = 0;
    int c = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) sum += x[i], c++;
    return c ? sum / c : NAN;
}

static double nanstd_d(const double *x, int n)
{
    double mean = nanmean_d(x, n), ss = 0;
    int c = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) ss += (x[i] - mean) * (x[i] - mean), c++;
    return c < 2 ? NAN : sqrt(ss / c * ((double)c / (c - 1)));
}

double grpo_nanstd(const float *x, int n)
{
    return nanstd_strided(x, n, 1);
}

static int std_is_zero(double std)
{
    return fabs(std) <= GRPO_ZERO_STD_ATOL; /* false for NaN, as torch.isclose */
}

/* GDPO: each component normalised per group, weighted nansum, then the sum
 * normalised over the batch (TRL multi_objective_aggregation=normalize_then_sum). */
static void advantages_normalize_then_sum(const GrpoAdvOpts *o, const float *per_func, int P, int G,
                                          int K, double *tmp, float *adv, double *batch_std)
{
    int N = P * G;
    for (int n = 0; n < N; n++) tmp[n] = 0;
    for (int n = 0; n < N; n++) adv[n] = NAN; /* adv doubles as "any component scored" */
    for (int p = 0; p < P; p++)
        for (int k = 0; k < K; k++) {
            const float *x = per_func + (size_t)p * G * K + k;
            double mean = nanmean_strided(x, G, K, NULL);
            double std = G > 1 ? nanstd_strided(x, G, K) : 0.0;
            for (int g = 0; g < G; g++) {
                int n = p * G + g;
                double r = x[(size_t)g * K];
                if (!isnan(r)) adv[n] = 0; /* scorable */
                double z = (r - mean) / (std + GRPO_STD_EPS);
                if (!isnan(z)) tmp[n] += (o->weights ? o->weights[k] : 1.0) * z;
            }
        }
    for (int n = 0; n < N; n++)
        if (isnan(adv[n])) tmp[n] = NAN; /* unscorable */
    double mean = nanmean_d(tmp, N), std = N > 1 ? nanstd_d(tmp, N) : 0.0;
    for (int n = 0; n < N; n++) adv[n] = (float)((tmp[n] - mean) / (std + GRPO_STD_EPS));
    *batch_std = std;
}

int grpo_advantages(const GrpoAdvOpts *o, const float *per_func, int P, int G, int K,
                    float *reward, float *adv, GrpoAdvStats *st, Err *err)
{
    if (P < 1 || G < 1 || K < 1)
        return err_set(err, ERR_INPUT, "advantages: need P, G, K >= 1 (got %d, %d, %d)", P, G, K);
    if (!per_func || !reward || !adv)
        return err_set(err, ERR_INPUT, "advantages: per_func, reward and adv buffers are required");
    if ((unsigned)o->scale > GRPO_SCALE_NONE || (unsigned)o->multi > GRPO_MULTI_NORMALIZE_THEN_SUM)
        return err_set(err, ERR_INPUT, "advantages: unknown scale_rewards or aggregation");
    int N = P * G;
    float *r = reward;
    grpo_rewards_combine(per_func, o->weights, N, K, r);

    double bstd = N > 1 ? nanstd_strided(r, N, 1) : 0.0;
    int zero_samples = 0, zero_groups = 0;
    for (int p = 0; p < P; p++) {
        const float *rg = r + (size_t)p * G;
        double gstd = G > 1 ? nanstd_strided(rg, G, 1) : 0.0;
        double std = o->scale == GRPO_SCALE_BATCH ? bstd : gstd;
        zero_samples += std_is_zero(std) ? G : 0;
        zero_groups += !(gstd > GRPO_ZERO_STD_ATOL);
        if (o->multi != GRPO_MULTI_SUM_THEN_NORMALIZE) continue;
        double mean = nanmean_strided(rg, G, 1, NULL);
        for (int g = 0; g < G; g++) {
            double a = rg[g] - mean;
            if (o->scale != GRPO_SCALE_NONE) a /= std + GRPO_STD_EPS;
            adv[p * G + g] = (float)a;
        }
    }
    if (o->multi == GRPO_MULTI_NORMALIZE_THEN_SUM) {
        double *tmp = malloc(sizeof(double) * N);
        if (!tmp) return err_set(err, ERR_WORK, "advantages: out of memory for %d samples", N);
        advantages_normalize_then_sum(o, per_func, P, G, K, tmp, adv, &bstd);
        free(tmp);
        zero_samples = std_is_zero(bstd) ? N : 0;
    }
    int unscorable = 0;
    for (int n = 0; n < N; n++) {
        unscorable += isnan(r[n]);
        if (isnan(adv[n])) adv[n] = 0; /* torch.nan_to_num(nan=0) */
    }
    if (st) {
        st->reward_mean = nanmean_strided(r, N, 1, NULL);
        st->reward_std = nanstd_strided(r, N, 1);
        st->frac_reward_zero_std = (double)zero_samples / N;
        st->n_unscorable = unscorable;
        st->n_zero_std_groups = zero_groups;
    }
    return 0;
}

int grpo_groups_with_signal(const float *reward, int P, int G, unsigned char *keep)
{
    int kept = 0;
    for (int p = 0; p < P; p++) {
        double std = G > 1 ? nanstd_strided(reward + (size_t)p * G, G, 1) : NAN;
        keep[p] = std > GRPO_ZERO_STD_ATOL; /* false for NaN */
        kept += keep[p];
    }
    return kept;
}

float grpo_overlong_penalty(int len, int max_len, int cache)
{
    int soft = max_len - cache;
    if (len <= soft) return 0.0f;
    if (len <= max_len) return (float)((double)(soft - len) / cache);
    return -1.0f;
}

/* ---- masks ---------------------------------------------------------------- */

void grpo_mask_from_lengths(float *mask, int S, int L, const int *start, const int *len)
{
    for (int s = 0; s < S; s++) {
        int a = start ? start[s] : 0, b = a + len[s];
        for (int t = 0; t < L; t++) mask[(size_t)s * L + t] = (t >= a && t < b) ? 1.0f : 0.0f;
    }
}

int grpo_mask_truncated(float *mask, int S, int L, const unsigned char *truncated)
{
    int n = 0;
    for (int s = 0; s < S; s++)
        if (truncated[s]) {
            memset(mask + (size_t)s * L, 0, sizeof(float) * L);
            n++;
        }
    return n;
}

double grpo_mask_count(const float *mask, int S, int L)
{
    double c = 0;
    for (size_t i = 0; i < (size_t)S * L; i++) c += mask[i];
    return c;
}
