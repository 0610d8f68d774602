/* model_fwd: the training forward and backward over a [B, T] batch, the fused
 * chunked output head (log-probs and entropy of softmax(logits / temperature)
 * without keeping [tokens, vocab] logits), full-logit inference, and the MTP
 * module. Blocks live in model_attn.c and model_moe.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "model/model_internal.h"

#define F(n) ((float *)xaligned(sizeof(float) * (size_t)(n)))

static void attn_acts_alloc(AttnActs *a, const ModelConfig *c, int B, int T) {
    const long N = (long)B * T, nh = c->num_attention_heads, dq = c->q_lora_rank;
    const long dqk = c->qk_head_dim, dv = c->v_head_dim, dc = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    memset(a, 0, sizeof *a);
    if (dq) a->qa = F(N * dq), a->qa_rstd = F(N), a->qan = F(N * dq);
    a->q = F(N * nh * dqk);
    a->kva = F(N * (dc + dr));
    a->kv_rstd = F(N);
    a->ckv = F(N * dc);
    a->kvb = F(N * nh * (c->qk_nope_head_dim + dv));
    a->k = F(N * nh * dqk);
    a->p = F((long)B * nh * T * T);
    a->att = F(N * nh * dv);
}

static void attn_acts_free(AttnActs *a) {
    free(a->qa), free(a->qa_rstd), free(a->qan), free(a->q), free(a->kva), free(a->kv_rstd), free(a->ckv);
    free(a->kvb), free(a->k), free(a->p), free(a->att);
}

static int nlayer_acts(const Model *m) { return m->cfg.num_hidden_layers + (m->has_mtp ? 1 : 0); }

static void acts_free_top(ModelActs *A) {
    if (!A) return;
    free(A->xout), free(A->xfn), free(A->rstdf), free(A->lse), free(A->ent), free(A->pos), free(A->rcos), free(A->rsin), free(A->dres), free(A->dxn);
    free(A->dbig), free(A->zhead);
    free(A);
}

static void acts_free_layers(Model *m) {
    ModelActs *A = m->acts;
    if (!A) return;
    for (int l = 0; l < nlayer_acts(m); l++) {
        LayerActs *la = &A->layer[l];
        free(la->x), free(la->xn1), free(la->rstd1), free(la->xm), free(la->xn2), free(la->rstd2);
        attn_acts_free(&la->a);
        mlp_acts_free(&la->f);
    }
    free(A->layer);
    acts_free_top(A);
    m->acts = NULL;
}

void model_release_acts(Model *m) { acts_free_layers(m); }

/* Rows per head chunk: bounded so chunk x V logits stay around 4M floats. */
static int head_chunk(const ModelConfig *c) {
    int ch = (int)(4194304L / c->vocab_size);
    return ch < 8 ? 8 : ch;
}

/* Ensures activations for at least B x T (reallocating when the shape grows). */
static ModelActs *acts_ensure(Model *m, int B, int T) {
    if (m->acts && m->acts->B == B && m->acts->T == T) return m->acts;
    acts_free_layers(m);
    const ModelConfig *c = &m->cfg;
    const long N = (long)B * T, H = c->hidden_size;
    ModelActs *A = xcalloc(1, sizeof *A);
    A->B = B, A->T = T;
    int L = nlayer_acts(m);
    A->layer = xcalloc(L, sizeof *A->layer);
    for (int l = 0; l < L; l++) {
        LayerActs *la = &A->layer[l];
        la->x = F(N * H), la->xn1 = F(N * H), la->rstd1 = F(N), la->xm = F(N * H), la->xn2 = F(N * H);
        la->rstd2 = F(N);
        attn_acts_alloc(&la->a, c, B, T);
        int moe = l < c->num_hidden_layers ? config_layer_is_moe(c, l) : c->n_routed_experts > 0;
        mlp_acts_alloc(&la->f, c, moe, (int)N);
    }
    A->xout = F(N * H), A->xfn = F(N * H), A->rstdf = F(N), A->lse = F(N), A->ent = F(N);
    A->pos = xaligned(sizeof(int) * N);
    A->rcos = F(N * (c->qk_rope_head_dim / 2)), A->rsin = F(N * (c->qk_rope_head_dim / 2));
    A->dres = F(N * H), A->dxn = F(N * H);
    size_t sa = attn_bwd_scratch(c, B, T), sm = mlp_bwd_scratch(c, (int)N);
    A->dbig_n = sa > sm ? sa : sm;
    A->dbig = F(A->dbig_n);
    A->zhead = F((long)head_chunk(c) * c->vocab_size);
    m->acts = A;
    return A;
}

