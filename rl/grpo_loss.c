/* grpo_loss: the clipped-surrogate GRPO loss, KL penalty and entropy bonus,
 * aggregated by loss type, with the analytic gradient w.r.t. the per-token
 * log-probs (what model_backward takes). The API is in grpo.h.
 *
 * The loss of every type is a weighted token sum
 *     loss = sum_i c_i * sum_t m_it * l_it  -  entropy term,
 * where c_i depends only on the sequence and the loss type (agg_weight), so
 * one pass per sequence gives both the value and the gradient. The clip
 * derivative follows torch's conventions exactly (clamp passes the gradient
 * on its closed interval, min splits it in half on ties), so the result is
 * the autograd gradient of TRL's _compute_loss, not an approximation. */
#include <math.h>
#include <string.h>

#include "rl/grpo.h"

void grpo_loss_opts_default(GrpoLossOpts *o)
{
    memset(o, 0, sizeof *o);
    o->loss_type = GRPO_LOSS_DAPO;
    o->is_level = GRPO_IS_TOKEN;
    o->epsilon_low = 0.2f;
    o->epsilon_high = 0.2f;
    o->kl = GRPO_KL_K3;
    o->grad_accum = 1;
    o->max_completion_length = 512;
}

static const char *const loss_names[] = {"dapo", "grpo", "bnpo", "dr_grpo", "seq-mean-token-sum",
                                         "seq-mean-token-mean", "seq-mean-token-sum-norm"};
#define N_LOSS (int)(sizeof loss_names / sizeof *loss_names)

int grpo_loss_type_parse(const char *name, GrpoLossType *out, Err *err)
{
    for (int i = 0; i < N_LOSS; i++)
        if (strcmp(name, loss_names[i]) == 0) {
            *out = (GrpoLossType)i;
            return 0;
        }
    if (strcmp(name, "token-mean") == 0) { /* verl's name for the same normaliser */
        *out = GRPO_LOSS_DAPO;
        return 0;
    }
    return err_set(err, ERR_INPUT,
                   "loss_type: unknown value '%s' (dapo, grpo, bnpo, dr_grpo, token-mean, "
                   "seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm)", name);
}

const char *grpo_loss_type_name(GrpoLossType t)
{
    return (int)t >= 0 && (int)t < N_LOSS ? loss_names[t] : "?";
}

int grpo_is_level_parse(const char *name, GrpoIsLevel *out, Err *err)
{
    if (strcmp(name, "token") == 0) { *out = GRPO_IS_TOKEN; return 0; }
    if (strcmp(name, "sequence") == 0) { *out = GRPO_IS_SEQUENCE; return 0; }
    return err_set(err, ERR_INPUT, "importance_sampling_level: unknown value '%s' (token, sequence)", name);
}

int grpo_kl_parse(const char *name, GrpoKl *out, Err *err)
{
    if (strcmp(name, "k3") == 0 || strcmp(name, "low_var_kl") == 0) { *out = GRPO_KL_K3; return 0; }
    if (strcmp(name, "k1") == 0 || strcmp(name, "kl") == 0) { *out = GRPO_KL_K1; return 0; }
    if (strcmp(name, "k2") == 0 || strcmp(name, "mse") == 0) { *out = GRPO_KL_K2; return 0; }
    return err_set(err, ERR_INPUT, "kl_estimator: unknown value '%s' (k1, k2, k3)", name);
}

/* Per-token KL estimate of pi_theta || pi_ref at log-probs x (new), r (ref),
 * and its derivative in x (Schulman's k1, k2, k3; grpo.md §4). */
static double kl_value(GrpoKl k, double x, double r, double *dx)
{
    double d = x - r;
    switch (k) {
    case GRPO_KL_K1: *dx = 1.0; return d;
    case GRPO_KL_K2: *dx = d; return 0.5 * d * d;
    default: *dx = 1.0 - exp(-d); return exp(-d) + d - 1.0;
    }
}

