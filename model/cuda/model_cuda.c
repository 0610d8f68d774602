/* model_cuda: see model_cuda.h. The order of operations is the CPU model's
 * (model/model_fwd.c, model_attn.c, model_moe.c) step for step, so that a
 * difference can be traced to one op; residual adds are folded into the
 * product that ends each block (cuBLAS beta = 1 over a copy of the residual:
 * one bf16 rounding, as an fp32 add followed by a rounding would give). */
#include "model/cuda/model_cuda_impl.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/attn.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/grouped.h"
#include "kernels/cuda/head.h"
#include "kernels/cuda/mla.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/swiglu.h"

static W w16_of(const CudaModel *g, const Model *m, const float *p) { return p ? g->w16 + (p - m->params) : NULL; }

static W *experts_of(const CudaModel *g, const Model *m, float *const *p, int E) {
    if (!p) return NULL;
    W *a = xcalloc((size_t)E, sizeof *a);
    for (int e = 0; e < E; e++) a[e] = w16_of(g, m, p[e]);
    return a;
}

static void layers_map(CudaModel *g, const Model *m) {
    const int L = g->cfg.num_hidden_layers, E = g->cfg.n_routed_experts;
    g->layers = xcalloc((size_t)L, sizeof *g->layers);
    for (int l = 0; l < L; l++) {
        const LayerW *w = &m->layers[l];
        GLayer *d = &g->layers[l];
        *d = (GLayer){w16_of(g, m, w->input_norm), w16_of(g, m, w->post_norm), w16_of(g, m, w->q_a),
                      w16_of(g, m, w->q_a_norm), w16_of(g, m, w->q_b), w16_of(g, m, w->q), w16_of(g, m, w->kv_a),
                      w16_of(g, m, w->kv_a_norm), w16_of(g, m, w->kv_b), w16_of(g, m, w->o),
                      w16_of(g, m, w->mlp_gate), w16_of(g, m, w->mlp_up), w16_of(g, m, w->mlp_down),
                      w16_of(g, m, w->router), w16_of(g, m, w->sh_gate), w16_of(g, m, w->sh_up),
                      w16_of(g, m, w->sh_down), NULL, NULL, NULL, NULL, config_layer_is_moe(&g->cfg, l),
                      NULL, NULL, NULL, NULL, NULL};
        if (w->router_bias) d->router_bias = g->master + (w->router_bias - m->params);
        if (d->moe) {
            d->exp_gate = experts_of(g, m, w->exp_gate, E);
            d->exp_up = experts_of(g, m, w->exp_up, E);
            d->exp_down = experts_of(g, m, w->exp_down, E);
        }
    }
    g->embed = w16_of(g, m, m->embed);
    g->final_norm = w16_of(g, m, m->final_norm);
    g->lm_head = w16_of(g, m, m->lm_head);
}

/* Every up projection must follow its gate projection in the parameters (model.c
 * lays them out so): gate and up are then one [2I, H] product, forward and backward. */
static int gate_up_check(const CudaModel *g, Err *err) {
    const ModelConfig *c = &g->cfg;
    const long H = c->hidden_size, I = c->intermediate_size, Ie = c->moe_intermediate_size;
    const long Is = Ie * c->n_shared_experts;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const GLayer *w = &g->layers[l];
        int ok = (!w->mlp_gate || w->mlp_up == w->mlp_gate + I * H) && (!w->sh_gate || w->sh_up == w->sh_gate + Is * H);
        for (int e = 0; w->moe && ok && e < c->n_routed_experts; e++) ok = w->exp_up[e] == w->exp_gate[e] + Ie * H;
        if (!ok)
            return err_set(err, ERR_INPUT, "cuda model: layer %d: an up_proj does not follow its gate_proj in the "
                           "parameters (the GPU fuses the two products)", l);
    }
    return 0;
}

