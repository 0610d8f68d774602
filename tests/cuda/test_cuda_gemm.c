/* test_cuda_gemm: cuBLASLt bf16 products (kernels/cuda/gemm.h) against the CPU
 * gemm (kernels/cpu/gemm.h) on bf16-rounded random inputs: every transpose
 * pair, fp32 and bf16 outputs, alpha/beta, padded leading dimensions, odd
 * sizes, the Linear wrappers, strided batches, the plan cache, and the grouped
 * expert kernels (grouped.h) against the CPU's Linear per expert. Skipped
 * without a GPU. */
#include <string.h>

#include "cuda_test.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/grouped.h"

static uint64_t rng = 0x6e6d6d01;
static Err err;

/* One C = alpha op(A) op(B) + beta C product, both output types. */
static void check_gemm(CudaBlas *h, int tA, int tB, int M, int N, int K, int pad) {
    const float alpha = 0.75f, beta = 0.5f;
    int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    long na = (long)(tA ? K : M) * lda, nb = (long)(tB ? N : K) * ldb, nc = (long)M * ldc;
    cuda_bf16 *Ab = malloc(2 * na), *Bb = malloc(2 * nb), *Cb = malloc(2 * nc);
    float *A = malloc(4 * na), *B = malloc(4 * nb), *C0 = malloc(4 * nc), *ref = malloc(4 * nc);
    rand_bf16(&rng, Ab, A, na, 1.0f);
    rand_bf16(&rng, Bb, B, nb, 1.0f);
    rand_bf16(&rng, Cb, C0, nc, 1.0f);
    memcpy(ref, C0, 4 * nc);
    gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, ref, ldc);
    void *dA = dev_upload(Ab, 2 * na), *dB = dev_upload(Bb, 2 * nb);
    /* fp32 output: only accumulation order differs from the CPU */
    void *dC = dev_upload(C0, 4 * nc);
    OK(cuda_gemm(h, 0, tA, tB, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, CUDA_F32, ldc, &err));
    dev_sync("gemm f32");
    float *out = malloc(4 * nc);
    dev_download(out, dC, 4 * nc);
    double e32 = nmse(out, ref, nc);
    CHECK(e32 < NMSE_F32, "gemm f32 tA=%d tB=%d M=%d N=%d K=%d pad=%d: nmse %.3g", tA, tB, M, N, K, pad, e32);
    /* the padding columns of C must be untouched */
    int pad_ok = 1;
    for (int i = 0; i < M && pad; i++)
        for (int j = N; j < ldc; j++) pad_ok &= memcmp(&out[(long)i * ldc + j], &C0[(long)i * ldc + j], 4) == 0;
    CHECK(pad_ok, "gemm f32 M=%d N=%d: wrote outside the N columns of C", M, N);
    cudaFree(dC);
    /* bf16 output: one rounding */
    dC = dev_upload(Cb, 2 * nc);
    OK(cuda_gemm(h, 0, tA, tB, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, CUDA_BF16, ldc, &err));
    dev_sync("gemm bf16");
    double e16 = nmse_dev_bf16(dC, ref, nc);
    CHECK(e16 < NMSE_BF16_ONE, "gemm bf16 tA=%d tB=%d M=%d N=%d K=%d: nmse %.3g", tA, tB, M, N, K, e16);
    printf("gemm tA=%d tB=%d M=%4d N=%4d K=%4d pad=%d: nmse f32 %.2e bf16 %.2e\n", tA, tB, M, N, K, pad, e32, e16);
    cudaFree(dC), cudaFree(dA), cudaFree(dB);
    free(Ab), free(Bb), free(Cb), free(A), free(B), free(C0), free(ref), free(out);
}

