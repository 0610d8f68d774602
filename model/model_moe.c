/* model_moe: the feed-forward blocks. Dense SwiGLU MLP for the first
 * first_k_dense_replace layers; DeepSeekMoE after (deepseek-v3.md §4.7-4.10):
 * router affinities (sigmoid for V3, softmax for V2) computed in fp32,
 * e_score_correction_bias added for *selection only*, group-limited top-k,
 * weights from the unbiased affinities, optional renormalisation (+1e-20 as
 * HF), routed_scaling_factor, shared experts added after the routed sum.
 * Tokens are grouped per expert so each expert runs as one matrix product.
 * Backward reaches the router through the gathered affinities only (selection
 * is not differentiable), as in HF. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "model/model_internal.h"

void mlp_acts_alloc(MlpActs *f, const ModelConfig *c, int moe, int N) {
    memset(f, 0, sizeof *f);
    const long H = c->hidden_size;
    if (!moe) {
        long I = c->intermediate_size;
        f->g = xaligned(sizeof(float) * N * I);
        f->u = xaligned(sizeof(float) * N * I);
        f->h = xaligned(sizeof(float) * N * I);
        return;
    }
    const long E = c->n_routed_experts, k = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
    const long Is = Ie * c->n_shared_experts;
    if (Is) {
        f->g = xaligned(sizeof(float) * N * Is);
        f->u = xaligned(sizeof(float) * N * Is);
        f->h = xaligned(sizeof(float) * N * Is);
    }
    f->scores = xaligned(sizeof(float) * N * E);
    f->topk = xaligned(sizeof(int) * N * k);
    f->topw = xaligned(sizeof(float) * N * k);
    f->topsum = xaligned(sizeof(float) * N);
    f->count = xaligned(sizeof(int) * E);
    f->start = xaligned(sizeof(int) * (E + 1));
    f->perm = xaligned(sizeof(int) * N * k);
    f->eg = xaligned(sizeof(float) * N * k * Ie);
    f->eu = xaligned(sizeof(float) * N * k * Ie);
    f->eh = xaligned(sizeof(float) * N * k * Ie);
    f->ey = xaligned(sizeof(float) * N * k * H);
    f->xe = xaligned(sizeof(float) * N * k * H);
    f->dye = xaligned(sizeof(float) * N * k * H);
}

void mlp_acts_free(MlpActs *f) {
    free(f->g), free(f->u), free(f->h), free(f->scores), free(f->topk), free(f->topw), free(f->topsum);
    free(f->count), free(f->start), free(f->perm), free(f->eg), free(f->eu), free(f->eh), free(f->ey);
    free(f->xe), free(f->dye);
    memset(f, 0, sizeof *f);
}

/* SwiGLU MLP on rows x[N,H] with weights gate/up [I,H], down [H,I]; out (+)= . */
static void swiglu_mlp_fwd(const float *x, const float *wg, const float *wu, const float *wd, float *g, float *u,
                           float *h, float *out, int N, int H, int I, int accumulate) {
    linear_fwd(g, x, wg, N, I, H, 0);
    linear_fwd(u, x, wu, N, I, H, 0);
    swiglu_fwd(h, g, u, (long)N * I);
    linear_fwd(out, h, wd, N, H, I, accumulate);
}

/* Backward of swiglu_mlp_fwd; dx += ; dW += ; scratch: 3*N*I floats. */
static void swiglu_mlp_bwd(const Model *m, const float *x, const float *wg, const float *wu, const float *wd,
                           const float *g, const float *u, const float *h, const float *dout, float *dx, int N, int H,
                           int I, float *s) {
    float *dh = s, *dg = s + (long)N * I, *du = s + 2L * N * I;
    memset(dh, 0, sizeof(float) * N * I);
    linear_bwd_x(dh, dout, wd, N, H, I);
    linear_bwd_w(grad_of(m, wd), dout, h, N, H, I);
    swiglu_bwd(dg, du, dh, g, u, (long)N * I);
    linear_bwd_x(dx, dg, wg, N, I, H);
    linear_bwd_x(dx, du, wu, N, I, H);
    linear_bwd_w(grad_of(m, wg), dg, x, N, I, H);
    linear_bwd_w(grad_of(m, wu), du, x, N, I, H);
}

