/* model_cuda_bwd: the backward of cuda_model_forward, the CPU's backward_all /
 * layer_bwd / attn_bwd / mlp_bwd (model/model_fwd.c, model_attn.c, model_moe.c)
 * step for step. Weight gradients are fp32 sums on the device (cuBLAS products
 * with beta = 1, norms' fp32 dw); activation gradients are bf16, as in
 * mixed-precision training; the residual's gradient is summed into one bf16
 * buffer block by block (the norms' backward with accumulate = 1). */
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cuda/attn.h"
#include "kernels/cuda/grouped.h"
#include "kernels/cuda/head.h"
#include "kernels/cuda/mla.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/swiglu.h"
#include "model/cuda/model_cuda_impl.h"

/* The fp32 gradient of a weight: same offset as its bf16 copy. */
static float *G(const CudaModel *g, W w) { return g->grads + (w - g->w16); }

void cuda_model_bwd_layout(CudaModel *g, Arena *a, long N) {
    const ModelConfig *c = &g->cfg;
    const long H = c->hidden_size, nh = c->num_attention_heads, dqk = c->qk_head_dim, dc = c->kv_lora_rank;
    const long dr = c->qk_rope_head_dim, dn = c->qk_nope_head_dim, dv = c->v_head_dim, dq = c->q_lora_rank;
    const long E = c->n_routed_experts, k = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
    long I = c->intermediate_size, Is = Ie * c->n_shared_experts;
    I = I > Is ? I : Is;
    GBack *d = &g->bk;
    d->dres = BF(N * H), d->dxn = BF(N * H), d->dxfn = BF(N * H);
    d->dh = BF(N * I), d->dgu = BF(N * 2 * I);
    d->datt = BF(N * nh * dv), d->dq = BF(N * nh * dqk), d->dk = BF(N * nh * dqk), d->dkvb = BF(N * nh * (dn + dv));
    d->dkva = BF(N * (dc + dr)), d->dckv = BF(N * dc);
    if (dq) d->dqan = BF(N * dq), d->dqa = BF(N * dq);
    CudaAttnLayout L = cuda_attn_layout_mla(1, (int)N, (int)nh, (int)dn, (int)dr, (int)dv);
    d->attn_scratch = cuda_model_carve(a, cuda_attn_bwd_scratch_bytes(&L));
    if (E) {
        d->dye = BF(N * k * H), d->dxe = BF(N * k * H);
        d->dhe = BF(N * k * Ie), d->dgue = BF(N * k * 2 * Ie);
        d->dw = FL(N * k), d->dlogit = FL(N * E), d->dlogit16 = BF(N * E);
    }
    d->dlogp = FL(N), d->dent = FL(N);
}

/* The grads buffer, and the device arrays of the experts' gradient pointers into it
 * (the grouped weight-gradient kernel picks an expert's on the device). */
static int grads_alloc(CudaModel *g, Err *err) {
    const int L = g->cfg.num_hidden_layers, E = g->cfg.n_routed_experts;
    CU(cudaMalloc((void **)&g->grads, sizeof(float) * g->numel));
    int nmoe = 0;
    for (int l = 0; l < L; l++) nmoe += g->layers[l].moe;
    if (!nmoe || E <= 0) return 0;
    float **h = xmalloc(sizeof(float *) * 2 * E * nmoe);
    cudaError_t e1 = cudaMalloc((void **)&g->dgexp, sizeof(float *) * 2 * E * nmoe);
    for (int l = 0, i = 0; l < L && e1 == cudaSuccess; l++) {
        GLayer *w = &g->layers[l];
        if (!w->moe) continue;
        for (int e = 0; e < E; e++) h[i * E + e] = G(g, w->exp_gate[e]), h[(i + 1) * E + e] = G(g, w->exp_down[e]);
        w->dgrad_gate = g->dgexp + i * E, w->dgrad_down = g->dgexp + (i + 1) * E;
        i += 2;
    }
    if (e1 == cudaSuccess) e1 = cudaMemcpy(g->dgexp, h, sizeof(float *) * 2 * E * nmoe, cudaMemcpyHostToDevice);
    free(h);
    if (e1 != cudaSuccess) { /* no half-made state: the next call starts again */
        cudaFree(g->grads), cudaFree(g->dgexp);
        g->grads = NULL, g->dgexp = NULL;
    }
    CU(e1);
    return 0;
}