static void check_linear(CudaBlas *h, int M, int N, int K) {
    cuda_bf16 *xb = malloc(2L * M * K), *Wb = malloc(2L * N * K), *dyb = malloc(2L * M * N);
    float *x = malloc(4L * M * K), *W = malloc(4L * N * K), *dy = malloc(4L * M * N);
    float *y = calloc((long)M * N, 4), *dx = malloc(4L * M * K), *dW = malloc(4L * N * K);
    rand_bf16(&rng, xb, x, (long)M * K, 1.0f);
    rand_bf16(&rng, Wb, W, (long)N * K, 0.1f);
    rand_bf16(&rng, dyb, dy, (long)M * N, 1.0f);
    cuda_bf16 *dxb = malloc(2L * M * K);
    rand_bf16(&rng, dxb, dx, (long)M * K, 1.0f); /* dx accumulates onto this */
    rand_bf16(&rng, NULL, dW, (long)N * K, 1.0f);
    void *d_x = dev_upload(xb, 2L * M * K), *d_W = dev_upload(Wb, 2L * N * K), *d_dy = dev_upload(dyb, 2L * M * N);
    void *d_y = dev_alloc(4L * M * N), *d_dx = dev_upload(dxb, 2L * M * K), *d_dW = dev_upload(dW, 4L * N * K);
    linear_fwd(y, x, W, M, N, K, 0);
    linear_bwd_x(dx, dy, W, M, N, K);
    linear_bwd_w(dW, dy, x, M, N, K);
    OK(cuda_linear_fwd(h, 0, d_y, CUDA_F32, d_x, d_W, M, N, K, 0, &err));
    OK(cuda_linear_bwd_x(h, 0, d_dx, CUDA_BF16, d_dy, d_W, M, N, K, 1, &err));
    OK(cuda_linear_bwd_w(h, 0, d_dW, d_dy, d_x, M, N, K, &err));
    dev_sync("linear");
    double ey = nmse_dev_f32(d_y, y, (long)M * N), edx = nmse_dev_bf16(d_dx, dx, (long)M * K);
    double edw = nmse_dev_f32(d_dW, dW, (long)N * K);
    CHECK(ey < NMSE_F32, "linear_fwd M=%d N=%d K=%d: nmse %.3g", M, N, K, ey);
    CHECK(edx < NMSE_BF16_ONE, "linear_bwd_x (bf16, accumulate) M=%d N=%d K=%d: nmse %.3g", M, N, K, edx);
    CHECK(edw < NMSE_F32, "linear_bwd_w (fp32, accumulate) M=%d N=%d K=%d: nmse %.3g", M, N, K, edw);
    printf("linear M=%d N=%d K=%d: nmse y %.2e dx %.2e dW %.2e\n", M, N, K, ey, edx, edw);
    cudaFree(d_x), cudaFree(d_W), cudaFree(d_dy), cudaFree(d_y), cudaFree(d_dx), cudaFree(d_dW);
    free(xb), free(Wb), free(dyb), free(dxb), free(x), free(W), free(dy), free(y), free(dx), free(dW);
}

static void check_batched(CudaBlas *h, int nb, int M, int N, int K) {
    long sa = (long)M * K + 8, sb = (long)N * K + 8, sc = (long)M * N + 8; /* strides with gaps */
    cuda_bf16 *Ab = malloc(2 * sa * nb), *Bb = malloc(2 * sb * nb);
    float *A = malloc(4 * sa * nb), *B = malloc(4 * sb * nb), *ref = calloc(sc * nb, 4);
    rand_bf16(&rng, Ab, A, sa * nb, 1.0f);
    rand_bf16(&rng, Bb, B, sb * nb, 1.0f);
    for (int b = 0; b < nb; b++) gemm(0, 1, M, N, K, 1.0f, A + b * sa, K, B + b * sb, K, 0.0f, ref + b * sc, N);
    void *dA = dev_upload(Ab, 2 * sa * nb), *dB = dev_upload(Bb, 2 * sb * nb), *dC = dev_alloc(4 * sc * nb);
    CU(cudaMemset(dC, 0, 4 * sc * nb));
    OK(cuda_gemm_batched(h, 0, 0, 1, M, N, K, 1.0f, dA, K, sa, dB, K, sb, 0.0f, dC, CUDA_F32, N, sc, nb, &err));
    dev_sync("gemm batched");
    double e = nmse_dev_f32(dC, ref, sc * nb);
    CHECK(e < NMSE_F32, "batched x%d M=%d N=%d K=%d: nmse %.3g", nb, M, N, K, e);
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
    free(Ab), free(Bb), free(A), free(B), free(ref);
}

