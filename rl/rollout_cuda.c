/* rollout_cuda: see rollout_cuda.h. Logits rows live on the device: the prefill
 * writes each group's row, a decode step rows 0..n-1 in sample order; the first
 * sampling round (G samples per group row) gathers its rows into a second buffer. */
#ifdef GRPO_MODEL_CUDA_ENABLED
#include "rl/rollout_cuda.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cuda/sample.h"

#define PAGE 16 /* tokens per cache page, as vLLM's default block size */

struct RolloutCuda {
    CudaModel *g;
    cudaStream_t s;
    int V, cap;               /* rows allocated */
    CudaKvCache *kv;          /* open between open and close */
    float *rows, *work;       /* device [cap, V] */
    double *u;                /* device [cap] */
    uint64_t *id;             /* device [cap] */
    int *tok;                 /* device [cap] */
    float *lp, *lpf;          /* device [cap] */
    void *scratch;
    int *htok;                /* host [cap] */
    float *hlp, *hlpf;
};

static void bufs_free(RolloutCuda *c) {
    void *d[] = {c->rows, c->work, c->u, c->id, c->tok, c->lp, c->lpf, c->scratch};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++)
        if (d[i]) cudaFree(d[i]);
    free(c->htok), free(c->hlp), free(c->hlpf);
    CudaModel *g = c->g;
    CudaKvCache *kv = c->kv;
    int V = c->V;
    cudaStream_t s = c->s;
    memset(c, 0, sizeof *c);
    c->g = g, c->kv = kv, c->V = V, c->s = s;
}

static int bufs_ensure(RolloutCuda *c, int n, Err *err) {
    if (n <= c->cap) return 0;
    bufs_free(c);
    const size_t rows = sizeof(float) * (size_t)n * c->V;
    cudaError_t e = cudaMalloc((void **)&c->rows, rows);
    if (!e) e = cudaMalloc((void **)&c->work, rows);
    if (!e) e = cudaMalloc((void **)&c->u, sizeof(double) * n);
    if (!e) e = cudaMalloc((void **)&c->id, sizeof(uint64_t) * n);
    if (!e) e = cudaMalloc((void **)&c->tok, sizeof(int) * n);
    if (!e) e = cudaMalloc((void **)&c->lp, sizeof(float) * n);
    if (!e) e = cudaMalloc((void **)&c->lpf, sizeof(float) * n);
    if (!e) e = cudaMalloc(&c->scratch, cuda_sample_scratch_bytes(n, c->V));
    if (e) {
        bufs_free(c);
        return err_set(err, ERR_WORK, "cuda rollout: buffers for %d rows of %d logits: %s", n, c->V, cudaGetErrorString(e));
    }
    c->htok = xmalloc(sizeof(int) * n), c->hlp = xmalloc(sizeof(float) * n), c->hlpf = xmalloc(sizeof(float) * n);
    c->cap = n;
    return 0;
}

static int eng_open(void *ctx, int nslots, int max_len, size_t *bytes, Err *err) {
    RolloutCuda *c = ctx;
    if (bufs_ensure(c, cuda_model_step_rows(nslots), err)) return -1; /* decode steps are padded */
    if (!(c->kv = cuda_kvcache_new(c->g, nslots, max_len, PAGE, err))) return -1;
    const ModelConfig *m = cuda_model_config(c->g);
    const size_t pages = (size_t)nslots * ((max_len + PAGE - 1) / PAGE);
    *bytes = (size_t)m->num_hidden_layers * pages * PAGE * (m->kv_lora_rank + m->qk_rope_head_dim) * 2; /* bf16 */
    return 0;
}

static void eng_close(void *ctx) {
    RolloutCuda *c = ctx;
    cuda_kvcache_free(c->kv);
    c->kv = NULL;
}

static int eng_extend(void *ctx, int nseq, const int *slots, const int *ntok, const int *ids, int row0, Err *err) {
    RolloutCuda *c = ctx;
    return cuda_model_extend_dev(c->g, c->kv, nseq, slots, ntok, ids, c->rows + (size_t)row0 * c->V, c->cap - row0, 0,
                                 err);
}

static int eng_copy(void *ctx, int dst, int src, Err *err) {
    RolloutCuda *c = ctx;
    return cuda_kvcache_copy(c->g, c->kv, dst, src, err);
}

#define CU(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) return err_set(err, ERR_WORK, "cuda rollout: %s", cudaGetErrorString(e_)); \
    } while (0)

/* Rows in sample order: the logits buffer itself when row[k] == k, else a gathered copy. */
static int gather(RolloutCuda *c, int n, const int *row, const float **out, Err *err) {
    int ident = 1;
    for (int k = 0; k < n && ident; k++) ident = row[k] == k;
    *out = c->rows;
    if (ident) return 0;
    const size_t bytes = sizeof(float) * c->V;
    for (int k = 0; k < n; k++)
        CU(cudaMemcpyAsync(c->work + (size_t)k * c->V, c->rows + (size_t)row[k] * c->V, bytes, cudaMemcpyDeviceToDevice, c->s));
    *out = c->work;
    return 0;
}

static int eng_sample(void *ctx, const SamplerOpts *o, int n, const int *row, uint64_t seed, const uint64_t *id,
                      uint64_t step, SampleOut *out, int *bad, Err *err) {
    RolloutCuda *c = ctx;
    *bad = -1;
    if (n <= 0) return 0;
    const float *logits;
    if (gather(c, n, row, &logits, err)) return -1;
    CudaSamplerOpts so = {o->temperature, o->top_k, o->top_p, o->min_p};
    CU(cudaMemcpyAsync(c->id, id, sizeof(uint64_t) * n, cudaMemcpyHostToDevice, c->s));
    if (cuda_sample_uniforms(c->s, seed, c->id, step, n, c->u, err) < 0) return -1;
    if (cuda_sample(c->s, &so, logits, n, c->V, c->V, c->u, c->tok, c->lp, c->lpf, c->scratch, err) < 0) return -1;
    CU(cudaMemcpyAsync(c->htok, c->tok, sizeof(int) * n, cudaMemcpyDeviceToHost, c->s));
    CU(cudaMemcpyAsync(c->hlp, c->lp, sizeof(float) * n, cudaMemcpyDeviceToHost, c->s));
    CU(cudaMemcpyAsync(c->hlpf, c->lpf, sizeof(float) * n, cudaMemcpyDeviceToHost, c->s));
    CU(cudaStreamSynchronize(c->s));
    for (int k = 0; k < n; k++) {
        out[k] = (SampleOut){c->htok[k], c->hlp[k], c->hlpf[k]};
        if (c->htok[k] < 0 && *bad < 0) *bad = k;
    }
    return *bad >= 0 ? err_set(err, ERR_WORK, "logits row %d not finite", row[*bad]) : 0;
}

RolloutCuda *rollout_cuda_new(CudaModel *g) {
    RolloutCuda *c = xcalloc(1, sizeof *c);
    c->g = g, c->s = (cudaStream_t)cuda_model_buffers(g).stream;
    c->V = cuda_model_config(g)->vocab_size;
    return c;
}

void rollout_cuda_free(RolloutCuda *c) {
    if (!c) return;
    if (c->kv) cuda_kvcache_free(c->kv);
    bufs_free(c);
    free(c);
}

RolloutEngine rollout_cuda_engine(RolloutCuda *c) {
    return (RolloutEngine){c, eng_open, eng_close, eng_extend, eng_copy, eng_sample};
}
#endif
