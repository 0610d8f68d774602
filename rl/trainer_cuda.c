/* trainer_cuda: see trainer_cuda.h. */
#include "rl/trainer_cuda.h"

#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

#ifdef GRPO_MODEL_CUDA_ENABLED
#include "kernels/cuda/device.h"
#include "model/cuda/model_cuda.h"
#include "rl/optim_cuda.h"
#include "rl/rollout_cuda.h"

struct TrainerCuda {
    CudaModel *g, *ref;
    OptimCuda *opt;
    RolloutCuda *ro;
    RolloutEngine engine;
    int L, E;
    int *load;       /* [L, E] router load of one forward */
    char device[128];
};

void trainer_cuda_close(TrainerCuda *c) {
    if (!c) return;
    rollout_cuda_free(c->ro);
    optim_cuda_free(c->opt);
    cuda_model_free(c->ref);
    cuda_model_free(c->g);
    free(c->load);
    free(c);
}

TrainerCuda *trainer_cuda_open(const Model *m, const Model *ref, const AdamW *opt, Err *err) {
    if (cuda_device_count() <= 0) {
        err_set(err, ERR_INPUT, "device \"cuda\": no CUDA device is visible (no GPU or no driver)");
        return NULL;
    }
    TrainerCuda *c = xcalloc(1, sizeof *c);
    cuda_device_describe(c->device, sizeof c->device);
    c->L = m->cfg.num_hidden_layers, c->E = m->cfg.n_routed_experts;
    c->load = xcalloc((size_t)c->L * (c->E ? c->E : 1), sizeof(int));
    int ok = (c->g = cuda_model_new(m, err)) && (!ref || (c->ref = cuda_model_new(ref, err))) &&
             (c->opt = optim_cuda_new(&opt->o, m, err)) && optim_cuda_upload(c->opt, opt, err) == 0;
    if (!ok) {
        err_wrap(err, "device \"cuda\" (%s)", c->device);
        trainer_cuda_close(c);
        return NULL;
    }
    c->ro = rollout_cuda_new(c->g);
    c->engine = rollout_cuda_engine(c->ro);
    return c;
}

const char *trainer_cuda_device(const TrainerCuda *c) { return c->device; }
const RolloutEngine *trainer_cuda_engine(TrainerCuda *c) { return &c->engine; }

int trainer_cuda_forward(TrainerCuda *c, int ref, const PackedBatch *b, float temp, float *lp, float *ent,
                         int64_t *load_acc, Err *err) {
    const int want = !ref && load_acc && c->E;
    if (cuda_model_forward_packed(ref ? c->ref : c->g, b, temp, lp, ent, want ? c->load : NULL, err)) return -1;
    for (long i = 0; want && i < (long)c->L * c->E; i++) load_acc[i] += c->load[i];
    return 0;
}

int trainer_cuda_backward(TrainerCuda *c, const PackedBatch *b, const float *dlogp, Err *err) {
    return cuda_model_backward_packed(c->g, b, dlogp, NULL, err);
}

int trainer_cuda_zero_grads(TrainerCuda *c, Err *err) { return cuda_model_zero_grads(c->g, err); }

int trainer_cuda_step(TrainerCuda *c, double lr, AdamWStepInfo *info, Err *err) {
    return optim_cuda_step(c->opt, c->g, lr, info, err);
}

int trainer_cuda_upload_router_bias(TrainerCuda *c, const Model *m, Err *err) {
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        const float *b = m->layers[l].router_bias;
        if (b && cuda_model_upload_span(c->g, m, (size_t)(b - m->params), (size_t)c->E, err)) return -1;
    }
    return 0;
}

int trainer_cuda_upload_ref(TrainerCuda *c, const Model *ref, Err *err) {
    return c->ref ? cuda_model_upload(c->ref, ref, err) : 0;
}

int trainer_cuda_sync_host(TrainerCuda *c, Model *m, AdamW *opt, Err *err) {
    if (cuda_model_download(c->g, m->params, err)) return -1;
    return opt ? optim_cuda_download(c->opt, c->g, opt, err) : 0;
}

#else /* built without nvcc: the one entry point says so */

TrainerCuda *trainer_cuda_open(const Model *m, const Model *ref, const AdamW *opt, Err *err) {
    (void)m, (void)ref, (void)opt;
    err_set(err, ERR_INPUT, "device \"cuda\": this grpo was built without the CUDA backend (nvcc was not found by cmake)");
    return NULL;
}
void trainer_cuda_close(TrainerCuda *c) { (void)c; }
#define UNREACHABLE abort() /* trainer_cuda_open never returns a TrainerCuda here */
const char *trainer_cuda_device(const TrainerCuda *c) { (void)c; UNREACHABLE; }
const RolloutEngine *trainer_cuda_engine(TrainerCuda *c) { (void)c; UNREACHABLE; }
int trainer_cuda_forward(TrainerCuda *c, int ref, const PackedBatch *b, float temp, float *lp, float *ent,
                         int64_t *load_acc, Err *err) { UNREACHABLE; }
int trainer_cuda_backward(TrainerCuda *c, const PackedBatch *b, const float *dlogp, Err *err) { UNREACHABLE; }
int trainer_cuda_zero_grads(TrainerCuda *c, Err *err) { UNREACHABLE; }
int trainer_cuda_step(TrainerCuda *c, double lr, AdamWStepInfo *info, Err *err) { UNREACHABLE; }
int trainer_cuda_upload_router_bias(TrainerCuda *c, const Model *m, Err *err) { UNREACHABLE; }
int trainer_cuda_upload_ref(TrainerCuda *c, const Model *ref, Err *err) { UNREACHABLE; }
int trainer_cuda_sync_host(TrainerCuda *c, Model *m, AdamW *opt, Err *err) { UNREACHABLE; }
#endif