/* The experts' device pointers copied to the device, for kernels that pick the expert. */
static int experts_upload(CudaModel *g, Err *err) {
    const int L = g->cfg.num_hidden_layers, E = g->cfg.n_routed_experts;
    int nmoe = 0;
    for (int l = 0; l < L; l++) nmoe += g->layers[l].moe;
    if (!nmoe || E <= 0) return 0;
    CU(cudaMalloc((void **)&g->dload, sizeof(int) * g->cfg.num_hidden_layers * E));
    CU(cudaMalloc((void **)&g->dexp, sizeof(W) * 3 * E * nmoe));
    W *h = xmalloc(sizeof(W) * 3 * E * nmoe);
    for (int l = 0, i = 0; l < L; l++) {
        GLayer *d = &g->layers[l];
        if (!d->moe) continue;
        memcpy(h + (i + 0) * E, d->exp_gate, sizeof(W) * E), d->dexp_gate = g->dexp + (i + 0) * E;
        memcpy(h + (i + 1) * E, d->exp_up, sizeof(W) * E), d->dexp_up = g->dexp + (i + 1) * E;
        memcpy(h + (i + 2) * E, d->exp_down, sizeof(W) * E), d->dexp_down = g->dexp + (i + 2) * E;
        i += 3;
    }
    cudaError_t e = cudaMemcpy(g->dexp, h, sizeof(W) * 3 * E * nmoe, cudaMemcpyHostToDevice);
    free(h);
    CU(e);
    return 0;
}

int cuda_model_upload_span(CudaModel *g, const Model *m, size_t offset, size_t n, Err *err) {
    if (m->numel != g->numel) return err_set(err, ERR_INPUT, "cuda model: %zu parameters, the model has %zu", g->numel, m->numel);
    if (offset > g->numel || n > g->numel - offset)
        return err_set(err, ERR_INPUT, "cuda model: span [%zu, +%zu) outside the %zu parameters", offset, n, g->numel);
    if (!n) return 0;
    CU(cudaStreamSynchronize(g->s)); /* a non-blocking stream: cudaMemcpy would not wait for it */
    cuda_bf16 *h = xmalloc(sizeof *h * n);
    for (size_t i = 0; i < n; i++) h[i] = bf16_from_f32(m->params[offset + i]);
    cudaError_t e1 = cudaMemcpy(g->w16 + offset, h, sizeof *h * n, cudaMemcpyHostToDevice);
    free(h);
    CU(e1);
    CU(cudaMemcpy(g->master + offset, m->params + offset, sizeof(float) * n, cudaMemcpyHostToDevice));
    return 0;
}

int cuda_model_upload(CudaModel *g, const Model *m, Err *err) { return cuda_model_upload_span(g, m, 0, g->numel, err); }

CudaModelBuffers cuda_model_buffers(CudaModel *g) {
    return (CudaModelBuffers){g->master, g->grads, g->w16, g->numel, (void *)g->s};
}

const ModelConfig *cuda_model_config(const CudaModel *g) { return &g->cfg; }
void cuda_model_set_graphs(CudaModel *g, int on) { g->graphs = on; }
int cuda_model_graphs(const CudaModel *g) { return g->graphs; }

int cuda_model_download(CudaModel *g, float *host, Err *err) {
    CU(cudaStreamSynchronize(g->s));
    CU(cudaMemcpy(host, g->master, sizeof(float) * g->numel, cudaMemcpyDeviceToHost));
    return 0;
}

