/* model: parameter table, allocation and random init (see model.h).
 * The forward/backward live in model_fwd.c, decoding in decode.c,
 * checkpoint I/O in model_io.c. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/xalloc.h"

/* Table builder: records names/shapes first, pointers are fixed up after the
 * single allocation (the table stores offsets). */
typedef struct Tab {
    Param *p;
    int n, cap;
    size_t numel;
} Tab;

static size_t tab_add(Tab *t, int trainable, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#include <stdarg.h>
static size_t tab_add(Tab *t, int trainable, int ndim, int64_t d0, int64_t d1, const char *fmt, ...) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->p = xrealloc(t->p, t->cap * sizeof *t->p);
    }
    Param *p = &t->p[t->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = ndim > 1 ? d1 : 0;
    p->numel = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    p->offset = t->numel;
    p->trainable = trainable;
    p->save_dtype = ST_F32;
    /* keep every tensor 16-float aligned so SIMD loads stay aligned */
    t->numel += (p->numel + 15) & ~(size_t)15;
    return p->offset;
}

/* Offsets of one layer's tensors, resolved to pointers later. */
typedef struct LayerOff {
    size_t input_norm, post_norm, q_a, q_a_norm, q_b, q, kv_a, kv_a_norm, kv_b, o;
    size_t mlp_gate, mlp_up, mlp_down, router, router_bias, sh_gate, sh_up, sh_down;
    size_t exp0;  /* first expert's gate_proj; experts are gate, up, down each */
    int moe;
} LayerOff;

#define NONE ((size_t)-1)

static void layer_table(Tab *t, const ModelConfig *c, int l, int moe, LayerOff *o) {
    const int H = c->hidden_size, nh = c->num_attention_heads;
    const int dqk = c->qk_head_dim, dv = c->v_head_dim, dc = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    const char *pre = "model.layers";
    memset(o, 0xff, sizeof *o);
    o->moe = moe;
    o->input_norm = tab_add(t, 1, 1, H, 0, "%s.%d.input_layernorm.weight", pre, l);
    if (c->q_lora_rank) {
        o->q_a = tab_add(t, 1, 2, c->q_lora_rank, H, "%s.%d.self_attn.q_a_proj.weight", pre, l);
        o->q_a_norm = tab_add(t, 1, 1, c->q_lora_rank, 0, "%s.%d.self_attn.q_a_layernorm.weight", pre, l);
        o->q_b = tab_add(t, 1, 2, (int64_t)nh * dqk, c->q_lora_rank, "%s.%d.self_attn.q_b_proj.weight", pre, l);
    } else {
        o->q = tab_add(t, 1, 2, (int64_t)nh * dqk, H, "%s.%d.self_attn.q_proj.weight", pre, l);
    }
    o->kv_a = tab_add(t, 1, 2, dc + dr, H, "%s.%d.self_attn.kv_a_proj_with_mqa.weight", pre, l);
    o->kv_a_norm = tab_add(t, 1, 1, dc, 0, "%s.%d.self_attn.kv_a_layernorm.weight", pre, l);
    o->kv_b = tab_add(t, 1, 2, (int64_t)nh * (c->qk_nope_head_dim + dv), dc, "%s.%d.self_attn.kv_b_proj.weight", pre, l);
    o->o = tab_add(t, 1, 2, H, (int64_t)nh * dv, "%s.%d.self_attn.o_proj.weight", pre, l);
    o->post_norm = tab_add(t, 1, 1, H, 0, "%s.%d.post_attention_layernorm.weight", pre, l);
    if (!moe) {
        int I = c->intermediate_size;
        o->mlp_gate = tab_add(t, 1, 2, I, H, "%s.%d.mlp.gate_proj.weight", pre, l);
        o->mlp_up = tab_add(t, 1, 2, I, H, "%s.%d.mlp.up_proj.weight", pre, l);
        o->mlp_down = tab_add(t, 1, 2, H, I, "%s.%d.mlp.down_proj.weight", pre, l);
        return;
    }
    const int E = c->n_routed_experts, Ie = c->moe_intermediate_size;
    o->router = tab_add(t, 1, 2, E, H, "%s.%d.mlp.gate.weight", pre, l);
    if (c->has_correction_bias)
        o->router_bias = tab_add(t, 0, 1, E, 0, "%s.%d.mlp.gate.e_score_correction_bias", pre, l);
    for (int e = 0; e < E; e++) {
        size_t g = tab_add(t, 1, 2, Ie, H, "%s.%d.mlp.experts.%d.gate_proj.weight", pre, l, e);
        tab_add(t, 1, 2, Ie, H, "%s.%d.mlp.experts.%d.up_proj.weight", pre, l, e);
        tab_add(t, 1, 2, H, Ie, "%s.%d.mlp.experts.%d.down_proj.weight", pre, l, e);
        if (e == 0) o->exp0 = g;
    }
    if (c->n_shared_experts > 0) {
        int Is = Ie * c->n_shared_experts;
        o->sh_gate = tab_add(t, 1, 2, Is, H, "%s.%d.mlp.shared_experts.gate_proj.weight", pre, l);
        o->sh_up = tab_add(t, 1, 2, Is, H, "%s.%d.mlp.shared_experts.up_proj.weight", pre, l);
        o->sh_down = tab_add(t, 1, 2, H, Is, "%s.%d.mlp.shared_experts.down_proj.weight", pre, l);
    }
}

