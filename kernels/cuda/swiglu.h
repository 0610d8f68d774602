/* swiglu: h = silu(g) * u and its backward on bf16 buffers (fp32 math), the
 * semantics of swiglu_fwd / swiglu_bwd in kernels/cpu/ops.h, over rows of I
 * values. g and u (and dg, du) are rows of stride ld, so one [rows, 2I] buffer
 * holding a fused gate|up product serves as both (g = gu, u = gu + I, ld = 2I);
 * h and dh are [rows, I]. */
#ifndef GRPO_CUDA_SWIGLU_H
#define GRPO_CUDA_SWIGLU_H

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

/* h[r, j] = g / (1 + exp(-g)) * u with g = g[r*ld + j], u = u[r*ld + j] */
int cuda_swiglu_fwd(cudaStream_t s, cuda_bf16 *h, const cuda_bf16 *g, const cuda_bf16 *u, long rows, int I, long ld,
                    Err *err);
/* dg, du (rows of stride ld, overwritten) from dh [rows, I], g, u. */
int cuda_swiglu_bwd(cudaStream_t s, cuda_bf16 *dg, cuda_bf16 *du, const cuda_bf16 *dh, const cuda_bf16 *g,
                    const cuda_bf16 *u, long rows, int I, long ld, Err *err);

#ifdef __cplusplus
}
#endif
#endif
