/* optim_cuda: AdamW (optim.h's numerics) over a model held on the GPU
 * (model/cuda/model_cuda.h): moments on the device, the update applied to the fp32
 * master weights and the bf16 compute copy refreshed in the same pass, so the
 * weights never leave the GPU between steps. Built only with the CUDA backend
 * (GRPO_MODEL_CUDA_ENABLED); the step and its tests are in kernels/cuda/adamw.h
 * and tests/cuda/test_cuda_train.c. It is not the trainer. */
#ifndef GRPO_OPTIM_CUDA_H
#define GRPO_OPTIM_CUDA_H

#include "model/cuda/model_cuda.h"
#include "rl/optim.h"

typedef struct OptimCuda OptimCuda;

/* Moments (zero) for m's parameters, decay per tensor by o->decay_rule as adamw_init. */
OptimCuda *optim_cuda_new(const AdamWOpts *o, const Model *m, Err *err);
void optim_cuda_free(OptimCuda *a);
/* One step as adamw_step over g's gradients: skipped (nothing touched, info->skipped)
 * when a gradient is not finite, else clipped to max_grad_norm and applied at lr. */
int optim_cuda_step(OptimCuda *a, CudaModel *g, double lr, AdamWStepInfo *info, Err *err);
/* The moments and step counts to a host optimizer of the same model (to save it),
 * and back (to resume from one). */
int optim_cuda_download(OptimCuda *a, CudaModel *g, AdamW *host, Err *err);
int optim_cuda_upload(OptimCuda *a, const AdamW *host, Err *err);
/* Applied steps (bias correction), as AdamW.step. */
int64_t optim_cuda_steps(const OptimCuda *a);

#endif
