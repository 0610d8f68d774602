/* ops: the elementwise and row-wise CPU kernels of the transformer (fp32):
 * RMSNorm, interleaved-pair RoPE, SwiGLU, and their backwards. Buffers are
 * row-major with shapes given next to each argument; rows are independent and
 * the loops over rows are OpenMP-parallel when not already in a parallel region.
 * Matrix products are in gemm.h; nothing here knows about the model. */
#ifndef GRPO_OPS_H
#define GRPO_OPS_H

/* y[N,D] = w[D] * x / sqrt(mean(x^2) + eps); rstd[N] saved for backward (may be NULL). */
void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int N, int D, int ldx, int ldy, float eps);
/* dx[N,D] += d/dx, dw[D] += d/dw (dw may be NULL). x is the norm input. */
void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int N,
                 int D, int ldx, int lddx);

/* Rotates pairs (x[2i], x[2i+1]) of the last dr dims of each of `nvec` vectors
 * per row by angle pos[row]*inv_freq[i]; amp scales cos/sin (YaRN amplitude).
 * x rows have stride ldx and vectors within a row stride vstride.
 * inverse=1 applies the transpose rotation (the backward). */
void rope_apply(float *x, const int *pos, const float *inv_freq, float amp, int N, int nvec, int vstride, int ldx,
                int dr, int inverse);

/* h[N,I] = silu(g) * u */
void swiglu_fwd(float *h, const float *g, const float *u, long n);
/* dg, du from dh (overwrite). */
void swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n);

#endif
