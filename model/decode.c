/* decode: incremental forward with absorbed MLA over the latent cache (see
 * kvcache.h). The query's nope part is absorbed into the latent space through
 * W_UK (q_abs = q_nope · W_UK), scores are q_abs·c_kv + q_pe·k_pe, the context
 * is summed in latent space and mapped out through W_UV, so the per-token cost
 * never expands past tokens with kv_b_proj. The two absorptions are one gemm
 * per head over all new tokens; the part over each token's own cache
 * (scores, softmax, context) reads every cached token once for all heads.
 * Buffers live in the cache (DecodeWork) and only grow, so a decode step
 * allocates and zeroes nothing. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/latent_attn.h"
#include "kernels/cpu/ops.h"
#include "model/kvcache.h"
#include "model/model_internal.h"

int kvcache_create(KvCache *kv, const ModelConfig *c, int nslots, int max_len, Err *err) {
    memset(kv, 0, sizeof *kv);
    if (nslots <= 0 || max_len <= 0)
        return err_set(err, ERR_INPUT, "kvcache: need slots > 0 and max_len > 0 (got %d, %d)", nslots, max_len);
    kv->nslots = nslots, kv->max_len = max_len, kv->nlayers = c->num_hidden_layers;
    kv->dc = c->kv_lora_rank, kv->dr = c->qk_rope_head_dim;
    size_t per = (size_t)kv->nlayers * nslots * max_len;
    kv->ckv = malloc(per * kv->dc * sizeof(float));
    kv->kpe = malloc(per * kv->dr * sizeof(float));
    kv->len = calloc(nslots, sizeof(int));
    if (!kv->ckv || !kv->kpe || !kv->len) {
        kvcache_free(kv);
        return err_set(err, ERR_WORK, "kvcache: cannot allocate %.1f MB for %d slots x %d tokens",
                       per * (c->kv_lora_rank + c->qk_rope_head_dim) * 4.0 / 1e6, nslots, max_len);
    }
    return 0;
}

static void work_free(DecodeWork *w);

void kvcache_free(KvCache *kv) {
    work_free(kv->work);
    free(kv->ckv), free(kv->kpe), free(kv->len);
    memset(kv, 0, sizeof *kv);
}

void kvcache_reset(KvCache *kv, int slot) { kv->len[slot] = 0; }

static float *ckv_at(const KvCache *kv, int l, int s, int t) {
    return kv->ckv + (((size_t)l * kv->nslots + s) * kv->max_len + t) * kv->dc;
}
static float *kpe_at(const KvCache *kv, int l, int s, int t) {
    return kv->kpe + (((size_t)l * kv->nslots + s) * kv->max_len + t) * kv->dr;
}

void kvcache_copy(KvCache *kv, int dst, int src) {
    if (dst == src) return;
    int n = kv->len[src];
    for (int l = 0; l < kv->nlayers; l++) {
        memcpy(ckv_at(kv, l, dst, 0), ckv_at(kv, l, src, 0), sizeof(float) * n * kv->dc);
        memcpy(kpe_at(kv, l, dst, 0), kpe_at(kv, l, src, 0), sizeof(float) * n * kv->dr);
    }
    kv->len[dst] = n;
}

/* Buffers for up to cap new tokens, kept across calls. */
struct DecodeWork {
    int cap, maxp;                      /* tokens; positions the score rows hold */
    float *x, *xn, *tmp;                /* [cap, H] */
    float *qa;                          /* [cap, d_q] (q_lora_rank; unused without) */
    float *q;                           /* [cap, n_h*(d_n+d_r)] */
    float *kva;                         /* [cap, d_c+d_r] */
    float *qabs, *ctx;                  /* [cap, n_h*d_c] absorbed queries, latent contexts */
    float *att;                         /* [cap, n_h*d_v] */
    float *rcos, *rsin;                 /* [cap, d_r/2] */
    int *slot_of, *pos;                 /* [cap] */
    MlpActs moe, dense;
    float **sc;                         /* per OpenMP thread: [n_h, maxp] scores */
    int nsc;
};

static void work_free(DecodeWork *w) {
    if (!w) return;
    free(w->x), free(w->xn), free(w->tmp), free(w->qa), free(w->q), free(w->kva), free(w->qabs), free(w->ctx);
    free(w->att), free(w->rcos), free(w->rsin), free(w->slot_of), free(w->pos);
    mlp_acts_free(&w->moe), mlp_acts_free(&w->dense);
    for (int i = 0; i < w->nsc; i++) free(w->sc[i]);
    free(w->sc);
    free(w);
}