/* Picks the experts of one token. sel[E] are the selection scores. */
static void route_token(const ModelConfig *c, const float *aff, const float *bias, int *top) {
    const int E = c->n_routed_experts, k = c->num_experts_per_tok, G = c->n_group > 0 ? c->n_group : 1;
    const int per = E / G;
    float sel[1024];
    unsigned char allowed[1024];
    for (int e = 0; e < E; e++) sel[e] = aff[e] + (bias ? bias[e] : 0.0f);
    memset(allowed, 1, E);
    if (G > 1 && c->topk_method != TOPK_GREEDY) {
        float gscore[256];
        for (int g = 0; g < G; g++) {
            const float *s = sel + g * per;
            if (c->topk_method == TOPK_NOAUX_TC) { /* sum of the two best in the group */
                float b1 = -INFINITY, b2 = -INFINITY;
                for (int i = 0; i < per; i++) {
                    if (s[i] > b1) b2 = b1, b1 = s[i];
                    else if (s[i] > b2) b2 = s[i];
                }
                gscore[g] = b1 + (per > 1 ? b2 : 0.0f);
            } else { /* group_limited_greedy: the best in the group */
                float b = -INFINITY;
                for (int i = 0; i < per; i++) b = s[i] > b ? s[i] : b;
                gscore[g] = b;
            }
        }
        unsigned char keep[256] = {0};
        for (int r = 0; r < c->topk_group; r++) {
            int best = -1;
            for (int g = 0; g < G; g++)
                if (!keep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
            keep[best] = 1;
        }
        for (int e = 0; e < E; e++) allowed[e] = keep[e / per];
    }
    for (int j = 0; j < k; j++) { /* ties go to the lower expert id */
        int best = -1;
        for (int e = 0; e < E; e++)
            if (allowed[e] && (best < 0 || sel[e] > sel[best])) best = e;
        top[j] = best;
        allowed[best] = 0;
    }
}

static void router_fwd(Model *m, const LayerW *w, MlpActs *f, const float *xn, int N, int *load) {
    const ModelConfig *c = &m->cfg;
    const int E = c->n_routed_experts, k = c->num_experts_per_tok, H = c->hidden_size;
    linear_fwd(f->scores, xn, w->router, N, E, H, 0);
#pragma omp parallel for if (N > 16)
    for (int n = 0; n < N; n++) {
        float *s = f->scores + (long)n * E;
        if (c->scoring_func == SCORE_SOFTMAX) {
            float mx = -INFINITY;
            for (int e = 0; e < E; e++) mx = s[e] > mx ? s[e] : mx;
            double sum = 0;
            for (int e = 0; e < E; e++) sum += (s[e] = expf(s[e] - mx));
            for (int e = 0; e < E; e++) s[e] = (float)(s[e] / sum);
        } else {
            for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-s[e]));
        }
        int *top = f->topk + (long)n * k;
        route_token(c, s, w->router_bias, top);
        float *tw = f->topw + (long)n * k, sum = 0.0f;
        for (int j = 0; j < k; j++) sum += (tw[j] = s[top[j]]);
        f->topsum[n] = sum;
        float scale = c->routed_scaling_factor / (c->norm_topk_prob ? sum + 1e-20f : 1.0f);
        for (int j = 0; j < k; j++) tw[j] *= scale;
    }
    /* group assignments by expert (counting sort keeps token order inside an expert) */
    memset(f->count, 0, sizeof(int) * E);
    for (long i = 0; i < (long)N * k; i++) f->count[f->topk[i]]++;
    f->start[0] = 0;
    for (int e = 0; e < E; e++) f->start[e + 1] = f->start[e] + f->count[e];
    int *fill = xmalloc(sizeof(int) * E);
    memcpy(fill, f->start, sizeof(int) * E);
    for (long i = 0; i < (long)N * k; i++) f->perm[fill[f->topk[i]]++] = (int)i;
    free(fill);
    if (load)
        for (int e = 0; e < E; e++) load[e] += f->count[e];
}

void mlp_fwd(Model *m, const LayerW *w, int moe, MlpActs *f, const float *xn, float *out, int N, int *load) {
    const ModelConfig *c = &m->cfg;
    const int H = c->hidden_size;
    if (!moe) {
        swiglu_mlp_fwd(xn, w->mlp_gate, w->mlp_up, w->mlp_down, f->g, f->u, f->h, out, N, H, c->intermediate_size, 0);
        return;
    }
    const int E = c->n_routed_experts, k = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
    router_fwd(m, w, f, xn, N, load);
#pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < E; e++) {
        int cnt = f->count[e], s0 = f->start[e];
        if (!cnt) continue;
        float *xe = f->xe + (long)s0 * H;
        for (int i = 0; i < cnt; i++) memcpy(xe + (long)i * H, xn + (long)(f->perm[s0 + i] / k) * H, H * sizeof(float));
        swiglu_mlp_fwd(xe, w->exp_gate[e], w->exp_up[e], w->exp_down[e], f->eg + (long)s0 * Ie, f->eu + (long)s0 * Ie,
                       f->eh + (long)s0 * Ie, f->ey + (long)s0 * H, cnt, H, Ie, 0);
    }
    /* routed sum in fp32, token by token in slot order (no races) */
    int *where = xmalloc(sizeof(int) * N * k);
    for (long i = 0; i < (long)N * k; i++) where[f->perm[i]] = (int)i;
#pragma omp parallel for if (N > 16)
    for (int n = 0; n < N; n++) {
        float *o = out + (long)n * H;
        memset(o, 0, H * sizeof(float));
        for (int j = 0; j < k; j++) {
            float wj = f->topw[(long)n * k + j];
            const float *y = f->ey + (long)where[(long)n * k + j] * H;
            for (int d = 0; d < H; d++) o[d] += wj * y[d];
        }
    }
    free(where);
    if (c->n_shared_experts > 0)
        swiglu_mlp_fwd(xn, w->sh_gate, w->sh_up, w->sh_down, f->g, f->u, f->h, out, N, H, Ie * c->n_shared_experts, 1);
}

