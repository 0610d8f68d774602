/* sample: next-token sampling on the GPU for a batch of rows of logits, with
 * the filters, order and draw of rl/sampler.c (transformers' warpers:
 * temperature, then top-k, then top-p, then min-p; temperature 0 = greedy,
 * lowest id on ties). The uniform random numbers are an INPUT: u[b] in [0, 1)
 * per row, normally sampler_uniform(seed, id, step), which
 * cuda_sample_uniforms computes on the device bit for bit. Given the same
 * logits and u, the CPU sampler picks the same token: the draw is the inverse
 * CDF over the kept tokens in the CPU's order (ascending id, or after top-p
 * ascending probability with the higher id first), found here by a radix
 * search over (probability, id) keys instead of a sort. Masses are summed in
 * double in a different order than the CPU's serial loop, so a decision can
 * differ only when a threshold falls within double rounding of a cumulative
 * sum. Per row it reports logp (log_softmax(logits / T)[token] over the full
 * vocabulary, as model_forward) and logp_filtered, as SampleOut.
 * One thread block per row; simple, not yet tuned (see docs/cuda.md). */
#ifndef GRPO_CUDA_SAMPLE_H
#define GRPO_CUDA_SAMPLE_H

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

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CudaSamplerOpts {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    double top_p;      /* 1 = off */
    double min_p;      /* 0 = off */
} CudaSamplerOpts;

/* Device scratch for B rows of V logits (13 bytes per logit). */
size_t cuda_sample_scratch_bytes(int B, int V);

/* logits [B, ldl] fp32 (device), u [B] (device). Writes token [B] (-1 where a
 * row has no finite maximum: NaN/inf logits), logp [B], logp_filtered [B]
 * (either may be NULL). Options are checked as sampler_check does. */
int cuda_sample(cudaStream_t s, const CudaSamplerOpts *o, const float *logits, int B, int V, int ldl,
                const double *u, int *token, float *logp, float *logp_filtered, void *scratch, Err *err);

/* u[b] = sampler_uniform(seed, ids[b], step) on the device (ids [B] device). */
int cuda_sample_uniforms(cudaStream_t s, uint64_t seed, const uint64_t *ids, uint64_t step, int B, double *u,
                         Err *err);

#ifdef __cplusplus
}
#endif
#endif