int cuda_model_zero_grads(CudaModel *g, Err *err) {
    if (!g->grads) TRY(grads_alloc(g, err));
    CU(cudaMemsetAsync(g->grads, 0, sizeof(float) * g->numel, g->s));
    return 0;
}

int cuda_model_grads_download(CudaModel *g, float *host, Err *err) {
    if (!g->grads) {
        memset(host, 0, sizeof(float) * g->numel);
        return 0;
    }
    CU(cudaStreamSynchronize(g->s));
    CU(cudaMemcpy(host, g->grads, sizeof(float) * g->numel, cudaMemcpyDeviceToHost));
    return 0;
}

/* SwiGLU MLP backward over rows x: dx (+)= d/dx, weight gradients added; gate and up
 * as one [2I, H] product (cuda_model_swiglu). */
static int swiglu_mlp_bwd(CudaModel *g, const cuda_bf16 *dout, const cuda_bf16 *x, W gate, W down,
                          const cuda_bf16 *gu, const cuda_bf16 *h, cuda_bf16 *dx, int accumulate, int N, int I,
                          Err *err) {
    const int H = g->cfg.hidden_size;
    GBack *d = &g->bk;
    TRY(cuda_linear_bwd_x(g->blas, g->s, d->dh, CUDA_BF16, dout, down, N, H, I, 0, err));
    TRY(cuda_linear_bwd_w(g->blas, g->s, G(g, down), dout, h, N, H, I, err));
    TRY(cuda_swiglu_bwd(g->s, d->dgu, d->dgu + I, d->dh, gu, gu + I, N, I, 2L * I, err));
    TRY(cuda_linear_bwd_x(g->blas, g->s, dx, CUDA_BF16, d->dgu, gate, N, 2 * I, H, accumulate, err));
    return cuda_linear_bwd_w(g->blas, g->s, G(g, gate), d->dgu, x, N, 2 * I, H, err);
}

/* MoE backward of layer l: dxn = d/d(xn2) from dout (shared experts, routed experts,
 * router), as mlp_bwd. */
static int moe_bwd(CudaModel *g, int l, int N, const cuda_bf16 *dout, Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    const GActs *t = &g->acts[l];
    GBack *d = &g->bk;
    const int H = c->hidden_size, E = c->n_routed_experts, k = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
    const int Is = Ie * c->n_shared_experts;
    cudaStream_t s = g->s;
    if (Is) TRY(swiglu_mlp_bwd(g, dout, t->xn2, w->sh_gate, w->sh_down, t->gu, t->h, d->dxn, 0, N, Is, err));
    CudaRouterCfg rc = cuda_model_router_cfg(c);
    const int R = N * k;
    TRY(cuda_moe_combine_bwd(s, d->dye, d->dw, dout, t->ey, t->topw, t->perm, t->where, N, k, H, err));
    TRY(cuda_grouped_bwd_x(s, d->dhe, CUDA_BF16, d->dye, w->dexp_down, t->start, E, R, H, Ie, 0, err));
    TRY(cuda_grouped_bwd_w(s, w->dgrad_down, d->dye, t->eh, t->start, E, H, Ie, err));
    TRY(cuda_swiglu_bwd(s, d->dgue, d->dgue + Ie, d->dhe, t->egu, t->egu + Ie, R, Ie, 2L * Ie, err));
    TRY(cuda_grouped_bwd_x(s, d->dxe, CUDA_BF16, d->dgue, w->dexp_gate, t->start, E, R, 2 * Ie, H, 0, err));
    TRY(cuda_grouped_bwd_w(s, w->dgrad_gate, d->dgue, t->xe, t->start, E, 2 * Ie, H, err));
    TRY(cuda_moe_gather_bwd(s, d->dxn, d->dxe, t->where, N, k, H, Is > 0, err));
    TRY(cuda_moe_router_bwd(s, &rc, t->scores, t->topk, t->topw, t->topsum, d->dw, N, d->dlogit, d->dlogit16, err));
    TRY(cuda_linear_bwd_x(g->blas, s, d->dxn, CUDA_BF16, d->dlogit16, w->router, N, E, H, 1, err));
    return cuda_linear_bwd_w(g->blas, s, G(g, w->router), d->dlogit16, t->xn2, N, E, H, err);
}