/* One decoder layer: out = x + attn(norm(x)); out += mlp(norm(out)). */
static void layer_fwd(Model *m, const LayerW *w, int moe, LayerActs *la, const float *x, float *out, int B, int T,
                      int *load) {
    const ModelConfig *c = &m->cfg;
    const int N = B * T, H = c->hidden_size;
    if (la->x != x) memcpy(la->x, x, sizeof(float) * N * H);
    rmsnorm_fwd(la->xn1, la->rstd1, la->x, w->input_norm, N, H, H, H, c->rms_norm_eps);
    attn_fwd(m, w, &la->a, la->xn1, la->xm, B, T, m->acts->rcos, m->acts->rsin);
    for (long i = 0; i < (long)N * H; i++) la->xm[i] += la->x[i];
    rmsnorm_fwd(la->xn2, la->rstd2, la->xm, w->post_norm, N, H, H, H, c->rms_norm_eps);
    mlp_fwd(m, w, moe, &la->f, la->xn2, out, N, load);
    for (long i = 0; i < (long)N * H; i++) out[i] += la->xm[i];
}

/* dres: in = d(out), out = d(x). */
static void layer_bwd(Model *m, const LayerW *w, int moe, LayerActs *la, float *dres, int B, int T) {
    const ModelConfig *c = &m->cfg;
    ModelActs *A = m->acts;
    const int N = B * T, H = c->hidden_size;
    memset(A->dxn, 0, sizeof(float) * N * H);
    mlp_bwd(m, w, moe, &la->f, la->xn2, dres, A->dxn, N, A->dbig);
    rmsnorm_bwd(dres, grad_of(m, w->post_norm), A->dxn, la->xm, w->post_norm, la->rstd2, N, H, H, H);
    memset(A->dxn, 0, sizeof(float) * N * H);
    attn_bwd(m, w, &la->a, la->xn1, dres, A->dxn, B, T, A->rcos, A->rsin, A->dbig);
    rmsnorm_bwd(dres, grad_of(m, w->input_norm), A->dxn, la->x, w->input_norm, la->rstd1, N, H, H, H);
}

static int batch_check(const Model *m, const Batch *b, Err *err) {
    if (b->B <= 0 || b->T <= 0) return err_set(err, ERR_INPUT, "model: empty batch (%d x %d)", b->B, b->T);
    if (b->T > m->cfg.max_position_embeddings)
        return err_set(err, ERR_INPUT, "model: sequence length %d exceeds max_position_embeddings %d", b->T,
                       m->cfg.max_position_embeddings);
    for (long i = 0; i < (long)b->B * b->T; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= m->cfg.vocab_size)
            return err_set(err, ERR_INPUT, "model: token id %d at position %ld is outside the vocabulary [0, %d)",
                           b->ids[i], i, m->cfg.vocab_size);
        if (b->targets && b->targets[i] >= m->cfg.vocab_size)
            return err_set(err, ERR_INPUT, "model: target id %d at position %ld is outside the vocabulary",
                           b->targets[i], i);
    }
    return 0;
}