/* -min(w'*A, clamp(w, 1-eps_low, 1+eps_high)*A) with w' = min(w, delta) when
 * delta is on; *dldw its derivative in w under torch's rules. */
static double clip_surrogate(const GrpoLossOpts *o, double w, double A, double *dldw)
{
    double lo = 1.0 - (double)o->epsilon_low, hi = 1.0 + (double)o->epsilon_high;
    double c1 = w, c2 = w < lo ? lo : (w > hi ? hi : w);
    double g1 = 1.0, g2 = (w >= lo && w <= hi) ? 1.0 : 0.0;
    if (o->delta > 0 && w > o->delta) {
        c1 = o->delta;
        g1 = 0.0;
    }
    double a = c1 * A, b = c2 * A;
    double d = a < b ? g1 : (a > b ? g2 : 0.5 * (g1 + g2));
    double l = -(a < b ? a : b);
    *dldw = -d * A;
    if (o->dual_clip_c > 0 && A < 0) { /* verl: where(A < 0, min(-A*c, l), l) */
        double l3 = -A * o->dual_clip_c;
        if (l3 < l) {
            *dldw = 0;
            l = l3;
        } else if (l3 == l) {
            *dldw *= 0.5;
        }
    }
    return l;
}

/* c_i: the weight of sequence i's masked token sum in the loss. */
static double agg_weight(const GrpoLossOpts *o, double n_i, double ntok, int nact, int S, int L)
{
    double ga = o->grad_accum > 1 ? o->grad_accum : 1;
    double gbs = o->num_seqs > 0 ? o->num_seqs : (nact > 0 ? nact : 1);
    switch (o->loss_type) {
    case GRPO_LOSS_GRPO: return 1.0 / (S * (n_i > 1 ? n_i : 1.0) * ga);
    case GRPO_LOSS_BNPO: return 1.0 / ((ntok > 1 ? ntok : 1.0) * ga);
    case GRPO_LOSS_DR_GRPO: return 1.0 / ((double)S * o->max_completion_length * ga);
    case GRPO_LOSS_SEQ_MEAN_TOKEN_SUM: return n_i > 0 ? 1.0 / gbs : 0.0;
    case GRPO_LOSS_SEQ_MEAN_TOKEN_MEAN: return n_i > 0 ? 1.0 / ((n_i + 1e-8) * gbs) : 0.0;
    case GRPO_LOSS_SEQ_MEAN_TOKEN_SUM_NORM:
        return n_i > 0 ? 1.0 / (gbs * (o->loss_scale_factor > 0 ? o->loss_scale_factor : L)) : 0.0;
    default: return 1.0 / (o->num_items > 0 ? o->num_items : (ntok > 1 ? ntok : 1.0));
    }
}

static int check_args(const GrpoLossOpts *o, const GrpoLossIn *in, Err *err)
{
    if (in->S < 1 || in->L < 1)
        return err_set(err, ERR_INPUT, "grpo_loss: need S, L >= 1 (got %d, %d)", in->S, in->L);
    if (!in->new_logp || !in->adv || !in->mask)
        return err_set(err, ERR_INPUT, "grpo_loss: new_logp, adv and mask are required");
    if (o->beta != 0 && !in->ref_logp)
        return err_set(err, ERR_INPUT, "grpo_loss: beta = %g needs ref_logp", o->beta);
    if (!(o->epsilon_low >= 0 && o->epsilon_low <= 1) || !(o->epsilon_high >= 0))
        return err_set(err, ERR_INPUT, "grpo_loss: epsilon_low must be in [0,1] and epsilon_high >= 0 "
                       "(got %g, %g)", o->epsilon_low, o->epsilon_high);
    if ((int)o->loss_type < 0 || (int)o->loss_type >= N_LOSS || (unsigned)o->is_level > GRPO_IS_SEQUENCE ||
        (unsigned)o->kl > GRPO_KL_K2)
        return err_set(err, ERR_INPUT, "grpo_loss: unknown loss_type, importance_sampling_level or kl");
    if (o->dual_clip_c > 0 && o->dual_clip_c <= 1)
        return err_set(err, ERR_INPUT, "grpo_loss: dual_clip_c must be > 1 (got %g)", o->dual_clip_c);
    if (o->loss_type == GRPO_LOSS_DR_GRPO && o->max_completion_length < 1)
        return err_set(err, ERR_INPUT, "grpo_loss: dr_grpo needs max_completion_length >= 1");
    return 0;
}

