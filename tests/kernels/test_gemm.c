/* test_gemm: gemm against a double-precision triple loop over every transpose
 * combination and shapes that hit full tiles, edge tiles, several K blocks
 * (and more than one shared packing of B, K > 4096) and the small-M path; the
 * same bits at 1 and 2 threads; beta = 0 overwrites whatever C held. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/gemm.h"
#include "test.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static double check(int ta, int tb, int M, int N, int K, float alpha, float beta) {
    unsigned s = 1234u + M * 7 + N * 13 + K;
    int lda = ta ? M + 3 : K + 1, ldb = tb ? K + 2 : N + 5, ldc = N + 1;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4);
    double *R = malloc(nc * 8);
    for (size_t i = 0; i < na; i++) A[i] = frand(&s);
    for (size_t i = 0; i < nb; i++) B[i] = frand(&s);
    for (size_t i = 0; i < nc; i++) R[i] = C[i] = frand(&s);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++)
                acc += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                       (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            R[(size_t)i * ldc + j] = alpha * acc + beta * R[(size_t)i * ldc + j];
        }
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double d = fabs(C[(size_t)i * ldc + j] - R[(size_t)i * ldc + j]) / (1.0 + fabs(R[(size_t)i * ldc + j]));
            if (d > worst) worst = d;
        }
    free(A), free(B), free(C), free(R);
    return worst;
}

/* Each C element sums its products in one order whatever the thread count:
 * 1 and 2 threads agree bitwise (the shapes go parallel: M*N*K > 2e5). And a
 * beta = 0 product never reads C (NaN there does not leak through). */
static void check_threads_and_beta0(void) {
    int shapes[][3] = {{203, 300, 600}, {100, 40, 4500}, {1000, 64, 192}, {40, 600, 4500}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], lda = ta ? M : K;
            unsigned seed = 99u + (unsigned)s;
            float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
            float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
            for (long i = 0; i < (long)M * K; i++) A[i] = frand(&seed);
            for (long i = 0; i < (long)K * N; i++) B[i] = frand(&seed);
            for (long i = 0; i < (long)M * N; i++) C1[i] = C2[i] = NAN;
            int nt = omp_get_max_threads();
            omp_set_num_threads(1);
            gemm(ta, 1, M, N, K, 1.0f, A, lda, B, K, 0.0f, C1, N);
            omp_set_num_threads(2);
            gemm(ta, 1, M, N, K, 1.0f, A, lda, B, K, 0.0f, C2, N);
            omp_set_num_threads(nt);
            int finite = 1;
            for (long i = 0; i < (long)M * N; i++) finite &= isfinite(C1[i]) && isfinite(C2[i]);
            CHECK(finite, "M=%d N=%d K=%d ta=%d: beta = 0 left NaN from C", M, N, K, ta);
            CHECK(!memcmp(C1, C2, sizeof(float) * M * N), "M=%d N=%d K=%d ta=%d: 1 and 2 threads differ", M, N, K, ta);
            free(A), free(B), free(C1), free(C2);
        }
}

/* gemm_weight with frozen weights (packed once, on the first call) gives the
 * bits of plain gemm, on the first and on later calls, at 1 and 2 threads,
 * for beta 0 and 1; after gemm_weights_frozen(0) a changed W is seen. */
static void check_frozen_weights(void) {
    const int shapes[][3] = {{4, 16, 8}, {7, 33, 300}, {97, 257, 513}, {200, 70, 31}, {203, 300, 600}, {2, 40, 9}};
    int nt0 = omp_get_max_threads();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        unsigned seed = 3u + (unsigned)s;
        float *A = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K);
        float *C0 = malloc(sizeof(float) * M * N), *C1 = malloc(sizeof(float) * M * N);
        for (long i = 0; i < (long)M * K; i++) A[i] = frand(&seed);
        for (long i = 0; i < (long)N * K; i++) W[i] = frand(&seed);
        for (int round = 0; round < 2; round++) { /* round 1: W changed between two frozen periods */
            if (round) W[0] += 1.0f, W[(long)N * K - 1] -= 0.5f;
            gemm_weights_frozen(1);
            for (int call = 0; call < 4; call++) { /* calls 0, 1: first use and cache hit, 1 thread; 2, 3: 2 threads */
                omp_set_num_threads(call < 2 ? 1 : 2);
                float beta = call & 1 ? 1.0f : 0.0f;
                for (long i = 0; i < (long)M * N; i++) C0[i] = C1[i] = frand(&seed);
                gemm(0, 1, M, N, K, 1.0f, A, K, W, K, beta, C0, N);
                gemm_weight(M, N, K, A, W, beta, C1);
                CHECK(!memcmp(C0, C1, sizeof(float) * M * N), "frozen M=%d N=%d K=%d round %d call %d: differs from gemm",
                      M, N, K, round, call);
            }
            gemm_weights_frozen(0);
        }
        free(A), free(W), free(C0), free(C1);
    }
    omp_set_num_threads(nt0);
}

int main(void) {
    check_frozen_weights();
    int shapes[][3] = {{1, 1, 1}, {1, 300, 77}, {3, 129, 257}, {4, 16, 8}, {6, 32, 256}, {7, 33, 300},
                       {97, 257, 513}, {200, 70, 31}, {13, 1000, 5}, {203, 300, 600}, {100, 40, 4500}};
    double worst_all = 0;
    int nt0 = omp_get_max_threads();
    for (int nt = 1; nt <= 2; nt++) { /* the serial and the parallel (shared packing) paths */
        omp_set_num_threads(nt);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    double w = check(ta, tb, M, N, K, 0.5f, s % 3 == 0 ? 0.0f : 1.0f);
                    if (w > worst_all) worst_all = w;
                    CHECK(w < 3e-5, "%d threads: M=%d N=%d K=%d ta=%d tb=%d worst rel err %.3g", nt, M, N, K, ta, tb, w);
                }
    }
    omp_set_num_threads(nt0);
    printf("gemm: worst relative error %.3g (tolerance 3e-5)\n", worst_all);
    check_threads_and_beta0();
    return test_report();
}
