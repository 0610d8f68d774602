/* ops: see ops.h. */
#include "ops.h"

#include <math.h>
#include <omp.h>

#define PAR_ROWS(n) if (!omp_in_parallel() && (n) > 16)

void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int N, int D, int ldx, int ldy, float eps) {
#pragma omp parallel for PAR_ROWS(N)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * ldx;
        float *yi = y + (long)i * ldy;
        double ss = 0;  /* double: the statistic must not depend on summation order */
        for (int d = 0; d < D; d++) ss += (double)xi[d] * xi[d];
        float r = (float)(1.0 / sqrt(ss / D + eps));
        if (rstd) rstd[i] = r;
        for (int d = 0; d < D; d++) yi[d] = w[d] * (xi[d] * r);
    }
}

void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int N,
                 int D, int ldx, int lddx) {
    /* y = w*x*r, r = (mean x^2 + eps)^-1/2:
     * dx = r*(w*dy) - x * r^3/D * sum(w*dy*x) */
#pragma omp parallel for PAR_ROWS(N)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * ldx, *dyi = dy + (long)i * D;
        float *dxi = dx + (long)i * lddx;
        float r = rstd[i];
        double dot = 0;
        for (int d = 0; d < D; d++) dot += (double)w[d] * dyi[d] * xi[d];
        float c = (float)(dot * r * r * r / D);
        for (int d = 0; d < D; d++) dxi[d] += r * w[d] * dyi[d] - xi[d] * c;
    }
    if (!dw) return;
    /* column sums: parallel over columns so no reduction races */
#pragma omp parallel for if (!omp_in_parallel() && (long)N * D > 65536)
    for (int d = 0; d < D; d++) {
        double acc = 0;
        for (int i = 0; i < N; i++) acc += (double)dy[(long)i * D + d] * x[(long)i * ldx + d] * rstd[i];
        dw[d] += (float)acc;
    }
}

void rope_table(float *cs, float *sn, const int *pos, const float *inv_freq, float amp, int N, int dr) {
    int half = dr / 2;
#pragma omp parallel for PAR_ROWS(N)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < half; j++) {
            float ang = (float)pos[i] * inv_freq[j];
            cs[(long)i * half + j] = cosf(ang) * amp;
            sn[(long)i * half + j] = sinf(ang) * amp;
        }
}

void rope_apply(float *x, const float *cs, const float *sn, int N, int nvec, int vstride, int ldx, int dr, int inverse) {
    int half = dr / 2;
    float sg = inverse ? -1.0f : 1.0f;
#pragma omp parallel for PAR_ROWS(N)
    for (int i = 0; i < N; i++) {
        const float *c = cs + (long)i * half, *s = sn + (long)i * half;
        for (int v = 0; v < nvec; v++) {
            float *p = x + (long)i * ldx + (long)v * vstride;
            for (int j = 0; j < half; j++) {
                float a = p[2 * j], b = p[2 * j + 1], sj = sg * s[j];
                p[2 * j] = a * c[j] - b * sj;
                p[2 * j + 1] = b * c[j] + a * sj;
            }
        }
    }
}

void swiglu_fwd(float *h, const float *g, const float *u, long n) {
#pragma omp parallel for if (!omp_in_parallel() && n > 65536)
    for (long i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n) {
#pragma omp parallel for if (!omp_in_parallel() && n > 65536)
    for (long i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i]));
        float silu = g[i] * s;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}