/* The grouped expert products (grouped.h) against the CPU's Linear per expert:
 * experts of uneven sizes (empty ones, one row, partial and several tiles),
 * rows_max past the rows used, fp32 and bf16 outputs, accumulation into what the
 * output holds, dW added to non-zero gradients. Odd N or K take the unaligned
 * (element by element) loads. */
static void check_grouped(int E, const int *count, int N, int K, int extra_rows) {
    int *start = malloc(sizeof(int) * (E + 1)), rows = 0;
    for (int e = 0; e < E; e++) start[e] = rows, rows += count[e];
    start[E] = rows;
    const long nx = (long)rows * K, ny = (long)rows * N, nw = (long)E * N * K;
    cuda_bf16 *xb = malloc(2 * nx + 2), *dyb = malloc(2 * ny + 2), *Wb = malloc(2 * nw), *y0b = malloc(2 * ny + 2);
    cuda_bf16 *dx0b = malloc(2 * nx + 2);
    float *x = malloc(4 * nx + 4), *dy = malloc(4 * ny + 4), *W = malloc(4 * nw), *y = malloc(4 * ny + 4);
    float *dx = malloc(4 * nx + 4), *dW = malloc(4 * nw), *dW0 = malloc(4 * nw);
    rand_bf16(&rng, xb, x, nx, 1.0f);
    rand_bf16(&rng, dyb, dy, ny, 1.0f);
    rand_bf16(&rng, Wb, W, nw, 0.1f);
    rand_bf16(&rng, y0b, y, ny, 1.0f);   /* y and dx start as what is accumulated into */
    rand_bf16(&rng, dx0b, dx, nx, 1.0f);
    for (long i = 0; i < nw; i++) dW0[i] = dW[i] = (float)(i % 7) * 0.25f;
    for (int e = 0; e < E; e++) {
        if (!count[e]) continue;
        linear_fwd(y + (long)start[e] * N, x + (long)start[e] * K, W + (long)e * N * K, count[e], N, K, 1);
        linear_bwd_x(dx + (long)start[e] * K, dy + (long)start[e] * N, W + (long)e * N * K, count[e], N, K);
        linear_bwd_w(dW + (long)e * N * K, dy + (long)start[e] * N, x + (long)start[e] * K, count[e], N, K);
    }
    float *yf = malloc(4 * ny + 4);  /* fp32 output, overwritten: the product alone */
    for (int e = 0; e < E; e++)
        if (count[e]) linear_fwd(yf + (long)start[e] * N, x + (long)start[e] * K, W + (long)e * N * K, count[e], N, K, 0);
    int *d_start = dev_upload(start, sizeof(int) * (E + 1));
    cuda_bf16 *d_x = dev_upload(xb, 2 * nx + 2), *d_dy = dev_upload(dyb, 2 * ny + 2), *d_W = dev_upload(Wb, 2 * nw);
    cuda_bf16 *d_y = dev_upload(y0b, 2 * ny + 2), *d_dx = dev_upload(dx0b, 2 * nx + 2);
    float *d_yf = dev_alloc(4 * ny + 4), *d_dW = dev_upload(dW0, 4 * nw);
    const cuda_bf16 **Wp = malloc(sizeof *Wp * E);
    float **dWp = malloc(sizeof *dWp * E);
    for (int e = 0; e < E; e++) Wp[e] = d_W + (long)e * N * K, dWp[e] = d_dW + (long)e * N * K;
    void *d_Wp = dev_upload(Wp, sizeof *Wp * E), *d_dWp = dev_upload(dWp, sizeof *dWp * E);
    const int rmax = rows + extra_rows;
    OK(cuda_grouped_fwd(0, d_yf, CUDA_F32, d_x, d_Wp, d_start, E, rmax, N, K, 0, &err));
    OK(cuda_grouped_fwd(0, d_y, CUDA_BF16, d_x, d_Wp, d_start, E, rmax, N, K, 1, &err));
    OK(cuda_grouped_bwd_x(0, d_dx, CUDA_BF16, d_dy, d_Wp, d_start, E, rmax, N, K, 1, &err));
    OK(cuda_grouped_bwd_w(0, d_dWp, d_dy, d_x, d_start, E, N, K, &err));
    dev_sync("grouped");
    double ef = nmse_dev_f32(d_yf, yf, ny), ey = nmse_dev_bf16(d_y, y, ny), edx = nmse_dev_bf16(d_dx, dx, nx);
    double edw = nmse_dev_f32(d_dW, dW, nw);
    CHECK(ef < NMSE_F32, "grouped fwd f32 E=%d N=%d K=%d: nmse %.3g", E, N, K, ef);
    CHECK(ey < NMSE_BF16_ONE, "grouped fwd bf16 accumulate E=%d N=%d K=%d: nmse %.3g", E, N, K, ey);
    CHECK(edx < NMSE_BF16_ONE, "grouped bwd dx accumulate E=%d N=%d K=%d: nmse %.3g", E, N, K, edx);
    CHECK(edw < NMSE_F32, "grouped bwd dW E=%d N=%d K=%d: nmse %.3g", E, N, K, edw);
    /* rows past start[E] (rows_max larger) and empty experts' gradients are left alone */
    cuda_bf16 tail;
    dev_download(&tail, d_y + ny, 2);
    CHECK(tail == y0b[ny], "grouped fwd wrote past start[E]");
    int empty_ok = 1;
    float *hdw = malloc(4 * nw);
    dev_download(hdw, d_dW, 4 * nw);
    for (int e = 0; e < E; e++)
        if (!count[e]) empty_ok &= memcmp(hdw + (long)e * N * K, dW0 + (long)e * N * K, 4L * N * K) == 0;
    CHECK(empty_ok, "grouped bwd dW changed an expert without rows");
    printf("grouped E=%d rows=%d (+%d) N=%d K=%d: nmse y f32 %.2e, y bf16 %.2e, dx %.2e, dW %.2e\n", E, rows,
           extra_rows, N, K, ef, ey, edx, edw);
    cudaFree(d_start), cudaFree(d_x), cudaFree(d_dy), cudaFree(d_W), cudaFree(d_y), cudaFree(d_dx), cudaFree(d_yf);
    cudaFree(d_dW), cudaFree(d_Wp), cudaFree(d_dWp);
    free(start), free(xb), free(dyb), free(Wb), free(y0b), free(dx0b), free(x), free(dy), free(W), free(y), free(dx);
    free(dW), free(dW0), free(yf), free(Wp), free(dWp), free(hdw);
}

