/* latent_attn: see latent_attn.h. Scores: every cached token is read once for
 * all heads, four tokens at a time (four FMA chains, and one shuffle tree sums
 * the four dot products' lanes); context: per head, register accumulators
 * over all tokens (the keys of one call stay in L1). Each sum runs in a fixed
 * order, so results are reproducible. */
#include "latent_attn.h"
#include "ops.h"

#include <math.h>

#include "simd.h"

/* Lanes of x[0:n]·y[0:n] over whole vectors, added to acc; *tail += the rest. */
static inline vf dot_lanes(vf acc, const float *x, const float *y, int n, float *tail) {
    int j = 0;
    for (; j + VW <= n; j += VW) acc += vload(x + j) * vload(y + j);
    for (; j < n; j++) *tail += x[j] * y[j];
    return acc;
}

/* acc[u] += lanes of x[0:n]·y_u[0:n] (y_u = y + u*ldy) for four rows at once,
 * x read once; tail[u] += the part past whole vectors. */
static inline void dot4_lanes(vf acc[4], float tail[4], const float *x, const float *y, long ldy, int n) {
    int j = 0;
    for (; j + VW <= n; j += VW) {
        vf xv = vload(x + j);
        for (int u = 0; u < 4; u++) acc[u] += xv * vload(y + u * ldy + j);
    }
    for (; j < n; j++)
        for (int u = 0; u < 4; u++) tail[u] += x[j] * y[u * ldy + j];
}

/* sc[h, t] for all heads and the tokens [t0, t0 + 4). */
static void scores4(float *sc, const float *qa, long lda, const float *qb, long ldb, const float *ka, const float *kb,
                    int nh, int T, int t0, int da, int db, float scale) {
    for (int h = 0; h < nh; h++) {
        vf acc[4] = {{0}, {0}, {0}, {0}};
        float tail[4] = {0, 0, 0, 0};
        dot4_lanes(acc, tail, qa + h * lda, ka + (long)t0 * da, da, da);
        dot4_lanes(acc, tail, qb + h * ldb, kb + (long)t0 * db, db, db);
        vf4 s = vhsum4(acc[0], acc[1], acc[2], acc[3]);
        for (int u = 0; u < 4; u++) sc[(long)h * T + t0 + u] = (s[u] + tail[u]) * scale;
    }
}

/* In place: s[0:T] = softmax(s), the denominator in double (four partial sums). */
static void softmax_row(float *s, int T) {
    float mx = -INFINITY;
    for (int t = 0; t < T; t++) mx = s[t] > mx ? s[t] : mx;
    exp_shifted(s, T, mx);
    double part[4] = {0, 0, 0, 0};
    int t = 0;
    for (; t + 4 <= T; t += 4)
        for (int u = 0; u < 4; u++) part[u] += s[t + u];
    for (; t < T; t++) part[0] += s[t];
    double sum = (part[0] + part[1]) + (part[2] + part[3]);
    for (t = 0; t < T; t++) s[t] = (float)(s[t] / sum);
}

/* ctx[0:da] = sum_t p[t] ka[t]: even and odd tokens in separate register
 * accumulators (two FMA chains), added at the end. */
static void context_row(float *ctx, const float *p, const float *ka, int T, int da) {
    int j = 0;
    for (; j + 2 * VW <= da; j += 2 * VW) {
        vf c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
        int t = 0;
        for (; t + 2 <= T; t += 2) {
            const float *k = ka + (long)t * da + j;
            vf pv = vbcast(p[t]), qv = vbcast(p[t + 1]);
            c0 += pv * vload(k), c1 += pv * vload(k + VW);
            d0 += qv * vload(k + da), d1 += qv * vload(k + da + VW);
        }
        if (t < T) {
            const float *k = ka + (long)t * da + j;
            vf pv = vbcast(p[t]);
            c0 += pv * vload(k), c1 += pv * vload(k + VW);
        }
        vstore(ctx + j, c0 + d0), vstore(ctx + j + VW, c1 + d1);
    }
    for (; j + VW <= da; j += VW) {
        vf c0 = {0};
        for (int t = 0; t < T; t++) c0 += vbcast(p[t]) * vload(ka + (long)t * da + j);
        vstore(ctx + j, c0);
    }
    for (; j < da; j++) {
        float c = 0.0f;
        for (int t = 0; t < T; t++) c += p[t] * ka[(long)t * da + j];
        ctx[j] = c;
    }
}

void latent_attend(float *ctx, float *sc, const float *qa, long lda, const float *qb, long ldb, const float *ka,
                   const float *kb, int nh, int T, int da, int db, float scale) {
    int t = 0;
    for (; t + 4 <= T; t += 4) scores4(sc, qa, lda, qb, ldb, ka, kb, nh, T, t, da, db, scale);
    for (; t < T; t++)
        for (int h = 0; h < nh; h++) {
            float tail = 0.0f;
            vf acc = dot_lanes((vf){0}, qa + h * lda, ka + (long)t * da, da, &tail);
            acc = dot_lanes(acc, qb + h * ldb, kb + (long)t * db, db, &tail);
            sc[(long)h * T + t] = (vhsum(acc) + tail) * scale;
        }
    for (int h = 0; h < nh; h++) {
        softmax_row(sc + (long)h * T, T);
        context_row(ctx + (long)h * da, sc + (long)h * T, ka, T, da);
    }
}
