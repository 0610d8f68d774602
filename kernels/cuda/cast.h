/* cast: fp32 <-> bf16 conversion of device arrays (round to nearest even),
 * e.g. the bf16 compute copy of the fp32 master weights. Nothing else. */
#ifndef GRPO_CUDA_CAST_H
#define GRPO_CUDA_CAST_H

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

/* dst[n] = bf16(src[n]) */
int cuda_f32_to_bf16(cudaStream_t s, cuda_bf16 *dst, const float *src, long n, Err *err);
/* dst[n] = float(src[n]) (exact) */
int cuda_bf16_to_f32(cudaStream_t s, float *dst, const cuda_bf16 *src, long n, Err *err);

#ifdef __cplusplus
}
#endif
#endif