/* Running sums for the metrics TRL logs. */
typedef struct Acc {
    double loss, kl, ratio, low, high, region;
    double low_min, high_max;
} Acc;

static void acc_clip(Acc *a, double w, double A, const GrpoLossOpts *o, double weight, double *lo_s,
                     double *hi_s)
{
    if (o->delta > 0 && w > o->delta) w = o->delta; /* TRL reassigns coef_1 before its metrics */
    int lo = w < 1.0 - (double)o->epsilon_low && A < 0;
    int hi = w > 1.0 + (double)o->epsilon_high && A > 0;
    a->low += weight * lo;
    a->high += weight * hi;
    a->region += weight * (lo || hi);
    *lo_s += weight * lo;
    *hi_s += weight * hi;
}

/* One sequence: adds its loss to a and writes its gradient row. */
static void loss_sequence(const GrpoLossOpts *o, const GrpoLossIn *in, int i, double c, double n_i,
                          float *dx, Acc *a)
{
    size_t off = (size_t)i * in->L;
    const float *x = in->new_logp + off, *m = in->mask + off;
    const float *old = in->old_logp ? in->old_logp + off : x;
    const float *ref = in->ref_logp ? in->ref_logp + off : NULL;
    double A = in->adv[i], beta = o->beta, dldw, lo_s = 0, hi_s = 0;
    int seq = o->is_level == GRPO_IS_SEQUENCE;
    double wseq = 1.0, pol_seq = 0.0, gseq = 0.0; /* GSPO: ratio, surrogate, dL/dw_i */
    if (seq) {
        double lw = 0;
        for (int t = 0; t < in->L; t++)
            if (m[t] != 0) lw += ((double)x[t] - old[t]) * m[t];
        wseq = exp(lw / (n_i > 1 ? n_i : 1.0));
        pol_seq = clip_surrogate(o, wseq, A, &dldw);
        gseq = c * n_i * dldw;
        a->loss += c * n_i * pol_seq;
        a->ratio += wseq;
        acc_clip(a, wseq, A, o, 1.0, &lo_s, &hi_s);
    }
    for (int t = 0; t < in->L; t++) {
        if (dx) dx[t] = 0;
        if (m[t] == 0) continue;
        double cm = c * m[t], g = 0.0, w = wseq;
        if (!seq) {
            w = exp((double)x[t] - old[t]);
            a->loss += cm * clip_surrogate(o, w, A, &dldw);
            g = dldw * w;
            a->ratio += m[t] * w;
            acc_clip(a, w, A, o, m[t], &lo_s, &hi_s);
        }
        if (beta != 0) {
            double dkl, kl = kl_value(o->kl, x[t], ref[t], &dkl);
            if (o->kl_bias_correction) {
                if (seq) gseq += cm * beta * kl; /* d(kl * w_i)/dw_i, spread below */
                else g += beta * kl * w;         /* d w / d x = w */
                dkl *= w;
                kl *= w;
            }
            g += beta * dkl;
            a->loss += cm * beta * kl;
            a->kl += m[t] * kl;
        }
        if (dx) dx[t] = (float)(cm * g);
    }
    if (seq && dx) /* d w_i / d x_t = w_i * m_t / max(n_i, 1) */
        for (int t = 0; t < in->L; t++)
            if (m[t] != 0) dx[t] = (float)(dx[t] + gseq * wseq * m[t] / (n_i > 1 ? n_i : 1.0));
    if (n_i > 0 || seq) { /* TRL masked_seq_mean: NaN rows (no tokens) are skipped */
        double den = seq ? 1.0 : n_i;
        if (lo_s / den < a->low_min) a->low_min = lo_s / den;
        if (hi_s / den > a->high_max) a->high_max = hi_s / den;
    }
}