size_t mlp_bwd_scratch(const ModelConfig *c, int N) {
    size_t a = 3L * N * c->intermediate_size;
    size_t Ie = c->moe_intermediate_size, k = c->num_experts_per_tok, H = c->hidden_size;
    size_t b = 3L * N * Ie * (c->n_shared_experts > 0 ? c->n_shared_experts : 1) + (size_t)N * c->n_routed_experts +
               (size_t)N * k * (3 * Ie + 2 * H);
    return a > b ? a : b;
}

void mlp_bwd(Model *m, const LayerW *w, int moe, MlpActs *f, const float *xn, const float *dout, float *dxn, int N,
             float *s) {
    const ModelConfig *c = &m->cfg;
    const int H = c->hidden_size;
    if (!moe) {
        swiglu_mlp_bwd(m, xn, w->mlp_gate, w->mlp_up, w->mlp_down, f->g, f->u, f->h, dout, dxn, N, H,
                       c->intermediate_size, s);
        return;
    }
    const int E = c->n_routed_experts, k = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
    if (c->n_shared_experts > 0)
        swiglu_mlp_bwd(m, xn, w->sh_gate, w->sh_up, w->sh_down, f->g, f->u, f->h, dout, dxn, N, H,
                       Ie * c->n_shared_experts, s);
    float *dlogit = s;                       /* [N, E] */
    float *dx_e = dlogit + (long)N * E;      /* [N*k, H] per assignment, perm order */
    float *ebuf = dx_e + (long)N * k * H;    /* per-expert scratch regions, perm order */
    /* expert backward: d(expert output) = w_j * dout[n] */
#pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < E; e++) {
        int cnt = f->count[e], s0 = f->start[e];
        if (!cnt) continue;
        const float *xe = f->xe + (long)s0 * H;
        float *dy = f->dye + (long)s0 * H;
        for (int i = 0; i < cnt; i++) {
            int a = f->perm[s0 + i], n = a / k;
            float wj = f->topw[a];
            for (int d = 0; d < H; d++) dy[(long)i * H + d] = wj * dout[(long)n * H + d];
        }
        float *dxe = dx_e + (long)s0 * H;
        memset(dxe, 0, sizeof(float) * cnt * H);
        swiglu_mlp_bwd(m, xe, w->exp_gate[e], w->exp_up[e], w->exp_down[e], f->eg + (long)s0 * Ie,
                       f->eu + (long)s0 * Ie, f->eh + (long)s0 * Ie, dy, dxe, cnt, H, Ie, ebuf + 3L * s0 * Ie);
    }
    int *where = xmalloc(sizeof(int) * N * k);
    for (long i = 0; i < (long)N * k; i++) where[f->perm[i]] = (int)i;
    const float rsf = c->routed_scaling_factor;
#pragma omp parallel for if (N > 16)
    for (int n = 0; n < N; n++) {
        const float *sc = f->scores + (long)n * E;
        const int *top = f->topk + (long)n * k;
        const float *tw = f->topw + (long)n * k;
        float *dl = dlogit + (long)n * E;
        float dw[64], ds[1024];
        memset(ds, 0, sizeof(float) * E);
        for (int j = 0; j < k; j++) { /* dL/dw_j = dout · y_j ; gather expert input grads */
            const float *y = f->ey + (long)where[(long)n * k + j] * H, *dxe = dx_e + (long)where[(long)n * k + j] * H;
            double acc = 0;
            for (int d = 0; d < H; d++) {
                acc += (double)dout[(long)n * H + d] * y[d];
                dxn[(long)n * H + d] += dxe[d];
            }
            dw[j] = (float)acc;
        }
        if (c->norm_topk_prob) { /* w_j = rsf * s_j / (S + eps) */
            float S = f->topsum[n] + 1e-20f;
            double cross = 0;
            for (int j = 0; j < k; j++) cross += (double)dw[j] * tw[j];  /* tw = rsf*s_j/S */
            for (int j = 0; j < k; j++) ds[top[j]] += (float)((dw[j] * rsf - cross) / S);
        } else {
            for (int j = 0; j < k; j++) ds[top[j]] += dw[j] * rsf;
        }
        if (c->scoring_func == SCORE_SOFTMAX) {
            double dot = 0;
            for (int e = 0; e < E; e++) dot += (double)ds[e] * sc[e];
            for (int e = 0; e < E; e++) dl[e] = sc[e] * (ds[e] - (float)dot);
        } else {
            for (int e = 0; e < E; e++) dl[e] = ds[e] * sc[e] * (1.0f - sc[e]);
        }
    }
    free(where);
    linear_bwd_x(dxn, dlogit, w->router, N, E, H);
    linear_bwd_w(grad_of(m, w->router), dlogit, xn, N, E, H);
}
