/* adamw: the optimizer step on the GPU over fp32 master weights, fp32
 * gradients and fp32 moments, matching adamw_step in rl/optim.c:
 *   1. global L2 norm of the trainable gradients, two passes: per tensor, fixed
 *      blocks write partial sums of squares (and non-finite counts), one block
 *      per tensor reduces them in a fixed order (deterministic); the host adds
 *      the per-tensor sums in tensor order in double, as optim_grad_norm does;
 *   2. a non-finite gradient skips the step (nothing touched);
 *   3. clip_grad_norm_: coef = max_norm / (norm + 1e-6) applied to the
 *      gradients in place when < 1;
 *   4. torch's single-tensor AdamW update op by op in fp32 (decoupled decay
 *      for tensors marked decay), optionally refreshing a bf16 copy of the
 *      weights (the compute copy the other kernels read).
 * The tensor table (CudaParamSpan) is the caller's: build it from Model.ptab,
 * with decay = optim_decays(). Not here: schedules, state files, router bias. */
#ifndef GRPO_CUDA_ADAMW_H
#define GRPO_CUDA_ADAMW_H

#include <stddef.h>
#include <stdint.h>

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

typedef struct CudaParamSpan {
    size_t offset, numel; /* in floats from the start of the parameter array */
    int trainable;        /* 0: left out of the norm, the clip and the update */
    int decay;            /* 1: weight decay applies */
} CudaParamSpan;

typedef struct CudaAdamWOpts {
    double beta1, beta2, eps, weight_decay;
    double max_grad_norm;  /* <= 0: no clipping (the norm is still computed) */
} CudaAdamWOpts;

typedef struct CudaAdamWInfo {
    double grad_norm;      /* before clipping; inf/NaN when a gradient is not finite */
    double clip_coef;      /* 1 when not clipped */
    int skipped;           /* 1: non-finite gradient, nothing touched */
    size_t nonfinite;      /* non-finite gradient entries */
    int bad_span;          /* first span holding one, -1 when none */
} CudaAdamWInfo;

/* Device scratch for cuda_grad_norm / cuda_adamw_step over nspans tensors. */
size_t cuda_adamw_scratch_bytes(int nspans);

/* Global L2 norm of the trainable spans of grads (device) into info->grad_norm,
 * nonfinite and bad_span. Synchronises the stream (the result is on the host). */
int cuda_grad_norm(cudaStream_t s, const float *grads, const CudaParamSpan *spans, int nspans, void *scratch,
                   CudaAdamWInfo *info, Err *err);

/* One step as adamw_step: *step is the applied-step counter (incremented unless
 * skipped). params, grads, m, v [numel] fp32 device arrays; params_bf16 [numel]
 * (may be NULL) receives the updated weights rounded to bf16 for trainable spans.
 * Returns 1 when skipped, 0 when applied, -1 on a CUDA error. */
int cuda_adamw_step(cudaStream_t s, const CudaAdamWOpts *o, const CudaParamSpan *spans, int nspans, float *params,
                    float *grads, float *m, float *v, cuda_bf16 *params_bf16, int64_t *step, double lr,
                    void *scratch, CudaAdamWInfo *info, Err *err);

#ifdef __cplusplus
}
#endif
#endif
