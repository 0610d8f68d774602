/* optim_cuda: see optim_cuda.h. The spans table is the model's parameter table
 * (offsets, trainability, decay) handed to the device step once. */
#ifdef GRPO_MODEL_CUDA_ENABLED
#include "rl/optim_cuda.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cuda/adamw.h"

struct OptimCuda {
    CudaAdamWOpts o;
    CudaParamSpan *spans; /* [nspans] */
    const Param *ptab;
    int nspans;
    size_t numel;
    float *m, *v;         /* device [numel] */
    void *scratch;
    int64_t step, nskipped;
};

void optim_cuda_free(OptimCuda *a) {
    if (!a) return;
    if (a->m) cudaFree(a->m);
    if (a->v) cudaFree(a->v);
    if (a->scratch) cudaFree(a->scratch);
    free(a->spans);
    free(a);
}

OptimCuda *optim_cuda_new(const AdamWOpts *o, const Model *m, Err *err) {
    OptimCuda *a = xcalloc(1, sizeof *a);
    a->o = (CudaAdamWOpts){o->beta1, o->beta2, o->eps, o->weight_decay, o->max_grad_norm};
    a->ptab = m->ptab, a->nspans = m->nparams, a->numel = m->numel;
    a->spans = xcalloc((size_t)m->nparams, sizeof *a->spans);
    for (int i = 0; i < m->nparams; i++)
        a->spans[i] = (CudaParamSpan){m->ptab[i].offset, m->ptab[i].numel, m->ptab[i].trainable,
                                      optim_decays(&m->ptab[i], o->decay_rule)};
    size_t bytes = sizeof(float) * m->numel;
    cudaError_t e = cudaMalloc((void **)&a->m, bytes);
    if (e == cudaSuccess) e = cudaMalloc((void **)&a->v, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&a->scratch, cuda_adamw_scratch_bytes(a->nspans));
    if (e == cudaSuccess) e = cudaMemset(a->m, 0, bytes);
    if (e == cudaSuccess) e = cudaMemset(a->v, 0, bytes);
    if (e != cudaSuccess) {
        err_set(err, ERR_WORK, "optim_cuda: moments for %zu parameters: %s", m->numel, cudaGetErrorString(e));
        optim_cuda_free(a);
        return NULL;
    }
    return a;
}

int optim_cuda_step(OptimCuda *a, CudaModel *g, double lr, AdamWStepInfo *info, Err *err) {
    CudaModelBuffers b = cuda_model_buffers(g);
    if (!b.grads) return err_set(err, ERR_INPUT, "optim_cuda: the model has no gradients yet (no backward ran)");
    CudaAdamWInfo ci;
    int rc = cuda_adamw_step((cudaStream_t)b.stream, &a->o, a->spans, a->nspans, b.master, b.grads, a->m, a->v, b.w16,
                             &a->step, lr, a->scratch, &ci, err);
    if (rc < 0) return -1;
    if (ci.skipped) a->nskipped++;
    if (info) {
        memset(info, 0, sizeof *info);
        info->lr = lr, info->grad_norm = ci.grad_norm, info->clip_coef = ci.clip_coef;
        info->skipped = ci.skipped, info->nonfinite = ci.nonfinite;
        if (ci.bad_span >= 0) snprintf(info->bad_param, sizeof info->bad_param, "%s", a->ptab[ci.bad_span].name);
    }
    return 0;
}

int optim_cuda_download(OptimCuda *a, CudaModel *g, AdamW *host, Err *err) {
    const size_t n = cuda_model_buffers(g).numel;
    if (host->numel != n) return err_set(err, ERR_INPUT, "optim_cuda: %zu moments, the host optimizer has %zu", n, host->numel);
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)cuda_model_buffers(g).stream);
    if (!e) e = cudaMemcpy(host->m, a->m, sizeof(float) * n, cudaMemcpyDeviceToHost);
    if (!e) e = cudaMemcpy(host->v, a->v, sizeof(float) * n, cudaMemcpyDeviceToHost);
    if (e) return err_set(err, ERR_WORK, "optim_cuda: downloading the moments: %s", cudaGetErrorString(e));
    host->step = a->step, host->nskipped = a->nskipped;
    return 0;
}

int optim_cuda_upload(OptimCuda *a, const AdamW *host, Err *err) {
    const size_t n = host->numel;
    if (n != a->numel) return err_set(err, ERR_INPUT, "optim_cuda: %zu moments, the host optimizer has %zu", a->numel, n);
    cudaError_t e = cudaMemcpy(a->m, host->m, sizeof(float) * n, cudaMemcpyHostToDevice);
    if (!e) e = cudaMemcpy(a->v, host->v, sizeof(float) * n, cudaMemcpyHostToDevice);
    if (e) return err_set(err, ERR_WORK, "optim_cuda: uploading the moments: %s", cudaGetErrorString(e));
    a->step = host->step, a->nskipped = host->nskipped;
    return 0;
}

int64_t optim_cuda_steps(const OptimCuda *a) { return a->step; }
#endif