/* Keys, values and the latent: from dQ (rope dims still rotated), dK and dV (in dkvb)
 * to d->dxn (overwritten) and the weight gradients, as the second half of attn_bwd. */
static int latent_bwd(CudaModel *g, int l, int N, Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    const GActs *t = &g->acts[l];
    GBack *d = &g->bk;
    const int H = c->hidden_size, nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int dqk = dn + dr, dv = c->v_head_dim, dc = c->kv_lora_rank, dq = c->q_lora_rank;
    CudaBlas *bl = g->blas;
    cudaStream_t s = g->s;
    TRY(cuda_mla_keys_bwd(s, d->dkvb, d->dkva, d->dk, N, nh, dn, dr, dv, dc, err));
    TRY(cuda_rope_apply(s, d->dkva + dc, g->rcos, g->rsin, N, 1, 0, dc + dr, dr, 1, err));
    TRY(cuda_rope_apply(s, d->dq + dn, g->rcos, g->rsin, N, nh, dqk, nh * dqk, dr, 1, err));
    TRY(cuda_linear_bwd_x(bl, s, d->dckv, CUDA_BF16, d->dkvb, w->kv_b, N, nh * (dn + dv), dc, 0, err));
    TRY(cuda_linear_bwd_w(bl, s, G(g, w->kv_b), d->dkvb, t->ckv, N, nh * (dn + dv), dc, err));
    TRY(cuda_rmsnorm_bwd(s, d->dkva, G(g, w->kv_a_norm), d->dckv, t->kva, w->kv_a_norm, t->kv_rstd, N, dc, dc + dr,
                         dc + dr, 0, err));
    TRY(cuda_linear_bwd_x(bl, s, d->dxn, CUDA_BF16, d->dkva, w->kv_a, N, dc + dr, H, 0, err));
    TRY(cuda_linear_bwd_w(bl, s, G(g, w->kv_a), d->dkva, t->xn1, N, dc + dr, H, err));
    if (!dq) {
        TRY(cuda_linear_bwd_x(bl, s, d->dxn, CUDA_BF16, d->dq, w->q, N, nh * dqk, H, 1, err));
        return cuda_linear_bwd_w(bl, s, G(g, w->q), d->dq, t->xn1, N, nh * dqk, H, err);
    }
    TRY(cuda_linear_bwd_x(bl, s, d->dqan, CUDA_BF16, d->dq, w->q_b, N, nh * dqk, dq, 0, err));
    TRY(cuda_linear_bwd_w(bl, s, G(g, w->q_b), d->dq, t->qan, N, nh * dqk, dq, err));
    TRY(cuda_rmsnorm_bwd(s, d->dqa, G(g, w->q_a_norm), d->dqan, t->qa, w->q_a_norm, t->qa_rstd, N, dq, dq, dq, 0, err));
    TRY(cuda_linear_bwd_x(bl, s, d->dxn, CUDA_BF16, d->dqa, w->q_a, N, dq, H, 1, err));
    return cuda_linear_bwd_w(bl, s, G(g, w->q_a), d->dqa, t->xn1, N, dq, H, err);
}

/* attn_bwd: d->dxn = d/d(xn1) from dout = d(xm). */
static int attn_bwd(CudaModel *g, int l, int N, const cuda_bf16 *dout, Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    const GActs *t = &g->acts[l];
    GBack *d = &g->bk;
    const int H = c->hidden_size, nh = c->num_attention_heads, dv = c->v_head_dim;
    TRY(cuda_linear_bwd_x(g->blas, g->s, d->datt, CUDA_BF16, dout, w->o, N, H, nh * dv, 0, err));
    TRY(cuda_linear_bwd_w(g->blas, g->s, G(g, w->o), dout, t->att, N, H, nh * dv, err));
    TRY(cuda_model_attn_bwd(g, t, d->datt, d, err));
    return latent_bwd(g, l, N, err);
}

