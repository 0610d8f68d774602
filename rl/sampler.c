/* sampler: see sampler.h. The filters follow transformers' warpers:
 *   TemperatureLogitsWarper  s = logits / T (float, as torch divides a float32 tensor)
 *   TopKLogitsWarper         remove s < (k-th largest s): ties at the threshold stay
 *   TopPLogitsWarper         sort ascending, cumsum of softmax, remove cum <= 1 - top_p,
 *                            the largest token always stays (min_tokens_to_keep = 1)
 *   MinPLogitsWarper         remove p < min_p * p_max, i.e. exp(s - s_max) < min_p
 * Probabilities are computed in double (torch uses float32); decisions only
 * differ from torch's within float rounding of a threshold. */
#include "rl/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/xalloc.h"

struct SamplerWork {
    int V;
    float *s;      /* [V] logits / T */
    float *tmp;    /* [V] quickselect copy */
    int *idx;      /* [V] kept token ids */
    double *e;     /* [V] exp(s - s_max), by token id */
    struct Pair { float v; int i; } *pairs; /* [V] top-p sort */
};

SamplerOpts sampler_defaults(void) {
    return (SamplerOpts){.temperature = 1.0f, .top_k = 0, .top_p = 1.0, .min_p = 0.0};
}

int sampler_check(const SamplerOpts *o, Err *err) {
    if (!(o->temperature >= 0) || isinf(o->temperature))
        return err_set(err, ERR_INPUT, "sampler: temperature must be >= 0 and finite (got %g)", o->temperature);
    if (o->top_k < 0) return err_set(err, ERR_INPUT, "sampler: top_k must be >= 0, 0 = off (got %d)", o->top_k);
    if (!(o->top_p >= 0 && o->top_p <= 1))
        return err_set(err, ERR_INPUT, "sampler: top_p must be in [0, 1], 1 = off (got %g)", o->top_p);
    if (!(o->min_p >= 0 && o->min_p <= 1))
        return err_set(err, ERR_INPUT, "sampler: min_p must be in [0, 1], 0 = off (got %g)", o->min_p);
    return 0;
}

SamplerWork *sampler_work_new(int V) {
    SamplerWork *w = xcalloc(1, sizeof *w);
    w->V = V;
    w->s = xmalloc(sizeof(float) * V), w->tmp = xmalloc(sizeof(float) * V);
    w->idx = xmalloc(sizeof(int) * V), w->e = xmalloc(sizeof(double) * V);
    w->pairs = xmalloc(sizeof(*w->pairs) * V);
    return w;
}

void sampler_work_free(SamplerWork *w) {
    if (!w) return;
    free(w->s), free(w->tmp), free(w->idx), free(w->e), free(w->pairs), free(w);
}


double sampler_uniform(uint64_t seed, uint64_t id, uint64_t step) {
    const uint64_t g = RNG_GOLDEN;
    uint64_t h = rng_fmix64(seed + g);
    h = rng_fmix64(h ^ (id * g + 0x632be59bd9b4e019ULL));
    h = rng_fmix64(h ^ (step * g + 0x85157af5ULL));
    return (double)(h >> 11) * 0x1.0p-53;
}

