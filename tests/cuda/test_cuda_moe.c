/* test_cuda_moe: a whole DeepSeekMoE block (routed and shared experts)
 * on the GPU, forward and backward, against mlp_fwd / mlp_bwd of
 * model/model_moe.c: routing (sigmoid + bias + noaux_tc groups, softmax +
 * group_limited_greedy, softmax greedy), the permutation (exactly), the
 * gather, the grouped expert products, SwiGLU, the weighted combine, and the
 * backward through experts and router (d input, d router logits, expert and
 * router weight gradients). The GPU gets the CPU's fp32 router logits so that
 * routing decisions can be compared exactly. Skipped without a GPU. */
#include <string.h>

#include "cuda_test.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/grouped.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/swiglu.h"
#include "model/model_internal.h"

static uint64_t rng = 0x6d6f6501;
static Err err;

typedef struct Case {
    int N, H, Ie, E, k, G, topk_group, method, scoring, norm, bias, shared;
    float rsf;
} Case;

static int exact_int(const int *d, const int *ref, long n) {
    int *h = malloc(sizeof(int) * (n ? n : 1));
    dev_download(h, d, sizeof(int) * n);
    long bad = 0;
    for (long i = 0; i < n; i++) bad += h[i] != ref[i];
    free(h);
    return bad == 0;
}