/* TRL's entropy bonus: loss -= coef * sum(H*m) / max(sum m, 1) / GA. */
static double entropy_term(const GrpoLossOpts *o, const GrpoLossIn *in, double ntok, float *dent,
                           double *ent_sum)
{
    size_t n = (size_t)in->S * in->L;
    double ga = o->grad_accum > 1 ? o->grad_accum : 1;
    double k = o->entropy_coef / ((ntok > 1 ? ntok : 1.0) * ga), sum = 0;
    for (size_t j = 0; j < n; j++) {
        if (in->mask[j] != 0) sum += (double)in->entropy[j] * in->mask[j];
        if (dent) dent[j] = (float)(-k * in->mask[j]);
    }
    *ent_sum = sum;
    return -k * sum;
}

int grpo_loss(const GrpoLossOpts *o, const GrpoLossIn *in, GrpoLossGrad *grad, GrpoLossStats *st,
              Err *err)
{
    if (check_args(o, in, err)) return -1;
    int S = in->S, L = in->L, nact = 0;
    double ntok = 0;
    for (int i = 0; i < S; i++) {
        double n_i = 0;
        for (int t = 0; t < L; t++) n_i += in->mask[(size_t)i * L + t];
        ntok += n_i;
        nact += n_i > 0;
    }
    Acc a = {0};
    a.low_min = INFINITY;
    a.high_max = -INFINITY;
    float *dlogp = grad ? grad->dlogp : NULL;
    for (int i = 0; i < S; i++) {
        double n_i = 0;
        for (int t = 0; t < L; t++) n_i += in->mask[(size_t)i * L + t];
        double c = agg_weight(o, n_i, ntok, nact, S, L);
        loss_sequence(o, in, i, c, n_i, dlogp ? dlogp + (size_t)i * L : NULL, &a);
    }
    double ent_loss = 0, ent_sum = 0;
    float *dent = grad ? grad->dentropy : NULL;
    if (in->entropy) ent_loss = entropy_term(o, in, ntok, dent, &ent_sum);
    else if (dent) memset(dent, 0, sizeof(float) * S * L);
    if (!st) return 0;

    memset(st, 0, sizeof *st);
    double tokd = ntok > 1 ? ntok : 1.0;
    st->policy_loss = a.loss;
    st->loss = a.loss + ent_loss;
    st->ntok = ntok;
    st->nseq_active = nact;
    st->kl_sum = a.kl;
    st->kl_mean = a.kl / tokd;
    st->entropy_sum = ent_sum;
    st->entropy_mean = ent_sum / tokd;
    st->clip_count = o->is_level == GRPO_IS_SEQUENCE ? S : ntok;
    double cd = st->clip_count > 1 ? st->clip_count : 1.0;
    st->ratio_mean = a.ratio / cd;
    st->clip_low_sum = a.low;
    st->clip_high_sum = a.high;
    st->clip_region_sum = a.region;
    st->clip_low_mean = a.low / cd;
    st->clip_high_mean = a.high / cd;
    st->clip_region_mean = a.region / cd;
    st->clip_low_min = isinf(a.low_min) ? NAN : a.low_min;
    st->clip_high_max = isinf(a.high_max) ? NAN : a.high_max;
    if (dlogp)
        for (size_t j = 0; j < (size_t)S * L; j++) st->nonfinite += !isfinite(dlogp[j]);
    return 0;
}
