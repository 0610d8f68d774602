/* test_cuda_head: the chunked log-prob / entropy head (kernels/cuda/head.h)
 * forward and backward against the CPU head of model/model_fwd.c on random
 * bf16 hidden states and lm_head weights, with chunks smaller than the batch,
 * an odd vocabulary, tokens without a target, and two temperatures.
 *
 * The CPU head is head_fwd / head_bwd, static in model/model_fwd.c and tied to
 * a whole Model; ref_head_fwd / ref_head_bwd below are their loops verbatim
 * (same float and double operations) over one chunk of all N rows. If model/
 * ever exposes them on raw buffers, call them instead. Skipped without a GPU. */
#include <string.h>

#include "cuda_test.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cuda/head.h"

static uint64_t rng = 0x68656164;
static Err err;

/* model_forward's head: z = x W^T / tau; lse, logp of the target, entropy. */
static void ref_head_fwd(const float *x, const float *W, const int *targets, int N, int H, int V, float temperature,
                         float *logp, float *lse, float *ent) {
    float *z = malloc(sizeof(float) * N * V);
    linear_fwd(z, x, W, N, V, H, 0);
    for (int i = 0; i < N; i++) {
        float *r = z + (long)i * V, mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = fmaxf(mx, r[v] /= temperature);
        double s = 0, sz = 0;
        for (int v = 0; v < V; v++) {
            double e = exp((double)(r[v] - mx));
            s += e;
            sz += e * r[v];
        }
        float l = mx + (float)log(s);
        lse[i] = l;
        int tgt = targets ? targets[i] : -1;
        logp[i] = tgt >= 0 ? r[tgt] - l : 0.0f;
        ent[i] = l - (float)(sz / s);
    }
    free(z);
}

/* head_bwd: d(logits) from dlogp and dentropy, then dx = dz W, dW += dz^T x. */
static void ref_head_bwd(const float *x, const float *W, const int *targets, int N, int H, int V, float tau,
                         const float *lse, const float *ent, const float *dlogp, const float *dent, float *dx,
                         float *dW) {
    float *z = malloc(sizeof(float) * N * V);
    linear_fwd(z, x, W, N, V, H, 0);
    for (long i = 0; i < (long)N * V; i++) z[i] /= tau;
    for (int i = 0; i < N; i++) {
        float *r = z + (long)i * V;
        int tgt = targets ? targets[i] : -1;
        float gl = tgt >= 0 && dlogp ? dlogp[i] : 0.0f, ge = dent ? dent[i] : 0.0f;
        for (int v = 0; v < V; v++) {
            float lp = r[v] - lse[i], p = expf(lp);
            r[v] = (-gl * p - ge * p * (lp + ent[i])) / tau;
        }
        if (tgt >= 0) r[tgt] += gl / tau;
    }
    memset(dx, 0, sizeof(float) * N * H);
    linear_bwd_x(dx, z, W, N, V, H);
    linear_bwd_w(dW, z, x, N, V, H);
    free(z);
}