/* k-th largest of a[0..n) (k >= 1), reordering a: quickselect, descending. */
static float kth_largest(float *a, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j], a[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

/* Ascending by value; among equal values the higher id first, so the lowest
 * id counts as the most likely (it is the one argmax returns). */
static int pair_cmp(const void *a, const void *b) {
    const struct Pair *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return y->i - x->i;
}

enum { NBUCKET = 512, BUCKETS_PER_NAT = 8 }; /* buckets of s_max - s, up to 64 nats */

static int bucket(float d) {
    return d < (float)(NBUCKET - 1) / BUCKETS_PER_NAT ? (int)(d * BUCKETS_PER_NAT) : NBUCKET - 1;
}

/* TopPLogitsWarper on the kept set idx[0..nk) (am = the argmax, always kept).
 * The least likely buckets of s_max - s whose total mass stays <= 1 - top_p
 * come first in the ascending order with every cumulative sum <= 1 - top_p,
 * so they are removed without sorting; only the rest is sorted. */
static int top_p_filter(SamplerWork *w, int nk, int am, double top_p) {
    double z = 0, cut = 1.0 - top_p, mass[NBUCKET] = {0};
    const float mx = w->s[am];
    for (int j = 0; j < nk; j++) {
        int t = w->idx[j];
        z += w->e[t];
        mass[bucket(mx - w->s[t])] += w->e[t];
    }
    int kb = NBUCKET; /* buckets >= kb are removed; bucket 0 holds the argmax */
    double below = 0;
    while (kb > 1 && below + mass[kb - 1] <= cut * z) below += mass[--kb];
    int np = 0;
    for (int j = 0; j < nk; j++) {
        int t = w->idx[j];
        if (bucket(mx - w->s[t]) < kb) w->pairs[np++] = (struct Pair){w->s[t], t};
    }
    qsort(w->pairs, np, sizeof *w->pairs, pair_cmp);
    double cum = below / z;
    int out = 0;
    for (int j = 0; j < np; j++) {
        cum += w->e[w->pairs[j].i] / z;
        if (cum <= cut && j < np - 1) continue; /* removed */
        w->idx[out++] = w->pairs[j].i;
    }
    return out;
}

/* Fills w->s = logits / T and w->idx[0..n) with the kept tokens; returns n,
 * or -1 when there is no finite maximum. *am_out = argmax (lowest id). */
static int filter(const SamplerOpts *o, const float *logits, SamplerWork *w, int *am_out) {
    const int V = w->V;
    const float T = o->temperature;
    int am = 0;
    for (int i = 0; i < V; i++) {
        float v = logits[i] / T;
        w->s[i] = isnan(v) ? -INFINITY : v;
        if (w->s[i] > w->s[am]) am = i;
    }
    float mx = w->s[am];
    if (!isfinite(mx)) return -1;
    *am_out = am;
    /* float subtraction as in model_forward: sampler_sample sums these for the full log-prob */
    for (int i = 0; i < V; i++) w->e[i] = exp((double)(w->s[i] - mx));
    int n = 0;
    if (o->top_k > 0 && o->top_k < V) {
        memcpy(w->tmp, w->s, sizeof(float) * V);
        float thr = kth_largest(w->tmp, V, o->top_k);
        for (int i = 0; i < V; i++)
            if (w->s[i] >= thr) w->idx[n++] = i;
    } else {
        for (int i = 0; i < V; i++) w->idx[n++] = i;
    }
    if (o->top_p < 1.0) n = top_p_filter(w, n, am, o->top_p);
    if (o->min_p > 0) { /* p / p_max = exp(s - s_max): the normaliser cancels */
        int out = 0;
        for (int j = 0; j < n; j++)
            if (!(w->e[w->idx[j]] < o->min_p)) w->idx[out++] = w->idx[j];
        n = out;
    }
    return n;
}

/* log_softmax(logits / T)[tok] exactly as model_forward computes it. */
static float full_logp(const float *logits, int V, float T, int tok) {
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = fmaxf(mx, logits[v] / T);
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)(logits[v] / T - mx));
    float lse = mx + (float)log(s);
    return logits[tok] / T - lse;
}

static int greedy(const float *logits, int V) {
    int am = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[am]) am = i;
    return am;
}

static int bad_logits(Err *err) {
    return err_set(err, ERR_WORK, "sampler: the logits have no finite maximum (NaN or inf from the model)");
}

int sampler_sample(const SamplerOpts *o, const float *logits, SamplerWork *w, uint64_t seed, uint64_t id,
                   uint64_t step, SampleOut *out, Err *err) {
    const int V = w->V;
    if (o->temperature == 0) {
        int t = greedy(logits, V);
        if (!isfinite(logits[t])) return bad_logits(err);
        *out = (SampleOut){t, full_logp(logits, V, 1.0f, t), 0.0f};
        return 0;
    }
    int am, n = filter(o, logits, w, &am);
    if (n < 0) return bad_logits(err);
    double z = 0;
    for (int j = 0; j < n; j++) z += w->e[w->idx[j]];
    /* inverse CDF over the kept tokens in the (deterministic) filter order */
    double target = sampler_uniform(seed, id, step) * z, acc = 0;
    int tok = w->idx[n - 1];
    for (int j = 0; j < n; j++) {
        acc += w->e[w->idx[j]];
        if (acc > target) {
            tok = w->idx[j];
            break;
        }
    }
    /* log_softmax over the full vocabulary: model_forward's float operations
     * (e[] holds its exp((double)(s - mx)) terms, summed in the same order) */
    double zall = 0;
    for (int v = 0; v < V; v++) zall += w->e[v];
    out->token = tok;
    out->logp = w->s[tok] - (w->s[am] + (float)log(zall));
    out->logp_filtered = (float)(log(w->e[tok]) - log(z));
    return 0;
}

int sampler_probs(const SamplerOpts *o, const float *logits, SamplerWork *w, double *probs, Err *err) {
    const int V = w->V;
    memset(probs, 0, sizeof(double) * V);
    if (o->temperature == 0) {
        int t = greedy(logits, V);
        if (!isfinite(logits[t])) return bad_logits(err);
        probs[t] = 1.0;
        return 1;
    }
    int am, n = filter(o, logits, w, &am);
    if (n < 0) return bad_logits(err);
    double z = 0;
    for (int j = 0; j < n; j++) z += w->e[w->idx[j]];
    for (int j = 0; j < n; j++) probs[w->idx[j]] = w->e[w->idx[j]] / z;
    return n;
}
