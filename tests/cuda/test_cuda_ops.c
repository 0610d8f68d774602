/* test_cuda_ops: RMSNorm forward/backward, RoPE (with a YaRN-amplitude angle
 * table from the CPU's rope_table), SwiGLU forward/backward and the fp32/bf16
 * casts (bit-exact against bf16.h's host rounding) on the GPU
 * against kernels/cpu/ops.c on bf16-rounded random inputs, with padded
 * leading dimensions and odd sizes. Skipped without a GPU. */
#include <string.h>

#include "cuda_test.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/cast.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/swiglu.h"

static uint64_t rng = 0x6f707301;
static Err err;

/* nmse over the first D columns of N rows of a bf16 device matrix with leading dim ld. */
static double nmse_rows_bf16(const void *d, const float *ref, int N, int D, int ld) {
    long n = (long)N * ld;
    cuda_bf16 *h = malloc(2 * n);
    dev_download(h, d, 2 * n);
    float *a = malloc(4L * N * D), *b = malloc(4L * N * D);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) a[(long)i * D + j] = bf16_to_f32(h[(long)i * ld + j]), b[(long)i * D + j] = ref[(long)i * ld + j];
    double e = nmse(a, b, (long)N * D);
    free(h), free(a), free(b);
    return e;
}

static void check_rmsnorm(int N, int D, int ldx, int ldy) {
    const float eps = 1e-6f;
    long nx = (long)N * ldx, ny = (long)N * ldy;
    cuda_bf16 *xb = malloc(2 * nx), *wb = malloc(2L * D), *dyb = malloc(2L * N * D), *dxb = malloc(2 * nx);
    float *x = malloc(4 * nx), *w = malloc(4L * D), *dy = malloc(4L * N * D), *dx = malloc(4 * nx);
    float *y = calloc(ny, 4), *rstd = malloc(4L * N), *dw = malloc(4L * D);
    rand_bf16(&rng, xb, x, nx, 2.0f);
    rand_bf16(&rng, wb, w, D, 1.0f);
    rand_bf16(&rng, dyb, dy, (long)N * D, 1.0f);
    rand_bf16(&rng, dxb, dx, nx, 1.0f);
    rand_bf16(&rng, NULL, dw, D, 1.0f);
    void *d_x = dev_upload(xb, 2 * nx), *d_w = dev_upload(wb, 2L * D), *d_dy = dev_upload(dyb, 2L * N * D);
    void *d_y = dev_alloc(2 * ny), *d_rstd = dev_alloc(4L * N), *d_dx = dev_upload(dxb, 2 * nx);
    void *d_dw = dev_upload(dw, 4L * D);
    rmsnorm_fwd(y, rstd, x, w, N, D, ldx, ldy, eps);
    OK(cuda_rmsnorm_fwd(0, d_y, d_rstd, d_x, d_w, N, D, ldx, ldy, eps, &err));
    dev_sync("rmsnorm fwd");
    double ey = nmse_rows_bf16(d_y, y, N, D, ldy), er = nmse_dev_f32(d_rstd, rstd, N);
    CHECK(ey < NMSE_BF16_ONE, "rmsnorm fwd N=%d D=%d: y nmse %.3g", N, D, ey);
    CHECK(er < NMSE_F32, "rmsnorm fwd N=%d D=%d: rstd nmse %.3g", N, D, er);
    /* backward from the CPU's rstd, accumulating into dx and dw as rmsnorm_bwd */
    CU(cudaMemcpy(d_rstd, rstd, 4L * N, cudaMemcpyHostToDevice));
    rmsnorm_bwd(dx, dw, dy, x, w, rstd, N, D, ldx, ldx);
    OK(cuda_rmsnorm_bwd(0, d_dx, d_dw, d_dy, d_x, d_w, d_rstd, N, D, ldx, ldx, 1, &err));
    dev_sync("rmsnorm bwd");
    double edx = nmse_rows_bf16(d_dx, dx, N, D, ldx), edw = nmse_dev_f32(d_dw, dw, D);
    CHECK(edx < NMSE_BF16_ONE, "rmsnorm bwd N=%d D=%d: dx nmse %.3g", N, D, edx);
    CHECK(edw < NMSE_F32 * 10, "rmsnorm bwd N=%d D=%d: dw nmse %.3g", N, D, edw);
    printf("rmsnorm N=%d D=%d: nmse y %.2e rstd %.2e dx %.2e dw %.2e\n", N, D, ey, er, edx, edw);
    cudaFree(d_x), cudaFree(d_w), cudaFree(d_dy), cudaFree(d_y), cudaFree(d_rstd), cudaFree(d_dx), cudaFree(d_dw);
    free(xb), free(wb), free(dyb), free(dxb), free(x), free(w), free(dy), free(dx), free(y), free(rstd), free(dw);
}