/* The cache's work buffers, grown to N tokens and maxp positions. */
static DecodeWork *work_ensure(KvCache *kv, const ModelConfig *c, int N, int maxp) {
    DecodeWork *w = kv->work;
    const long H = c->hidden_size, nh = c->num_attention_heads, dqk = c->qk_head_dim, dv = c->v_head_dim;
    const long dc = c->kv_lora_rank, dr = c->qk_rope_head_dim, dq = c->q_lora_rank;
    if (!w || w->cap < N) {
        int cap = w && 2 * w->cap > N ? 2 * w->cap : N, mp = w ? w->maxp : 0;
        work_free(w);
        w = kv->work = xcalloc(1, sizeof *w);
        w->cap = cap, w->maxp = mp;
        w->x = xmalloc(sizeof(float) * cap * H), w->xn = xmalloc(sizeof(float) * cap * H);
        w->tmp = xmalloc(sizeof(float) * cap * H), w->qa = xmalloc(sizeof(float) * cap * (dq ? dq : 1));
        w->q = xmalloc(sizeof(float) * cap * nh * dqk), w->kva = xmalloc(sizeof(float) * cap * (dc + dr));
        w->qabs = xmalloc(sizeof(float) * cap * nh * dc), w->ctx = xmalloc(sizeof(float) * cap * nh * dc);
        w->att = xmalloc(sizeof(float) * cap * nh * dv);
        w->rcos = xmalloc(sizeof(float) * cap * (dr / 2 ? dr / 2 : 1));
        w->rsin = xmalloc(sizeof(float) * cap * (dr / 2 ? dr / 2 : 1));
        w->slot_of = xmalloc(sizeof(int) * cap), w->pos = xmalloc(sizeof(int) * cap);
        mlp_acts_alloc(&w->moe, c, c->n_routed_experts > 0 && c->first_k_dense_replace < c->num_hidden_layers, cap);
        mlp_acts_alloc(&w->dense, c, 0, cap);
    }
    int nt = omp_get_max_threads();
    if (w->nsc < nt || w->maxp < maxp) {
        for (int i = 0; i < w->nsc; i++) free(w->sc[i]);
        free(w->sc);
        w->maxp = maxp > 2 * w->maxp ? maxp : 2 * w->maxp;
        if (w->maxp > kv->max_len) w->maxp = kv->max_len;
        w->nsc = nt;
        w->sc = xmalloc(sizeof(float *) * nt);
        for (int i = 0; i < nt; i++) w->sc[i] = xmalloc(sizeof(float) * nh * w->maxp);
    }
    return w;
}

/* Attention of the N new tokens: att[N, n_h*d_v]. One parallel region with
 * two barriers (on a shared machine every barrier can wait for a descheduled
 * thread); the per-head products run serially inside it, heads shared out. */
static void dec_attention(const Model *m, const LayerW *w, const KvCache *kv, DecodeWork *S, int l, int N) {
    const ModelConfig *c = &m->cfg;
    const int nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int dqk = dn + dr, dv = c->v_head_dim, dc = c->kv_lora_rank;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int h = 0; h < nh; h++) { /* q_abs[:, h] = q_nope[:, h] · W_UK[h] ([d_n, d_c]) */
            const float *wk = w->kv_b + (long)h * (dn + dv) * dc;
            gemm(0, 0, N, dc, dn, 1.0f, S->q + (long)h * dqk, nh * dqk, wk, dc, 0.0f, S->qabs + (long)h * dc,
                 nh * dc);
        }
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < N; i++)
            latent_attend(S->ctx + (long)i * nh * dc, S->sc[omp_get_thread_num()], S->qabs + (long)i * nh * dc, dc,
                          S->q + (long)i * nh * dqk + dn, dqk, ckv_at(kv, l, S->slot_of[i], 0),
                          kpe_at(kv, l, S->slot_of[i], 0), nh, S->pos[i] + 1, dc, dr, c->softmax_scale);
#pragma omp for schedule(static) nowait
        for (int h = 0; h < nh; h++) { /* o[:, h] = ctx[:, h] · W_UV[h]^T (W_UV [d_v, d_c]) */
            const float *wv = w->kv_b + ((long)h * (dn + dv) + dn) * dc;
            gemm(0, 1, N, dv, dc, 1.0f, S->ctx + (long)h * dc, nh * dc, wv, dc, 0.0f, S->att + (long)h * dv,
                 nh * dv);
        }
    }
}

