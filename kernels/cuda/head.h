/* head: the fused output head of the training forward on the GPU: per-token
 * log-prob of the target and entropy of softmax(x W^T / temperature), and its
 * backward, chunked over tokens so only [chunk, V] logits exist at a time (the
 * semantics of model_forward / head_bwd in model/model_fwd.c):
 *   lse[n]  = logsumexp_v(z[n,v]),  z = x W^T / tau      (fp32 logits from cuBLASLt)
 *   logp[n] = z[n, tgt[n]] - lse[n]   (0 where tgt < 0)
 *   ent[n]  = lse[n] - sum_v p z      (entropy in nats)
 * backward: dz = (-gl p - ge p (log p + ent)) / tau, + gl / tau at the target,
 * with gl = dlogp[n] (0 when tgt < 0), ge = dent[n]; dz is rounded to bf16 for
 * the two products dx = dz W and dW += dz^T x. Reductions are fp32 (the CPU's
 * sums are double). It does not sample and does not keep full logits. */
#ifndef GRPO_CUDA_HEAD_H
#define GRPO_CUDA_HEAD_H

#include <stddef.h>

#include "kernels/cuda/gemm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device scratch the head needs for `chunk` rows: fp32 logits + bf16 d(logits). */
size_t cuda_head_scratch_bytes(int chunk, int V);

/* x [N, H] bf16 final-normed hidden states, W [V, H] bf16 lm_head, targets [N]
 * (device, may be NULL = all -1). Writes lse [N], ent [N] (kept for the
 * backward) and logp [N] (may be NULL). scratch: cuda_head_scratch_bytes(chunk, V). */
int cuda_head_fwd(CudaBlas *h, cudaStream_t s, const cuda_bf16 *x, const cuda_bf16 *W, const int *targets, int N,
                  int H, int V, float temperature, float *logp, float *lse, float *ent, void *scratch, int chunk,
                  Err *err);

/* Backward of cuda_head_fwd with the same x, W, targets, temperature, lse, ent.
 * dlogp, dent [N] fp32 (either may be NULL). dx [N, H] bf16 (accumulate 1: +=,
 * 0: overwritten); dW [V, H] fp32 accumulated (may be NULL). */
int cuda_head_bwd(CudaBlas *h, cudaStream_t s, const cuda_bf16 *x, const cuda_bf16 *W, const int *targets, int N,
                  int H, int V, float temperature, const float *lse, const float *ent, const float *dlogp,
                  const float *dent, cuda_bf16 *dx, int accumulate_dx, float *dW, void *scratch, int chunk,
                  Err *err);

#ifdef __cplusplus
}
#endif
#endif