/* Rotates the dr dims at offset `off` of nvec vectors per row. */
static void check_rope(int N, int nvec, int vstride, int ldx, int dr, int off) {
    int half = dr / 2, *pos = malloc(sizeof(int) * N);
    float *inv = malloc(4L * half), *cs = malloc(4L * N * half), *sn = malloc(4L * N * half);
    for (int i = 0; i < N; i++) pos[i] = (int)(rng_next(&rng) % 4096);
    for (int j = 0; j < half; j++) inv[j] = (float)pow(10000.0, -2.0 * j / dr) / (j < half / 2 ? 40.0f : 1.0f);
    rope_table(cs, sn, pos, inv, 1.0f + 0.1f * logf(40.0f), N, dr); /* a YaRN-like amplitude */
    long n = (long)N * ldx;
    cuda_bf16 *xb = malloc(2 * n);
    float *x = malloc(4 * n);
    rand_bf16(&rng, xb, x, n, 1.0f);
    void *d_cs = dev_upload(cs, 4L * N * half), *d_sn = dev_upload(sn, 4L * N * half);
    for (int inverse = 0; inverse < 2; inverse++) {
        float *ref = malloc(4 * n);
        memcpy(ref, x, 4 * n);
        rope_apply(ref + off, cs, sn, N, nvec, vstride, ldx, dr, inverse);
        cuda_bf16 *d_x = dev_upload(xb, 2 * n);
        OK(cuda_rope_apply(0, d_x + off, d_cs, d_sn, N, nvec, vstride, ldx, dr, inverse, &err));
        dev_sync("rope");
        double e = nmse_dev_bf16(d_x, ref, n);
        CHECK(e < NMSE_BF16_ONE, "rope N=%d nvec=%d dr=%d inverse=%d: nmse %.3g", N, nvec, dr, inverse, e);
        printf("rope N=%d nvec=%d dr=%d inverse=%d: nmse %.2e\n", N, nvec, dr, inverse, e);
        /* dims outside the rotated ones are untouched: compare bit for bit */
        cuda_bf16 *h = malloc(2 * n);
        dev_download(h, d_x, 2 * n);
        long bad = 0;
        for (int i = 0; i < N; i++)
            for (int c = 0; c < ldx; c++) {
                int rel = c - off, in = 0;
                for (int v = 0; v < nvec && !in; v++) in = rel >= v * vstride && rel < v * vstride + dr;
                bad += !in && h[(long)i * ldx + c] != xb[(long)i * ldx + c];
            }
        CHECK(bad == 0, "rope N=%d: %ld values outside the rope dims changed", N, bad);
        cudaFree(d_x), free(ref), free(h);
    }
    cudaFree(d_cs), cudaFree(d_sn);
    free(pos), free(inv), free(cs), free(sn), free(xb), free(x);
}

/* rows x I values; fused: g and u as the two halves of [rows, 2I] rows (a gate|up
 * product), else two flat buffers. */