CudaModel *cuda_model_new(const Model *m, Err *err) {
    if (m->has_mtp) { err_set(err, ERR_INPUT, "cuda model: MTP modules are not supported on the GPU yet"); return NULL; }
    CudaModel *g = xcalloc(1, sizeof *g);
    g->cfg = m->cfg;
    g->numel = m->numel;
    const char *ge = getenv("GRPO_CUDA_GRAPHS");
    g->graphs = !(ge && !strcmp(ge, "0"));
    cudaError_t e = cudaStreamCreateWithFlags(&g->s, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc((void **)&g->w16, sizeof(cuda_bf16) * g->numel);
    if (e == cudaSuccess) e = cudaMalloc((void **)&g->master, sizeof(float) * g->numel);
    if (e != cudaSuccess) {
        err_set(err, ERR_WORK, "cuda model: allocating %zu parameters: %s", g->numel, cudaGetErrorString(e));
        cuda_model_free(g);
        return NULL;
    }
    if (!(g->blas = cuda_blas_new(0, err)) || cuda_model_upload(g, m, err) < 0) {
        cuda_model_free(g);
        return NULL;
    }
    layers_map(g, m);
    if (gate_up_check(g, err) < 0 || experts_upload(g, err) < 0) {
        cuda_model_free(g);
        return NULL;
    }
    g->inv_freq = xmalloc(sizeof(float) * (size_t)(g->cfg.qk_rope_head_dim / 2 + 1));
    memcpy(g->inv_freq, m->rope_inv_freq, sizeof(float) * (size_t)(g->cfg.qk_rope_head_dim / 2));
    return g;
}

static void acts_release(CudaModel *g) {
    free(g->acts), free(g->hpos), free(g->htgt), free(g->hcs), free(g->hsn);
    g->acts = NULL, g->hpos = g->htgt = NULL, g->hcs = g->hsn = NULL;
    if (g->arena) cudaFree(g->arena);
    g->arena = NULL, g->capN = 0;
}

void cuda_model_free(CudaModel *g) {
    if (!g) return;
    acts_release(g);
    if (g->layers)
        for (int l = 0; l < g->cfg.num_hidden_layers; l++)
            free(g->layers[l].exp_gate), free(g->layers[l].exp_up), free(g->layers[l].exp_down);
    free(g->layers);
    free(g->inv_freq);
    if (g->blas) cuda_blas_free(g->blas);
    if (g->dexp) cudaFree(g->dexp);
    if (g->dgexp) cudaFree(g->dgexp);
    if (g->dload) cudaFree(g->dload);
    if (g->pk_scratch) cudaFree(g->pk_scratch);
    free(g->hseg);
    if (g->w16) cudaFree(g->w16);
    if (g->master) cudaFree(g->master);
    if (g->grads) cudaFree(g->grads);
    if (g->s) cudaStreamDestroy(g->s);
    free(g);
}

void *cuda_model_carve(Arena *a, size_t bytes) {
    size_t at = (a->off + 255) & ~(size_t)255;
    a->off = at + bytes;
    return a->base ? a->base + at : NULL;
}

void cuda_model_moe_layout(const ModelConfig *c, Arena *a, GActs *t, long N) {
    const long H = c->hidden_size, E = c->n_routed_experts, k = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
    t->logits = FL(N * E), t->scores = FL(N * E), t->topw = FL(N * k), t->topsum = FL(N);
    t->topk = IN(N * k), t->count = IN(E), t->start = IN(E + 1), t->perm = IN(N * k), t->where = IN(N * k);
    t->xe = BF(N * k * H), t->egu = BF(N * k * 2 * Ie), t->eh = BF(N * k * Ie);
    t->ey = BF(N * k * H);
}

static void acts_layout(CudaModel *g, Arena *a, long N) {
    const ModelConfig *c = &g->cfg;
    const long H = c->hidden_size, nh = c->num_attention_heads, dqk = c->qk_head_dim, dc = c->kv_lora_rank;
    const long dr = c->qk_rope_head_dim, dn = c->qk_nope_head_dim, dv = c->v_head_dim, dq = c->q_lora_rank;
    const long Is = (long)c->moe_intermediate_size * c->n_shared_experts;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        GActs *t = &g->acts[l];
        t->x = BF(N * H), t->xn1 = BF(N * H), t->xm = BF(N * H), t->xn2 = BF(N * H);
        t->rstd1 = FL(N), t->rstd2 = FL(N);
        if (dq) t->qa = BF(N * dq), t->qan = BF(N * dq), t->qa_rstd = FL(N);
        t->q = BF(N * nh * dqk), t->k = BF(N * nh * dqk);
        t->kva = BF(N * (dc + dr)), t->kv_rstd = FL(N), t->ckv = BF(N * dc);
        t->kvb = BF(N * nh * (dn + dv)), t->att = BF(N * nh * dv), t->lse = FL(N * nh);
        if (!g->layers[l].moe) {
            t->gu = BF(N * 2 * c->intermediate_size), t->h = BF(N * c->intermediate_size);
            continue;
        }
        if (Is) t->gu = BF(N * 2 * Is), t->h = BF(N * Is);
        cuda_model_moe_layout(c, a, t, N);
    }
    g->xout = BF(N * H), g->xfn = BF(N * H);
    g->rstdf = FL(N), g->hlse = FL(N), g->ent = FL(N), g->logp = FL(N);
    g->ids = IN(N), g->targets = IN(N);
    g->rcos = FL(N * (dr / 2)), g->rsin = FL(N * (dr / 2));
    g->head_scratch = cuda_model_carve(a, cuda_head_scratch_bytes(g->head_chunk, c->vocab_size));
    cuda_model_bwd_layout(g, a, N);
}