static float *at(float *base, size_t off) { return off == NONE ? NULL : base + off; }

static void layer_point(LayerW *w, const LayerOff *o, float *base, const ModelConfig *c, const Tab *t) {
    w->input_norm = at(base, o->input_norm);
    w->post_norm = at(base, o->post_norm);
    w->q_a = at(base, o->q_a);
    w->q_a_norm = at(base, o->q_a_norm);
    w->q_b = at(base, o->q_b);
    w->q = at(base, o->q);
    w->kv_a = at(base, o->kv_a);
    w->kv_a_norm = at(base, o->kv_a_norm);
    w->kv_b = at(base, o->kv_b);
    w->o = at(base, o->o);
    w->mlp_gate = at(base, o->mlp_gate);
    w->mlp_up = at(base, o->mlp_up);
    w->mlp_down = at(base, o->mlp_down);
    w->router = at(base, o->router);
    w->router_bias = at(base, o->router_bias);
    w->sh_gate = at(base, o->sh_gate);
    w->sh_up = at(base, o->sh_up);
    w->sh_down = at(base, o->sh_down);
    if (!o->moe) return;
    const int E = c->n_routed_experts;
    w->exp_gate = xcalloc(E, sizeof(float *));
    w->exp_up = xcalloc(E, sizeof(float *));
    w->exp_down = xcalloc(E, sizeof(float *));
    /* experts were added consecutively: find expert 0's table index, step by 3 */
    int i0 = 0;
    while (t->p[i0].offset != o->exp0) i0++;
    for (int e = 0; e < E; e++) {
        w->exp_gate[e] = base + t->p[i0 + 3 * e].offset;
        w->exp_up[e] = base + t->p[i0 + 3 * e + 1].offset;
        w->exp_down[e] = base + t->p[i0 + 3 * e + 2].offset;
    }
}

static void layer_unpoint(LayerW *w) {
    free(w->exp_gate);
    free(w->exp_up);
    free(w->exp_down);
}

