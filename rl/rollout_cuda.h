/* rollout_cuda: the rollout engine (rollout.h) of a model held on the GPU
 * (model/cuda/model_cuda.h): prefill and decode steps by cuda_model_extend over
 * a paged bf16 latent cache, logits kept on the device and sampled there
 * (kernels/cuda/sample.h, the CPU sampler's filters and random numbers), so a
 * decode step moves only the new token ids in and 3 numbers per sample out.
 * Built only with the CUDA backend (GRPO_MODEL_CUDA_ENABLED). It is not the
 * rollout loop (rollout.c) and holds no weights of its own. */
#ifndef GRPO_ROLLOUT_CUDA_H
#define GRPO_ROLLOUT_CUDA_H

#include "model/cuda/model_cuda.h"
#include "rl/rollout.h"

typedef struct RolloutCuda RolloutCuda;

/* An engine over g (which must outlive it); its buffers grow with use and are kept. */
RolloutCuda *rollout_cuda_new(CudaModel *g);
void rollout_cuda_free(RolloutCuda *rc);
/* The RolloutEngine to pass to rollout_generate_on. */
RolloutEngine rollout_cuda_engine(RolloutCuda *rc);

#endif