/* Activations for N tokens; grows by at least a quarter so varying batches settle. */
static int acts_ensure(CudaModel *g, long N, Err *err) {
    if (g->capN >= N) return 0;
    if (g->capN) N = N > g->capN + g->capN / 4 ? N : g->capN + g->capN / 4;
    acts_release(g);
    const ModelConfig *c = &g->cfg;
    const int L = c->num_hidden_layers, dr2 = c->qk_rope_head_dim / 2;
    /* The head's fp32 logits for up to 128M values at a time (512 MB; ~1000 tokens at
     * V = 129280): the chunk must be large enough that reading lm_head once per chunk
     * costs little next to the product (at the CPU's 32 rows it would be 200 MB per 32
     * tokens), and need not exceed the batch. */
    long ch = (128L << 20) / c->vocab_size;
    ch = ch < N ? ch : N;
    g->head_chunk = (int)(ch < 8 ? 8 : ch);
    g->acts = xcalloc((size_t)L, sizeof *g->acts);
    Arena a = {NULL, 0};
    acts_layout(g, &a, N);
    CU(cudaMalloc(&g->arena, a.off));
    a = (Arena){g->arena, 0};
    acts_layout(g, &a, N);
    g->hpos = xmalloc(sizeof(int) * N), g->htgt = xmalloc(sizeof(int) * N);
    g->hcs = xmalloc(sizeof(float) * N * (dr2 ? dr2 : 1)), g->hsn = xmalloc(sizeof(float) * N * (dr2 ? dr2 : 1));
    g->capN = N;
    return 0;
}

static CudaAttnLayout attn_layout(const CudaModel *g) {
    const ModelConfig *c = &g->cfg;
    return cuda_attn_layout_mla(g->lastB, g->lastT, c->num_attention_heads, c->qk_nope_head_dim, c->qk_rope_head_dim,
                                c->v_head_dim);
}

int cuda_model_attn_fwd(CudaModel *g, const GActs *t, cuda_bf16 *att, float *lse, Err *err) {
    const ModelConfig *c = &g->cfg;
    const int dn = c->qk_nope_head_dim;
    CudaAttnLayout L = attn_layout(g);
    if (!g->nseg) return cuda_attn_fwd(g->s, &L, c->softmax_scale, t->q, t->k, t->kvb + dn, att, lse, err);
    return cuda_attn_fwd_packed(g->s, &L, g->hseg, g->nseg, c->softmax_scale, t->q, t->k, t->kvb + dn, att, lse,
                                g->pk_scratch, err);
}

int cuda_model_attn_bwd(CudaModel *g, const GActs *t, const cuda_bf16 *datt, GBack *d, Err *err) {
    const ModelConfig *c = &g->cfg;
    const int dn = c->qk_nope_head_dim;
    CudaAttnLayout L = attn_layout(g);
    if (!g->nseg)
        return cuda_attn_bwd(g->s, &L, c->softmax_scale, t->q, t->k, t->kvb + dn, t->att, t->lse, datt, d->dq, d->dk,
                             d->dkvb + dn, CUDA_BF16, d->attn_scratch, err);
    return cuda_attn_bwd_packed(g->s, &L, g->hseg, g->nseg, c->softmax_scale, t->q, t->k, t->kvb + dn, t->att, t->lse,
                                datt, d->dq, d->dk, d->dkvb + dn, CUDA_BF16, g->pk_scratch, err);
}