static void check_swiglu(long rows, int I, int fused) {
    const long n = rows * I, ld = fused ? 2L * I : I;
    cuda_bf16 *gb = malloc(2 * n), *ub = malloc(2 * n), *dhb = malloc(2 * n);
    float *g = malloc(4 * n), *u = malloc(4 * n), *dh = malloc(4 * n), *h = malloc(4 * n);
    float *dg = malloc(4 * n), *du = malloc(4 * n), *dgu = malloc(8 * n);
    rand_bf16(&rng, gb, g, n, 3.0f);
    rand_bf16(&rng, ub, u, n, 1.0f);
    rand_bf16(&rng, dhb, dh, n, 1.0f);
    swiglu_fwd(h, g, u, n);
    swiglu_bwd(dg, du, dh, g, u, n);
    cuda_bf16 *d_gu = dev_alloc(4 * n);
    cuda_bf16 *d_g = d_gu, *d_u = fused ? d_gu + I : d_gu + n;
    for (long r = 0; r < rows; r++) { /* the reference's rows into the device layout */
        CU(cudaMemcpy(d_g + r * ld, gb + r * I, 2L * I, cudaMemcpyHostToDevice));
        CU(cudaMemcpy(d_u + r * ld, ub + r * I, 2L * I, cudaMemcpyHostToDevice));
    }
    void *d_dh = dev_upload(dhb, 2 * n), *d_h = dev_alloc(2 * n);
    cuda_bf16 *d_dgu = dev_alloc(4 * n), *d_dg = d_dgu, *d_du = fused ? d_dgu + I : d_dgu + n;
    OK(cuda_swiglu_fwd(0, d_h, d_g, d_u, rows, I, ld, &err));
    OK(cuda_swiglu_bwd(0, d_dg, d_du, d_dh, d_g, d_u, rows, I, ld, &err));
    dev_sync("swiglu");
    for (long r = 0; r < rows; r++) /* the reference's dg, du in the device layout */
        for (int j = 0; j < I; j++) {
            const long gi = fused ? r * ld + j : r * I + j, ui = fused ? gi + I : n + gi;
            dgu[gi] = dg[r * I + j], dgu[ui] = du[r * I + j];
        }
    double eh = nmse_dev_bf16(d_h, h, n), eg = nmse_dev_bf16(d_dgu, dgu, 2 * n);
    CHECK(eh < NMSE_BF16_ONE, "swiglu fwd %ld x %d (fused %d): nmse %.3g", rows, I, fused, eh);
    CHECK(eg < NMSE_BF16_ONE, "swiglu bwd %ld x %d (fused %d): dg|du nmse %.3g", rows, I, fused, eg);
    printf("swiglu %ld x %d (%s): nmse h %.2e dg|du %.2e\n", rows, I, fused ? "gate|up rows" : "flat", eh, eg);
    cudaFree(d_gu), cudaFree(d_dh), cudaFree(d_h), cudaFree(d_dgu);
    free(gb), free(ub), free(dhb), free(g), free(u), free(dh), free(h), free(dg), free(du), free(dgu);
}

/* Casts must round exactly as the host helper (ties to even, NaN kept NaN). */
static void check_cast(long n) {
    float *f = malloc(4 * n), *back = malloc(4 * n);
    cuda_bf16 *b = malloc(2 * n);
    for (long i = 0; i < n; i++) {
        uint32_t u = (uint32_t)rng_next(&rng); /* any bit pattern: subnormals, infs, NaNs, ties */
        memcpy(&f[i], &u, 4);
    }
    f[0] = 1.0f + 1.0f / 256.0f; /* exactly halfway between two bf16 values: rounds to even */
    float *d_f = dev_upload(f, 4 * n), *d_back = dev_alloc(4 * n);
    cuda_bf16 *d_b = dev_alloc(2 * n);
    OK(cuda_f32_to_bf16(0, d_b, d_f, n, &err));
    OK(cuda_bf16_to_f32(0, d_back, d_b, n, &err));
    dev_sync("cast");
    dev_download(b, d_b, 2 * n);
    dev_download(back, d_back, 4 * n);
    long bad = 0, badback = 0;
    for (long i = 0; i < n; i++) {
        cuda_bf16 want = bf16_from_f32(f[i]);
        int both_nan = isnan(f[i]) && (b[i] & 0x7fff) > 0x7f80;
        bad += !both_nan && b[i] != want;
        float w = bf16_to_f32(b[i]);
        badback += memcmp(&w, &back[i], 4) != 0;
    }
    CHECK(bad == 0, "f32 -> bf16: %ld of %ld values differ from the host rounding", bad, n);
    CHECK(badback == 0, "bf16 -> f32: %ld of %ld values not exact", badback, n);
    printf("cast n=%ld: %ld rounding differences, %ld widening differences\n", n, bad, badback);
    cudaFree(d_f), cudaFree(d_back), cudaFree(d_b);
    free(f), free(back), free(b);
}

int main(void) {
    CUDA_TEST_REQUIRE_GPU();
    check_rmsnorm(1, 1, 1, 1);
    check_rmsnorm(5, 7, 7, 7);
    check_rmsnorm(33, 129, 134, 131);
    check_rmsnorm(64, 1024, 1024, 1024);
    if (!test_quick()) check_rmsnorm(17, 7168, 7168, 7168);
    check_rope(1, 1, 2, 2, 2, 0);
    check_rope(7, 3, 24, 80, 16, 8);
    check_rope(130, 16, 192, 16 * 192, 64, 128);
    check_swiglu(1, 1, 0);
    check_swiglu(1, 1001, 0);
    check_swiglu(37, 100, 1);
    if (!test_quick()) check_swiglu(3L * 65536 + 7, 1, 0), check_swiglu(777, 384, 1);
    check_cast(1);
    check_cast(100003);
    Err e2 = {0};
    CHECK(cuda_rmsnorm_fwd(0, NULL, NULL, NULL, NULL, 4, 8, 4, 8, 1e-6f, &e2) == -1 && e2.code == ERR_INPUT,
          "ldx < D must be refused");
    return test_report();
}
