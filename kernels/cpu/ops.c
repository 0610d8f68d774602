/* ops: see ops.h. */
#include "ops.h"
#include "simd.h"
#include "vexpf.h"

#include <math.h>
#include <omp.h>

#define PAR_ROWS(n) if (!omp_in_parallel() && (n) > 16)

/* The row statistics are sums in double, each row's in d order; RB rows run
 * interleaved so the RB dependency chains overlap (same order per row, so the
 * same bits as one row at a time, at several times the speed). */
enum { RB = 8 };

void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int N, int D, int ldx, int ldy, float eps) {
    const int nb = (N + RB - 1) / RB;
#pragma omp parallel for PAR_ROWS(N)
    for (int b = 0; b < nb; b++) {
        const int i0 = b * RB, nr = N - i0 < RB ? N - i0 : RB;
        const float *x0 = x + (long)i0 * ldx;
        double ss[RB] = {0}; /* double: the statistic must not depend on summation order */
        if (nr == RB) {
            for (int d = 0; d < D; d++)
                for (int r = 0; r < RB; r++) ss[r] += (double)x0[(long)r * ldx + d] * x0[(long)r * ldx + d];
        } else {
            for (int r = 0; r < nr; r++)
                for (int d = 0; d < D; d++) ss[r] += (double)x0[(long)r * ldx + d] * x0[(long)r * ldx + d];
        }
        for (int r = 0; r < nr; r++) {
            const float *xi = x0 + (long)r * ldx;
            float *yi = y + (long)(i0 + r) * ldy;
            float rs = (float)(1.0 / sqrt(ss[r] / D + eps));
            if (rstd) rstd[i0 + r] = rs;
            for (int d = 0; d < D; d++) yi[d] = w[d] * (xi[d] * rs);
        }
    }
}

void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int N,
                 int D, int ldx, int lddx) {
    /* y = w*x*r, r = (mean x^2 + eps)^-1/2:
     * dx = r*(w*dy) - x * r^3/D * sum(w*dy*x) */
    const int nb = (N + RB - 1) / RB;
#pragma omp parallel for PAR_ROWS(N)
    for (int b = 0; b < nb; b++) {
        const int i0 = b * RB, nr = N - i0 < RB ? N - i0 : RB;
        const float *x0 = x + (long)i0 * ldx, *dy0 = dy + (long)i0 * D;
        double dot[RB] = {0};
        if (nr == RB) {
            for (int d = 0; d < D; d++)
                for (int r = 0; r < RB; r++) dot[r] += (double)w[d] * dy0[(long)r * D + d] * x0[(long)r * ldx + d];
        } else {
            for (int r = 0; r < nr; r++)
                for (int d = 0; d < D; d++) dot[r] += (double)w[d] * dy0[(long)r * D + d] * x0[(long)r * ldx + d];
        }
        for (int r = 0; r < nr; r++) {
            const float *xi = x0 + (long)r * ldx, *dyi = dy0 + (long)r * D;
            float *dxi = dx + (long)(i0 + r) * lddx;
            float rs = rstd[i0 + r];
            float c = (float)(dot[r] * rs * rs * rs / D);
            for (int d = 0; d < D; d++) dxi[d] += rs * w[d] * dyi[d] - xi[d] * c;
        }
    }
    if (!dw) return;
    /* column sums, each in row order; rows outer so the reads are sequential,
     * columns split among threads in chunks (no reduction races) */
    enum { CW = 64 };
    const int nch = (D + CW - 1) / CW;
#pragma omp parallel for if (!omp_in_parallel() && (long)N * D > 65536)
    for (int ch = 0; ch < nch; ch++) {
        const int d0 = ch * CW, nd = D - d0 < CW ? D - d0 : CW;
        double acc[CW] = {0};
        for (int i = 0; i < N; i++) {
            const float *dyi = dy + (long)i * D + d0, *xi = x + (long)i * ldx + d0;
            const float ri = rstd[i];
            for (int d = 0; d < nd; d++) acc[d] += (double)dyi[d] * xi[d] * ri;
        }
        for (int d = 0; d < nd; d++) dw[d0 + d] += (float)acc[d];
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

void exp_shifted(float *x, long n, float shift) {
    const long nv = n / VW * VW;
    const vf sh = vbcast(shift);
    for (long i = 0; i < nv; i += VW) vstore(x + i, vexpf(vload(x + i) - sh));
    for (long i = nv; i < n; i++) x[i] = expf(x[i] - shift);
}

/* SwiGLU runs VW elements at a time with vexpf (the same bits as expf) and
 * the scalar code's operations in its order, so the results are bitwise those
 * of the scalar loops, which still do the tail (test_vexpf checks both). */
void swiglu_fwd(float *h, const float *g, const float *u, long n) {
    const long nv = n / VW;
    const vf one = vbcast(1.0f);
#pragma omp parallel for if (!omp_in_parallel() && n > 65536)
    for (long b = 0; b < nv; b++) {
        const long i = b * VW;
        vf gv = vload(g + i);
        vstore(h + i, gv / (one + vexpf(-gv)) * vload(u + i));
    }
    for (long i = nv * VW; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n) {
    const long nv = n / VW;
    const vf one = vbcast(1.0f);
#pragma omp parallel for if (!omp_in_parallel() && n > 65536)
    for (long b = 0; b < nv; b++) {
        const long i = b * VW;
        vf gv = vload(g + i), dhv = vload(dh + i);
        vf s = one / (one + vexpf(-gv));
        vstore(du + i, dhv * (gv * s));
        vstore(dg + i, dhv * vload(u + i) * s * (one + gv * (one - s)));
    }
    for (long i = nv * VW; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i]));
        float silu = g[i] * s;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}