static void check_case(CudaBlas *bl, const Case *t) {
    const int N = t->N, H = t->H, Ie = t->Ie, E = t->E, k = t->k, NK = N * k, Is = Ie * t->shared;
    ModelConfig c = {0};
    c.hidden_size = H, c.moe_intermediate_size = Ie, c.intermediate_size = Ie, c.n_routed_experts = E;
    c.num_experts_per_tok = k, c.n_group = t->G, c.topk_group = t->topk_group, c.topk_method = t->method;
    c.scoring_func = t->scoring, c.norm_topk_prob = t->norm, c.routed_scaling_factor = t->rsf;
    c.n_shared_experts = t->shared;
    /* one parameter array: router, bias, gate/up/down per expert, shared gate/up/down */
    const long o_bias = (long)E * H, o_exp = o_bias + E, per_e = 3L * Ie * H, o_sh = o_exp + E * per_e;
    const long np = o_sh + 3L * Is * H;
    float *P = malloc(4 * np);
    cuda_bf16 *Pb = malloc(2 * np);
    rand_bf16(&rng, Pb, P, o_bias, 0.3f);
    for (int e = 0; e < E; e++) {
        rand_bf16(&rng, Pb + o_exp + e * per_e, P + o_exp + e * per_e, 2L * Ie * H, 1.0f / sqrtf((float)H));
        rand_bf16(&rng, Pb + o_exp + e * per_e + 2L * Ie * H, P + o_exp + e * per_e + 2L * Ie * H, (long)H * Ie,
                  1.0f / sqrtf((float)Ie));
    }
    if (Is) {
        rand_bf16(&rng, Pb + o_sh, P + o_sh, 2L * Is * H, 1.0f / sqrtf((float)H));
        rand_bf16(&rng, Pb + o_sh + 2L * Is * H, P + o_sh + 2L * Is * H, (long)H * Is, 1.0f / sqrtf((float)Is));
    }
    for (int e = 0; e < E; e++) P[o_bias + e] = t->bias ? 0.05f * rand_normal(&rng) : 0.0f;
    Model m = {0};
    m.cfg = c, m.params = P, m.grads = calloc(np, 4), m.numel = np;
    LayerW w = {0};
    float *eg[64], *eu[64], *ed[64];
    for (int e = 0; e < E; e++) {
        eg[e] = P + o_exp + e * per_e, eu[e] = eg[e] + (long)Ie * H, ed[e] = eg[e] + 2L * Ie * H;
    }
    w.router = P, w.router_bias = t->bias ? P + o_bias : NULL, w.exp_gate = eg, w.exp_up = eu, w.exp_down = ed;
    if (Is) w.sh_gate = P + o_sh, w.sh_up = P + o_sh + (long)Is * H, w.sh_down = P + o_sh + 2L * Is * H;
    cuda_bf16 *xb = malloc(2L * N * H), *doutb = malloc(2L * N * H);
    float *xn = malloc(4L * N * H), *dout = malloc(4L * N * H), *out = malloc(4L * N * H);
    float *dxn = calloc((long)N * H, 4), *logits = malloc(4L * N * E);
    rand_bf16(&rng, xb, xn, (long)N * H, 1.0f);
    rand_bf16(&rng, doutb, dout, (long)N * H, 1.0f);
    /* CPU reference */
    linear_fwd(logits, xn, w.router, N, E, H, 0); /* what router_fwd computes first */
    MlpActs f;
    mlp_acts_alloc(&f, &c, 1, N);
    mlp_fwd(&m, &w, 1, &f, xn, out, N, NULL);
    float *scratch = calloc(mlp_bwd_scratch(&c, N), 4);
    mlp_bwd(&m, &w, 1, &f, xn, dout, dxn, N, scratch);
    int *where = malloc(sizeof(int) * NK);
    for (int i = 0; i < NK; i++) where[f.perm[i]] = i;

    /* GPU: routing */
    CudaRouterCfg rc = {E, k, t->G, t->topk_group, t->method, t->scoring, t->norm, t->rsf};
    float *d_logits = dev_upload(logits, 4L * N * E), *d_bias = dev_upload(P + o_bias, 4L * E);
    float *d_scores = dev_alloc(4L * N * E), *d_topw = dev_alloc(4L * NK), *d_topsum = dev_alloc(4L * N);
    int *d_topk = dev_alloc(4L * NK), *d_count = dev_alloc(4L * E), *d_start = dev_alloc(4L * (E + 1));
    int *d_perm = dev_alloc(4L * NK), *d_where = dev_alloc(4L * NK);
    OK(cuda_moe_route(0, &rc, d_logits, t->bias ? d_bias : NULL, N, d_scores, d_topk, d_topw, d_topsum, &err));
    int load0[64], load[64];
    for (int e = 0; e < E; e++) load0[e] = e * 3;
    int *d_load = dev_upload(load0, 4L * E);
    OK(cuda_moe_permute(0, d_topk, N, k, E, d_count, d_start, d_perm, d_where, d_load, &err));
    dev_sync("moe route + permute");
    int route_ok = exact_int(d_topk, f.topk, NK);
    CHECK(route_ok, "E=%d k=%d method=%d scoring=%d: chosen experts differ from the CPU", E, k, t->method, t->scoring);
    double es = nmse_dev_f32(d_scores, f.scores, (long)N * E), ew = nmse_dev_f32(d_topw, f.topw, NK);
    double et = nmse_dev_f32(d_topsum, f.topsum, N);
    CHECK(es < NMSE_F32, "E=%d: affinities nmse %.3g", E, es);
    CHECK(ew < NMSE_F32, "E=%d: expert weights nmse %.3g", E, ew);
    CHECK(et < NMSE_F32, "E=%d: affinity sums nmse %.3g", E, et);
    if (!route_ok) return; /* everything downstream would differ */
    CHECK(exact_int(d_count, f.count, E), "E=%d: per-expert counts differ", E);
    CHECK(exact_int(d_start, f.start, E + 1), "E=%d: expert offsets differ", E);
    CHECK(exact_int(d_perm, f.perm, NK), "E=%d: permutation differs (must be stable, token order)", E);
    CHECK(exact_int(d_where, where, NK), "E=%d: inverse permutation differs", E);
    dev_download(load, d_load, 4L * E);
    int load_ok = 1;
    for (int e = 0; e < E; e++) load_ok &= load[e] == load0[e] + f.count[e];
    CHECK(load_ok, "E=%d: the router load must be added the per-expert counts", E);
    cudaFree(d_load);

    /* forward: gather, experts (tensor-core grouped products), combine */
    cuda_bf16 *d_P = dev_upload(Pb, 2 * np), *d_x = dev_upload(xb, 2L * N * H), *d_dout = dev_upload(doutb, 2L * N * H);
    cuda_bf16 *d_xe = dev_alloc(2L * NK * H), *d_g = dev_alloc(2L * NK * Ie), *d_u = dev_alloc(2L * NK * Ie);
    cuda_bf16 *d_h = dev_alloc(2L * NK * Ie), *d_ey = dev_alloc(2L * NK * H), *d_out = dev_alloc(2L * N * H);
    const cuda_bf16 *Wg[64], *Wu[64], *Wd[64];
    float *d_G = dev_alloc(4 * np), *dWg[64], *dWu[64], *dWd[64];
    CU(cudaMemset(d_G, 0, 4 * np));
    for (int e = 0; e < E; e++) {
        long o = o_exp + e * per_e;
        Wg[e] = d_P + o, Wu[e] = d_P + o + (long)Ie * H, Wd[e] = d_P + o + 2L * Ie * H;
        dWg[e] = d_G + o, dWu[e] = d_G + o + (long)Ie * H, dWd[e] = d_G + o + 2L * Ie * H;
    }
    const cuda_bf16 **d_W = dev_upload(Wg, sizeof(void *) * E);
    const cuda_bf16 **d_Wu = dev_upload(Wu, sizeof(void *) * E), **d_Wd = dev_upload(Wd, sizeof(void *) * E);
    float **d_dWg = dev_upload(dWg, sizeof(void *) * E), **d_dWu = dev_upload(dWu, sizeof(void *) * E);
    float **d_dWd = dev_upload(dWd, sizeof(void *) * E);
    OK(cuda_moe_gather(0, d_xe, d_x, d_perm, N, k, H, &err));
    OK(cuda_grouped_fwd(0, d_g, CUDA_BF16, d_xe, d_W, d_start, E, NK, Ie, H, 0, &err));
    OK(cuda_grouped_fwd(0, d_u, CUDA_BF16, d_xe, d_Wu, d_start, E, NK, Ie, H, 0, &err));
    OK(cuda_swiglu_fwd(0, d_h, d_g, d_u, NK, Ie, Ie, &err));
    OK(cuda_grouped_fwd(0, d_ey, CUDA_BF16, d_h, d_Wd, d_start, E, NK, H, Ie, 0, &err));
    /* shared experts first (out = shared), then the routed sum added onto it */
    const cuda_bf16 *Wsg = d_P + o_sh, *Wsu = d_P + o_sh + (long)Is * H, *Wsd = d_P + o_sh + 2L * Is * H;
    cuda_bf16 *d_sg = dev_alloc(2L * N * Is), *d_su = dev_alloc(2L * N * Is), *d_sh = dev_alloc(2L * N * Is);
    if (Is) {
        OK(cuda_linear_fwd(bl, 0, d_sg, CUDA_BF16, d_x, Wsg, N, Is, H, 0, &err));
        OK(cuda_linear_fwd(bl, 0, d_su, CUDA_BF16, d_x, Wsu, N, Is, H, 0, &err));
        OK(cuda_swiglu_fwd(0, d_sh, d_sg, d_su, N, Is, Is, &err));
        OK(cuda_linear_fwd(bl, 0, d_out, CUDA_BF16, d_sh, Wsd, N, H, Is, 0, &err));
    }
    OK(cuda_moe_combine(0, d_out, d_ey, d_topw, d_where, N, k, H, Is > 0, &err));
    dev_sync("moe forward");
    double exe = nmse_dev_bf16(d_xe, f.xe, (long)NK * H), eey = nmse_dev_bf16(d_ey, f.ey, (long)NK * H);
    double eout = nmse_dev_bf16(d_out, out, (long)N * H);
    CHECK(exe == 0.0, "E=%d: gathered expert inputs must be exact copies (nmse %.3g)", E, exe);
    CHECK(eey < NMSE_BF16_CHAIN, "E=%d: expert outputs nmse %.3g", E, eey);
    CHECK(eout < NMSE_BF16_CHAIN, "E=%d N=%d H=%d: block output nmse %.3g", E, N, H, eout);
    /* the decoder's path for few rows per expert: one kernel reading each weight row once */
    cuda_bf16 *d_h2 = dev_alloc(2L * NK * Ie), *d_ey2 = dev_alloc(2L * NK * H);
    OK(cuda_moe_experts_fwd(0, d_W, d_Wu, d_Wd, d_start, d_x, d_perm, k, E, H, Ie, d_h2, d_ey2, &err));
    dev_sync("moe experts (device counts)");
    double eey2 = nmse_dev_bf16(d_ey2, f.ey, (long)NK * H);
    CHECK(eey2 < NMSE_BF16_CHAIN, "E=%d H=%d: expert outputs with device counts nmse %.3g", E, H, eey2);
    cudaFree(d_h2), cudaFree(d_ey2);

    /* backward */
    cuda_bf16 *d_dye = dev_alloc(2L * NK * H), *d_dh = dev_alloc(2L * NK * Ie), *d_dg = dev_alloc(2L * NK * Ie);
    cuda_bf16 *d_du = dev_alloc(2L * NK * Ie), *d_dxe = dev_alloc(2L * NK * H), *d_dxn = dev_alloc(2L * N * H);
    float *d_dw = dev_alloc(4L * NK), *d_dlogit = dev_alloc(4L * N * E);
    cuda_bf16 *d_dlogit16 = dev_alloc(2L * N * E);
    cuda_bf16 *d_sdh = dev_alloc(2L * N * Is), *d_sdg = dev_alloc(2L * N * Is), *d_sdu = dev_alloc(2L * N * Is);
    if (Is) { /* shared experts: dxn = their input gradient, the routed part is added after */
        OK(cuda_linear_bwd_x(bl, 0, d_sdh, CUDA_BF16, d_dout, Wsd, N, H, Is, 0, &err));
        OK(cuda_linear_bwd_w(bl, 0, d_G + o_sh + 2L * Is * H, d_dout, d_sh, N, H, Is, &err));
        OK(cuda_swiglu_bwd(0, d_sdg, d_sdu, d_sdh, d_sg, d_su, N, Is, Is, &err));
        OK(cuda_linear_bwd_x(bl, 0, d_dxn, CUDA_BF16, d_sdg, Wsg, N, Is, H, 0, &err));
        OK(cuda_linear_bwd_x(bl, 0, d_dxn, CUDA_BF16, d_sdu, Wsu, N, Is, H, 1, &err));
        OK(cuda_linear_bwd_w(bl, 0, d_G + o_sh, d_sdg, d_x, N, Is, H, &err));
        OK(cuda_linear_bwd_w(bl, 0, d_G + o_sh + (long)Is * H, d_sdu, d_x, N, Is, H, &err));
    }
    OK(cuda_moe_combine_bwd(0, d_dye, d_dw, d_dout, d_ey, d_topw, d_perm, d_where, N, k, H, &err));
    OK(cuda_grouped_bwd_x(0, d_dh, CUDA_BF16, d_dye, d_Wd, d_start, E, NK, H, Ie, 0, &err));
    OK(cuda_grouped_bwd_w(0, d_dWd, d_dye, d_h, d_start, E, H, Ie, &err));
    OK(cuda_swiglu_bwd(0, d_dg, d_du, d_dh, d_g, d_u, NK, Ie, Ie, &err));
    OK(cuda_grouped_bwd_x(0, d_dxe, CUDA_BF16, d_dg, d_W, d_start, E, NK, Ie, H, 0, &err));
    OK(cuda_grouped_bwd_x(0, d_dxe, CUDA_BF16, d_du, d_Wu, d_start, E, NK, Ie, H, 1, &err));
    OK(cuda_grouped_bwd_w(0, d_dWg, d_dg, d_xe, d_start, E, Ie, H, &err));
    OK(cuda_grouped_bwd_w(0, d_dWu, d_du, d_xe, d_start, E, Ie, H, &err));
    OK(cuda_moe_gather_bwd(0, d_dxn, d_dxe, d_where, N, k, H, Is > 0, &err));
    OK(cuda_moe_router_bwd(0, &rc, d_scores, d_topk, d_topw, d_topsum, d_dw, N, d_dlogit, d_dlogit16, &err));
    OK(cuda_linear_bwd_x(bl, 0, d_dxn, CUDA_BF16, d_dlogit16, d_P, N, E, H, 1, &err));
    OK(cuda_linear_bwd_w(bl, 0, d_G, d_dlogit16, d_x, N, E, H, &err));
    dev_sync("moe backward");
    double edye = nmse_dev_bf16(d_dye, f.dye, (long)NK * H), edl = nmse_dev_f32(d_dlogit, scratch, (long)N * E);
    double edx = nmse_dev_bf16(d_dxn, dxn, (long)N * H);
    float *G = malloc(4 * np);
    dev_download(G, d_G, 4 * np);
    double egr = nmse(G, m.grads, o_bias), egx = nmse(G + o_exp, m.grads + o_exp, E * per_e);
    double egs = Is ? nmse(G + o_sh, m.grads + o_sh, 3L * Is * H) : 0.0;
    CHECK(edye < NMSE_BF16_ONE, "E=%d: weighted output grads nmse %.3g", E, edye);
    CHECK(edl < NMSE_BF16_CHAIN, "E=%d: d router logits nmse %.3g", E, edl);
    CHECK(edx < NMSE_BF16_CHAIN, "E=%d: d input nmse %.3g", E, edx);
    CHECK(egr < NMSE_BF16_CHAIN, "E=%d: router weight grad nmse %.3g", E, egr);
    CHECK(egx < NMSE_BF16_CHAIN, "E=%d: expert weight grads nmse %.3g", E, egx);
    CHECK(egs < NMSE_BF16_CHAIN, "E=%d: shared expert weight grads nmse %.3g", E, egs);
    printf("moe E=%2d k=%d N=%3d H=%3d shared=%d: nmse out %.2e (device-count experts %.2e) dx %.2e dlogit %.2e dW router %.2e experts %.2e shared %.2e\n",
           E, k, N, H, t->shared, eout, eey2, edx, edl, egr, egx, egs);

    void *frees[] = {d_logits, d_bias, d_scores, d_topw, d_topsum, d_topk, d_count, d_start, d_perm, d_where, d_P,
                     d_x, d_dout, d_xe, d_g, d_u, d_h, d_ey, d_out, d_G, d_dye, d_dh, d_dg, d_du, d_dxe, d_dxn,
                     d_dw, d_dlogit, d_dlogit16, d_sg, d_su, d_sh, d_sdh, d_sdg, d_sdu, d_W, d_Wu, d_Wd,
                     d_dWg, d_dWu, d_dWd};
    for (unsigned i = 0; i < sizeof frees / sizeof *frees; i++) cudaFree(frees[i]);
    mlp_acts_free(&f);
    free(P), free(Pb), free(m.grads), free(xb), free(doutb), free(xn), free(dout), free(out), free(dxn);
    free(logits), free(scratch), free(where), free(G);
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    CudaBlas *bl = cuda_blas_new(0, &err);
    if (!bl) op_failed("cuda_blas_new", &err);
    const Case cases[] = {
        /* N   H   Ie  E   k  G  tg method                        scoring             norm bias shared rsf */
        {37, 64, 32, 16, 4, 4, 2, CUDA_TOPK_NOAUX_TC, CUDA_SCORE_SIGMOID, 1, 1, 1, 2.5f},
        {19, 48, 24, 8, 3, 2, 1, CUDA_TOPK_GROUP_LIMITED_GREEDY, CUDA_SCORE_SOFTMAX, 0, 0, 2, 1.0f},
        {64, 32, 16, 6, 2, 1, 1, CUDA_TOPK_GREEDY, CUDA_SCORE_SOFTMAX, 0, 0, 0, 1.0f},
        {200, 128, 64, 64, 6, 8, 3, CUDA_TOPK_NOAUX_TC, CUDA_SCORE_SIGMOID, 1, 1, 1, 2.5f},
        {5, 40, 8, 4, 4, 1, 1, CUDA_TOPK_GREEDY, CUDA_SCORE_SIGMOID, 1, 0, 0, 1.5f}, /* k = E */
        {2, 36, 12, 16, 2, 1, 1, CUDA_TOPK_GREEDY, CUDA_SCORE_SIGMOID, 0, 0, 0, 1.0f}, /* empty experts, H % 8 != 0 */
        {1100, 32, 16, 64, 4, 8, 4, CUDA_TOPK_NOAUX_TC, CUDA_SCORE_SIGMOID, 1, 1, 1, 2.5f}, /* the 3-kernel permutation */
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++)
        if (!test_quick() || cases[i].N < 100) check_case(bl, &cases[i]);
    CudaRouterCfg bad = {10, 3, 4, 2, CUDA_TOPK_NOAUX_TC, CUDA_SCORE_SIGMOID, 1, 1.0f};
    Err e2 = {0};
    CHECK(cuda_router_check(&bad, &e2) == -1 && e2.code == ERR_INPUT, "n_group not dividing E must be refused");
    cuda_blas_free(bl);
    return test_report();
}
