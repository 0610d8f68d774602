/* model_cuda_impl: the CudaModel's insides, shared by model_cuda.c (weights,
 * activations, forward) and model_cuda_bwd.c (backward). Not an API. */
#ifndef GRPO_MODEL_CUDA_IMPL_H
#define GRPO_MODEL_CUDA_IMPL_H

#include <cuda_runtime_api.h>

#include "kernels/cuda/attn.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe.h"
#include "model/cuda/model_cuda.h"

#define TRY(x) do { if ((x) < 0) return -1; } while (0)
#define CU(call)                                                                                              \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess)                                                                                \
            return err_set(err, ERR_WORK, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)

typedef const cuda_bf16 *W;

/* One layer's weights: device pointers into the bf16 copy (NULL where absent). */
typedef struct GLayer {
    W input_norm, post_norm, q_a, q_a_norm, q_b, q, kv_a, kv_a_norm, kv_b, o;
    W mlp_gate, mlp_up, mlp_down, router, sh_gate, sh_up, sh_down;
    const float *router_bias; /* [E] in the fp32 master copy */
    W *exp_gate, *exp_up, *exp_down; /* HOST arrays of E device pointers */
    int moe;
    const W *dexp_gate, *dexp_up, *dexp_down; /* the same arrays on the device (the expert kernels) */
    float *const *dgrad_gate, *const *dgrad_down; /* device [E]: gradients of gate|up and down (after the first backward) */
} GLayer;

/* One layer's saved activations for N tokens (device unless marked host). */
typedef struct GActs {
    cuda_bf16 *x, *xn1, *xm, *xn2;            /* [N, H] */
    float *rstd1, *rstd2;                     /* [N] */
    cuda_bf16 *qa, *qan;                      /* [N, d_q] (q-LoRA) */
    float *qa_rstd;                           /* [N] */
    cuda_bf16 *q, *k;                         /* [N, n_h*(d_n+d_r)] */
    cuda_bf16 *kva;                           /* [N, d_c+d_r] latent | rotated k_pe */
    float *kv_rstd;                           /* [N] */
    cuda_bf16 *ckv;                           /* [N, d_c] */
    cuda_bf16 *kvb;                           /* [N, n_h*(d_n+d_v)] */
    cuda_bf16 *att;                           /* [N, n_h*d_v] */
    float *lse;                               /* [N, n_h] attention log-sum-exp */
    cuda_bf16 *gu, *h;                        /* dense [N, 2I] gate|up and [N, I], or shared experts' (I_s) */
    float *logits, *scores, *topw, *topsum;   /* [N, E], [N, E], [N*k], [N] */
    int *topk, *count, *start, *perm, *where; /* [N*k], [E], [E+1], [N*k], [N*k] */
    cuda_bf16 *xe, *egu, *eh, *ey;            /* [N*k, H], [N*k, 2I_e] gate|up, [N*k, I_e], [N*k, H]; perm order */
} GActs;

/* Gradients of activations (bf16 unless marked) for N tokens, reused layer by layer. */
typedef struct GBack {
    cuda_bf16 *dres, *dxn, *dxfn;           /* [N, H] */
    cuda_bf16 *dh, *dgu;                    /* [N, max(I, I_s)], [N, 2 max(I, I_s)] */
    cuda_bf16 *datt;                        /* [N, n_h*d_v] */
    cuda_bf16 *dq, *dk;                     /* [N, n_h*(d_n+d_r)] */
    cuda_bf16 *dkvb;                        /* [N, n_h*(d_n+d_v)] */
    cuda_bf16 *dkva, *dckv, *dqan, *dqa;    /* [N, d_c+d_r], [N, d_c], [N, d_q] x2 */
    void *attn_scratch;
    cuda_bf16 *dye, *dxe;                   /* [N*k, H] */
    cuda_bf16 *dhe, *dgue;                  /* [N*k, I_e], [N*k, 2I_e] */
    float *dw;                              /* [N*k] */
    float *dlogit;                          /* [N, E] */
    cuda_bf16 *dlogit16;                    /* [N, E] */
    float *dlogp, *dent;                    /* [N] */
} GBack;

