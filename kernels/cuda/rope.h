/* rope: interleaved-pair rotary embedding on bf16 vectors, the semantics of
 * rope_apply in kernels/cpu/ops.h. The angle table is the CPU's: build cos/sin
 * [N, dr/2] with rope_table (YaRN frequencies and amplitude included) and
 * upload it once per batch shape; this module does not compute frequencies.
 * Math in fp32, result rounded to bf16 in place. */
#ifndef GRPO_CUDA_ROPE_H
#define GRPO_CUDA_ROPE_H

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

/* Rotates pairs (x[2j], x[2j+1]) of the first dr dims of nvec vectors per row
 * (vectors vstride apart, rows ldx apart) by cs/sn [N, dr/2] (fp32, device).
 * inverse = 1 applies the transposed rotation (the backward). */
int cuda_rope_apply(cudaStream_t s, cuda_bf16 *x, const float *cs, const float *sn, int N, int nvec, int vstride,
                    int ldx, int dr, int inverse, Err *err);

#ifdef __cplusplus
}
#endif
#endif