/* Runs embedding + all layers + final norm; leaves A->xfn. */
static int forward_hidden(Model *m, const Batch *b, Err *err) {
    if (batch_check(m, b, err)) return -1;
    const ModelConfig *c = &m->cfg;
    ModelActs *A = acts_ensure(m, b->B, b->T);
    const int N = b->B * b->T, H = c->hidden_size, L = c->num_hidden_layers;
    for (int i = 0; i < N; i++) A->pos[i] = i % b->T;
    rope_table(A->rcos, A->rsin, A->pos, m->rope_inv_freq, c->rope_amplitude, N, c->qk_rope_head_dim);
    float *x0 = A->layer[0].x;
    for (int i = 0; i < N; i++) memcpy(x0 + (long)i * H, m->embed + (long)b->ids[i] * H, H * sizeof(float));
    const int E = c->n_routed_experts;
    if (E) memset(m->router_load, 0, sizeof(int) * L * E);
    for (int l = 0; l < L; l++) {
        float *out = l + 1 < L ? A->layer[l + 1].x : A->xout;
        layer_fwd(m, &m->layers[l], config_layer_is_moe(c, l), &A->layer[l], A->layer[l].x, out, b->B, b->T,
                  E ? m->router_load + l * E : NULL);
    }
    rmsnorm_fwd(A->xfn, A->rstdf, A->xout, m->final_norm, N, H, H, H, c->rms_norm_eps);
    return 0;
}

int model_forward(Model *m, const Batch *b, float temperature, float *logp, float *entropy, Err *err) {
    if (!(temperature > 0)) return err_set(err, ERR_INPUT, "model: temperature must be > 0 (got %g)", temperature);
    if (forward_hidden(m, b, err)) return -1;
    ModelActs *A = m->acts;
    A->temperature = temperature;
    const int N = b->B * b->T, V = m->cfg.vocab_size, H = m->cfg.hidden_size, ch = head_chunk(&m->cfg);
    float *z = A->zhead;
    for (int n0 = 0; n0 < N; n0 += ch) {
        int cn = N - n0 < ch ? N - n0 : ch;
        linear_fwd(z, A->xfn + (long)n0 * H, m->lm_head, cn, V, H, 0);
#pragma omp parallel for
        for (int i = 0; i < cn; i++) {
            float *r = z + (long)i * V, mx = -INFINITY;
            for (int v = 0; v < V; v++) mx = fmaxf(mx, r[v] /= temperature);
            double s = 0, sz = 0;
            for (int v = 0; v < V; v++) {
                double e = exp((double)(r[v] - mx));
                s += e;
                sz += e * r[v];
            }
            float lse = mx + (float)log(s);
            A->lse[n0 + i] = lse;
            int tgt = b->targets ? b->targets[n0 + i] : -1;
            if (logp) logp[n0 + i] = tgt >= 0 ? r[tgt] - lse : 0.0f;
            A->ent[n0 + i] = lse - (float)(sz / s);
            if (entropy) entropy[n0 + i] = A->ent[n0 + i];
        }
    }
    return 0;
}

int model_logits(Model *m, const Batch *b, float *logits, Err *err) {
    if (forward_hidden(m, b, err)) return -1;
    linear_fwd(logits, m->acts->xfn, m->lm_head, b->B * b->T, m->cfg.vocab_size, m->cfg.hidden_size, 0);
    return 0;
}

/* Head backward, chunked: recomputes the logits, forms d(logits) from dlogp
 * and dentropy, accumulates d(lm_head) and d(xfn). */
