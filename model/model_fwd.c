/* model_fwd: the training forward and backward over a padded [B, T] batch or a
 * packed one (shared prompt prefixes, no padding; model.h PackedBatch), the fused
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

static void attn_acts_alloc(AttnActs *a, const ModelConfig *c, long N, long np) {
    const long nh = c->num_attention_heads, dq = c->q_lora_rank;
    const long dqk = c->qk_head_dim, dv = c->v_head_dim, dc = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    memset(a, 0, sizeof *a);
    if (dq) a->qa = F(N * dq), a->qa_rstd = F(N), a->qan = F(N * dq);
    a->q = F(N * nh * dqk);
    a->kva = F(N * (dc + dr));
    a->kv_rstd = F(N);
    a->ckv = F(N * dc);
    a->kvb = F(N * nh * (c->qk_nope_head_dim + dv));
    a->k = F(N * nh * dqk);
    a->p = F(np);
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
    free(A->dbig), free(A->zhead), free(A->poff);
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

static ModelActs *acts_alloc(Model *m, long N, long np) {
    acts_free_layers(m);
    const ModelConfig *c = &m->cfg;
    const long H = c->hidden_size;
    ModelActs *A = xcalloc(1, sizeof *A);
    A->capN = N, A->capP = np;
    int L = nlayer_acts(m);
    A->layer = xcalloc(L, sizeof *A->layer);
    for (int l = 0; l < L; l++) {
        LayerActs *la = &A->layer[l];
        la->x = F(N * H), la->xn1 = F(N * H), la->rstd1 = F(N), la->xm = F(N * H), la->xn2 = F(N * H);
        la->rstd2 = F(N);
        attn_acts_alloc(&la->a, c, N, np);
        int moe = l < c->num_hidden_layers ? config_layer_is_moe(c, l) : c->n_routed_experts > 0;
        mlp_acts_alloc(&la->f, c, moe, (int)N);
    }
    A->xout = F(N * H), A->xfn = F(N * H), A->rstdf = F(N), A->lse = F(N), A->ent = F(N);
    A->pos = xaligned(sizeof(int) * N);
    A->rcos = F(N * (c->qk_rope_head_dim / 2)), A->rsin = F(N * (c->qk_rope_head_dim / 2));
    A->dres = F(N * H), A->dxn = F(N * H);
    size_t sa = attn_bwd_scratch(c, N, np), sm = mlp_bwd_scratch(c, (int)N);
    A->dbig_n = sa > sm ? sa : sm;
    A->dbig = F(A->dbig_n);
    A->zhead = F((long)head_chunk(c) * c->vocab_size);
    m->acts = A;
    return A;
}

/* Ensures activations for N tokens and np attention probabilities, and room
 * for nseg segment offsets. Grows only, by at least a quarter, so that
 * micro-batches of varying size settle on one allocation after a few. */
static ModelActs *acts_ensure(Model *m, long N, long np, int nseg) {
    ModelActs *A = m->acts;
    if (!A || A->capN < N || A->capP < np) {
        if (A) {
            long gn = A->capN + A->capN / 4, gp = A->capP + A->capP / 4;
            N = N > gn ? N : gn, np = np > gp ? np : gp;
        }
        A = acts_alloc(m, N, np);
    }
    if (A->cap_seg < nseg) {
        free(A->poff);
        A->poff = xmalloc(sizeof(long) * (size_t)nseg);
        A->cap_seg = nseg;
    }
    return A;
}

/* One decoder layer: out = x + attn(norm(x)); out += mlp(norm(out)). */
static void layer_fwd(Model *m, const LayerW *w, int moe, LayerActs *la, const float *x, float *out, const Layout *lo,
                      int *load) {
    const ModelConfig *c = &m->cfg;
    const int N = lo->N, H = c->hidden_size;
    if (la->x != x) memcpy(la->x, x, sizeof(float) * N * H);
    rmsnorm_fwd(la->xn1, la->rstd1, la->x, w->input_norm, N, H, H, H, c->rms_norm_eps);
    attn_fwd(m, w, &la->a, la->xn1, la->xm, lo, m->acts->rcos, m->acts->rsin);
    for (long i = 0; i < (long)N * H; i++) la->xm[i] += la->x[i];
    rmsnorm_fwd(la->xn2, la->rstd2, la->xm, w->post_norm, N, H, H, H, c->rms_norm_eps);
    mlp_fwd(m, w, moe, &la->f, la->xn2, out, N, load);
    for (long i = 0; i < (long)N * H; i++) out[i] += la->xm[i];
}

