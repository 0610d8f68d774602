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

/* cs/sn[N, dr/2] = amp * cos/sin(pos[i] * inv_freq[j]), the angle in fp32 as
 * HF and the official code compute it (amp: the YaRN amplitude, 1 for real
 * checkpoints). */
void rope_table(float *cs, float *sn, const int *pos, const float *inv_freq, float amp, int N, int dr);
/* Rotates pairs (x[2i], x[2i+1]) of the dr dims of each of `nvec` vectors per
 * row (vectors vstride apart, rows ldx apart) by the angles of rope_table.
 * inverse=1 applies the transposed rotation (the backward). */
void rope_apply(float *x, const float *cs, const float *sn, int N, int nvec, int vstride, int ldx, int dr, int inverse);

/* In place: x[i] = expf(x[i] - shift), i < n, VW at a time (kernels/cpu/vexpf.h:
 * bitwise the same as the scalar expf loop); the softmaxes' exponentials. */
void exp_shifted(float *x, long n, float shift);

/* h[N,I] = silu(g) * u */
void swiglu_fwd(float *h, const float *g, const float *u, long n);
/* dg, du from dh (overwrite). */
void swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, long n);

#endif