/* Multi-head latent attention of layer l, as attn_fwd: t->xm = x + o_proj(attention(xn1)). */
static int attn_fwd(CudaModel *g, int l, int N, Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    GActs *t = &g->acts[l];
    const int H = c->hidden_size, nh = c->num_attention_heads;
    const int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dqk = dn + dr, dv = c->v_head_dim;
    const int dc = c->kv_lora_rank, dq = c->q_lora_rank;
    CudaBlas *bl = g->blas;
    cudaStream_t s = g->s;
    if (dq) {
        TRY(cuda_linear_fwd(bl, s, t->qa, CUDA_BF16, t->xn1, w->q_a, N, dq, H, 0, err));
        TRY(cuda_rmsnorm_fwd(s, t->qan, t->qa_rstd, t->qa, w->q_a_norm, N, dq, dq, dq, c->latent_norm_eps, err));
        TRY(cuda_linear_fwd(bl, s, t->q, CUDA_BF16, t->qan, w->q_b, N, nh * dqk, dq, 0, err));
    } else {
        TRY(cuda_linear_fwd(bl, s, t->q, CUDA_BF16, t->xn1, w->q, N, nh * dqk, H, 0, err));
    }
    TRY(cuda_rope_apply(s, t->q + dn, g->rcos, g->rsin, N, nh, dqk, nh * dqk, dr, 0, err));
    TRY(cuda_linear_fwd(bl, s, t->kva, CUDA_BF16, t->xn1, w->kv_a, N, dc + dr, H, 0, err));
    TRY(cuda_rmsnorm_fwd(s, t->ckv, t->kv_rstd, t->kva, w->kv_a_norm, N, dc, dc + dr, dc, c->latent_norm_eps, err));
    TRY(cuda_rope_apply(s, t->kva + dc, g->rcos, g->rsin, N, 1, 0, dc + dr, dr, 0, err));
    TRY(cuda_linear_fwd(bl, s, t->kvb, CUDA_BF16, t->ckv, w->kv_b, N, nh * (dn + dv), dc, 0, err));
    TRY(cuda_mla_keys(s, t->k, t->kvb, t->kva, N, nh, dn, dr, dv, dc, err));
    TRY(cuda_model_attn_fwd(g, t, t->att, t->lse, err));
    CU(cudaMemcpyAsync(t->xm, t->x, sizeof(cuda_bf16) * (size_t)N * H, cudaMemcpyDeviceToDevice, s));
    return cuda_linear_fwd(bl, s, t->xm, CUDA_BF16, t->att, w->o, N, H, nh * dv, 1, err);
}

int cuda_model_swiglu(CudaModel *g, cuda_bf16 *out, int accumulate, const cuda_bf16 *x, W gate, W down, cuda_bf16 *gu,
                      cuda_bf16 *h, int N, int I, Err *err) {
    const int H = g->cfg.hidden_size;
    TRY(cuda_linear_fwd(g->blas, g->s, gu, CUDA_BF16, x, gate, N, 2 * I, H, 0, err));
    TRY(cuda_swiglu_fwd(g->s, h, gu, gu + I, N, I, 2L * I, err));
    return cuda_linear_fwd(g->blas, g->s, out, CUDA_BF16, h, down, N, H, I, accumulate, err);
}

CudaRouterCfg cuda_model_router_cfg(const ModelConfig *c) {
    return (CudaRouterCfg){c->n_routed_experts, c->num_experts_per_tok, c->n_group, c->topk_group, c->topk_method,
                           c->scoring_func, c->norm_topk_prob, c->routed_scaling_factor};
}

/* The MoE block of layer l over rows xn, as mlp_fwd: out (already holding the residual)
 * += routed experts (weighted, fp32 sum) + shared experts; t holds the MLP buffers. */
int cuda_model_moe(CudaModel *g, int l, GActs *t, const cuda_bf16 *xn, int N, cuda_bf16 *out, int *load, int few_rows,
                   Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    const int H = c->hidden_size, E = c->n_routed_experts, k = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
    CudaRouterCfg rc = cuda_model_router_cfg(c);
    cudaStream_t s = g->s;
    TRY(cuda_linear_fwd(g->blas, s, t->logits, CUDA_F32, xn, w->router, N, E, H, 0, err));
    TRY(cuda_moe_route(s, &rc, t->logits, w->router_bias, N, t->scores, t->topk, t->topw, t->topsum, err));
    TRY(cuda_moe_permute(s, t->topk, N, k, E, t->count, t->start, t->perm, t->where, load, err));
    if (few_rows) {
        TRY(cuda_moe_experts_fwd(s, w->dexp_gate, w->dexp_up, w->dexp_down, t->start, xn, t->perm, k, E, H, Ie, t->eh,
                                 t->ey, err));
    } else {
        TRY(cuda_moe_gather(s, t->xe, xn, t->perm, N, k, H, err));
        TRY(cuda_grouped_fwd(s, t->egu, CUDA_BF16, t->xe, w->dexp_gate, t->start, E, N * k, 2 * Ie, H, 0, err));
        TRY(cuda_swiglu_fwd(s, t->eh, t->egu, t->egu + Ie, (long)N * k, Ie, 2L * Ie, err));
        TRY(cuda_grouped_fwd(s, t->ey, CUDA_BF16, t->eh, w->dexp_down, t->start, E, N * k, H, Ie, 0, err));
    }
    TRY(cuda_moe_combine(s, out, t->ey, t->topw, t->where, N, k, H, 1, err));
    if (c->n_shared_experts > 0)
        TRY(cuda_model_swiglu(g, out, 1, xn, w->sh_gate, w->sh_down, t->gu, t->h, N,
                              Ie * c->n_shared_experts, err));
    return 0;
}

