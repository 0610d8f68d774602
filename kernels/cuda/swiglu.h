/* swiglu: h = silu(g) * u and its backward on bf16 buffers (fp32 math), the
 * semantics of swiglu_fwd / swiglu_bwd in kernels/cpu/ops.h. Elementwise over
 * n values; the caller lays out [N, I] rows contiguously. */
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

/* h[n] = g / (1 + exp(-g)) * u */
int cuda_swiglu_fwd(cudaStream_t s, cuda_bf16 *h, const cuda_bf16 *g, const cuda_bf16 *u, long n, Err *err);
/* dg, du [n] (overwritten) from dh, g, u. */
int cuda_swiglu_bwd(cudaStream_t s, cuda_bf16 *dg, cuda_bf16 *du, const cuda_bf16 *dh, const cuda_bf16 *g,
                    const cuda_bf16 *u, long n, Err *err);

#ifdef __cplusplus
}
#endif
#endif