/* Plans are kept per shape and operand alignment: a repeated product reuses its
 * plan, the same shape at a 2-byte aligned address gets its own (and is still
 * right), and after more shapes than the cache holds the evicted ones are rebuilt. */
static void check_plans(CudaBlas *h) {
    enum { M = 40, N = 24, K = 16 };
    cuda_bf16 *Ab = malloc(2L * (M * K + 1)), *Bb = malloc(2L * K * N);
    float *A = malloc(4L * (M * K + 1)), *B = malloc(4L * K * N), *ref = calloc((size_t)M * N, 4);
    float *ref1 = calloc((size_t)M * N, 4);
    rand_bf16(&rng, Ab, A, M * K + 1, 1.0f);
    rand_bf16(&rng, Bb, B, (long)K * N, 1.0f);
    gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, ref, N);
    gemm(0, 0, M, N, K, 1.0f, A + 1, K, B, N, 0.0f, ref1, N);
    cuda_bf16 *dA = dev_upload(Ab, 2L * (M * K + 1)), *dB = dev_upload(Bb, 2L * K * N);
    float *dC = dev_alloc(4L * M * N);
    long long h0, b0, h1, b1;
    cuda_blas_stats(h, &h0, &b0);
    for (int i = 0; i < 3; i++) OK(cuda_gemm(h, 0, 0, 0, M, N, K, 1.0f, dA, K, dB, N, 0.0f, dC, CUDA_F32, N, &err));
    cuda_blas_stats(h, &h1, &b1);
    CHECK(b1 - b0 <= 1 && h1 - h0 >= 2, "3 equal products: %lld plans built, %lld reused (want <= 1, >= 2)", b1 - b0,
          h1 - h0);
    dev_sync("plans");
    double e0 = nmse_dev_f32(dC, ref, (long)M * N);
    OK(cuda_gemm(h, 0, 0, 0, M, N, K, 1.0f, dA + 1, K, dB, N, 0.0f, dC, CUDA_F32, N, &err));
    long long h2, b2;
    cuda_blas_stats(h, &h2, &b2);
    CHECK(b2 == b1 + 1, "a 2-byte aligned A must get its own plan (%lld built)", b2 - b1);
    dev_sync("plans misaligned");
    double e1 = nmse_dev_f32(dC, ref1, (long)M * N);
    float *dT = dev_alloc(4L * M * 8);
    for (int m = 1; m <= M; m++)
        for (int n = 1; n <= 5; n++) OK(cuda_gemm(h, 0, 0, 0, m, n, K, 1.0f, dA, K, dB, N, 0.0f, dT, CUDA_F32, 8, &err));
    OK(cuda_gemm(h, 0, 0, 0, M, N, K, 1.0f, dA, K, dB, N, 0.0f, dC, CUDA_F32, N, &err));
    long long h3, b3;
    cuda_blas_stats(h, &h3, &b3);
    dev_sync("plans evicted");
    double e2 = nmse_dev_f32(dC, ref, (long)M * N);
    CHECK(e0 < NMSE_F32 && e1 < NMSE_F32 && e2 < NMSE_F32, "plan reuse: nmse %.3g / misaligned %.3g / rebuilt %.3g",
          e0, e1, e2);
    CHECK(b3 - b2 >= 200, "200 new shapes then an evicted one: %lld plans built (want >= 200)", b3 - b2);
    printf("plans: 3 equal products built %lld reused %lld; misaligned built 1; 200 shapes + an evicted one built %lld; nmse "
           "%.2e %.2e %.2e\n", b1 - b0, h1 - h0, b3 - b2, e0, e1, e2);
    cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dT);
    free(Ab), free(Bb), free(A), free(B), free(ref), free(ref1);
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    CudaBlas *h = cuda_blas_new(0, &err);
    if (!h) op_failed("cuda_blas_new", &err);
    const int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {64, 48, 32}, {33, 65, 129}, {128, 256, 96}, {3, 1000, 17}};
    for (unsigned s = 0; s < (test_quick() ? 4 : sizeof shapes / sizeof *shapes); s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++)
                for (int pad = 0; pad <= 3; pad += 3) check_gemm(h, tA, tB, shapes[s][0], shapes[s][1], shapes[s][2], pad);
    check_linear(h, 1, 64, 32);
    check_linear(h, 37, 100, 72);
    if (!test_quick()) check_linear(h, 256, 512, 384);
    check_batched(h, 3, 17, 24, 40);
    const int c5[] = {3, 0, 7, 1, 12}, c8[] = {0, 64, 65, 130, 1, 200, 0, 63};
    check_grouped(5, c5, 48, 64, 0);
    check_grouped(5, c5, 33, 17, 5);
    check_grouped(8, c8, 96, 160, 100);
    if (!test_quick()) { /* the 1B config's expert shapes, gate/up then down */
        int c16[16];
        for (int e = 0; e < 16; e++) c16[e] = (int)(rng_next(&rng) % 160);
        check_grouped(16, c16, 384, 768, 0);
        check_grouped(16, c16, 768, 384, 0);
    }
    check_plans(h);
    /* K = 0 scales C by beta; a too-small leading dimension is an input error */
    float c0[4] = {1, 2, 3, 4}, c1[4];
    void *dC = dev_upload(c0, sizeof c0);
    OK(cuda_gemm(h, 0, 0, 0, 2, 2, 0, 1.0f, NULL, 1, NULL, 2, 0.5f, dC, CUDA_F32, 2, &err));
    dev_download(c1, dC, sizeof c1);
    CHECK(c1[0] == 0.5f && c1[3] == 2.0f, "K=0 must give beta*C (got %g %g)", c1[0], c1[3]);
    Err e2 = {0};
    CHECK(cuda_gemm(h, 0, 0, 0, 4, 4, 4, 1.0f, dC, 3, dC, 4, 0.0f, dC, CUDA_F32, 4, &e2) == -1 && e2.code == ERR_INPUT,
          "lda < K must be refused");
    cudaFree(dC);
    cuda_blas_free(h);
    return test_report();
}