/* load (host [L, E]) from g->dload after the forward that filled it (synchronises). */
static int load_download(CudaModel *g, int *load, Err *err) {
    const size_t n = (size_t)g->cfg.num_hidden_layers * g->cfg.n_routed_experts;
    if (!n) return 0;
    if (!g->dload) { /* no MoE layer */
        memset(load, 0, sizeof(int) * n);
        return 0;
    }
    CU(cudaMemcpyAsync(load, g->dload, sizeof(int) * n, cudaMemcpyDeviceToHost, g->s));
    CU(cudaStreamSynchronize(g->s));
    return 0;
}

/* One decoder layer: xm = x + attn(norm(x)); out = xm + mlp(norm(xm)). */
static int layer_fwd(CudaModel *g, int l, int N, cuda_bf16 *out, int *load, Err *err) {
    const ModelConfig *c = &g->cfg;
    const GLayer *w = &g->layers[l];
    GActs *t = &g->acts[l];
    const int H = c->hidden_size;
    TRY(cuda_rmsnorm_fwd(g->s, t->xn1, t->rstd1, t->x, w->input_norm, N, H, H, H, c->rms_norm_eps, err));
    TRY(attn_fwd(g, l, N, err));
    TRY(cuda_rmsnorm_fwd(g->s, t->xn2, t->rstd2, t->xm, w->post_norm, N, H, H, H, c->rms_norm_eps, err));
    CU(cudaMemcpyAsync(out, t->xm, sizeof(cuda_bf16) * (size_t)N * H, cudaMemcpyDeviceToDevice, g->s));
    if (w->moe) return cuda_model_moe(g, l, t, t->xn2, N, out, load, 0, err);
    return cuda_model_swiglu(g, out, 1, t->xn2, w->mlp_gate, w->mlp_down, t->gu, t->h, N,
                      c->intermediate_size, err);
}

/* Token checks (ids and targets in the vocabulary), then ids, targets and the rope
 * tables of the positions already in g->hpos to the device. */
static int tokens_upload(CudaModel *g, const int *ids, const int *targets, int N, Err *err) {
    const ModelConfig *c = &g->cfg;
    const int dr2 = c->qk_rope_head_dim / 2;
    for (int i = 0; i < N; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return err_set(err, ERR_INPUT, "cuda model: token id %d at position %d is outside the vocabulary [0, %d)",
                           ids[i], i, c->vocab_size);
        if (targets && targets[i] >= c->vocab_size)
            return err_set(err, ERR_INPUT, "cuda model: target id %d at position %d is outside the vocabulary",
                           targets[i], i);
        g->htgt[i] = targets ? targets[i] : -1;
    }
    rope_table(g->hcs, g->hsn, g->hpos, g->inv_freq, c->rope_amplitude, N, c->qk_rope_head_dim);
    CU(cudaMemcpyAsync(g->ids, ids, sizeof(int) * N, cudaMemcpyHostToDevice, g->s));
    CU(cudaMemcpyAsync(g->targets, g->htgt, sizeof(int) * N, cudaMemcpyHostToDevice, g->s));
    CU(cudaMemcpyAsync(g->rcos, g->hcs, sizeof(float) * N * dr2, cudaMemcpyHostToDevice, g->s));
    CU(cudaMemcpyAsync(g->rsin, g->hsn, sizeof(float) * N * dr2, cudaMemcpyHostToDevice, g->s));
    return 0;
}