static void check_head(CudaBlas *h, int N, int H, int V, int chunk, float tau) {
    cuda_bf16 *xb = malloc(2L * N * H), *Wb = malloc(2L * V * H);
    float *x = malloc(4L * N * H), *W = malloc(4L * V * H);
    int *tg = malloc(sizeof(int) * N);
    float *logp = malloc(4L * N), *lse = malloc(4L * N), *ent = malloc(4L * N);
    float *dlogp = malloc(4L * N), *dent = malloc(4L * N), *dx = malloc(4L * N * H), *dW = calloc((long)V * H, 4);
    rand_bf16(&rng, xb, x, (long)N * H, 1.0f);
    rand_bf16(&rng, Wb, W, (long)V * H, 0.3f);
    for (int i = 0; i < N; i++) {
        tg[i] = i % 5 == 3 ? -1 : (int)(rng_next(&rng) % V);
        dlogp[i] = rand_normal(&rng), dent[i] = rand_normal(&rng);
    }
    ref_head_fwd(x, W, tg, N, H, V, tau, logp, lse, ent);
    ref_head_bwd(x, W, tg, N, H, V, tau, lse, ent, dlogp, dent, dx, dW);
    void *d_x = dev_upload(xb, 2L * N * H), *d_W = dev_upload(Wb, 2L * V * H), *d_tg = dev_upload(tg, 4L * N);
    float *d_logp = dev_alloc(4L * N), *d_lse = dev_alloc(4L * N), *d_ent = dev_alloc(4L * N);
    void *d_dlogp = dev_upload(dlogp, 4L * N), *d_dent = dev_upload(dent, 4L * N), *d_dx = dev_alloc(2L * N * H);
    float *d_dW = dev_alloc(4L * V * H);
    CU(cudaMemset(d_dW, 0, 4L * V * H));
    void *scratch = dev_alloc(cuda_head_scratch_bytes(chunk, V));
    OK(cuda_head_fwd(h, 0, d_x, d_W, d_tg, N, H, V, tau, d_logp, d_lse, d_ent, scratch, chunk, &err));
    dev_sync("head fwd");
    /* fp32 logits from cuBLASLt, fp32 sums over V (the CPU sums in double): ~1e-6 relative */
    double elp = nmse_dev_f32(d_logp, logp, N), els = nmse_dev_f32(d_lse, lse, N), een = nmse_dev_f32(d_ent, ent, N);
    CHECK(elp < 1e-8, "head fwd N=%d V=%d chunk=%d tau=%g: logp nmse %.3g", N, V, chunk, tau, elp);
    CHECK(els < 1e-8, "head fwd N=%d V=%d: lse nmse %.3g", N, V, els);
    CHECK(een < 1e-8, "head fwd N=%d V=%d: entropy nmse %.3g", N, V, een);
    float *g = malloc(4L * N);
    dev_download(g, d_logp, 4L * N);
    int zeros = 1;
    for (int i = 0; i < N; i++) zeros &= tg[i] >= 0 || g[i] == 0.0f;
    CHECK(zeros, "head fwd: logp must be exactly 0 where the target is -1");
    /* backward from the CPU's lse/ent so only the backward's error is measured */
    CU(cudaMemcpy(d_lse, lse, 4L * N, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d_ent, ent, 4L * N, cudaMemcpyHostToDevice));
    OK(cuda_head_bwd(h, 0, d_x, d_W, d_tg, N, H, V, tau, d_lse, d_ent, d_dlogp, d_dent, d_dx, 0, d_dW, scratch,
                     chunk, &err));
    dev_sync("head bwd");
    /* dz is rounded to bf16 before both products; dx is rounded again */
    double edx = nmse_dev_bf16(d_dx, dx, (long)N * H), edw = nmse_dev_f32(d_dW, dW, (long)V * H);
    CHECK(edx < NMSE_BF16_CHAIN, "head bwd N=%d V=%d chunk=%d: dx nmse %.3g", N, V, chunk, edx);
    CHECK(edw < NMSE_BF16_CHAIN, "head bwd N=%d V=%d chunk=%d: dW nmse %.3g", N, V, chunk, edw);
    printf("head N=%d H=%d V=%d chunk=%d tau=%g: nmse logp %.2e lse %.2e ent %.2e dx %.2e dW %.2e\n", N, H, V, chunk,
           tau, elp, els, een, edx, edw);
    cudaFree(d_x), cudaFree(d_W), cudaFree(d_tg), cudaFree(d_logp), cudaFree(d_lse), cudaFree(d_ent);
    cudaFree(d_dlogp), cudaFree(d_dent), cudaFree(d_dx), cudaFree(d_dW), cudaFree(scratch);
    free(xb), free(Wb), free(x), free(W), free(tg), free(logp), free(lse), free(ent), free(dlogp), free(dent);
    free(dx), free(dW), free(g);
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    CudaBlas *h = cuda_blas_new(0, &err);
    if (!h) op_failed("cuda_blas_new", &err);
    check_head(h, 1, 8, 5, 1, 1.0f);
    check_head(h, 13, 64, 1003, 5, 0.7f);
    if (!test_quick()) check_head(h, 40, 256, 32000, 16, 1.0f);
    check_head(h, 24, 96, 4097, 24, 1.3f);
    Err e2 = {0};
    CHECK(cuda_head_fwd(h, 0, NULL, NULL, NULL, 4, 8, 8, 0.0f, NULL, NULL, NULL, NULL, 4, &e2) == -1 &&
              e2.code == ERR_INPUT,
          "temperature 0 must be refused");
    cuda_blas_free(h);
    return test_report();
}
