/* trainer_cuda: the trainer's model work on the GPU (recipe device = "cuda"). The
 * policy, and the frozen reference when beta > 0, are held on the device (bf16
 * compute copy, fp32 master: model/cuda/model_cuda.h); rollouts run on
 * rollout_cuda's engine, log-probs and gradients on cuda_model_forward_packed and
 * its backward over the trainer's packed micro-batches, AdamW on optim_cuda: the weights stay on the GPU
 * from one step to the next. The host Model and AdamW are the checkpoint's copy:
 * trainer_cuda_sync_host brings them up to date (before a save or a re-sync of
 * the reference). It is not the trainer (trainer.c decides what runs when).
 * Built without the CUDA backend, trainer_cuda_open fails saying so. */
#ifndef GRPO_TRAINER_CUDA_H
#define GRPO_TRAINER_CUDA_H

#include <stdint.h>

#include "model/model.h"
#include "rl/optim.h"
#include "rl/rollout.h"

typedef struct TrainerCuda TrainerCuda;

/* Uploads m (and ref when not NULL) and opt's moments. m, ref and opt must outlive it. */
TrainerCuda *trainer_cuda_open(const Model *m, const Model *ref, const AdamW *opt, Err *err);
void trainer_cuda_close(TrainerCuda *c);
/* "NAME (sm_XY, N MiB)" of the device, for progress lines. */
const char *trainer_cuda_device(const TrainerCuda *c);
const RolloutEngine *trainer_cuda_engine(TrainerCuda *c);
/* model_forward_packed of the policy (ref = 0, router load added to load_acc [L, E]
 * when not NULL) or the reference (ref = 1) on the GPU; lp/ent host [ntok] (ent may be NULL). */
int trainer_cuda_forward(TrainerCuda *c, int ref, const PackedBatch *b, float temp, float *lp, float *ent,
                         int64_t *load_acc, Err *err);
/* model_backward_packed of the policy's last forward: gradients accumulate on the device. */
int trainer_cuda_backward(TrainerCuda *c, const PackedBatch *b, const float *dlogp, Err *err);
int trainer_cuda_zero_grads(TrainerCuda *c, Err *err);
/* adamw_step on the device over the accumulated gradients. */
int trainer_cuda_step(TrainerCuda *c, double lr, AdamWStepInfo *info, Err *err);
/* After the host changed the router biases (m) or the reference's weights (ref): upload them. */
int trainer_cuda_upload_router_bias(TrainerCuda *c, const Model *m, Err *err);
int trainer_cuda_upload_ref(TrainerCuda *c, const Model *ref, Err *err);
/* The device's weights into m->params and moments into opt (opt may be NULL). */
int trainer_cuda_sync_host(TrainerCuda *c, Model *m, AdamW *opt, Err *err);

#endif