struct CudaModel {
    ModelConfig cfg;
    size_t numel;
    cudaStream_t s;
    CudaBlas *blas;
    cuda_bf16 *w16;     /* [numel] compute copy, Model.params' offsets */
    float *master;      /* [numel] fp32 */
    W embed, final_norm, lm_head;
    W *dexp;            /* device [L_moe * 3 * E] expert pointers, GLayer.dexp_* point into it */
    float **dgexp;      /* device [L_moe * 2 * E] gradient pointers of gate(|up) and down (GLayer.dgrad_*) */
    int *dload;         /* device [L, E] router load of the last forward, when asked */
    GLayer *layers;     /* [L] */
    float *inv_freq;    /* host [d_r/2] */
    /* activations for up to capN tokens, one device allocation */
    long capN;
    void *arena;
    GActs *acts;        /* [L] */
    cuda_bf16 *xout, *xfn;  /* [N, H] */
    float *rstdf, *hlse, *ent, *logp; /* [N] */
    int *ids, *targets;     /* [N] */
    float *rcos, *rsin;     /* [N, d_r/2] */
    void *head_scratch;
    int head_chunk;
    int *hpos, *htgt;       /* host [N] */
    float *hcs, *hsn;       /* host [N, d_r/2] */
    float temperature;      /* of the last forward */
    int lastB, lastT;       /* its batch shape: padded B x T, or 1 x tokens when packed */
    CudaAttnSeg *hseg;      /* host [nseg]: the last forward's segments when packed (nseg > 0) */
    int nseg, segcap;
    void *pk_scratch;       /* device work tables of the packed attention calls */
    int graphs;             /* decode steps as CUDA graphs (model_cuda_decode.c) */
    size_t pk_bytes;
    float *grads;           /* [numel] fp32, Model.params' offsets; NULL until the first backward */
    GBack bk;               /* backward buffers, in the arena */
};


/* Blocks model_cuda.c runs for the forward and the decoder (model_cuda_decode.c). */
/* SwiGLU MLP rows: out (+)= down(silu(x gate^T) * (x up^T)), gate and up as one
 * product over the [2I, H] weight that starts at gate (up follows it in the
 * parameters: checked by cuda_model_new); gu [N, 2I] and h [N, I] are kept. */
int cuda_model_swiglu(CudaModel *g, cuda_bf16 *out, int accumulate, const cuda_bf16 *x, W gate, W down, cuda_bf16 *gu,
                      cuda_bf16 *h, int N, int I, Err *err);
/* The experts' row counts stay on the device either way (no synchronisation).
 * few_rows: the experts by cuda_moe_experts_fwd (decode steps: each weight row read
 * once for its few rows; t->egu is not kept, so no backward), else by the
 * tensor-core products of grouped.h. load: device [E] router load added to, or NULL. */
int cuda_model_moe(CudaModel *g, int l, GActs *t, const cuda_bf16 *xn, int N, cuda_bf16 *out, int *load, int few_rows,
                   Err *err);

/* The attention core of the last forward's layout (padded or packed), forward and backward. */
int cuda_model_attn_fwd(CudaModel *g, const GActs *t, cuda_bf16 *att, float *lse, Err *err);
int cuda_model_attn_bwd(CudaModel *g, const GActs *t, const cuda_bf16 *datt, GBack *d, Err *err);

/* Bump allocation in one device block: lay out once with base NULL to measure, then
 * again over a block of the measured size (cuda_model_carve, model_cuda.c). */
typedef struct Arena { char *base; size_t off; } Arena;
void *cuda_model_carve(Arena *a, size_t bytes);
/* n elements of a type from Arena *a (in scope where used). */
#define BF(n) cuda_model_carve(a, sizeof(cuda_bf16) * (size_t)(n))
#define FL(n) cuda_model_carve(a, sizeof(float) * (size_t)(n))
#define IN(n) cuda_model_carve(a, sizeof(int) * (size_t)(n))
/* The routing and routed-expert buffers of t for N tokens (forward and decoder). */
void cuda_model_moe_layout(const ModelConfig *c, Arena *a, GActs *t, long N);
/* The router's settings from the model's config (forward and backward). */
CudaRouterCfg cuda_model_router_cfg(const ModelConfig *c);
/* Carves the backward's buffers for N tokens (model_cuda_bwd.c). */
void cuda_model_bwd_layout(CudaModel *g, Arena *a, long N);

#endif