static void dec_layer(Model *m, int l, KvCache *kv, DecodeWork *S, int N) {
    const float *cs = S->rcos, *sn = S->rsin;
    const int *slot_of = S->slot_of, *pos = S->pos;
    const ModelConfig *c = &m->cfg;
    const LayerW *w = &m->layers[l];
    const int H = c->hidden_size, nh = c->num_attention_heads, dn = c->qk_nope_head_dim;
    const int dr = c->qk_rope_head_dim, dqk = dn + dr, dv = c->v_head_dim, dc = c->kv_lora_rank, dq = c->q_lora_rank;
    rmsnorm_fwd(S->xn, NULL, S->x, w->input_norm, N, H, H, H, c->rms_norm_eps);
    if (dq) {
        linear_fwd(S->qa, S->xn, w->q_a, N, dq, H, 0);
        rmsnorm_fwd(S->qa, NULL, S->qa, w->q_a_norm, N, dq, dq, dq, c->latent_norm_eps);
        linear_fwd(S->q, S->qa, w->q_b, N, nh * dqk, dq, 0);
    } else {
        linear_fwd(S->q, S->xn, w->q, N, nh * dqk, H, 0);
    }
    rope_apply(S->q + dn, cs, sn, N, nh, dqk, nh * dqk, dr, 0);
    linear_fwd(S->kva, S->xn, w->kv_a, N, dc + dr, H, 0);
    rope_apply(S->kva + dc, cs, sn, N, 1, 0, dc + dr, dr, 0);
    for (int i = 0; i < N; i++) { /* append to the cache before attending (causal within the call) */
        rmsnorm_fwd(ckv_at(kv, l, slot_of[i], pos[i]), NULL, S->kva + (long)i * (dc + dr), w->kv_a_norm, 1, dc, dc,
                     dc, c->latent_norm_eps);
        memcpy(kpe_at(kv, l, slot_of[i], pos[i]), S->kva + (long)i * (dc + dr) + dc, dr * sizeof(float));
    }
    dec_attention(m, w, kv, S, l, N);
    linear_fwd(S->tmp, S->att, w->o, N, H, nh * dv, 0);
    for (long i = 0; i < (long)N * H; i++) S->x[i] += S->tmp[i];
    rmsnorm_fwd(S->xn, NULL, S->x, w->post_norm, N, H, H, H, c->rms_norm_eps);
    int E = c->n_routed_experts, moe = config_layer_is_moe(c, l);
    mlp_fwd(m, w, moe, moe ? &S->moe : &S->dense, S->xn, S->tmp, N, E ? m->router_load + (long)l * E : NULL);
    for (long i = 0; i < (long)N * H; i++) S->x[i] += S->tmp[i];
}

int model_extend(Model *m, KvCache *kv, int nseq, const int *slots, const int *ntok, const int *ids, float *logits,
                 int all_logits, Err *err) {
    const ModelConfig *c = &m->cfg;
    const int H = c->hidden_size, V = c->vocab_size;
    int N = 0;
    for (int i = 0; i < nseq; i++) {
        int s = slots[i];
        if (s < 0 || s >= kv->nslots) return err_set(err, ERR_INPUT, "decode: slot %d out of range [0, %d)", s, kv->nslots);
        if (ntok[i] <= 0) return err_set(err, ERR_INPUT, "decode: sequence %d has no new tokens", i);
        if (kv->len[s] + ntok[i] > kv->max_len || kv->len[s] + ntok[i] > c->max_position_embeddings)
            return err_set(err, ERR_INPUT, "decode: slot %d would hold %d tokens (cache max %d, model max %d)", s,
                           kv->len[s] + ntok[i], kv->max_len, c->max_position_embeddings);
        N += ntok[i];
    }
    for (int i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V) return err_set(err, ERR_INPUT, "decode: token id %d outside the vocabulary", ids[i]);
    const int dr = c->qk_rope_head_dim;
    int maxp = 0;
    for (int i = 0; i < nseq; i++) maxp = kv->len[slots[i]] + ntok[i] > maxp ? kv->len[slots[i]] + ntok[i] : maxp;
    DecodeWork *S = work_ensure(kv, c, N, maxp);
    for (int i = 0, n = 0; i < nseq; i++)
        for (int j = 0; j < ntok[i]; j++, n++) S->slot_of[n] = slots[i], S->pos[n] = kv->len[slots[i]] + j;
    rope_table(S->rcos, S->rsin, S->pos, m->rope_inv_freq, c->rope_amplitude, N, dr);
    for (int n = 0; n < N; n++) memcpy(S->x + (long)n * H, m->embed + (long)ids[n] * H, H * sizeof(float));
    for (int l = 0; l < c->num_hidden_layers; l++) dec_layer(m, l, kv, S, N);
    for (int i = 0; i < nseq; i++) kv->len[slots[i]] += ntok[i];
    rmsnorm_fwd(S->xn, NULL, S->x, m->final_norm, N, H, H, H, c->rms_norm_eps);
    if (all_logits) {
        linear_fwd(logits, S->xn, m->lm_head, N, V, H, 0);
    } else { /* gather each sequence's last new token */
        for (int i = 0, n = 0; i < nseq; i++) {
            n += ntok[i];
            memcpy(S->tmp + (long)i * H, S->xn + (long)(n - 1) * H, H * sizeof(float));
        }
        linear_fwd(logits, S->tmp, m->lm_head, nseq, V, H, 0);
    }
    return 0;
}
