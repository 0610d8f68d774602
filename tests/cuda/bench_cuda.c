/* bench_cuda: times each CUDA op once it is known correct (run test_cuda_*
 * first): median of 10 runs after 3 warm-ups, with CUDA events, on random
 * (never zero) inputs at DeepSeek-V3-like sizes. Prints one line per op with
 * milliseconds and the achieved rate (TFLOP/s for products, GB/s of the bytes
 * each op must move at least). Not a test: built beside them, run by
 * tests/cuda/run_device.sh after the tests. Exits 77 without a GPU. */
#include <string.h>

#include "cuda_test.h"
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/attn.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/grouped.h"
#include "kernels/cuda/head.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/sample.h"
#include "kernels/cuda/swiglu.h"

static Err err;
static uint64_t rng = 0x62656e63;
enum { WARM = 3, REPS = 10 };

/* Fills a device buffer of `bytes` by repeating 4 MiB of random bf16 values (scale) */
static void *dev_random(size_t bytes, float scale) {
    const size_t chunk = 4u << 20;
    cuda_bf16 *h = malloc(chunk);
    float *tmp = malloc(sizeof(float) * (chunk / 2));
    rand_bf16(&rng, h, tmp, chunk / 2, scale);
    char *d = dev_alloc(bytes);
    for (size_t o = 0; o < bytes; o += chunk)
        CU(cudaMemcpy(d + o, h, bytes - o < chunk ? bytes - o : chunk, cudaMemcpyHostToDevice));
    free(h), free(tmp);
    return d;
}