/* dres: in = d(out), out = d(x). */
static void layer_bwd(Model *m, const LayerW *w, int moe, LayerActs *la, float *dres, const Layout *lo) {
    const ModelConfig *c = &m->cfg;
    ModelActs *A = m->acts;
    const int N = lo->N, H = c->hidden_size;
    memset(A->dxn, 0, sizeof(float) * N * H);
    mlp_bwd(m, w, moe, &la->f, la->xn2, dres, A->dxn, N, A->dbig);
    rmsnorm_bwd(dres, grad_of(m, w->post_norm), A->dxn, la->xm, w->post_norm, la->rstd2, N, H, H, H);
    memset(A->dxn, 0, sizeof(float) * N * H);
    attn_bwd(m, w, &la->a, la->xn1, dres, A->dxn, lo, A->rcos, A->rsin, A->dbig);
    rmsnorm_bwd(dres, grad_of(m, w->input_norm), A->dxn, la->x, w->input_norm, la->rstd1, N, H, H, H);
}

/* Token ids and targets inside the vocabulary; where names the layout. */
static int tokens_check(const Model *m, const int *ids, const int *targets, long N, Err *err) {
    for (long i = 0; i < N; i++) {
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return err_set(err, ERR_INPUT, "model: token id %d at position %ld is outside the vocabulary [0, %d)", ids[i],
                           i, m->cfg.vocab_size);
        if (targets && targets[i] >= m->cfg.vocab_size)
            return err_set(err, ERR_INPUT, "model: target id %d at position %ld is outside the vocabulary", targets[i], i);
    }
    return 0;
}

static int batch_check(const Model *m, const Batch *b, Err *err) {
    if (b->B <= 0 || b->T <= 0) return err_set(err, ERR_INPUT, "model: empty batch (%d x %d)", b->B, b->T);
    if (b->T > m->cfg.max_position_embeddings)
        return err_set(err, ERR_INPUT, "model: sequence length %d exceeds max_position_embeddings %d", b->T,
                       m->cfg.max_position_embeddings);
    return tokens_check(m, b->ids, b->targets, (long)b->B * b->T, err);
}

/* Segments tile [0, ntok) in order; a prefix is an earlier root segment. */
int model_packed_layout_check(const ModelConfig *c, const PackedBatch *pb, Err *err) {
    if (pb->ntok <= 0 || pb->nseg <= 0)
        return err_set(err, ERR_INPUT, "model: empty packed batch (%d tokens, %d segments)", pb->ntok, pb->nseg);
    for (int s = 0, at = 0; s < pb->nseg; s++) {
        const PackSeg *g = &pb->seg[s];
        if (g->start != at || g->len <= 0 || g->start + g->len > pb->ntok)
            return err_set(err, ERR_INPUT, "model: packed segment %d (start %d, len %d) does not continue at token %d", s,
                           g->start, g->len, at);
        if (g->prefix >= s || (g->prefix >= 0 && pb->seg[g->prefix].prefix != -1) || g->prefix < -1)
            return err_set(err, ERR_INPUT, "model: packed segment %d names prefix %d, not an earlier root segment", s,
                           g->prefix);
        int plen = g->prefix >= 0 ? pb->seg[g->prefix].len : 0;
        if (plen + g->len > c->max_position_embeddings)
            return err_set(err, ERR_INPUT, "model: packed segment %d reaches position %d, beyond max_position_embeddings %d",
                           s, plen + g->len, c->max_position_embeddings);
        at += g->len;
        if (s == pb->nseg - 1 && at != pb->ntok)
            return err_set(err, ERR_INPUT, "model: packed segments cover %d of %d tokens", at, pb->ntok);
    }
    return 0;
}

