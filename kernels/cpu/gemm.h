/* gemm: single-precision matrix multiply on the CPU (OpenMP, SIMD via GCC
 * vector extensions). Row-major, BLAS-like:
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
 * op(A) = A (stored [M, lda]) or A^T (stored [K, lda]); same for B.
 * 6 x 2*VW micro-tiles; B is packed once per call into panels shared by all
 * threads, A is read in place; tiny M takes a dot-product path so decoding one
 * token does not pay for packing weights. Each output sums its K products in
 * an order that does not depend on the thread count. Threads over output
 * tiles unless already inside a parallel region. beta = 0 never reads C. */
#ifndef GRPO_GEMM_H
#define GRPO_GEMM_H

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

/* y[M,N] (+)= x[M,K] · W[N,K]^T: the Linear layer (W in HF [out, in] layout). */
static inline void linear_fwd(float *y, const float *x, const float *W, int M, int N, int K, int accumulate) {
    gemm(0, 1, M, N, K, 1.0f, x, K, W, K, accumulate ? 1.0f : 0.0f, y, N);
}
/* dx[M,K] += dy[M,N] · W[N,K] */
static inline void linear_bwd_x(float *dx, const float *dy, const float *W, int M, int N, int K) {
    gemm(0, 0, M, K, N, 1.0f, dy, N, W, K, 1.0f, dx, K);
}
/* dW[N,K] += dy[M,N]^T · x[M,K] */
static inline void linear_bwd_w(float *dW, const float *dy, const float *x, int M, int N, int K) {
    gemm(1, 0, N, K, M, 1.0f, dy, N, x, K, 1.0f, dW, K);
}

#endif