/* fp32 buffer of n values scale * N(0,1), by repeating 1 Mi random values */
static float *dev_random_f32(long n, float scale) {
    const long chunk = 1L << 20;
    float *h = malloc(sizeof(float) * chunk);
    for (long i = 0; i < chunk; i++) h[i] = scale * rand_normal(&rng);
    float *d = dev_alloc(sizeof(float) * n);
    for (long o = 0; o < n; o += chunk)
        CU(cudaMemcpy(d + o, h, sizeof(float) * (n - o < chunk ? n - o : chunk), cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef int (*OpFn)(void *ctx);

/* Median milliseconds of REPS runs of fn. */
static float time_op(OpFn fn, void *ctx) {
    cudaEvent_t a, b;
    CU(cudaEventCreate(&a));
    CU(cudaEventCreate(&b));
    float ms[REPS];
    for (int i = 0; i < WARM; i++)
        if (fn(ctx)) op_failed("bench op", &err);
    for (int i = 0; i < REPS; i++) {
        CU(cudaEventRecord(a, 0));
        if (fn(ctx)) op_failed("bench op", &err);
        CU(cudaEventRecord(b, 0));
        CU(cudaEventSynchronize(b));
        CU(cudaEventElapsedTime(&ms[i], a, b));
    }
    dev_sync("bench");
    cudaEventDestroy(a), cudaEventDestroy(b);
    qsort(ms, REPS, sizeof *ms, cmp_float);
    return ms[REPS / 2];
}

static void report(const char *op, const char *shape, float ms, double flops, double bytes) {
    printf("%-14s %-34s %9.3f ms", op, shape, ms);
    if (flops > 0) printf("  %7.1f TFLOP/s", flops / (ms * 1e-3) / 1e12);
    if (bytes > 0) printf("  %7.1f GB/s", bytes / (ms * 1e-3) / 1e9);
    printf("\n");
}

typedef struct Ctx {
    CudaBlas *h;
    int M, N, K;
    void *a, *b, *c, *d, *e, *f, *g, *x;
    CudaRouterCfg rc;
    CudaSamplerOpts so;
    CudaParamSpan span;
    CudaAdamWOpts ao;
    int64_t step;
} Ctx;

static int run_gemm(void *p) {
    Ctx *c = p;
    return cuda_linear_fwd(c->h, 0, c->c, CUDA_BF16, c->a, c->b, c->M, c->N, c->K, 0, &err);
}
static int run_rmsnorm(void *p) {
    Ctx *c = p;
    return cuda_rmsnorm_fwd(0, c->c, c->d, c->a, c->b, c->M, c->N, c->N, c->N, 1e-6f, &err);
}
static int run_swiglu(void *p) {
    Ctx *c = p;
    return cuda_swiglu_fwd(0, c->c, c->a, c->b, c->M, c->N, c->N, &err);
}
static int run_head(void *p) {
    Ctx *c = p;
    return cuda_head_fwd(c->h, 0, c->a, c->b, c->x, c->M, c->K, c->N, 1.0f, c->c, c->d, c->e, c->f, 1024, &err);
}
static int run_route(void *p) {
    Ctx *c = p;
    int *topk = c->d;
    return cuda_moe_route(0, &c->rc, c->a, c->b, c->M, c->c, topk, c->e, c->f, &err) ||
           cuda_moe_permute(0, topk, c->M, c->rc.k, c->rc.E, c->g, (int *)c->g + 1024, c->x,
                            (int *)c->x + (long)c->M * c->rc.k, NULL, &err);
}
static int run_adamw(void *p) {
    Ctx *c = p;
    return cuda_adamw_step(0, &c->ao, &c->span, 1, c->a, c->b, c->c, c->d, c->e, &c->step, 1e-4, c->f, NULL, &err) < 0;
}
static int run_sample(void *p) {
    Ctx *c = p;
    return cuda_sample(0, &c->so, c->a, c->M, c->N, c->N, c->b, c->c, c->d, c->e, c->f, &err);
}

/* Attention: one V3 layer's MLA heads (128 heads, dqk 192, dv 128). */
typedef struct AttnCtx {
    CudaAttnLayout L;
    float scale;
    void *q, *k, *kvb, *o, *lse, *dout, *dq, *dk, *dkvb, *scratch;
    CudaLatentCache c;
    int nq, nh, max_len;
    void *len, *qa, *qb, *ctx;
} AttnCtx;

static int run_attn_fwd(void *p) {
    AttnCtx *a = p;
    return cuda_attn_fwd(0, &a->L, a->scale, a->q, a->k, (cuda_bf16 *)a->kvb + 128, a->o, a->lse, &err);
}
static int run_attn_bwd(void *p) {
    AttnCtx *a = p;
    return cuda_attn_bwd(0, &a->L, a->scale, a->q, a->k, (cuda_bf16 *)a->kvb + 128, a->o, a->lse, a->dout, a->dq,
                         a->dk, (float *)a->dkvb + 128, CUDA_F32, a->scratch, &err);
}
static int run_latent(void *p) {
    AttnCtx *a = p;
    return cuda_latent_attend(0, &a->c, a->nq, NULL, a->len, a->max_len, a->nh, a->scale, a->qa, (long)a->nh * 512,
                              512, a->qb, (long)a->nh * 64, 64, a->ctx, a->scratch, &err);
}

static void bench_attn(int T) {
    AttnCtx a = {0};
    char shape[96];
    const int nh = 128, N = T;
    a.L = cuda_attn_layout_mla(1, T, nh, 128, 64, 128);
    a.scale = 0.1352338f;
    a.q = dev_random(2L * N * nh * 192, 1.0f), a.k = dev_random(2L * N * nh * 192, 1.0f);
    a.kvb = dev_random(2L * N * nh * 256, 1.0f), a.o = dev_alloc(2L * N * nh * 128);
    a.lse = dev_alloc(4L * N * nh), a.dout = dev_random(2L * N * nh * 128, 1.0f);
    a.dq = dev_alloc(4L * N * nh * 192), a.dk = dev_alloc(4L * N * nh * 192), a.dkvb = dev_alloc(4L * N * nh * 256);
    a.scratch = dev_alloc(cuda_attn_bwd_scratch_bytes(&a.L));
    /* causal: T(T+1)/2 score pairs per head, 2 (dqk + dv) flops each; backward counted as 2.5x (FA convention) */
    const double fl = 2.0 * nh * ((double)T * (T + 1) / 2) * (192 + 128);
    snprintf(shape, sizeof shape, "T %d, 128 heads, 192/128", T);
    report("attn_fwd", shape, time_op(run_attn_fwd, &a), fl, 0);
    report("attn_bwd", shape, time_op(run_attn_bwd, &a), 2.5 * fl, 0);
    cudaFree(a.q), cudaFree(a.k), cudaFree(a.kvb), cudaFree(a.o), cudaFree(a.lse), cudaFree(a.dout);
    cudaFree(a.dq), cudaFree(a.dk), cudaFree(a.dkvb), cudaFree(a.scratch);
}

/* A GRPO micro-batch, packed: a prompt of `prompt` tokens shared by G completions of `comp`
 * (the prompt once; same heads as bench_attn). */
typedef struct PackCtx { AttnCtx a; CudaAttnSeg seg[65]; int nseg; } PackCtx;
static int run_packed_fwd(void *p) {
    PackCtx *c = p;
    AttnCtx *a = &c->a;
    return cuda_attn_fwd_packed(0, &a->L, c->seg, c->nseg, a->scale, a->q, a->k, (cuda_bf16 *)a->kvb + 128, a->o,
                                a->lse, a->scratch, &err);
}
static int run_packed_bwd(void *p) {
    PackCtx *c = p;
    AttnCtx *a = &c->a;
    return cuda_attn_bwd_packed(0, &a->L, c->seg, c->nseg, a->scale, a->q, a->k, (cuda_bf16 *)a->kvb + 128, a->o,
                                a->lse, a->dout, a->dq, a->dk, (float *)a->dkvb + 128, CUDA_F32, a->scratch, &err);
}

static void bench_packed(int prompt, int G, int comp) {
    static PackCtx c;
    AttnCtx *a = &c.a;
    char shape[96];
    const int nh = 128, N = prompt + G * comp;
    c.nseg = G + 1, c.seg[0] = (CudaAttnSeg){0, prompt, -1};
    for (int g = 0; g < G; g++) c.seg[1 + g] = (CudaAttnSeg){prompt + g * comp, comp, 0};
    a->L = cuda_attn_layout_mla(1, N, nh, 128, 64, 128);
    a->scale = 0.1352338f;
    a->q = dev_random(2L * N * nh * 192, 1.0f), a->k = dev_random(2L * N * nh * 192, 1.0f);
    a->kvb = dev_random(2L * N * nh * 256, 1.0f), a->o = dev_alloc(2L * N * nh * 128);
    a->lse = dev_alloc(4L * N * nh), a->dout = dev_random(2L * N * nh * 128, 1.0f);
    a->dq = dev_alloc(4L * N * nh * 192), a->dk = dev_alloc(4L * N * nh * 192), a->dkvb = dev_alloc(4L * N * nh * 256);
    a->scratch = dev_alloc(cuda_attn_packed_scratch_bytes(N, c.nseg, nh));
    const double pairs = (double)prompt * (prompt + 1) / 2 + G * ((double)comp * prompt + (double)comp * (comp + 1) / 2);
    const double fl = 2.0 * nh * pairs * (192 + 128);
    snprintf(shape, sizeof shape, "%d + %d x %d tok packed, 128 heads", prompt, G, comp);
    report("attn_fwd", shape, time_op(run_packed_fwd, &c), fl, 0);
    report("attn_bwd", shape, time_op(run_packed_bwd, &c), 2.5 * fl, 0);
    cudaFree(a->q), cudaFree(a->k), cudaFree(a->kvb), cudaFree(a->o), cudaFree(a->lse), cudaFree(a->dout);
    cudaFree(a->dq), cudaFree(a->dk), cudaFree(a->dkvb), cudaFree(a->scratch);
}

/* The decoder's routed experts with counts on the device: `tokens` tokens, k experts each
 * picked at random from E; bytes = the touched experts' weights (read once). */
typedef struct ExpCtx { void *wg, *wu, *wd, *start, *x, *perm, *eh, *ey, *w; int E, H, I, k; } ExpCtx;
static int run_experts(void *p) {
    ExpCtx *x = p;
    return cuda_moe_experts_fwd(0, x->wg, x->wu, x->wd, x->start, x->x, x->perm, x->k, x->E, x->H, x->I, x->eh, x->ey,
                                &err);
}

static void bench_experts(int E, int H, int I, int k, int tokens) {
    ExpCtx x = {0};
    x.E = E, x.H = H, x.I = I, x.k = k;
    const long per = (long)H * I, rows = (long)tokens * k;
    x.w = dev_random(2L * 3 * per * E, 0.02f);
    const cuda_bf16 **pg = malloc(sizeof(void *) * E * 3);
    for (int e = 0; e < E; e++)
        pg[e] = (cuda_bf16 *)x.w + 3 * per * e, pg[E + e] = pg[e] + per, pg[2 * E + e] = pg[e] + 2 * per;
    x.wg = dev_upload(pg, sizeof(void *) * E), x.wu = dev_upload(pg + E, sizeof(void *) * E);
    x.wd = dev_upload(pg + 2 * E, sizeof(void *) * E);
    int *count = calloc(E, sizeof(int)), *start = malloc(sizeof(int) * (E + 1)), touched = 0;
    for (int t = 0; t < tokens; t++)
        for (int j = 0; j < k; j++) count[(t * 7919 + j * 104729 + (int)(rng_next(&rng) % E)) % E]++;
    start[0] = 0;
    for (int e = 0; e < E; e++) start[e + 1] = start[e] + count[e], touched += count[e] > 0;
    x.start = dev_upload(start, sizeof(int) * (E + 1));
    int *perm = malloc(sizeof(int) * rows); /* which token's row each expert row reads: any, for timing */
    for (long r = 0; r < rows; r++) perm[r] = (int)r;
    x.perm = dev_upload(perm, sizeof(int) * rows);
    x.x = dev_random(2L * tokens * H, 1.0f), x.eh = dev_alloc(2L * rows * I), x.ey = dev_alloc(2L * rows * H);
    char shape[96];
    snprintf(shape, sizeof shape, "%d tok x k %d, E %d (%d hit), %dx%d", tokens, k, E, touched, H, I);
    report("moe experts", shape, time_op(run_experts, &x), 6.0 * rows * per, 2.0 * 3 * per * touched);
    cudaFree(x.w), cudaFree(x.wg), cudaFree(x.wu), cudaFree(x.wd), cudaFree(x.start), cudaFree(x.x);
    cudaFree(x.perm), cudaFree(x.eh), cudaFree(x.ey);
    free(pg), free(count), free(start), free(perm);
}

/* The training products of the routed experts (grouped.h) at tokens x k rows spread at
 * random over E experts: gate/up forward [rows, H] -> [rows, I], the input and weight
 * gradients; next to each, cuBLAS on one dense product of the same FLOPs (the rate a
 * perfect grouping would reach). */
typedef struct GrpCtx { CudaBlas *h; void *x, *dy, *y, *dx, *w, *dw, *wp, *dwp, *start; int E, N, K, rows, mode; } GrpCtx;
static int run_grouped(void *p) {
    GrpCtx *g = p;
    if (g->mode == 0) return cuda_grouped_fwd(0, g->y, CUDA_BF16, g->x, g->wp, g->start, g->E, g->rows, g->N, g->K, 0, &err);
    if (g->mode == 1) return cuda_grouped_bwd_x(0, g->dx, CUDA_BF16, g->dy, g->wp, g->start, g->E, g->rows, g->N, g->K, 0, &err);
    if (g->mode == 2) return cuda_grouped_bwd_w(0, g->dwp, g->dy, g->x, g->start, g->E, g->N, g->K, &err);
    return cuda_linear_fwd(g->h, 0, g->y, CUDA_BF16, g->x, g->w, g->rows, g->N, g->K, 0, &err);
}

static void bench_grouped(CudaBlas *h, int E, int H, int I, int k, int tokens) {
    GrpCtx g = {0};
    g.h = h;
    g.E = E, g.N = I, g.K = H, g.rows = tokens * k;
    const long per = (long)I * H;
    g.w = dev_random(2L * per * E, 0.02f), g.dw = dev_alloc(4L * per * E);
    CU(cudaMemset(g.dw, 0, 4L * per * E));
    const cuda_bf16 **pw = malloc(sizeof(void *) * E);
    float **pd = malloc(sizeof(void *) * E);
    for (int e = 0; e < E; e++) pw[e] = (cuda_bf16 *)g.w + per * e, pd[e] = (float *)g.dw + per * e;
    g.wp = dev_upload(pw, sizeof(void *) * E), g.dwp = dev_upload(pd, sizeof(void *) * E);
    int *count = calloc(E, sizeof(int)), *start = malloc(sizeof(int) * (E + 1));
    for (int r = 0; r < g.rows; r++) count[rng_next(&rng) % E]++;
    start[0] = 0;
    for (int e = 0; e < E; e++) start[e + 1] = start[e] + count[e];
    g.start = dev_upload(start, sizeof(int) * (E + 1));
    g.x = dev_random(2L * g.rows * H, 1.0f), g.dy = dev_random(2L * g.rows * I, 1.0f);
    g.y = dev_alloc(2L * g.rows * I), g.dx = dev_alloc(2L * g.rows * H);
    const double fl = 2.0 * g.rows * per;
    const char *names[] = {"grouped_fwd", "grouped_bwd_x", "grouped_bwd_w", "dense cuBLAS"};
    char shape[96];
    snprintf(shape, sizeof shape, "%d tok x k %d, E %d, %dx%d", tokens, k, E, I, H);
    float ms[4];
    for (g.mode = 0; g.mode < 4; g.mode++) {
        ms[g.mode] = time_op(run_grouped, &g);
        report(names[g.mode], shape, ms[g.mode], fl, 0);
    }
    printf("%-14s %-34s %9.2f x dense (fwd), %.2f x (bwd_x), %.2f x (bwd_w)\n", "grouped/dense", shape,
           ms[3] / ms[0], ms[3] / ms[1], ms[3] / ms[2]);
    cudaFree(g.w), cudaFree(g.dw), cudaFree(g.wp), cudaFree(g.dwp), cudaFree(g.start), cudaFree(g.x);
    cudaFree(g.dy), cudaFree(g.y), cudaFree(g.dx);
    free(pw), free(pd), free(count), free(start);
}

/* Decoding: nq sequences of len tokens each over a 64-token paged cache (V3: 128 heads, dc 512, dr 64). */
static void bench_latent(int nq, int len) {
    AttnCtx a = {0};
    char shape[96];
    const int P = 64, mp = (len + P - 1) / P, npages = nq * mp;
    a.nq = nq, a.nh = 128, a.max_len = len, a.scale = 0.1352338f;
    int *table = malloc(sizeof(int) * npages), *lens = malloc(sizeof(int) * nq);
    for (int i = 0; i < npages; i++) table[i] = (int)((i * 7919L) % npages); /* scattered, 7919 prime */
    for (int i = 0; i < nq; i++) lens[i] = len;
    a.c = (CudaLatentCache){dev_random(2L * npages * P * 512, 1.0f), dev_random(2L * npages * P * 64, 1.0f),
                            dev_upload(table, sizeof(int) * npages), npages, P, mp, 512, 64};
    a.len = dev_upload(lens, sizeof(int) * nq);
    a.qa = dev_random(2L * nq * 128 * 512, 1.0f), a.qb = dev_random(2L * nq * 128 * 64, 1.0f);
    a.ctx = dev_alloc(4L * nq * 128 * 512);
    a.scratch = dev_alloc(cuda_latent_attend_scratch_bytes(nq, 128, 512, 64, len));
    snprintf(shape, sizeof shape, "%d seq x %d tok, 128 heads, 512+64", nq, len);
    /* bytes: the cache once (every head group after the first hits L2) */
    report("latent_attend", shape, time_op(run_latent, &a), 2.0 * nq * len * 128 * (576 + 512),
           2.0 * nq * len * 576);
    cudaFree(a.c.ckv), cudaFree(a.c.kpe), cudaFree((void *)a.c.pages), cudaFree(a.len), cudaFree(a.qa);
    cudaFree(a.qb), cudaFree(a.ctx), cudaFree(a.scratch);
    free(table), free(lens);
}

int main(int argc, char **argv) {
    CUDA_TEST_REQUIRE_GPU();
    char name[256], shape[96];
    cuda_device_describe(name, sizeof name);
    printf("device: %s\n%-14s %-34s %12s\n", name, "op", "shape", "median");
    Ctx c = {0};
    c.h = cuda_blas_new(0, &err);
    if (!c.h) op_failed("cuda_blas_new", &err);
    const int gemms[][3] = {{8192, 8192, 8192}, {4096, 7168, 2048}, {4096, 2048, 7168}, {256, 7168, 2048}};
    for (unsigned i = 0; i < sizeof gemms / sizeof *gemms; i++) {
        c.M = gemms[i][0], c.N = gemms[i][1], c.K = gemms[i][2];
        c.a = dev_random(2L * c.M * c.K, 1.0f), c.b = dev_random(2L * c.N * c.K, 0.02f), c.c = dev_alloc(2L * c.M * c.N);
        snprintf(shape, sizeof shape, "x[%d,%d] W[%d,%d]^T bf16", c.M, c.K, c.N, c.K);
        report("linear_fwd", shape, time_op(run_gemm, &c), 2.0 * c.M * c.N * c.K, 0);
        cudaFree(c.a), cudaFree(c.b), cudaFree(c.c);
    }
    c.M = 16384, c.N = 7168;
    c.a = dev_random(2L * c.M * c.N, 1.0f), c.b = dev_random(2L * c.N, 1.0f), c.c = dev_alloc(2L * c.M * c.N);
    c.d = dev_alloc(4L * c.M);
    report("rmsnorm_fwd", "[16384, 7168]", time_op(run_rmsnorm, &c), 0, 4.0 * c.M * c.N);
    cudaFree(c.a), cudaFree(c.b), cudaFree(c.c), cudaFree(c.d);
    c.M = 16384, c.N = 2048;
    c.a = dev_random(2L * c.M * c.N, 2.0f), c.b = dev_random(2L * c.M * c.N, 1.0f), c.c = dev_alloc(2L * c.M * c.N);
    report("swiglu_fwd", "[16384, 2048]", time_op(run_swiglu, &c), 0, 6.0 * c.M * c.N);
    cudaFree(c.a), cudaFree(c.b), cudaFree(c.c);
    c.M = 4096, c.K = 7168, c.N = 129280; /* tokens, hidden, vocab */
    {
        int *tg = malloc(sizeof(int) * c.M);
        for (int i = 0; i < c.M; i++) tg[i] = (int)(rng_next(&rng) % c.N);
        c.x = dev_upload(tg, sizeof(int) * c.M);
        free(tg);
    }
    c.a = dev_random(2L * c.M * c.K, 1.0f), c.b = dev_random(2L * c.N * c.K, 0.02f);
    c.c = dev_alloc(4L * c.M), c.d = dev_alloc(4L * c.M), c.e = dev_alloc(4L * c.M);
    c.f = dev_alloc(cuda_head_scratch_bytes(1024, c.N));
    report("head_fwd", "4096 tok, H 7168, V 129280", time_op(run_head, &c), 2.0 * c.M * c.K * c.N, 0);
    cudaFree(c.a), cudaFree(c.b), cudaFree(c.c), cudaFree(c.d), cudaFree(c.e), cudaFree(c.f), cudaFree(c.x);
    c.M = 16384;
    c.rc = (CudaRouterCfg){256, 8, 8, 4, CUDA_TOPK_NOAUX_TC, CUDA_SCORE_SIGMOID, 1, 2.5f};
    {
        float *l = malloc(4L * c.M * 256);
        for (long i = 0; i < 256L * c.M; i++) l[i] = rand_normal(&rng);
        c.a = dev_upload(l, 4L * c.M * 256);
        free(l);
    }
    c.b = dev_alloc(4L * 256);
    CU(cudaMemset(c.b, 0, 4L * 256));
    c.c = dev_alloc(4L * c.M * 256), c.d = dev_alloc(4L * c.M * 8), c.e = dev_alloc(4L * c.M * 8);
    c.f = dev_alloc(4L * c.M), c.g = dev_alloc(4L * 2048), c.x = dev_alloc(8L * c.M * 8);
    report("moe route+perm", "16384 tok, E 256, k 8, 8 groups", time_op(run_route, &c), 0, 0);
    cudaFree(c.a), cudaFree(c.b), cudaFree(c.c), cudaFree(c.d), cudaFree(c.e), cudaFree(c.f), cudaFree(c.g);
    cudaFree(c.x);
    const long n = argc > 1 && !strcmp(argv[1], "--quick") ? 1L << 24 : 1L << 28;
    c.span = (CudaParamSpan){0, (size_t)n, 1, 1};
    c.ao = (CudaAdamWOpts){0.9, 0.999, 1e-8, 0.1, 1.0};
    c.a = dev_random_f32(n, 0.02f), c.b = dev_random_f32(n, 1e-4f), c.c = dev_alloc(4 * n), c.d = dev_alloc(4 * n);
    CU(cudaMemset(c.c, 0, 4 * n));
    CU(cudaMemset(c.d, 0, 4 * n));
    c.e = dev_alloc(2 * n), c.f = dev_alloc(cuda_adamw_scratch_bytes(1));
    snprintf(shape, sizeof shape, "%ld params (norm, clip, bf16 copy)", n);
    /* bytes: norm reads g; update reads p g m v, writes p g(clipped) m v and the bf16 copy */
    report("adamw_step", shape, time_op(run_adamw, &c), 0, 4.0 * n + 16.0 * n + 16.0 * n + 2.0 * n);
    cudaFree(c.a), cudaFree(c.b), cudaFree(c.c), cudaFree(c.d), cudaFree(c.e), cudaFree(c.f);
    c.M = 64, c.N = 129280;
    c.so = (CudaSamplerOpts){1.0f, 50, 0.95, 0.0};
    {
        float *l = malloc(4L * c.M * c.N);
        double *u = malloc(sizeof(double) * c.M);
        for (long i = 0; i < (long)c.M * c.N; i++) l[i] = 3.0f * rand_normal(&rng);
        for (int i = 0; i < c.M; i++) u[i] = rng_uniform(&rng);
        c.a = dev_upload(l, 4L * c.M * c.N), c.b = dev_upload(u, sizeof(double) * c.M);
        free(l), free(u);
    }
    c.c = dev_alloc(4L * c.M), c.d = dev_alloc(4L * c.M), c.e = dev_alloc(4L * c.M);
    c.f = dev_alloc(cuda_sample_scratch_bytes(c.M, c.N));
    report("sample", "64 rows, V 129280, top_k 50 top_p .95", time_op(run_sample, &c), 0, 4.0 * c.M * c.N);
    c.so = (CudaSamplerOpts){1.0f, 0, 1.0, 0.0};
    report("sample", "64 rows, V 129280, no filter", time_op(run_sample, &c), 0, 4.0 * c.M * c.N);
    cudaFree(c.a), cudaFree(c.b), cudaFree(c.c), cudaFree(c.d), cudaFree(c.e), cudaFree(c.f);
    bench_attn(4096);
    bench_packed(256, 8, 1024);
    bench_experts(64, 768, 384, 4, 1);    /* dsv3-1b-a200m decoding, batch 1 and 64 */
    bench_experts(64, 768, 384, 4, 64);
    bench_experts(256, 7168, 2048, 8, 1); /* DeepSeek-V3 */
    bench_grouped(c.h, 64, 768, 384, 4, 8192);   /* dsv3-1b-a200m training: 4 x 2048 tokens */
    bench_grouped(c.h, 256, 7168, 2048, 8, 4096); /* DeepSeek-V3 */
    bench_latent(64, 4096);
    bench_latent(1, 32768);
    cuda_blas_free(c.h);
    return 0;
}