static int packed_check(const Model *m, const PackedBatch *pb, Err *err) {
    if (model_packed_layout_check(&m->cfg, pb, err)) return -1;
    return tokens_check(m, pb->ids, pb->targets, pb->ntok, err);
}

/* Activations and the layout of a padded batch; positions 0..T-1 per row. */
static Layout layout_padded(Model *m, const Batch *b) {
    Layout lo = {b->B * b->T, b->B, b->T, NULL, NULL};
    ModelActs *A = acts_ensure(m, lo.N, (long)b->B * m->cfg.num_attention_heads * b->T * b->T, 0);
    for (int i = 0; i < lo.N; i++) A->pos[i] = i % b->T;
    return lo;
}

/* Activations and the layout of a packed batch: probability offsets per
 * segment; positions continue from the prefix's length. */
static Layout layout_packed(Model *m, const PackedBatch *pb) {
    const long nh = m->cfg.num_attention_heads;
    ModelActs *A = acts_ensure(m, pb->ntok, attn_packed_pfloats(&m->cfg, pb), pb->nseg);
    long off = 0;
    for (int s = 0; s < pb->nseg; s++) {
        const PackSeg *g = &pb->seg[s];
        int plen = g->prefix >= 0 ? pb->seg[g->prefix].len : 0;
        A->poff[s] = off;
        off += nh * g->len * (plen + g->len);
        for (int t = 0; t < g->len; t++) A->pos[g->start + t] = plen + t;
    }
    return (Layout){pb->ntok, 0, 0, pb, A->poff};
}

/* Runs embedding + all layers + final norm over the layout's tokens (acts
 * and positions set up by layout_*); leaves A->xfn. */
static void forward_hidden(Model *m, const Layout *lo, const int *ids) {
    const ModelConfig *c = &m->cfg;
    ModelActs *A = m->acts;
    const int N = lo->N, H = c->hidden_size, L = c->num_hidden_layers;
    rope_table(A->rcos, A->rsin, A->pos, m->rope_inv_freq, c->rope_amplitude, N, c->qk_rope_head_dim);
    float *x0 = A->layer[0].x;
    for (int i = 0; i < N; i++) memcpy(x0 + (long)i * H, m->embed + (long)ids[i] * H, H * sizeof(float));
    const int E = c->n_routed_experts;
    if (E) memset(m->router_load, 0, sizeof(int) * L * E);
    for (int l = 0; l < L; l++) {
        float *out = l + 1 < L ? A->layer[l + 1].x : A->xout;
        layer_fwd(m, &m->layers[l], config_layer_is_moe(c, l), &A->layer[l], A->layer[l].x, out, lo,
                  E ? m->router_load + l * E : NULL);
    }
    rmsnorm_fwd(A->xfn, A->rstdf, A->xout, m->final_norm, N, H, H, H, c->rms_norm_eps);
}

/* The fused head over N tokens: log-prob of targets and entropy of softmax(z / temperature). */
static void head_fwd(Model *m, int N, const int *targets, float temperature, float *logp, float *entropy) {
    ModelActs *A = m->acts;
    A->temperature = temperature;
    const int V = m->cfg.vocab_size, H = m->cfg.hidden_size, ch = head_chunk(&m->cfg);
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
            int tgt = targets ? targets[n0 + i] : -1;
            if (logp) logp[n0 + i] = tgt >= 0 ? r[tgt] - lse : 0.0f;
            A->ent[n0 + i] = lse - (float)(sz / s);
            if (entropy) entropy[n0 + i] = A->ent[n0 + i];
        }
    }
}

int model_forward(Model *m, const Batch *b, float temperature, float *logp, float *entropy, Err *err) {
    if (!(temperature > 0)) return err_set(err, ERR_INPUT, "model: temperature must be > 0 (got %g)", temperature);
    if (batch_check(m, b, err)) return -1;
    Layout lo = layout_padded(m, b);
    forward_hidden(m, &lo, b->ids);
    head_fwd(m, lo.N, b->targets, temperature, logp, entropy);
    return 0;
}

