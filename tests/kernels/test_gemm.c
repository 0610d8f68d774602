/* test_gemm: gemm against a double-precision triple loop over every transpose
 * combination and shapes that hit full tiles, edge tiles and the small-M path. */
#include <stdlib.h>

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

int main(void) {
    int shapes[][3] = {{1, 1, 1}, {1, 300, 77}, {3, 129, 257}, {4, 16, 8}, {6, 32, 256}, {7, 33, 300},
                       {97, 257, 513}, {200, 70, 31}, {13, 1000, 5}};
    double worst_all = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                double w = check(ta, tb, M, N, K, 0.5f, s % 3 == 0 ? 0.0f : 1.0f);
                if (w > worst_all) worst_all = w;
                CHECK(w < 3e-5, "M=%d N=%d K=%d ta=%d tb=%d worst rel err %.3g", M, N, K, ta, tb, w);
            }
    printf("gemm: worst relative error %.3g (tolerance 3e-5)\n", worst_all);
    return test_report();
}
