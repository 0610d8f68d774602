/* decode: incremental forward with absorbed MLA over the latent cache (see
 * kvcache.h). The query's nope part is absorbed into the latent space through
 * W_UK (q_abs = q_nope · W_UK), scores are q_abs·c_kv + q_pe·k_pe, the context
 * is summed in latent space and mapped out through W_UV, so the per-token cost
 * never expands past tokens with kv_b_proj. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cpu/gemm.h"
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

void kvcache_free(KvCache *kv) {
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

/* Buffers for N new tokens. */
typedef struct Scratch {
    float *x, *xn, *qa, *q, *kva, *att, *tmp; /* see model_extend for shapes */
    float *rcos, *rsin;                       /* [N, d_r/2] */
    MlpActs f;
} Scratch;

/* Absorbed attention of token i (slot s, position p) for all heads. */
static void attend(const Model *m, const LayerW *w, const KvCache *kv, int l, int s, int p, const float *q, float *att) {
    const ModelConfig *c = &m->cfg;
    const int nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int dqk = dn + dr, dv = c->v_head_dim, dc = c->kv_lora_rank;
    float *qabs = xmalloc(sizeof(float) * (dc + p + 1 + dc));
    float *sc = qabs + dc, *ctx = sc + p + 1;
    for (int h = 0; h < nh; h++) {
        const float *qh = q + (long)h * dqk, *wk = w->kv_b + (long)h * (dn + dv) * dc;
        /* q_abs[c] = sum_d q_nope[d] W_UK[d, c] */
        memset(qabs, 0, sizeof(float) * dc);
        for (int d = 0; d < dn; d++) {
            float a = qh[d];
            const float *row = wk + (long)d * dc;
            for (int j = 0; j < dc; j++) qabs[j] += a * row[j];
        }
        float mx = -INFINITY;
        for (int t = 0; t <= p; t++) {
            const float *ck = ckv_at(kv, l, s, t), *kp = kpe_at(kv, l, s, t);
            float acc = 0.0f;
            for (int j = 0; j < dc; j++) acc += qabs[j] * ck[j];
            for (int j = 0; j < dr; j++) acc += qh[dn + j] * kp[j];
            sc[t] = acc * c->softmax_scale;
            mx = fmaxf(mx, sc[t]);
        }
        double sum = 0;
        for (int t = 0; t <= p; t++) sum += (sc[t] = expf(sc[t] - mx));
        memset(ctx, 0, sizeof(float) * dc);
        for (int t = 0; t <= p; t++) {
            float pt = (float)(sc[t] / sum);
            const float *ck = ckv_at(kv, l, s, t);
            for (int j = 0; j < dc; j++) ctx[j] += pt * ck[j];
        }
        /* o[j] = sum_c ctx[c] W_UV[j, c] */
        const float *wv = wk + (long)dn * dc;
        float *o = att + (long)h * dv;
        for (int j = 0; j < dv; j++) {
            float acc = 0.0f;
            for (int k = 0; k < dc; k++) acc += ctx[k] * wv[(long)j * dc + k];
            o[j] = acc;
        }
    }
    free(qabs);
}

static void dec_layer(Model *m, int l, KvCache *kv, Scratch *S, int N, const int *slot_of, const int *pos) {
    const float *cs = S->rcos, *sn = S->rsin;
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
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < N; i++) attend(m, w, kv, l, slot_of[i], pos[i], S->q + (long)i * nh * dqk, S->att + (long)i * nh * dv);
    linear_fwd(S->tmp, S->att, w->o, N, H, nh * dv, 0);
    for (long i = 0; i < (long)N * H; i++) S->x[i] += S->tmp[i];
    rmsnorm_fwd(S->xn, NULL, S->x, w->post_norm, N, H, H, H, c->rms_norm_eps);
    int E = c->n_routed_experts;
    mlp_fwd(m, w, config_layer_is_moe(c, l), &S->f, S->xn, S->tmp, N, E ? m->router_load + (long)l * E : NULL);
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
    const int nh = c->num_attention_heads, dqk = c->qk_head_dim, dv = c->v_head_dim;
    const int dc = c->kv_lora_rank, dr = c->qk_rope_head_dim, dq = c->q_lora_rank;
    Scratch S;
    S.x = xaligned(sizeof(float) * N * H), S.xn = xaligned(sizeof(float) * N * H), S.tmp = xaligned(sizeof(float) * N * H);
    S.qa = xaligned(sizeof(float) * N * (dq ? dq : 1)), S.q = xaligned(sizeof(float) * N * nh * dqk);
    S.kva = xaligned(sizeof(float) * N * (dc + dr)), S.att = xaligned(sizeof(float) * N * nh * dv);
    mlp_acts_alloc(&S.f, c, c->n_routed_experts > 0 && c->first_k_dense_replace < c->num_hidden_layers, N);
    MlpActs dense;
    mlp_acts_alloc(&dense, c, 0, N);
    int *slot_of = xmalloc(sizeof(int) * N), *pos = xmalloc(sizeof(int) * N);
    for (int i = 0, n = 0; i < nseq; i++)
        for (int j = 0; j < ntok[i]; j++, n++) slot_of[n] = slots[i], pos[n] = kv->len[slots[i]] + j;
    S.rcos = xaligned(sizeof(float) * N * (dr / 2)), S.rsin = xaligned(sizeof(float) * N * (dr / 2));
    rope_table(S.rcos, S.rsin, pos, m->rope_inv_freq, c->rope_amplitude, N, dr);
    for (int n = 0; n < N; n++) memcpy(S.x + (long)n * H, m->embed + (long)ids[n] * H, H * sizeof(float));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        MlpActs keep = S.f;
        if (!config_layer_is_moe(c, l)) S.f = dense;
        dec_layer(m, l, kv, &S, N, slot_of, pos);
        S.f = keep;
    }
    for (int i = 0; i < nseq; i++) kv->len[slots[i]] += ntok[i];
    rmsnorm_fwd(S.xn, NULL, S.x, m->final_norm, N, H, H, H, c->rms_norm_eps);
    if (all_logits) {
        linear_fwd(logits, S.xn, m->lm_head, N, V, H, 0);
    } else { /* gather each sequence's last new token */
        for (int i = 0, n = 0; i < nseq; i++) {
            n += ntok[i];
            memcpy(S.tmp + (long)i * H, S.xn + (long)(n - 1) * H, H * sizeof(float));
        }
        linear_fwd(logits, S.tmp, m->lm_head, nseq, V, H, 0);
    }
    free(S.x), free(S.xn), free(S.tmp), free(S.qa), free(S.q), free(S.kva), free(S.att), free(S.rcos), free(S.rsin);
    mlp_acts_free(&S.f);
    mlp_acts_free(&dense);
    free(slot_of), free(pos);
    return 0;
}