/* The forward of N uploaded tokens in the layout of g->lastB/lastT/nseg. */
static int forward_run(CudaModel *g, int N, float temperature, float *logp, float *entropy, int *load, Err *err) {
    const ModelConfig *c = &g->cfg;
    const int H = c->hidden_size, L = c->num_hidden_layers, E = c->n_routed_experts;
    g->temperature = temperature;
    TRY(cuda_embed_rows(g->s, g->acts[0].x, g->embed, g->ids, N, H, err));
    int *dl = load && g->dload ? g->dload : NULL;
    if (dl) CU(cudaMemsetAsync(dl, 0, sizeof(int) * L * E, g->s));
    for (int l = 0; l < L; l++) TRY(layer_fwd(g, l, N, l + 1 < L ? g->acts[l + 1].x : g->xout, dl ? dl + l * E : NULL, err));
    TRY(cuda_rmsnorm_fwd(g->s, g->xfn, g->rstdf, g->xout, g->final_norm, N, H, H, H, c->rms_norm_eps, err));
    TRY(cuda_head_fwd(g->blas, g->s, g->xfn, g->lm_head, g->targets, N, H, c->vocab_size, temperature, g->logp, g->hlse,
                      g->ent, g->head_scratch, g->head_chunk, err));
    if (logp) CU(cudaMemcpyAsync(logp, g->logp, sizeof(float) * N, cudaMemcpyDeviceToHost, g->s));
    if (entropy) CU(cudaMemcpyAsync(entropy, g->ent, sizeof(float) * N, cudaMemcpyDeviceToHost, g->s));
    CU(cudaStreamSynchronize(g->s));  // also where a fault inside any kernel above shows up
    return load ? load_download(g, load, err) : 0;
}

int cuda_model_forward(CudaModel *g, const Batch *b, float temperature, float *logp, float *entropy, int *load,
                       Err *err) {
    const ModelConfig *c = &g->cfg;
    if (!(temperature > 0)) return err_set(err, ERR_INPUT, "cuda model: temperature must be > 0 (got %g)", temperature);
    if (b->B <= 0 || b->T <= 0) return err_set(err, ERR_INPUT, "cuda model: empty batch (%d x %d)", b->B, b->T);
    if (b->T > c->max_position_embeddings)
        return err_set(err, ERR_INPUT, "cuda model: sequence length %d exceeds max_position_embeddings %d", b->T,
                       c->max_position_embeddings);
    const int N = b->B * b->T;
    TRY(acts_ensure(g, N, err));
    for (int i = 0; i < N; i++) g->hpos[i] = i % b->T;
    TRY(tokens_upload(g, b->ids, b->targets, N, err));
    g->lastB = b->B, g->lastT = b->T, g->nseg = 0;
    return forward_run(g, N, temperature, logp, entropy, load, err);
}

int cuda_model_forward_packed(CudaModel *g, const PackedBatch *pb, float temperature, float *logp, float *entropy,
                              int *load, Err *err) {
    if (!(temperature > 0)) return err_set(err, ERR_INPUT, "cuda model: temperature must be > 0 (got %g)", temperature);
    TRY(model_packed_layout_check(&g->cfg, pb, err)); /* the ids are checked by tokens_upload */
    const int N = pb->ntok, nh = g->cfg.num_attention_heads;
    TRY(acts_ensure(g, N, err));
    if (pb->nseg > g->segcap) g->segcap = pb->nseg, g->hseg = xrealloc(g->hseg, sizeof *g->hseg * g->segcap);
    for (int s = 0; s < pb->nseg; s++) {
        const PackSeg *q = &pb->seg[s];
        const int plen = q->prefix >= 0 ? pb->seg[q->prefix].len : 0;
        g->hseg[s] = (CudaAttnSeg){q->start, q->len, q->prefix};
        for (int i = 0; i < q->len; i++) g->hpos[q->start + i] = plen + i;
    }
    const size_t need = cuda_attn_packed_scratch_bytes(N, pb->nseg, nh);
    if (need > g->pk_bytes) {
        if (g->pk_scratch) cudaFree(g->pk_scratch);
        g->pk_scratch = NULL, g->pk_bytes = 0;
        CU(cudaMalloc(&g->pk_scratch, need));
        g->pk_bytes = need;
    }
    TRY(tokens_upload(g, pb->ids, pb->targets, N, err));
    g->lastB = 1, g->lastT = N, g->nseg = pb->nseg;
    return forward_run(g, N, temperature, logp, entropy, load, err);
}
