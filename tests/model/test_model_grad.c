/* test_model_grad: finite-difference check of model_backward on the tiny
 * config, for the three largest-gradient entries of every kind of parameter, through a loss that
 * mixes per-token log-probs and entropies at temperature 0.7. Entries whose
 * +/- perturbation changes the MoE routing (a discontinuity) are reported and
 * not compared. */
#include "model/model_internal.h"
#include "model_test_util.h"
#include "test.h"

enum { MAXN = 512 };
static int B, T;
static float coef_lp[MAXN], coef_ent[MAXN];

static double loss_of(Model *m, const Batch *b) {
    float lp[MAXN], ent[MAXN];
    Err err = {0};
    if (model_forward(m, b, 0.7f, lp, ent, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    double s = 0;
    for (int i = 0; i < B * T; i++) s += (double)coef_lp[i] * lp[i] + (double)coef_ent[i] * ent[i];
    return s;
}

/* Routing signature: all top-k choices of all MoE layers. */
static unsigned long routing_hash(const Model *m) {
    unsigned long h = 1469598103934665603ul;
    const ModelConfig *c = &m->cfg;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        if (!config_layer_is_moe(c, l)) continue;
        const int *tk = m->acts->layer[l].f.topk;
        for (int i = 0; i < B * T * c->num_experts_per_tok; i++) h = (h ^ (unsigned)tk[i]) * 1099511628211ul;
    }
    return h;
}

static const char *kinds[] = {
    "model.embed_tokens.weight", "input_layernorm", "q_a_proj", "q_a_layernorm", "q_b_proj", "q_proj",
    "kv_a_proj_with_mqa", "kv_a_layernorm", "kv_b_proj", "o_proj", "post_attention_layernorm", "mlp.gate_proj",
    "mlp.up_proj", "mlp.down_proj", "mlp.gate.weight", "experts.3.gate_proj", "experts.3.up_proj",
    "experts.3.down_proj", "shared_experts.gate_proj", "shared_experts.up_proj", "shared_experts.down_proj",
    "model.norm.weight", "lm_head.weight"};

static void check_config(const char *cfgname, int b_, int t_) {
    B = b_, T = t_;
    ModelConfig c;
    if (tu_load_config(&c, cfgname)) { CHECK(0, "config %s", cfgname); return; }
    Model m;
    Err err = {0};
    ModelOpts o = {0};
    CHECK(model_create(&m, &c, &o, &err) == 0, "%s", err.msg);
    model_init_random(&m, 7, 0.08f);
    tu_perturb(&m);
    int ids[MAXN], tg[MAXN], len[2] = {T, T - 3};
    tu_batch_ids(ids, B, T, c.vocab_size);
    for (int i = 0; i < B * T; i++) tg[i] = (i % T) + 1 < T ? ids[i + 1] : -1;
    if (B > 1) tg[T + T - 2] = -1; /* a padded position */
    Batch b = {B, T, ids, tg, len};
    unsigned s = 99;
    for (int i = 0; i < B * T; i++) {
        s = s * 1664525u + 1013904223u;
        coef_lp[i] = ((s >> 9) % 1000) / 1000.0f - 0.3f;
        coef_ent[i] = ((s >> 19) % 1000) / 2000.0f - 0.25f;
    }
    loss_of(&m, &b);
    unsigned long base_route = routing_hash(&m);
    model_alloc_grads(&m);
    model_zero_grads(&m);
    model_backward(&m, &b, coef_lp, coef_ent);
    double worst = 0;
    int compared = 0, skipped = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const Param *p = NULL;
        for (int i = 0; i < m.nparams && !p; i++) /* last layer holding this kind (MoE for experts) */
            if (strstr(m.ptab[i].name, kinds[k])) p = &m.ptab[i];
        if (!p) continue;
        float *w = m.params + p->offset, *g = m.grads + p->offset;
        /* the three largest-gradient entries: fp32 finite differences cannot
         * resolve gradients far below the loss's rounding noise / eps */
        size_t pick[3] = {0, 0, 0};
        for (size_t j = 1; j < p->numel; j++) {
            float a = fabsf(g[j]);
            if (a > fabsf(g[pick[0]])) pick[2] = pick[1], pick[1] = pick[0], pick[0] = j;
            else if (a > fabsf(g[pick[1]])) pick[2] = pick[1], pick[1] = j;
            else if (a > fabsf(g[pick[2]])) pick[2] = j;
        }
        for (int q = 0; q < 3; q++) {
            size_t j = pick[q];
            float w0 = w[j], eps = 2e-3f * fmaxf(1.0f, fabsf(w0));
            w[j] = w0 + eps;
            double lp = loss_of(&m, &b);
            unsigned long r1 = routing_hash(&m);
            w[j] = w0 - eps;
            double lm = loss_of(&m, &b);
            unsigned long r2 = routing_hash(&m);
            w[j] = w0;
            if (r1 != base_route || r2 != base_route) { skipped++; continue; }
            double fd = (lp - lm) / (2.0 * eps), an = g[j];
            double err_rel = fabs(fd - an) / (fabs(an) + fabs(fd) + 1e-3);
            if (err_rel > worst) worst = err_rel;
            compared++;
            CHECK(err_rel < 1e-2, "%s %s[%zu]: analytic %.6g finite-diff %.6g", cfgname, p->name, j, an, fd);
        }
    }
    printf("%s (%d x %d): %d entries compared, %d skipped (routing changed), worst |fd-an|/(|an|+|fd|+1e-3) = %.3g "
           "(tolerance 1e-2)\n", cfgname, B, T, compared, skipped, worst);
    model_free(&m);
}

int main(void) {
    check_config("dsv3-tiny-1m.json", 2, 12);   /* q-LoRA, sigmoid + bias, group-limited */
    check_config("dsv3-small-10m.json", 2, 12); /* q_proj, d_v != d_n */
    check_config("dsv3-tiny-1m.json", 1, 150);  /* several causal attention row blocks */
    return test_report();
}