int model_create(Model *m, const ModelConfig *cfg, const ModelOpts *opts, Err *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const ModelConfig *c = &m->cfg;
    const int L = c->num_hidden_layers, H = c->hidden_size, V = c->vocab_size;
    Tab t = {0};
    size_t off_embed = tab_add(&t, 1, 2, V, H, "model.embed_tokens.weight");
    LayerOff *lo = xcalloc(L, sizeof *lo);
    for (int l = 0; l < L; l++) layer_table(&t, c, l, config_layer_is_moe(c, l), &lo[l]);
    size_t off_norm = tab_add(&t, 1, 1, H, 0, "model.norm.weight");
    size_t off_head = tab_add(&t, 1, 2, V, H, "lm_head.weight");
    m->has_mtp = opts && opts->mtp && c->num_nextn_predict_layers > 0;
    LayerOff mo;
    size_t mtp_off[6] = {0};
    if (m->has_mtp) {
        /* HF names put the MTP module at layer index L (61 for V3). */
        mtp_off[0] = tab_add(&t, 1, 2, V, H, "model.layers.%d.embed_tokens.weight", L);
        mtp_off[1] = tab_add(&t, 1, 1, H, 0, "model.layers.%d.enorm.weight", L);
        mtp_off[2] = tab_add(&t, 1, 1, H, 0, "model.layers.%d.hnorm.weight", L);
        mtp_off[3] = tab_add(&t, 1, 2, H, 2 * H, "model.layers.%d.eh_proj.weight", L);
        layer_table(&t, c, L, c->n_routed_experts > 0, &mo);
        mtp_off[4] = tab_add(&t, 1, 1, H, 0, "model.layers.%d.shared_head.norm.weight", L);
        mtp_off[5] = tab_add(&t, 1, 2, V, H, "model.layers.%d.shared_head.head.weight", L);
    }
    m->nparams = t.n;
    m->ptab = t.p;
    m->numel = t.numel;
    m->params = malloc(t.numel * sizeof(float));
    if (!m->params) {
        free(lo);
        free(t.p);
        return err_set(err, ERR_WORK, "model: cannot allocate %.1f MB of parameters", t.numel * 4.0 / 1e6);
    }
    memset(m->params, 0, t.numel * sizeof(float));
    float *base = m->params;
    m->embed = base + off_embed;
    m->final_norm = base + off_norm;
    m->lm_head = base + off_head;
    m->layers = xcalloc(L, sizeof *m->layers);
    for (int l = 0; l < L; l++) layer_point(&m->layers[l], &lo[l], base, c, &t);
    if (m->has_mtp) {
        m->mtp.embed = base + mtp_off[0];
        m->mtp.enorm = base + mtp_off[1];
        m->mtp.hnorm = base + mtp_off[2];
        m->mtp.eh_proj = base + mtp_off[3];
        layer_point(&m->mtp.layer, &mo, base, c, &t);
        m->mtp.head_norm = base + mtp_off[4];
        m->mtp.head = base + mtp_off[5];
    }
    free(lo);
    m->rope_inv_freq = xmalloc(sizeof(float) * (c->qk_rope_head_dim / 2));
    config_rope_inv_freq(c, m->rope_inv_freq);
    m->router_load = xcalloc((size_t)L * (c->n_routed_experts > 0 ? c->n_routed_experts : 1), sizeof(int));
    return 0;
}

void model_release_acts(Model *m); /* model_fwd.c */

void model_free(Model *m) {
    if (!m) return;
    model_release_acts(m);
    for (int l = 0; l < m->cfg.num_hidden_layers && m->layers; l++) layer_unpoint(&m->layers[l]);
    if (m->has_mtp) layer_unpoint(&m->mtp.layer);
    free(m->layers);
    free(m->ptab);
    free(m->params);
    free(m->grads);
    free(m->rope_inv_freq);
    free(m->router_load);
    memset(m, 0, sizeof *m);
}

const Param *model_find_param(const Model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->ptab[i].name, name)) return &m->ptab[i];
    return NULL;
}

void model_alloc_grads(Model *m) {
    if (!m->grads) m->grads = xcalloc(m->numel, sizeof(float));
}

void model_zero_grads(Model *m) {
    if (m->grads) memset(m->grads, 0, m->numel * sizeof(float));
}

/* splitmix64 -> Box-Muller: simple, portable, deterministic across machines. */

static int is_norm(const char *name) {
    size_t n = strlen(name);
    return n >= 11 && !strcmp(name + n - 11, "norm.weight");
}

void model_init_random(Model *m, uint64_t seed, float std) {
    for (int i = 0; i < m->nparams; i++) {
        const Param *p = &m->ptab[i];
        float *w = m->params + p->offset;
        if (is_norm(p->name)) {
            for (size_t j = 0; j < p->numel; j++) w[j] = 1.0f;
        } else if (!p->trainable) {
            memset(w, 0, p->numel * sizeof(float));
        } else {
            /* one stream per tensor so adding a tensor does not reshuffle the others */
            uint64_t s = seed * 0x100000001b3ull + (uint64_t)i * RNG_GOLDEN;
            for (size_t j = 0; j < p->numel; j += 2) {
                double u1 = rng_uniform(&s), u2 = rng_uniform(&s), r = sqrt(-2.0 * log(u1));
                w[j] = (float)(std * r * cos(2 * M_PI * u2));
                if (j + 1 < p->numel) w[j + 1] = (float)(std * r * sin(2 * M_PI * u2));
            }
        }
    }
    if (m->has_mtp) { /* V3 files carry copies of the shared embedding and head */
        memcpy(m->mtp.embed, m->embed, sizeof(float) * m->cfg.vocab_size * m->cfg.hidden_size);
        memcpy(m->mtp.head, m->lm_head, sizeof(float) * m->cfg.vocab_size * m->cfg.hidden_size);
    }
}