/* layer_bwd: d->dres holds d(out) on entry and d(x) on return. */
static int layer_bwd(CudaModel *g, int l, int N, Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    const GActs *t = &g->acts[l];
    GBack *d = &g->bk;
    const int H = c->hidden_size;
    if (w->moe) TRY(moe_bwd(g, l, N, d->dres, err));
    else TRY(swiglu_mlp_bwd(g, d->dres, t->xn2, w->mlp_gate, w->mlp_down, t->gu, t->h, d->dxn, 0, N,
                            c->intermediate_size, err));
    TRY(cuda_rmsnorm_bwd(g->s, d->dres, G(g, w->post_norm), d->dxn, t->xm, w->post_norm, t->rstd2, N, H, H, H, 1, err));
    TRY(attn_bwd(g, l, N, d->dres, err));
    return cuda_rmsnorm_bwd(g->s, d->dres, G(g, w->input_norm), d->dxn, t->x, w->input_norm, t->rstd1, N, H, H, H, 1,
                            err);
}

/* The backward of the last forward over its N tokens. */
static int backward_run(CudaModel *g, int N, const float *dlogp, const float *dentropy, Err *err) {
    const ModelConfig *c = &g->cfg;
    if (!g->grads) TRY(cuda_model_zero_grads(g, err));
    const int H = c->hidden_size, L = c->num_hidden_layers;
    GBack *d = &g->bk;
    CU(cudaMemcpyAsync(d->dlogp, dlogp, sizeof(float) * N, cudaMemcpyHostToDevice, g->s));
    if (dentropy) CU(cudaMemcpyAsync(d->dent, dentropy, sizeof(float) * N, cudaMemcpyHostToDevice, g->s));
    TRY(cuda_head_bwd(g->blas, g->s, g->xfn, g->lm_head, g->targets, N, H, c->vocab_size, g->temperature, g->hlse,
                      g->ent, d->dlogp, dentropy ? d->dent : NULL, d->dxfn, 0, G(g, g->lm_head), g->head_scratch,
                      g->head_chunk, err));
    TRY(cuda_rmsnorm_bwd(g->s, d->dres, G(g, g->final_norm), d->dxfn, g->xout, g->final_norm, g->rstdf, N, H, H, H, 0,
                         err));
    for (int l = L - 1; l >= 0; l--) TRY(layer_bwd(g, l, N, err));
    TRY(cuda_embed_rows_bwd(g->s, G(g, g->embed), d->dres, g->ids, N, H, err));
    CU(cudaStreamSynchronize(g->s));  // dlogp/dentropy were read from host memory; faults show here
    return 0;
}

int cuda_model_backward(CudaModel *g, const Batch *b, const float *dlogp, const float *dentropy, Err *err) {
    if (g->nseg || b->B != g->lastB || b->T != g->lastT)
        return err_set(err, ERR_INPUT, "cuda model: backward of a %d x %d batch after a forward of %s %d x %d", b->B,
                       b->T, g->nseg ? "a packed" : "a", g->lastB, g->lastT);
    return backward_run(g, b->B * b->T, dlogp, dentropy, err);
}

int cuda_model_backward_packed(CudaModel *g, const PackedBatch *pb, const float *dlogp, const float *dentropy,
                               Err *err) {
    if (!g->nseg || pb->ntok != g->lastT || pb->nseg != g->nseg)
        return err_set(err, ERR_INPUT, "cuda model: backward of a packed batch of %d tokens in %d segments after a "
                       "forward of %d x %d (%d segments)", pb->ntok, pb->nseg, g->lastB, g->lastT, g->nseg);
    return backward_run(g, pb->ntok, dlogp, dentropy, err);
}