static void head_bwd(Model *m, const Batch *b, const float *dlogp, const float *dent, float *dxfn) {
    ModelActs *A = m->acts;
    const int N = b->B * b->T, V = m->cfg.vocab_size, H = m->cfg.hidden_size, ch = head_chunk(&m->cfg);
    const float tau = A->temperature;
    float *z = A->zhead;
    for (int n0 = 0; n0 < N; n0 += ch) {
        int cn = N - n0 < ch ? N - n0 : ch;
        if (N > ch) { /* one chunk only: the forward left z/tau in the buffer */
            linear_fwd(z, A->xfn + (long)n0 * H, m->lm_head, cn, V, H, 0);
            for (long i = 0; i < (long)cn * V; i++) z[i] /= tau;
        }
#pragma omp parallel for
        for (int i = 0; i < cn; i++) {
            float *r = z + (long)i * V;
            int n = n0 + i, tgt = b->targets ? b->targets[n] : -1;
            float gl = tgt >= 0 && dlogp ? dlogp[n] : 0.0f, ge = dent ? dent[n] : 0.0f;
            float lse = A->lse[n], ent = A->ent[n];
            for (int v = 0; v < V; v++) {
                float lp = r[v] - lse, p = expf(lp);
                /* d logp_tgt / dz = onehot - p ; d H / dz = -p (log p + H) */
                r[v] = (-gl * p - ge * p * (lp + ent)) / tau;
            }
            if (tgt >= 0) r[tgt] += gl / tau;
        }
        linear_bwd_x(dxfn + (long)n0 * H, z, m->lm_head, cn, V, H);
        linear_bwd_w(grad_of(m, m->lm_head), z, A->xfn + (long)n0 * H, cn, V, H);
    }
}

void model_backward(Model *m, const Batch *b, const float *dlogp, const float *dentropy) {
    model_alloc_grads(m);
    ModelActs *A = m->acts;
    const ModelConfig *c = &m->cfg;
    const int N = b->B * b->T, H = c->hidden_size, L = c->num_hidden_layers;
    float *dxfn = A->dxn;
    memset(dxfn, 0, sizeof(float) * N * H);
    head_bwd(m, b, dlogp, dentropy, dxfn);
    memset(A->dres, 0, sizeof(float) * N * H);
    rmsnorm_bwd(A->dres, grad_of(m, m->final_norm), dxfn, A->xout, m->final_norm, A->rstdf, N, H, H, H);
    for (int l = L - 1; l >= 0; l--)
        layer_bwd(m, &m->layers[l], config_layer_is_moe(c, l), &A->layer[l], A->dres, b->B, b->T);
    float *gE = grad_of(m, m->embed);
    for (int i = 0; i < N; i++) {
        float *g = gE + (long)b->ids[i] * H;
        const float *d = A->dres + (long)i * H;
        for (int k = 0; k < H; k++) g[k] += d[k];
    }
}

int model_mtp_logits(Model *m, const Batch *b, float *logits, Err *err) {
    if (!m->has_mtp) return err_set(err, ERR_INPUT, "model: this model has no MTP module loaded");
    if (forward_hidden(m, b, err)) return -1;
    const ModelConfig *c = &m->cfg;
    ModelActs *A = m->acts;
    const int N = b->B * b->T, H = c->hidden_size, T = b->T;
    float *e = F((long)N * 2 * H), *cat = F((long)N * 2 * H), *z = F((long)N * H), *zo = F((long)N * H);
    /* concat order is [embedding(t+1) ; hidden(t)], hidden after model.norm (vLLM/SGLang) */
    for (int i = 0; i < N; i++) {
        int t = i % T, next = t + 1 < T ? b->ids[i + 1] : 0;
        memcpy(e + (long)i * H, m->mtp.embed + (long)next * H, H * sizeof(float));
    }
    rmsnorm_fwd(cat, NULL, e, m->mtp.enorm, N, H, H, 2 * H, c->rms_norm_eps);
    rmsnorm_fwd(cat + H, NULL, A->xfn, m->mtp.hnorm, N, H, H, 2 * H, c->rms_norm_eps);
    linear_fwd(z, cat, m->mtp.eh_proj, N, H, 2 * H, 0);
    LayerActs *la = &A->layer[c->num_hidden_layers];
    layer_fwd(m, &m->mtp.layer, c->n_routed_experts > 0, la, z, zo, b->B, b->T, NULL);
    rmsnorm_fwd(z, NULL, zo, m->mtp.head_norm, N, H, H, H, c->rms_norm_eps);
    linear_fwd(logits, z, m->mtp.head, N, c->vocab_size, H, 0);
    free(e), free(cat), free(z), free(zo);
    return 0;
}
