/* norm: RMSNorm forward and backward on the GPU (bf16 activations and weight,
 * fp32 statistics and math), the semantics of rmsnorm_fwd / rmsnorm_bwd in
 * kernels/cpu/ops.h. The weight gradient is fp32 and accumulated. Rows are
 * independent; one thread block per row. Not fused with the residual add. */
#ifndef GRPO_CUDA_NORM_H
#define GRPO_CUDA_NORM_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "base/err.h"
#ifdef __cplusplus
}
#endif
#include "kernels/cuda/bf16.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[N, ldy] = w[D] * x / sqrt(mean(x^2) + eps) over the first D columns of
 * x[N, ldx]; rstd[N] (fp32, may be NULL) saved for the backward. */
int cuda_rmsnorm_fwd(cudaStream_t s, cuda_bf16 *y, float *rstd, const cuda_bf16 *x, const cuda_bf16 *w, int N, int D,
                     int ldx, int ldy, float eps, Err *err);
/* dx[N, lddx] (+)= d/dx (accumulate 1: add to dx as rmsnorm_bwd does; 0: overwrite),
 * dw[D] += d/dw in fp32 (may be NULL). dy is [N, D], x the norm input [N, ldx]. */
int cuda_rmsnorm_bwd(cudaStream_t s, cuda_bf16 *dx, float *dw, const cuda_bf16 *dy, const cuda_bf16 *x,
                     const cuda_bf16 *w, const float *rstd, int N, int D, int ldx, int lddx, int accumulate,
                     Err *err);

#ifdef __cplusplus
}
#endif
#endif