int model_forward_packed(Model *m, const PackedBatch *pb, float temperature, float *logp, float *entropy, Err *err) {
    if (!(temperature > 0)) return err_set(err, ERR_INPUT, "model: temperature must be > 0 (got %g)", temperature);
    if (packed_check(m, pb, err)) return -1;
    Layout lo = layout_packed(m, pb);
    forward_hidden(m, &lo, pb->ids);
    head_fwd(m, lo.N, pb->targets, temperature, logp, entropy);
    return 0;
}

int model_logits(Model *m, const Batch *b, float *logits, Err *err) {
    if (batch_check(m, b, err)) return -1;
    Layout lo = layout_padded(m, b);
    forward_hidden(m, &lo, b->ids);
    linear_fwd(logits, m->acts->xfn, m->lm_head, b->B * b->T, m->cfg.vocab_size, m->cfg.hidden_size, 0);
    return 0;
}

/* Head backward, chunked: recomputes the logits, forms d(logits) from dlogp
 * and dentropy, accumulates d(lm_head) and d(xfn). */
static void head_bwd(Model *m, int N, const int *targets, const float *dlogp, const float *dent, float *dxfn) {
    ModelActs *A = m->acts;
    const int V = m->cfg.vocab_size, H = m->cfg.hidden_size, ch = head_chunk(&m->cfg);
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
            int n = n0 + i, tgt = targets ? targets[n] : -1;
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

/* Backward of the last forward over layout lo. */
static void backward_all(Model *m, const Layout *lo, const int *ids, const int *targets, const float *dlogp,
                         const float *dentropy) {
    model_alloc_grads(m);
    ModelActs *A = m->acts;
    const ModelConfig *c = &m->cfg;
    const int N = lo->N, H = c->hidden_size, L = c->num_hidden_layers;
    float *dxfn = A->dxn;
    memset(dxfn, 0, sizeof(float) * N * H);
    head_bwd(m, N, targets, dlogp, dentropy, dxfn);
    memset(A->dres, 0, sizeof(float) * N * H);
    rmsnorm_bwd(A->dres, grad_of(m, m->final_norm), dxfn, A->xout, m->final_norm, A->rstdf, N, H, H, H);
    for (int l = L - 1; l >= 0; l--) layer_bwd(m, &m->layers[l], config_layer_is_moe(c, l), &A->layer[l], A->dres, lo);
    float *gE = grad_of(m, m->embed);
    for (int i = 0; i < N; i++) {
        float *g = gE + (long)ids[i] * H;
        const float *d = A->dres + (long)i * H;
        for (int k = 0; k < H; k++) g[k] += d[k];
    }
}

void model_backward(Model *m, const Batch *b, const float *dlogp, const float *dentropy) {
    Layout lo = {b->B * b->T, b->B, b->T, NULL, NULL};
    backward_all(m, &lo, b->ids, b->targets, dlogp, dentropy);
}

void model_backward_packed(Model *m, const PackedBatch *pb, const float *dlogp, const float *dentropy) {
    Layout lo = {pb->ntok, 0, 0, pb, m->acts->poff}; /* poff as the forward left it */
    backward_all(m, &lo, pb->ids, pb->targets, dlogp, dentropy);
}

int model_mtp_logits(Model *m, const Batch *b, float *logits, Err *err) {
    if (!m->has_mtp) return err_set(err, ERR_INPUT, "model: this model has no MTP module loaded");
    if (batch_check(m, b, err)) return -1;
    Layout lo = layout_padded(m, b);
    forward_hidden(m, &lo, b->ids);
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
    layer_fwd(m, &m->mtp.layer, c->n_routed_experts > 0, la, z, zo, &lo, NULL);
    rmsnorm_fwd(z, NULL, zo, m->mtp.head_norm, N, H, H, H, c->rms_norm_eps);
    linear_fwd(logits, z, m->mtp.head, N, c->vocab_size, H, 0);
    free(e), free(cat), free(z), free(zo);
    return 0;
}
