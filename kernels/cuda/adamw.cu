// adamw: see adamw.h.
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/cuda_util.cuh"

enum { GN_BLOCKS = 128, GN_THREADS = 256 };

typedef struct SpanSum {  // one tensor's reduced sum of squares
    double ss;
    unsigned long long nonfinite;
} SpanSum;

extern "C" size_t cuda_adamw_scratch_bytes(int nspans) {
    size_t n = nspans > 0 ? (size_t)nspans : 1;
    return n * GN_BLOCKS * (sizeof(double) + sizeof(unsigned long long)) + n * sizeof(SpanSum);
}

// Pass 1: block b of span `sp` writes the sum of squares of its grid-stride share.
__global__ void sumsq_partial(const float *g, size_t n, double *pss, unsigned long long *pnf) {
    __shared__ double shd[32];
    __shared__ unsigned long long shn[32];
    double ss = 0;
    unsigned long long nf = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = g[i];
        ss += (double)v * v;
        nf += !isfinite(v);
    }
    ss = block_sum_d(ss, shd);
    nf = block_sum_u64(nf, shn);
    if (threadIdx.x == 0) pss[blockIdx.x] = ss, pnf[blockIdx.x] = nf;
}

// Pass 2: block `sp` adds its span's GN_BLOCKS partials in a fixed order.
__global__ void sumsq_final(const double *pss, const unsigned long long *pnf, SpanSum *out) {
    __shared__ double shd[32];
    __shared__ unsigned long long shn[32];
    const long base = (long)blockIdx.x * GN_BLOCKS;
    double ss = 0;
    unsigned long long nf = 0;
    for (int i = threadIdx.x; i < GN_BLOCKS; i += blockDim.x) ss += pss[base + i], nf += pnf[base + i];
    ss = block_sum_d(ss, shd);
    nf = block_sum_u64(nf, shn);
    if (threadIdx.x == 0) out[blockIdx.x].ss = ss, out[blockIdx.x].nonfinite = nf;
}

extern "C" int cuda_grad_norm(cudaStream_t s, const float *grads, const CudaParamSpan *spans, int nspans,
                              void *scratch, CudaAdamWInfo *info, Err *err) {
    info->grad_norm = 0, info->nonfinite = 0, info->bad_span = -1;
    if (nspans <= 0) return 0;
    double *pss = (double *)scratch;
    unsigned long long *pnf = (unsigned long long *)(pss + (size_t)nspans * GN_BLOCKS);
    SpanSum *sums = (SpanSum *)(pnf + (size_t)nspans * GN_BLOCKS);
    CUDA_TRY(cudaMemsetAsync(pss, 0, (size_t)nspans * GN_BLOCKS * (sizeof(double) + sizeof *pnf), s), err);
    for (int i = 0; i < nspans; i++) {
        if (!spans[i].trainable || !spans[i].numel) continue;
        sumsq_partial<<<GN_BLOCKS, GN_THREADS, 0, s>>>(grads + spans[i].offset, spans[i].numel,
                                                      pss + (size_t)i * GN_BLOCKS, pnf + (size_t)i * GN_BLOCKS);
        CUDA_LAUNCHED("grad norm (partial sums)", err);
    }
    sumsq_final<<<nspans, 128, 0, s>>>(pss, pnf, sums);
    CUDA_LAUNCHED("grad norm (per tensor)", err);
    SpanSum *h = (SpanSum *)malloc(sizeof(SpanSum) * nspans);
    if (!h) return err_set(err, ERR_WORK, "cuda_grad_norm: out of host memory (%d tensors)", nspans);
    cudaError_t e = cudaMemcpyAsync(h, sums, sizeof(SpanSum) * nspans, cudaMemcpyDeviceToHost, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) {
        free(h);
        return err_set(err, ERR_WORK, "cuda_grad_norm: reading the sums back: %s", cudaGetErrorString(e));
    }
    double ss = 0;
    for (int i = 0; i < nspans; i++) {
        if (!spans[i].trainable) continue;
        ss += h[i].ss;
        info->nonfinite += h[i].nonfinite;
        if (h[i].nonfinite && info->bad_span < 0) info->bad_span = i;
    }
    free(h);
    info->grad_norm = sqrt(ss);
    return 0;
}

typedef struct AdamConst {
    float decay, w1, b2, w2, step_size, bc2_sqrt, eps, coef;
    int use_decay, clip;
} AdamConst;

// torch _single_tensor_adam, op by op as rl/optim.c adamw_tensor (after the clip).
__global__ void adamw_kernel(float *p, float *g, float *m, float *v, bf16 *pb, size_t n, AdamConst c) {
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < n; j += (size_t)gridDim.x * blockDim.x) {
        float gj = g[j];
        if (c.clip) g[j] = gj = gj * c.coef;
        float pj = c.use_decay ? p[j] * c.decay : p[j];
        float mj = m[j] + c.w1 * (gj - m[j]);
        float vj = v[j] * c.b2 + c.w2 * gj * gj;
        float denom = sqrtf(vj) / c.bc2_sqrt + c.eps;
        pj = pj + (-c.step_size * mj) / denom;
        p[j] = pj;
        m[j] = mj;
        v[j] = vj;
        if (pb) pb[j] = __float2bfloat16_rn(pj);
    }
}

extern "C" int cuda_adamw_step(cudaStream_t s, const CudaAdamWOpts *o, const CudaParamSpan *spans, int nspans,
                               float *params, float *grads, float *m, float *v, cuda_bf16 *params_bf16,
                               int64_t *step, double lr, void *scratch, CudaAdamWInfo *info, Err *err) {
    CudaAdamWInfo tmp;
    if (!info) info = &tmp;
    info->clip_coef = 1.0, info->skipped = 0;
    if (cuda_grad_norm(s, grads, spans, nspans, scratch, info, err)) return -1;
    if (info->nonfinite || !isfinite(info->grad_norm)) {
        info->skipped = 1;
        return 1;
    }
    float coef = 1.0f;
    int clip = 0;
    if (o->max_grad_norm > 0) {  // clip_grad_norm_: coef = max_norm / (norm + 1e-6), only when < 1
        coef = (float)o->max_grad_norm / ((float)info->grad_norm + 1e-6f);
        if (coef < 1.0f) clip = 1, info->clip_coef = coef;
    }
    ++*step;
    double bc1 = 1.0 - pow(o->beta1, (double)*step), bc2 = 1.0 - pow(o->beta2, (double)*step);
    for (int i = 0; i < nspans; i++) {
        const CudaParamSpan *sp = &spans[i];
        if (!sp->trainable || !sp->numel) continue;
        double wd = sp->decay ? o->weight_decay : 0.0;
        AdamConst c;
        c.decay = (float)(1.0 - lr * wd);
        c.use_decay = wd != 0;
        c.w1 = (float)(1.0 - o->beta1), c.b2 = (float)o->beta2, c.w2 = (float)(1.0 - o->beta2);
        c.step_size = (float)(lr / bc1), c.bc2_sqrt = (float)sqrt(bc2), c.eps = (float)o->eps;
        c.coef = coef, c.clip = clip;
        int nb = cuda_blocks((long)sp->numel, 256);
        adamw_kernel<<<nb > 4096 ? 4096 : nb, 256, 0, s>>>(params + sp->offset, grads + sp->offset, m + sp->offset, v + sp->offset,
                                    params_bf16 ? (bf16 *)params_bf16 + sp->offset : NULL, sp->numel, c);
        CUDA_LAUNCHED("adamw update", err);
    }
    return 0;
}
